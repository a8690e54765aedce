"""Build README.md and an HTML preview of the documentation site without Quarto.

nbdev renders docs with Quarto, which cannot be installed on every machine. This script reuses nbdev's own notebook
processing (`nbdev.serve.proc_nbs`: hidden cells dropped, `show_doc` cells added, directives applied) and renders the
processed notebooks with nbconvert instead:

  python tools/build_docs.py             # README.md + _docs/*.html (+ _docs/index.html linking every page)
  python tools/build_docs.py --readme    # README.md only

Notebooks are executed while rendering (they are stored without outputs). With Quarto installed, `nbdev_docs` builds
the real site from the same notebooks and `nbs/_quarto.yml`.
"""
import argparse, html, re, sys, time
from pathlib import Path

def frontmatter(nb):
    "Title and description from the YAML front matter nbdev puts in a raw cell; removes that cell."
    title, desc = None, None
    for i, c in enumerate(nb.cells):
        if c.cell_type == 'raw' and c.source.lstrip().startswith('---'):
            for line in c.source.splitlines():
                if line.startswith('title:'): title = line[6:].strip().strip("'\"")
                if line.startswith('description:'): desc = line[12:].strip().strip("'\"")
            del nb.cells[i]
            break
    return title, desc

def execute(nb, cwd, timeout=1200):
    from nbconvert.preprocessors import ExecutePreprocessor
    ExecutePreprocessor(timeout=timeout, kernel_name='python3').preprocess(nb, {'metadata': {'path': str(cwd)}})
    return nb

def render(fn, dest_dir, fmt, cwd):
    import nbformat
    from nbconvert import HTMLExporter, MarkdownExporter
    nb = nbformat.read(fn, as_version=4)
    title, desc = frontmatter(nb)
    head = f'# {title}\n\n' + (f'> {desc}\n\n' if desc else '') if title else ''
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(head.strip())) if head else None
    execute(nb, cwd)
    if fmt == 'md':
        body, _ = MarkdownExporter().from_notebook_node(nb)
        return title, body
    exp = HTMLExporter(template_name='lab')
    body, res = exp.from_notebook_node(nb)
    out = dest_dir / (fn.stem + '.html')
    out.write_text(body)
    return title, out

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--readme', action='store_true', help='only build README.md')
    ap.add_argument('--only', default=None, help='substring a notebook name must contain')
    a = ap.parse_args()
    from nbdev.config import get_config
    from nbdev.serve import proc_nbs
    cfg = get_config()
    root, nbs = cfg.config_path, cfg.nbs_path
    cache = proc_nbs(nbs, force=True)
    t0 = time.time()
    title, md = render(cache / cfg.readme_nb, None, 'md', nbs)
    md = re.sub(r'\n{3,}', '\n\n', md)
    (root / 'README.md').write_text('<!-- generated from nbs/index.ipynb by tools/build_docs.py: edit the notebook, not this file -->\n\n' + md)
    print(f'README.md written ({time.time()-t0:.0f}s)')
    if a.readme: return 0
    docs = root / cfg.doc_path.name; docs.mkdir(exist_ok=True)
    pages = []
    for fn in sorted(cache.glob('*.ipynb')):
        if a.only and a.only not in fn.name: continue
        t0 = time.time()
        title, out = render(fn, docs, 'html', nbs)
        pages.append((fn.stem, title or fn.stem, out.name))
        print(f'{out.relative_to(root)} ({time.time()-t0:.0f}s)')
    links = '\n'.join(f'<li><a href="{html.escape(f)}">{html.escape(t)}</a> <small>({html.escape(s)})</small></li>' for s, t, f in pages)
    (docs / 'pages.html').write_text(f'<!doctype html><html><head><meta charset="utf-8"><title>{cfg.title} docs</title></head>'
                                     f'<body><h1>{cfg.title}: documentation preview</h1><ul>{links}</ul></body></html>')
    print(f'{docs}/pages.html lists {len(pages)} pages')
    return 0

if __name__ == '__main__': sys.exit(main())
