"""Build the documentation: README.md, the site (real Quarto, or an nbconvert preview without it), and the results pages.

  python tools/build_docs.py                    # README.md + the site in _docs/: with `quarto` on PATH the real site
                                                # (nbdev_docs on a copy of nbs/ whose other notebooks are executed),
                                                # else the nbconvert preview; then the page checks
  python tools/build_docs.py --no-execute       # real site from the notebooks as committed (what plain `nbdev_docs` gives)
  python tools/build_docs.py --preview          # the nbconvert preview even when Quarto is installed
  python tools/build_docs.py --readme           # README.md only
  python tools/build_docs.py --only 13_,14_     # preview of only the pages whose file name contains 13_ or 14_
  python tools/build_docs.py --execute-results  # re-execute the results notebooks IN PLACE (`make results`)
  python tools/build_docs.py --check-stale      # do the committed results notebooks match their code and data?
  python tools/build_docs.py --check-results    # render the committed results notebooks and check their pages
                                                # (--check-stale and --check-results: run by `make test`)

Results notebooks (settings.ini `results_nbs`, the one list) are committed EXECUTED: their outputs are the tables and
figures of the site, and neither nbdev nor Quarto executes notebooks. `--execute-results` runs each of them in a fresh
kernel (working directory `nbs/`, cells with a `tst_flags` flag such as `#| slow` skipped, as `make test`), keeps the
outputs, records in the notebook metadata (key `mabp`, kept by nbdev_clean through settings.ini
`allowed_metadata_keys`) the sha256 of its code cells and of every committed file under `nbs/` the run read (found with
an audit hook, so nothing is declared by hand), and writes the notebook nbdev_clean'ed. `--check-stale` fails when a
results notebook has no outputs, an error output, or a recorded hash that differs from the code or a data file now.

README.md has one generator: this script (from settings.ini `readme_from`, the index notebook). nbdev's own README step
is off: settings.ini `readme_nb` names a notebook that does not exist, so `nbdev_docs` skips it (it prints
"Could not find ...").

The page check is the same on both builds (Quarto names a page like nbdev's links, `13_ablation.ipynb` ->
`ablation.html`; the preview keeps `13_ablation.html`): every results page holds its tables and figures, every image
a page links exists, every notebook is reachable from the sidebar. With Quarto, its warnings fail the build too.
"""
import argparse, fnmatch, hashlib, html, json, os, re, shutil, subprocess, sys, tempfile, time, traceback
from pathlib import Path

_DIRECTIVE = re.compile(r'^\s*#\|.*\n?', re.M)
_ECHO_FALSE = re.compile(r'^\s*#\|\s*echo:\s*false\s*$', re.M)
_QUARTO_ATTR = re.compile(r'\{target="_blank"[^}]*\}')
META_KEY = 'mabp'                                   # notebook metadata key; settings.ini allowed_metadata_keys keeps it
EXECUTE_CMD = 'make results  (python tools/build_docs.py --execute-results)'

# ---------------------------------------------------------------------------------------------------------- settings

def config():
    from nbdev.config import get_config
    return get_config()

def results_names(cfg) -> list:
    "The results notebooks' names (settings.ini `results_nbs`), those that exist and those that do not yet."
    return cfg.get('results_nbs', '').split()

def results_notebooks(cfg) -> list:
    "Paths of the results notebooks that exist."
    return [cfg.nbs_path / f'{n}.ipynb' for n in results_names(cfg) if (cfg.nbs_path / f'{n}.ipynb').exists()]

def skip_flags(cfg) -> list: return cfg.get('tst_flags', '').split()

# --------------------------------------------------------------------------------------------------------- execution

def directives(src: str) -> dict:
    "The `#| name: value` lines at the top of a code cell, as nbdev reads them."
    d = {}
    for line in src.splitlines():
        if not line.strip(): continue
        m = re.match(r'\s*#\|\s*([\w-]+:?)\s*(.*)$', line)
        if not m: break
        d[m.group(1)] = m.group(2).strip()
    return d

def skipped(cell, flags) -> bool:
    "Whether `make test` skips this cell: a test flag (`#| slow`), `#| eval: false`, or the notebook's export call."
    if cell.cell_type != 'code': return True
    if 'nbdev_export' + '(' in cell.source: return True
    d = directives(cell.source)
    return d.get('eval:', '').lower() == 'false' or bool(set(flags) & set(d))

_TRACK = r'''
import sys as _mabp_sys, os as _mabp_os
_mabp_reads = set()
def _mabp_audit(event, args, _root={root!r}, _osp=_mabp_os.path, _W=_mabp_os.O_WRONLY | _mabp_os.O_RDWR):
    if event != 'open' or not args or isinstance(args[0], int): return
    mode = args[1] if len(args) > 1 else None
    if isinstance(mode, str) and any(c in mode for c in 'wax+'): return
    if mode is None and len(args) > 2 and isinstance(args[2], int) and args[2] & _W: return
    try: p = _osp.abspath(_mabp_os.fsdecode(args[0]))
    except Exception: return
    if p.startswith(_root): _mabp_reads.add(p)
_mabp_sys.addaudithook(_mabp_audit)
'''
_REPORT = "print(__import__('json').dumps(sorted(_mabp_reads)))"

def execute(nb, cwd, flags, timeout=1200, track=None):
    """Run a notebook's code cells in a fresh kernel (working directory `cwd`), skipping what `make test` skips.
    With `track` (a folder), also returns the files under it that the cells opened for reading."""
    import nbformat
    from nbconvert.preprocessors import ExecutePreprocessor
    from jupyter_client.manager import KernelManager
    sockets = tempfile.mkdtemp(prefix='mabp_kernel_')
    class Local(KernelManager):                     # IPC sockets: no "running over TCP without encryption" warning
        def __init__(self, **kw): super().__init__(**{'transport': 'ipc', 'ip': os.path.join(sockets, 'k'), **kw})
    extra = set()
    class Skip(ExecutePreprocessor):
        def preprocess_cell(self, cell, resources, index):
            if id(cell) in extra or not skipped(cell, flags):
                return super().preprocess_cell(cell, resources, index)
            return cell, resources
    for c in nb.cells:
        if c.cell_type == 'code': c.outputs, c.execution_count = [], None
    first = last = None
    if track is not None:
        first, last = nbformat.v4.new_code_cell(_TRACK.format(root=str(Path(track).resolve()) + os.sep)), nbformat.v4.new_code_cell(_REPORT)
        extra.update((id(first), id(last)))
        nb.cells = [first] + nb.cells + [last]
    try: Skip(timeout=timeout, kernel_name='python3', kernel_manager_class=Local).preprocess(nb, {'metadata': {'path': str(cwd)}})
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
        if track is not None: nb.cells = [c for c in nb.cells if c is not first and c is not last]
    if track is None: return nb
    text = ''.join(o.get('text', '') for o in last.outputs if o.get('name') == 'stdout')
    return nb, [Path(p) for p in json.loads(text.strip().splitlines()[-1])]

_PROGRESS = re.compile(r'\r|\d+%\|[^\n]*\||\d+it \[|it/s\]|s/it\]')
_PY_WARNING = re.compile(r'^\S+:\d+: \w*Warning: .*\n(?:  .*\n?)?', re.M)   # "file.py:3: UserWarning: msg" + its source line
_NATIVE_LOG = re.compile(r'^[A-Z]+:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \d+:\d+ [\w.]+:\d+\] .*\n?', re.M)   # C++ (kineto) log lines

def tidy_outputs(nb) -> list:
    """Progress bars (tqdm widgets, stderr bars), Python warnings and C++ log lines removed from the outputs (the page is
    for readers); returns notes on the warnings removed and on what else went to stderr, for the notebook's author."""
    notes = []
    for i, c in enumerate(nb.cells):
        if c.cell_type != 'code': continue
        keep = []
        for o in c.outputs:
            if 'application/vnd.jupyter.widget-view+json' in o.get('data', {}): continue
            if o.get('output_type') == 'stream' and o.get('name') == 'stderr':
                if _PROGRESS.search(o.get('text', '')): continue
                text = o.get('text', '')
                notes += [f'cell {i}: warning removed from the page: {w.strip().splitlines()[0][:200]}' for w in _PY_WARNING.findall(text)]
                o['text'] = _NATIVE_LOG.sub('', _PY_WARNING.sub('', text))
                if not o['text'].strip(): continue
                notes.append(f'cell {i}: stderr: {o["text"].strip()[:300]}')
            keep.append(o)
        c.outputs = keep
    return notes

def code_hash(nb) -> str:
    "sha256 of the code cells' sources, in order (markdown edits do not make the outputs stale)."
    h = hashlib.sha256()
    for c in nb.cells:
        if c.cell_type == 'code': h.update(c.source.encode() + b'\0')
    return h.hexdigest()

def file_hash(p: Path) -> str: return hashlib.sha256(Path(p).read_bytes()).hexdigest()

def tracked_files(root: Path):
    "Files git tracks or would add (not ignored) under `root`, or None without git."
    try:
        out = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z', '.'], cwd=root, capture_output=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError): return None
    return {(root / p).resolve() for p in out.decode().split('\0') if p}

def data_files(reads, nbs: Path) -> dict:
    "`{path relative to nbs: sha256}` of the committed data files among `reads` (not notebooks, not ignored files)."
    tracked = tracked_files(nbs)
    out = {}
    for p in reads:
        p = Path(p).resolve()
        if not p.is_file() or p.suffix == '.ipynb' or (tracked is not None and p not in tracked): continue
        try: rel = p.relative_to(nbs.resolve()).as_posix()
        except ValueError: continue
        if rel.split('/')[0].startswith(('.', '_')): continue
        out[rel] = file_hash(p)
    return dict(sorted(out.items()))

def nbdev_clean_file(path: Path):
    "nbdev_clean one notebook with settings.ini's options (outputs kept: clear_all = False)."
    from nbdev.clean import nbdev_clean
    nbdev_clean.__wrapped__(fname=str(path))

def execute_results(cfg, only=None) -> int:
    "Re-execute the results notebooks in place, record what they read, write them clean. Exit status."
    import nbformat
    nbs, flags, status = cfg.nbs_path, skip_flags(cfg), 0
    missing = [n for n in results_names(cfg) if not (nbs / f'{n}.ipynb').exists()]
    if missing: print('results notebooks not there (yet): ' + ', '.join(missing))
    for path in results_notebooks(cfg):
        if only and not any(o in path.name for o in only.split(',')): continue
        t0 = time.time()
        nb = nbformat.read(path, as_version=4)
        try: nb, reads = execute(nb, nbs, flags, track=nbs)
        except Exception as e:
            status = 1
            print(f'{path.name}: FAILED after {time.time() - t0:.0f}s, notebook left as it was:\n{short_error(e)}')
            continue
        notes = tidy_outputs(nb)
        data = data_files(reads, nbs)
        nb.metadata[META_KEY] = {'results': {'executed_by': EXECUTE_CMD, 'code_sha256': code_hash(nb), 'data': data}}
        nbformat.write(nb, path)
        nbdev_clean_file(path)
        n_out = sum(len(c.outputs) for c in nb.cells if c.cell_type == 'code')
        print(f'{path.name}: {time.time() - t0:.0f}s, {n_out} outputs, data: {", ".join(data) or "none"}')
        for n in notes: print(f'  {n}')
    return status

def short_error(e) -> str:
    "The failing cell and its error in a few lines (nbconvert's message without the ANSI-coloured traceback)."
    msg = re.sub(r'\x1b\[[0-9;]*m', '', str(e))
    lines = [l for l in msg.splitlines() if l.strip()]
    return '\n'.join('  ' + l for l in (lines[:12] + (['  ...'] + lines[-3:] if len(lines) > 15 else lines[12:])))

def stale_problems(cfg) -> list:
    "Why the committed results notebooks do not show what their code and data give now (empty when they do)."
    import nbformat
    nbs, problems = cfg.nbs_path, []
    fix = f'Fix: {EXECUTE_CMD}, then commit the notebook.'
    for path in results_notebooks(cfg):
        nb = nbformat.read(path, as_version=4)
        rec = nb.metadata.get(META_KEY, {}).get('results')
        outs = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', [])]
        if not rec or not outs:
            problems.append(f'{path.name}: committed without outputs, so the site shows none of its results. {fix}'); continue
        errs = [o for o in outs if o.get('output_type') == 'error' or 'Traceback (most recent call last)' in o.get('text', '')]
        if errs: problems.append(f'{path.name}: {len(errs)} output(s) hold an error or traceback. {fix}')
        if rec.get('code_sha256') != code_hash(nb):
            problems.append(f'{path.name}: its code changed since its outputs were made. {fix}')
        for rel, h in rec.get('data', {}).items():
            p = nbs / rel
            if not p.exists(): problems.append(f'{path.name}: it was executed on {rel}, which no longer exists. {fix}')
            elif file_hash(p) != h: problems.append(f'{path.name}: {rel} changed since its outputs were made. {fix}')
    return problems

# -------------------------------------------------------------------------------------------------------- rendering

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

NAV_CSS = ('<style>.mabp-nav{font:14px/1.4 system-ui,sans-serif;background:#2c3e50;color:#fff;padding:6px 14px;'
           'position:sticky;top:0;z-index:100}.mabp-nav a{color:#cfe3ff;margin-right:14px;text-decoration:none}'
           '.mabp-nav a:hover{text-decoration:underline}.mabp-nav .sec{color:#9fb3c8;margin-right:14px}'
           '.jp-RenderedHTMLCommon table{font-size:90%}.jp-OutputArea-output{overflow-x:auto}</style>')

def nav_bar(title: str, section, prev=None, nxt=None) -> str:
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

# ----------------------------------------------------------------------------------------------------------- sidebar

def sidebar_sections(quarto_yml: Path, nbs: Path) -> list:
    """`[(section, [notebook file names])]` from the `website.sidebar.contents` of a `_quarto.yml`, with `auto:` globs
    expanded over the notebooks in `nbs` (sorted by file name, as Quarto does) and explicit entries kept as written."""
    import yaml
    cfg = yaml.safe_load(quarto_yml.read_text()) or {}
    contents = (cfg.get('website', {}).get('sidebar', {}) or {}).get('contents', []) or []
    existing = sorted(p.name for p in nbs.glob('*.ipynb') if not p.name.startswith(('_', '.')))
    def files(items):
        for it in ([items] if isinstance(items, str) else items or []):
            if isinstance(it, str): yield it
            elif isinstance(it, dict) and 'auto' in it:
                for pat in ([it['auto']] if isinstance(it['auto'], str) else it['auto']):
                    yield from (f for f in existing if fnmatch.fnmatchcase(f, pat))
            elif isinstance(it, dict) and 'href' in it: yield it['href']
            elif isinstance(it, dict) and 'contents' in it: yield from files(it['contents'])
    out = []
    for it in contents:
        if isinstance(it, dict) and 'section' in it: out.append((it['section'], list(dict.fromkeys(files(it.get('contents'))))))
        else: out.append(('Pages', list(files([it]))))
    return out

def page_name(nb_name: str) -> str:
    "The page Quarto builds from a notebook: nbdev's `output-file` (`13_ablation.ipynb` -> `ablation.html`)."
    from nbdev.doclinks import _nbpath2html
    return _nbpath2html(Path(nb_name)).name

def preview_name(nb_name: str) -> str:
    "The page of the preview: the notebook's name (`index.ipynb` is home.html: index.html lists the pages)."
    return 'home.html' if nb_name == 'index.ipynb' else Path(nb_name).stem + '.html'

def page_file(docs: Path, nb_name: str):
    "The built page of a notebook in `docs`, whichever builder made it, or None."
    for n in (page_name(nb_name), preview_name(nb_name)):
        if n != 'index.html' and (docs / n).exists(): return docs / n
    return docs / 'index.html' if nb_name == 'index.ipynb' and (docs / 'index.html').exists() else None

# -------------------------------------------------------------------------------------------------------- page check

_IMG = r'<img[^>]+src="(?:data:image/png;base64|[^"]+\.png")'
# what the results pages must show: (regex, minimum count, what it is[, 'page']), by notebook (one not there yet is
# skipped); a pattern is searched in the cells' outputs only, not in the prose or the code, unless marked 'page'
REQUIRED = {
    # the study is filled in over several sessions: Table VI and the error bars come with its later runs
    '13_ablation': [(r'Table V \(val\)', 1, 'the Table V table'), (r'65\.69', 1, "the paper's numbers"),
                    (_IMG, 1, 'the bar chart'), (r'flat last 20%', 2, 'the convergence status of the runs'),
                    (r'(agrees|disagrees|within noise|one seed: no interval)', 4, 'the ordering verdicts'),
                    (r'our runs (neither support|support|contradict|partly support|partly contradict|give a mixed)|One paired '
                     r'seed so far|No paired runs yet', 5, 'the verdict of each claim in words')],
    '14_visualisation': [(_IMG, 3, 'the figures the examples draw'),
                         (_IMG, 6, 'those and the committed Fig. 5-7 PNGs (as outputs or as markdown images)', 'page'),
                         (r'fig5_attention', 1, 'Fig. 5', 'page'), (r'fig6_examples', 1, 'Fig. 6', 'page'),
                         (r'fig7_clusters', 1, 'Fig. 7', 'page')],
    '15_benchmarks': [(r'class="dataframe', 4, 'the result, goal, profile and top-ops tables'),
                      (r'paper forward', 1, 'the paper-preset numbers')],
    '16_reliability': [(r'mabp_\w+: error: .*?Fix:', 5, 'the error messages')],
    '17_learning_curve': [(_IMG, 1, 'the learning curves')],
}

def output_text(page: str) -> str:
    "The outputs of a built page's code cells (Quarto: `cell-output`; the preview: `jp-OutputArea-output`)."
    out = []
    for chunk in re.split(r'<div[^>]+class="(?:cell|jp-Cell)[ "]', page)[1:]:
        m = re.search(r'class="[^"]*(?:\bcell-output\b|jp-OutputArea-output[ "])', chunk)
        if m: out.append(chunk[m.start():])
    return '\n'.join(out)

def check_pages(docs: Path, nbs: Path, required=REQUIRED, only=None) -> list:
    "Problems with the built results pages (empty when every table and figure is there)."
    problems = []
    for name, rules in required.items():
        if not (nbs / f'{name}.ipynb').exists() or (only and name not in only): continue
        p = page_file(docs, name + '.ipynb')
        if p is None: problems.append(f'{name}: not built ({page_name(name + ".ipynb")} / {preview_name(name + ".ipynb")})'); continue
        page = p.read_text(errors='replace')
        outs = output_text(page)
        for pat, n, what, *scope in rules:
            k = len(re.findall(pat, page if scope == ['page'] else outs))
            if k < n: problems.append(f'{p.name}: {what} missing ({k} matches of /{pat}/, expected >= {n})')
    return problems

def check_images(docs: Path) -> list:
    "Images that a built page links but that are not there."
    problems = []
    for p in sorted(docs.glob('*.html')):
        for src in re.findall(r'<img[^>]+src="([^"]+)"', p.read_text(errors='replace')):
            if src.startswith(('data:', 'http:', 'https:', '//')): continue
            if not (p.parent / html.unescape(src.split('#')[0].split('?')[0])).exists():
                problems.append(f'{p.name}: links the image {src}, which is not in the site')
    return problems

def check_sidebar(docs: Path, nbs: Path, quarto: bool) -> list:
    "Notebooks that no sidebar entry reaches (and, for the Quarto site, pages missing from its sidebar)."
    sections = sidebar_sections(nbs / '_quarto.yml', nbs)
    listed = {f for _, fs in sections for f in fs}
    existing = sorted(p.name for p in nbs.glob('*.ipynb') if not p.name.startswith(('_', '.')))
    problems = [f'{f}: in no section of the sidebar (nbs/_quarto.yml)' for f in existing if f not in listed]
    problems += [f'{f}: in the sidebar (nbs/_quarto.yml) but there is no such notebook' for f in listed if f not in existing]
    if quarto and (docs / 'index.html').exists():
        links = set(re.findall(r'href="\./([^"#]+)"[^>]*class="sidebar-item-text sidebar-link',
                               (docs / 'index.html').read_text(errors='replace')))
        problems += [f'{f}: page {page_name(f)} not in the built sidebar' for f in existing
                     if f in listed and page_name(f) not in links]
    return problems

# ------------------------------------------------------------------------------------------------------------ builds

def build_readme(cfg, build) -> bool:
    "README.md from settings.ini `readme_from` (the index notebook); the only writer of README.md."
    src = cfg.get('readme_from', 'index.ipynb')
    res = build(cfg.nbs_path / src, 'md')
    if res is None: return False
    md = re.sub(r'\n{3,}', '\n\n', res[1].replace('<!-- WARNING: THIS FILE WAS AUTOGENERATED! DO NOT EDIT! -->', ''))
    (cfg.config_path / 'README.md').write_text(f'<!-- generated from nbs/{src} by tools/build_docs.py: edit the notebook, not this file -->\n\n' + md)
    print('README.md written')
    return True

_WARN = re.compile(r'^.*(WARN|\[WARNING\]|Warning:|UserWarning).*$', re.M)
_ANSI = re.compile(r'\x1b\[[0-9;]*m')

def cell_home(nbs: Path, src: str) -> str:
    "Which notebook holds the code cell `src` that a warning quotes (nbdev's warnings do not say)."
    import nbformat
    src = src.strip()
    for p in sorted(nbs.glob('*.ipynb')):
        for i, c in enumerate(nbformat.read(p, as_version=4).cells):
            if c.cell_type == 'code' and _DIRECTIVE.sub('', c.source).strip() == src: return f'{p.name}, cell {i}: {src.splitlines()[0][:60]!r}'
    return f'cell starting {src.splitlines()[0][:60]!r}'

def build_site(cfg, execute_pages: bool, failed: list) -> tuple:
    """The real site with Quarto: nbdev_docs on a copy of nbs/ in which the notebooks other than the results
    notebooks (committed executed) are executed. Returns (docs folder, warnings)."""
    import nbformat
    root, nbs, flags = cfg.config_path, cfg.nbs_path, skip_flags(cfg)
    work = Path(tempfile.mkdtemp(prefix='mabp_site_')) / nbs.name
    from nbdev.quarto import refresh_quarto_yml
    refresh_quarto_yml()                                                 # nbs/nbdev.yml (site-url etc.) from settings.ini
    tracked = tracked_files(nbs)
    if tracked is not None: tracked.add((nbs / 'nbdev.yml').resolve())
    if tracked is None: shutil.copytree(nbs, work, ignore=shutil.ignore_patterns('.*', '_proc', '__pycache__'))
    else:
        for p in tracked:
            if p.is_file():
                (work / p.relative_to(nbs.resolve())).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(p, work / p.relative_to(nbs.resolve()))
    if execute_pages:
        results = {p.name for p in results_notebooks(cfg)}
        for src in sorted(nbs.glob('*.ipynb')):
            if src.name in results or src.name.startswith(('_', '.')): continue
            t0 = time.time()
            try:
                nb = execute(nbformat.read(src, as_version=4), nbs, flags)
                tidy_outputs(nb)
                nbformat.write(nb, work / src.name)
                print(f'{src.name}: executed in {time.time() - t0:.0f}s', flush=True)
            except Exception as e:
                failed.append((src.name, 'execution failed (its page shows no outputs):\n' + short_error(e)))
                print(f'{src.name}: FAILED to execute after {time.time() - t0:.0f}s', flush=True)
    shutil.rmtree(root / '_proc', ignore_errors=True)                    # nbdev's cache: pages of the copy, not stale ones
    exe = Path(sys.executable).parent / 'nbdev_docs'
    cmd = [str(exe) if exe.exists() else 'nbdev_docs', '--path', str(work)]
    t0 = time.time()
    p = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    log = _ANSI.sub('', p.stdout + p.stderr)
    (root / '.cache').mkdir(exist_ok=True)
    (root / '.cache' / 'docs_build.log').write_text(log)
    shutil.rmtree(work.parent, ignore_errors=True)
    if p.returncode:
        failed.append(('nbdev_docs', f'exit status {p.returncode}:\n' + log[-4000:]))
    warnings = [f'{m.group(1)} ({cell_home(nbs, m.group(2))})' for m in re.finditer(r'UserWarning: (.*?)\n---\n(.*?)\n---', log, re.S)]
    warnings += sorted(set(m.group(0).strip() for m in _WARN.finditer(log) if not re.search(r'warn\(f|UserWarning', m.group(0))))
    print(f'nbdev_docs: {time.time() - t0:.0f}s, exit status {p.returncode}, {len(warnings)} warning(s)')
    return root / cfg.doc_path.name, warnings

def build_preview(cfg, a, failed, build) -> Path:
    "The nbconvert preview: every notebook's page in _docs/ (results notebooks as committed) and an index of pages."
    root, nbs = cfg.config_path, cfg.nbs_path
    docs = Path(tempfile.mkdtemp(prefix='mabp_docs_check_')) if a.check_results else root / cfg.doc_path.name
    if not a.only or (docs / 'site_libs').exists(): shutil.rmtree(docs, ignore_errors=True)   # no earlier (Quarto) page stays
    docs.mkdir(exist_ok=True)
    sections = sidebar_sections(nbs / '_quarto.yml', nbs)
    existing = sorted(p.name for p in nbs.glob('*.ipynb') if not p.name.startswith(('_', '.')))
    in_sidebar = [f for _, fs in sections for f in fs]
    others = [f for f in existing if f not in in_sidebar]
    if others: sections = sections + [('Other pages', others)]
    order = list(dict.fromkeys(f for _, fs in sections for f in fs if f in existing))
    section_of = {}
    for s, fs in sections:
        for f in fs: section_of.setdefault(f, s)
    site = cfg.get('doc_host', '').rstrip('/') + cfg.get('doc_baseurl', '').rstrip('/') + '/'
    to_preview = {page_name(g): preview_name(g) for g in existing}     # nbdev's absolute links -> preview pages
    titles, built = {}, {}
    for f in order:
        if a.only and not any(o and o in f for o in a.only.split(',')): continue
        res = build(nbs / f)
        if res is None: continue
        titles[f], built[f] = res[0] or Path(f).stem, res[1]
    done_order = [f for f in order if f in built]
    for i, f in enumerate(done_order):
        page = lambda g: (preview_name(g), titles[g])
        prev = page(done_order[i - 1]) if i > 0 else None
        nxt = page(done_order[i + 1]) if i + 1 < len(done_order) else None
        body = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + nav_bar(titles[f], section_of.get(f), prev, nxt), built[f], count=1)
        body = re.sub(r'href="([\w.+-]+)\.ipynb(#[^"]*)?"', lambda m: f'href="{preview_name(m.group(1) + ".ipynb")}{m.group(2) or ""}"', body)
        body = re.sub(r'href="' + re.escape(site) + r'([\w.+-]+\.html)', lambda m: f'href="{to_preview.get(m.group(1), m.group(1))}', body)
        (docs / preview_name(f)).write_text(body)
    e = html.escape
    items = []
    for s, fs in sections:
        lis = []
        for f in fs:
            out = docs / preview_name(f)
            if f not in existing: lis.append(f'<li><span style="color:#999">{e(f)} (no such notebook)</span></li>')
            elif out.exists():
                lis.append(f'<li><a href="{e(out.name)}">{e(titles.get(f) or Path(f).stem)}</a> <small style="color:#777">{e(f)}</small></li>')
            else: lis.append(f'<li>{e(f)} <small style="color:#a00">(not built)</small></li>')
        items.append(f'<h2>{e(s)}</h2><ul>{"".join(lis)}</ul>')
    style = ('<style>body{font:15px/1.5 system-ui,sans-serif;max-width:820px;margin:2em auto;padding:0 1em}'
             'h2{font-size:1.1em;margin-top:1.4em;border-bottom:1px solid #ddd}li{margin:.2em 0}</style>')
    page = (f'<!doctype html><html><head><meta charset="utf-8"><title>{e(cfg.title)} docs</title>{style}</head><body>'
            f'<h1>{e(cfg.title)}: documentation preview</h1><p>{e(cfg.get("description", ""))}</p>'
            f'<p><small>Built without Quarto by tools/build_docs.py ({time.strftime("%Y-%m-%d %H:%M")}); sections as in the '
            f'sidebar of nbs/_quarto.yml.</small></p>{"".join(items)}</body></html>')
    (docs / 'index.html').write_text(page)
    print(f'{docs}/index.html lists {sum(len(fs) for _, fs in sections)} pages in {len(sections)} sections ({len(built)} built)')
    return docs

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--readme', action='store_true', help='only build README.md')
    ap.add_argument('--preview', action='store_true', help='the nbconvert preview even when quarto is on PATH')
    ap.add_argument('--no-execute', action='store_true', help='real site: do not execute the non-results notebooks')
    ap.add_argument('--only', default=None, help='preview / --execute-results: only notebooks whose name contains one of these comma-separated substrings')
    ap.add_argument('--no-check', action='store_true', help='skip the page checks')
    ap.add_argument('--execute-results', action='store_true', help='re-execute the results notebooks in place (settings.ini results_nbs)')
    ap.add_argument('--check-stale', action='store_true', help='fail when a committed results notebook has no or stale outputs')
    ap.add_argument('--check-results', action='store_true',
                    help='render the committed results notebooks into a temporary folder and check their pages (make test)')
    a = ap.parse_args()
    cfg = config()
    root, nbs, flags = cfg.config_path, cfg.nbs_path, skip_flags(cfg)
    os.chdir(root)
    if a.execute_results: return execute_results(cfg, a.only)
    if a.check_stale:
        problems = stale_problems(cfg)
        for p in problems: print(p)
        if not problems: print(f'{len(results_notebooks(cfg))} results notebooks: outputs present and current with their code and data')
        return 1 if problems else 0
    results = {p.name for p in results_notebooks(cfg)}
    if a.check_results:
        if not results: print('no results notebook (settings.ini results_nbs) exists: nothing to check'); return 0
        a.only, a.preview = ','.join(Path(p).stem for p in results), True
    t_all = time.time()
    proc = Path(tempfile.mkdtemp(prefix='mabp_docs_'))
    failed = []

    def build(src: Path, fmt: str = 'html'):
        "Processed + exported page of one notebook, executed unless it is a results notebook: (title, body) or None."
        t0 = time.time()
        try:
            import nbformat
            marked, done = proc / ('executed_' + src.name), proc / src.name
            nb = nbformat.read(src, as_version=4)
            if src.name not in results:
                nb = execute(nb, nbs, flags)
                tidy_outputs(nb)
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
            failed.append((src.name, short_error(e)))
            print(f'{src.name}: FAILED ({type(e).__name__}) after {time.time() - t0:.0f}s', flush=True)
            if os.environ.get('MABP_DOCS_TRACEBACK'): traceback.print_exc()
            return None

    if not a.check_results and not (a.only and not a.readme): build_readme(cfg, build)
    if a.readme: return 1 if failed else 0
    quarto = shutil.which('quarto') is not None and not a.preview
    warnings = []
    if quarto: docs, warnings = build_site(cfg, not a.no_execute, failed)
    else: docs = build_preview(cfg, a, failed, build)
    status = 0
    if failed:
        status = 1
        print(f'\n{len(failed)} failure(s):')
        for n, msg in failed: print(f'--- {n}\n{msg}')
    if warnings:
        status = 1
        print(f'\n{len(warnings)} warning(s) from nbdev_docs / Quarto (the whole log: .cache/docs_build.log):\n  ' + '\n  '.join(warnings))
    if not a.no_check:
        only = [Path(p).stem for p in results] if a.check_results else [n for n in REQUIRED if not a.only or any(o in n for o in a.only.split(','))]
        problems = check_pages(docs, nbs, only=only) + check_images(docs)
        if not a.only or a.check_results: problems += [] if a.check_results else check_sidebar(docs, nbs, quarto)
        if problems:
            status = 1
            print('\npage check failed:\n  ' + '\n  '.join(problems))
        else: print(f'page check: results pages hold their tables and figures, linked images exist'
                    + ('' if a.only or a.check_results else ', every notebook is in the sidebar') + f' ({"Quarto" if quarto else "preview"})')
    shutil.rmtree(proc, ignore_errors=True)                              # the executed/processed copies
    if a.check_results: shutil.rmtree(docs, ignore_errors=True)
    print(f'{time.time() - t_all:.0f}s')
    return status

if __name__ == '__main__': sys.exit(main())
