"""Build README.md and an HTML preview of the documentation site without Quarto.

nbdev renders docs with Quarto, which cannot be installed on every machine. This script executes each notebook (they
are stored without outputs), applies nbdev's own docs processing to the executed copy (the processors of
`nbdev.serve.proc_nbs`: hidden and exported cells' sources dropped, `show_doc` cells added, directives applied) and
renders the result with nbconvert:

  python tools/build_docs.py             # README.md + _docs/*.html + _docs/index.html (the sidebar's sections)
  python tools/build_docs.py --readme    # README.md only
  python tools/build_docs.py --only 13_,14_  # only pages whose file name contains 13_ or 14_ (the index lists all)
  python tools/build_docs.py --check-results # only the results pages, into a temporary folder, then `check_pages`
                                             # (run by `make test` through tools/test_notebooks.py --docs)

- The page order and sections come from the sidebar of `nbs/_quarto.yml` (the one `nbdev_docs` uses with Quarto);
  pages that exist but are not in the sidebar are listed under "Other pages", sidebar entries without a notebook are
  reported.
- Notebooks are executed in a fresh kernel (working directory `nbs/`, as `make test`). Cells marked with a test flag
  of settings.ini (`#| slow`) are shown but not executed.
- A notebook that fails to execute does not stop the build: its page is skipped, the failure is printed and the script
  exits with status 1 at the end. One that executes but fails nbdev's docs processing (which `nbdev_docs` would also
  hit, e.g. a cell mixing imports with code that needs earlier cells) is rendered with a minimal stand-in processing
  and also reported, exit status 1.
- `check_pages` then asserts that the results pages hold what they must (the ablation tables and charts, the figures);
  a missing piece fails the build.

With Quarto installed, `nbdev_docs` builds the real site from the same notebooks and `nbs/_quarto.yml`.
"""
import argparse, html, json, os, re, sys, tempfile, time, traceback
from pathlib import Path

_SKIP = re.compile(r'^\s*#\|\s*eval:\s*false\s*$', re.M)
_DIRECTIVE = re.compile(r'^\s*#\|.*\n?', re.M)
_ECHO_FALSE = re.compile(r'^\s*#\|\s*echo:\s*false\s*$', re.M)
_QUARTO_ATTR = re.compile(r'\{target="_blank"[^}]*\}')

def frontmatter(nb):
    "Title and description from the YAML front matter nbdev puts in a raw cell; removes that cell."
    title, desc = None, None
    for i, c in enumerate(nb.cells):
        if c.cell_type == 'raw' and c.source.lstrip().startswith('---'):
            import yaml
            try: fm = yaml.safe_load(c.source.strip().strip('-')) or {}
            except Exception: fm = {}
            title, desc = fm.get('title'), fm.get('description')
            del nb.cells[i]
            break
    return title, desc

def mark_flagged(src: Path, dest: Path, flags) -> int:
    "Copy notebook `src` to `dest` with `#| eval: false` added to the cells carrying a test flag; returns how many."
    import nbformat
    nb = nbformat.read(src, as_version=4)
    pat = re.compile(r'^\s*#\|\s*(' + '|'.join(map(re.escape, flags)) + r')\s*$', re.M) if flags else None
    n = 0
    for c in nb.cells:
        if c.cell_type == 'code' and pat is not None and pat.search(c.source):
            c.source = '#| eval: false\n' + c.source; n += 1
    nbformat.write(nb, dest)
    return n

def process(src: Path, dest: Path):
    "nbdev's docs processing of one notebook (what `proc_nbs` does for each file)."
    from nbdev.serve_drv import exec_nb
    from nbdev.processors import FilterDefaults
    os.environ['IN_TEST'] = '1'
    try: exec_nb(src, dest, FilterDefaults)
    finally: os.environ.pop('IN_TEST', None)

def fallback_process(src: Path, dest: Path):
    "A minimal stand-in for nbdev's processing: hidden cells and the export call dropped, the H1 made the title."
    import nbformat
    nb = nbformat.read(src, as_version=4)
    hide = re.compile(r'^\s*#\|\s*hide\s*$', re.M)
    nb.cells = [c for c in nb.cells if not (c.cell_type == 'code' and (hide.search(c.source) or 'nbdev_export' + '()' in c.source))]
    for i, c in enumerate(nb.cells):
        m = re.match(r'#\s+(.+)\n+(?:>\s*(.+))?', c.source) if c.cell_type == 'markdown' else None
        if m:
            fm = '---\ntitle: ' + json.dumps(m.group(1).strip()) + ('\ndescription: ' + json.dumps(m.group(2).strip()) if m.group(2) else '') + '\n---'
            nb.cells[i] = nbformat.v4.new_raw_cell(fm)
            break
    nbformat.write(nb, dest)

def execute(nb, cwd, timeout=1200):
    "Run the code cells of a source notebook, except those marked `#| eval: false` and `nbdev_export()` (as nbdev's tests)."
    from nbconvert.preprocessors import ExecutePreprocessor
    class SkipFlagged(ExecutePreprocessor):
        def preprocess_cell(self, cell, resources, index):
            if cell.cell_type == 'code' and (_SKIP.search(cell.source) or 'nbdev_export' + '()' in cell.source):
                return cell, resources                               # test-flagged, or the notebook's export call
            return super().preprocess_cell(cell, resources, index)
    SkipFlagged(timeout=timeout, kernel_name='python3').preprocess(nb, {'metadata': {'path': str(cwd)}})
    return nb

NAV_CSS = ('<style>.mabp-nav{font:14px/1.4 system-ui,sans-serif;background:#2c3e50;color:#fff;padding:6px 14px;'
           'position:sticky;top:0;z-index:100}.mabp-nav a{color:#cfe3ff;margin-right:14px;text-decoration:none}'
           '.mabp-nav a:hover{text-decoration:underline}.mabp-nav .sec{color:#9fb3c8;margin-right:14px}</style>')

def nav_bar(title: str, section: str | None, prev=None, nxt=None) -> str:
    e = html.escape
    parts = ['<a href="index.html">mabp docs</a>']
    if section: parts.append(f'<span class="sec">{e(section)} / {e(title)}</span>')
    if prev: parts.append(f'<a href="{e(prev[0])}">&larr; {e(prev[1])}</a>')
    if nxt: parts.append(f'<a href="{e(nxt[0])}">{e(nxt[1])} &rarr;</a>')
    return NAV_CSS + '<div class="mabp-nav">' + ''.join(parts) + '</div>'

def render(fn, fmt):
    "Export a processed (already executed) notebook: `(title, body)`, markdown or a full HTML page."
    import nbformat
    from nbconvert import HTMLExporter, MarkdownExporter
    nb = nbformat.read(fn, as_version=4)
    title, desc = frontmatter(nb)
    head = f'# {title}\n\n' + (f'> {desc}\n\n' if desc else '') if title else ''
    if head: nb.cells.insert(0, nbformat.v4.new_markdown_cell(head.strip()))
    for c in nb.cells:
        if c.cell_type != 'code': continue
        if _ECHO_FALSE.search(c.source):                                  # show_doc cells: output only, as Quarto shows them
            c.metadata.setdefault('tags', []).append('remove_input')
        c.source = _DIRECTIVE.sub('', c.source)                           # directives are not for readers
        for o in c.get('outputs', []):                                    # Quarto-only link attributes of show_doc
            md = o.get('data', {}).get('text/markdown')
            if md: o['data']['text/markdown'] = _QUARTO_ATTR.sub('', md)
    nb.cells = [c for c in nb.cells if not (c.cell_type == 'code' and not c.source.strip() and not c.get('outputs'))]
    if fmt == 'md': return title, MarkdownExporter().from_notebook_node(nb)[0]
    from nbconvert.preprocessors import TagRemovePreprocessor
    exp = HTMLExporter(template_name='lab', exclude_input_prompt=True, exclude_output_prompt=True)
    exp.register_preprocessor(TagRemovePreprocessor(remove_input_tags={'remove_input'}), enabled=True)
    body, _ = exp.from_notebook_node(nb, resources={'metadata': {'name': title or fn.stem}})
    return title, body

def sidebar_sections(quarto_yml: Path) -> list:
    "`[(section, [notebook file names])]` from the `website.sidebar.contents` of a `_quarto.yml`."
    import yaml
    cfg = yaml.safe_load(quarto_yml.read_text()) or {}
    contents = (cfg.get('website', {}).get('sidebar', {}) or {}).get('contents', []) or []
    out = []
    def files(items):
        for it in items or []:
            if isinstance(it, str): yield it
            elif isinstance(it, dict) and 'href' in it: yield it['href']
            elif isinstance(it, dict) and 'contents' in it: yield from files(it['contents'])
    for it in contents:
        if isinstance(it, dict) and 'section' in it: out.append((it['section'], list(files(it.get('contents')))))
        else: out.append(('Pages', list(files([it]))))
    return out

# what the results pages must show (a regex and a minimum count per page)
REQUIRED = {
    '13_ablation.html': [(r'Table V \(val\)', 1, 'the Table V table'), (r'Table VI \(val\)', 1, 'the Table VI table'),
                         (r'\d+\.\d ± \d+\.\d', 16, '"mean ± std" cells'), (r'65\.69', 2, "the paper's numbers"),
                         (r'<img[^>]+src="data:image/png;base64', 2, 'the bar charts'),
                         (r'(agrees|disagrees|within seed noise)', 8, 'the ordering verdicts')],
    '14_visualisation.html': [(r'<img[^>]+src="data:image/png;base64', 6, 'the test figures and the committed Fig. 5-7 PNGs'),
                              (r'fig5_attention', 1, 'Fig. 5'), (r'fig6_examples', 1, 'Fig. 6'), (r'fig7_clusters', 1, 'Fig. 7')],
}

def check_pages(docs: Path, required=REQUIRED) -> list:
    "Problems with the built results pages (empty when every table and figure is there)."
    problems = []
    for page, rules in required.items():
        p = docs / page
        if not p.exists(): problems.append(f'{page}: not built'); continue
        text = p.read_text(errors='replace')
        for pat, n, what in rules:
            k = len(re.findall(pat, text))
            if k < n: problems.append(f'{page}: {what} missing ({k} matches of /{pat}/, expected >= {n})')
    return problems

def out_name(nb_name: str) -> str:
    "HTML file of a notebook's page; the notebook `index.ipynb` becomes home.html (index.html is the page list)."
    return 'home.html' if nb_name == 'index.ipynb' else Path(nb_name).stem + '.html'

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--readme', action='store_true', help='only build README.md')
    ap.add_argument('--only', default=None, help='build only notebooks whose name contains one of these comma-separated substrings')
    ap.add_argument('--no-check', action='store_true', help='skip the check of the results pages')
    ap.add_argument('--check-results', action='store_true',
                    help='build only the results pages of REQUIRED into a temporary folder and check them (what make test runs)')
    a = ap.parse_args()
    if a.check_results: a.only, a.no_check = ','.join(Path(p).stem for p in REQUIRED), False
    from nbdev.config import get_config
    cfg = get_config()
    root, nbs = cfg.config_path, cfg.nbs_path
    flags = cfg.get('tst_flags', '').split()
    t_all = time.time()
    proc = Path(tempfile.mkdtemp(prefix='mabp_docs_'))
    failed = []

    def build(src: Path, fmt: str = 'html'):
        "Processed + executed + exported page of one notebook: (title, body) or None when it failed."
        t0 = time.time()
        try:
            import nbformat
            marked, done = proc / ('executed_' + src.name), proc / src.name
            mark_flagged(src, marked, flags)
            nb = execute(nbformat.read(marked, as_version=4), nbs)     # the source notebook, with its outputs
            nbformat.write(nb, marked)
            try: process(marked, done)                                # nbdev: hidden/export cells out, show_doc in
            except Exception as e:                                    # still show the page, and report the failure
                failed.append((src.name, f"nbdev's docs processing failed (the page was built without it, as with "
                                         f"`nbdev_docs` it would fail): {type(e).__name__}: {str(e)[:1500]}"))
                fallback_process(marked, done)
                print(f'{src.name}: nbdev processing FAILED, rendered without it', flush=True)
            res = render(done, fmt)
            print(f'{src.name}: {time.time() - t0:.0f}s', flush=True)
            return res
        except Exception as e:
            failed.append((src.name, f'{type(e).__name__}: {str(e)[:2000]}'))
            print(f'{src.name}: FAILED ({type(e).__name__}) after {time.time() - t0:.0f}s', flush=True)
            if os.environ.get('MABP_DOCS_TRACEBACK'): traceback.print_exc()
            return None

    readme = None if a.check_results else build(nbs / cfg.readme_nb, 'md')
    if readme is not None:
        md = re.sub(r'\n{3,}', '\n\n', readme[1])
        (root / 'README.md').write_text('<!-- generated from nbs/index.ipynb by tools/build_docs.py: edit the notebook, not this file -->\n\n' + md)
        print('README.md written')
    if a.readme: return 1 if failed else 0

    docs = Path(tempfile.mkdtemp(prefix='mabp_docs_check_')) if a.check_results else root / cfg.doc_path.name
    docs.mkdir(exist_ok=True)
    sections = sidebar_sections(nbs / '_quarto.yml')
    existing = sorted(p.name for p in nbs.glob('*.ipynb') if not p.name.startswith(('_', '.')))
    in_sidebar = [f for _, fs in sections for f in fs]
    missing = [f for f in dict.fromkeys(in_sidebar) if f not in existing]
    others = [f for f in existing if f not in in_sidebar]
    if others: sections = sections + [('Other pages', others)]
    order = [f for _, fs in sections for f in fs if f in existing]
    order = list(dict.fromkeys(order))                                   # a page listed twice is built once
    section_of = {}
    for s, fs in sections:
        for f in fs: section_of.setdefault(f, s)
    titles, built = {}, {}
    for f in order:
        if a.only and not any(o and o in f for o in a.only.split(',')): continue
        res = build(nbs / f)
        if res is None: continue
        titles[f], built[f] = res[0] or Path(f).stem, res[1]
    # nav bars (prev/next in sidebar order) and the pages
    done_order = [f for f in order if f in built]
    for i, f in enumerate(done_order):
        page = lambda g: (out_name(g), titles[g])
        prev = page(done_order[i - 1]) if i > 0 else None
        nxt = page(done_order[i + 1]) if i + 1 < len(done_order) else None
        body = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + nav_bar(titles[f], section_of.get(f), prev, nxt), built[f], count=1)
        body = re.sub(r'href="([\w.+-]+)\.ipynb(#[^"]*)?"', lambda m: f'href="{out_name(m.group(1) + ".ipynb")}{m.group(2) or ""}"', body)
        (docs / out_name(f)).write_text(body)
    # index: every page of every sidebar section
    e = html.escape
    items = []
    for s, fs in sections:
        lis = []
        for f in fs:
            out = docs / out_name(f)
            if f in missing: lis.append(f'<li><span style="color:#999">{e(f)} (no such notebook)</span></li>')
            elif out.exists():
                t = titles.get(f) or Path(f).stem
                lis.append(f'<li><a href="{e(out.name)}">{e(t)}</a> <small style="color:#777">{e(f)}</small></li>')
            else: lis.append(f'<li>{e(f)} <small style="color:#a00">(not built)</small></li>')
        items.append(f'<h2>{e(s)}</h2><ul>{"".join(lis)}</ul>')
    style = ('<style>body{font:15px/1.5 system-ui,sans-serif;max-width:820px;margin:2em auto;padding:0 1em}'
             'h2{font-size:1.1em;margin-top:1.4em;border-bottom:1px solid #ddd}li{margin:.2em 0}</style>')
    page = (f'<!doctype html><html><head><meta charset="utf-8"><title>{e(cfg.title)} docs</title>{style}</head><body>'
            f'<h1>{e(cfg.title)}: documentation preview</h1><p>{e(cfg.get("description", ""))}</p>'
            f'<p><small>Built without Quarto by tools/build_docs.py ({time.strftime("%Y-%m-%d %H:%M")}); sections as in the '
            f'sidebar of nbs/_quarto.yml.</small></p>{"".join(items)}</body></html>')
    (docs / 'index.html').write_text(page)
    (docs / 'pages.html').write_text(page)                               # the old name of the index
    print(f'{docs}/index.html lists {sum(len(fs) for _, fs in sections)} sidebar entries in {len(sections)} sections '
          f'({len(built)} pages built, {time.time() - t_all:.0f}s)')
    if missing: print('sidebar entries without a notebook: ' + ', '.join(missing))
    status = 0
    if failed:
        status = 1
        print(f'\n{len(failed)} notebook(s) failed:')
        for n, msg in failed: print(f'--- {n}\n{msg}')
    if not a.no_check and (not a.only or a.check_results):
        problems = check_pages(docs)
        if problems:
            status = 1
            print('\nresults pages are incomplete:\n  ' + '\n  '.join(problems))
        else: print('check: the ablation tables and charts and the figures are in the built HTML')
    import shutil
    shutil.rmtree(proc, ignore_errors=True)                              # the executed/processed copies
    if a.check_results: shutil.rmtree(docs, ignore_errors=True)
    return status

if __name__ == '__main__': sys.exit(main())
