"""Build the documentation site into `_docs/`.

With `quarto` on the PATH these are the steps of nbdev's `nbdev_docs` (preprocessing, `quarto render` in `_proc/`),
plus one: files the pages link outside nbs/ (`../results/...`, the published figures) are copied into the Quarto
project, since Quarto copies no resource from outside it; README.md comes from `make readme`. Without Quarto (these CPU machines: Quarto cannot be
installed offline) the same notebooks go through nbdev's preprocessing (`_proc/`: show_doc output, cross-links,
front matter) and then Sphinx with MyST-NB and the book theme, offline, warnings as errors:

    python docs/build.py            # Quarto if installed, else Sphinx
    python docs/build.py --sphinx   # Sphinx even where Quarto is installed

No notebook is executed: nbdev's preprocessing runs only export cells, import-only cells and `show_doc` cells.
Both ways stop before rendering when a notebook's title cell holds more than nbdev keeps of it (title, `>` summary,
`- key: value` front matter: nbdev drops the rest of that cell), and the Sphinx way also on any warning of nbdev's
preprocessing. An image alone in its paragraph followed by a paragraph in italics becomes a figure with that caption.
"""
import argparse, configparser, fnmatch, json, os, re, shutil, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT/'docs'
SRC = ROOT/'_docs_build'/'src'  # the Sphinx source tree made from _proc/ (gitignored)
DOCTREES = ROOT/'_docs_build'/'doctrees'
HTML = ROOT/'_docs_build'/'html'  # Sphinx writes here (MyST-NB puts its jupyter_execute/ beside it), then it moves to _docs/
ASSETS = 'site-assets'  # files outside nbs/ that pages link (the published figures), copied into the site's source

def settings() -> dict:
    "The `[DEFAULT]` section of settings.ini."
    cp = configparser.ConfigParser(); cp.read(ROOT/'settings.ini')
    return dict(cp['DEFAULT'])

def proc_nbs() -> Path:
    "nbdev's preprocessing of every notebook into `_proc/`; any warning it gives (a front matter it cannot read) is an error."
    import warnings
    from nbdev.serve import proc_nbs as _proc
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        proc = _proc(str(ROOT/settings().get('nbs_path', 'nbs')), n_workers=0)  # in this process: one torch import, not one per notebook
    bad = [w for w in caught if not issubclass(w.category, DeprecationWarning)]  # nbdev's own deprecations (settings.ini keys) stay quiet
    if bad: raise DocsError('\n'.join(f"nbdev preprocessing warned ({Path(w.filename).name}): {str(w.message).strip()}" for w in bad))
    return proc

class DocsError(Exception):
    "A problem that would make the site differ from the notebooks (the build stops with its message)."

# ---- the title cell: nbdev reads it as front matter and drops it ------------------------------------------

_TITLE, _SUMMARY, _FM_ITEM = re.compile(r'^#\s+\S'), re.compile(r'^>\s+\S'), re.compile(r'^-\s+(\S.*:.*\S)\s*$')

def title_cell_problems(nb:dict, name:str) -> list:
    """What nbdev's front matter step would lose from a notebook's title cell (the first markdown cell with an H1):
    the cell is removed and only its `# title`, `> summary` and `- key: value` lines are kept, read as YAML."""
    import yaml
    cell = next((c for c in nb['cells'] if c['cell_type'] == 'markdown' and any(_TITLE.match(l) for l in ''.join(c['source']).split('\n'))), None)
    if cell is None: return []
    lines = ''.join(cell['source']).strip().split('\n')
    out = [f"{name}: the title cell also holds {l.strip()[:70]!r}: nbdev drops everything but the title, the `>` summary and "
           f"`- key: value` lines; put the rest in the next cell" for l in lines if l.strip() and not (_TITLE.match(l) or _SUMMARY.match(l) or _FM_ITEM.match(l))]
    items = [m.group(1) for l in lines if (m := _FM_ITEM.match(l))]
    if items:
        try: yaml.safe_load('\n'.join(items))
        except yaml.YAMLError as e: out.append(f"{name}: the title cell's `- key: value` lines are not YAML ({str(e).splitlines()[0]})")
    return out

def check_title_cells(nbs:Path) -> None:
    "Raise `DocsError` listing every notebook whose title cell nbdev would not render whole."
    bad = [msg for p in sorted(nbs.rglob('*.ipynb')) if not any(part.startswith(('.', '_')) for part in p.relative_to(nbs).parts)
           for msg in title_cell_problems(json.loads(p.read_text(encoding='utf-8')), p.relative_to(ROOT).as_posix())]
    if bad: raise DocsError('\n'.join(bad))

# ---- _proc/ notebook -> MyST-NB notebook -------------------------------------------------------------------

def front_matter(cell) -> dict:
    "The YAML front matter nbdev writes into the first raw cell (`title`, `description`, `output-file`)."
    import yaml
    src = ''.join(cell['source']).strip()
    if cell['cell_type'] != 'raw' or not src.startswith('---'): return {}
    return yaml.safe_load(src.strip('-\n')) or {}

def doc_host_re(cfg) -> re.Pattern:
    "Absolute links nbdev writes to the project's own site: `https://host/baseurl/page.html#anchor`."
    base = (cfg['doc_host'].rstrip('/') + '/' + cfg.get('doc_baseurl', '').strip('/')).rstrip('/')
    return re.compile(re.escape(base) + r'/([\w./-]+?\.html)(#[^)\s"]*)?')

_SRC_ATTRS = re.compile(r'(\[source\]\([^)]+\))\{[^}]*\}')  # nbdev's `[source](url){target=... style=...}`
_MD_LINK = re.compile(r'(!?\[[^\]]*\]\()([^)\s]+)(\))')

def copy_outside_files(md:str, page:Path, nbs:Path, dest_root:Path) -> str:
    "Files a page links outside nbs/ (`../results/...`: the published figures) are copied under `dest_root/ASSETS/`."
    def _local(m):
        url = m.group(2)
        if re.match(r'^[a-z][a-z0-9+.-]*:|^#|^/', url): return m.group(0)
        path, _, frag = url.partition('#')
        src = (nbs/page.parent/path).resolve()
        try:  # inside nbs/: the generator resolves it, once the path is relative to the page (`../nbs/x.ipynb` from nbs/: `x.ipynb`)
            src.relative_to(nbs.resolve())
            rel = os.path.relpath(src, (nbs/page.parent).resolve()).replace(os.sep, '/')
            return m.group(0) if '..' not in Path(path).parts else m.group(1) + rel + ('#' + frag if frag else '') + m.group(3)
        except ValueError: pass
        try: rel = src.relative_to(ROOT)
        except ValueError: return m.group(0)
        if not src.is_file(): return m.group(0)
        dest = dest_root/ASSETS/rel
        dest.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(src, dest)
        new = Path(*(['..'] * len(page.parent.parts)), ASSETS, rel).as_posix()
        return m.group(1) + new + ('#' + frag if frag else '') + m.group(3)
    return _MD_LINK.sub(_local, md)

def rewrite_markdown(md:str, page:Path, pages:dict, host:re.Pattern, nbs:Path) -> str:
    "nbdev's links to the published site become relative links to the notebooks; outside files are copied in."
    md = _SRC_ATTRS.sub(r'\1', md)
    def _site(m):
        target = pages.get(m.group(1))
        if target is None: return m.group(0)  # not one of our pages: leave it, the link check reports it
        rel = Path(*(['..'] * (len(page.parent.parts)))) / target if page.parent.parts else Path(target)
        return rel.as_posix() + (m.group(2) or '')
    return copy_outside_files(host.sub(_site, md), page, nbs, SRC)

_FENCE = re.compile(r'^(```|~~~)')
_HEADING = re.compile(r'^(#{1,6})(\s)')

def headings(md:str) -> list:
    "`(line index, level)` of the ATX headings of a markdown text, outside code fences."
    out, fenced = [], False
    for i, l in enumerate(md.split('\n')):
        if _FENCE.match(l): fenced = not fenced
        elif not fenced and (m := _HEADING.match(l)): out.append((i, len(m.group(1))))
    return out

def clamp_headings(md:str, last:int) -> tuple:
    "Headings that skip a level (`###` right under the title) moved up one level under the previous; `(md, last level)`."
    lines = md.split('\n')
    for i, lv in headings(md):
        new = min(lv, last + 1)
        lines[i], last = '#' * new + lines[i][lv:], new
    return '\n'.join(lines), last

def source_under_heading(md:str) -> str:
    "nbdev's `[source](url)` line comes before the entry's heading (Quarto floats it right of it): put it under the heading."
    m = re.match(r'\s*(\[source\]\([^)]+\))[^\n]*\n+', md)
    if not m: return md
    rest = md[m.end():]
    head, nl, body = rest.partition('\n')
    return head + '\n\n' + m.group(1) + '\n' + nl + body if _HEADING.match(head) else md

_CAPTIONED = re.compile(r'^!\[([^\]\n]*)\]\(([^)\s]+)\)[ \t]*\n[ \t]*\n\*([^*\n][^\n]*?)\*[ \t]*$', re.M)

def captioned_figures(md:str) -> str:
    "An image alone in its paragraph followed by a paragraph in italics (its caption) becomes a MyST figure with that caption."
    parts = re.split(r'(^(?:```|~~~)[^\n]*\n.*?^(?:```|~~~)[ \t]*$)', md, flags=re.M | re.S)  # odd parts: code blocks, kept
    fig = lambda m: f":::{{figure}} {m.group(2)}\n:alt: {m.group(1)}\n\n{m.group(3)}\n:::"
    return ''.join(part if i % 2 else _CAPTIONED.sub(fig, part) for i, part in enumerate(parts))

def is_show_doc(cell) -> bool:
    "A cell nbdev turned into `show_doc` output (`#| output: asis`, `#| echo: false`)."
    return cell['cell_type'] == 'code' and '#| output: asis' in ''.join(cell['source'])

def convert_nb(nb:dict, page:Path, pages:dict, host:re.Pattern, nbs:Path) -> dict:
    "One `_proc/` notebook as MyST-NB reads it: a title heading, show_doc output as markdown, no directives."
    cells, fm, last = [], {}, 0  # last: the level of the page's latest heading
    for i, c in enumerate(nb['cells']):
        if i == 0 and (fm := front_matter(c)):
            head = f"# {fm.get('title', page.stem)}"
            if fm.get('description'): head += f"\n\n> {fm['description']}"
            cells.append({'cell_type': 'markdown', 'metadata': {}, 'source': head}); last = 1
            continue
        if c['cell_type'] == 'raw': continue
        if c['cell_type'] == 'markdown':
            src = ''.join(c['source'])
            if src.strip().startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED!'): continue
            src, last = clamp_headings(src, last)  # Quarto accepts skipped levels, Sphinx warns
            cells.append({**c, 'source': captioned_figures(rewrite_markdown(src, page, pages, host, nbs))})
            continue
        if is_show_doc(c):
            md = ''.join(next((''.join(o['data']['text/markdown']) for o in c.get('outputs', []) if 'text/markdown' in o.get('data', {})), ''))
            md = re.sub(r'^\s*---\s*\n', '', md)  # nbdev's rule above each entry: the heading separates them
            md = source_under_heading(md)
            md, last = clamp_headings(md, last)  # on a page without `##` sections the `###` entries become `##`
            cells.append({'cell_type': 'markdown', 'metadata': {}, 'source': rewrite_markdown(md, page, pages, host, nbs)})
            continue
        src = '\n'.join(l for l in ''.join(c['source']).split('\n') if not l.startswith('#|'))
        outs = [o for o in c.get('outputs', []) if 'application/vnd.jupyter.widget-view+json' not in o.get('data', {})]
        cells.append({**c, 'source': src, 'outputs': outs})
    seen = set()
    for i, c in enumerate(cells):  # nbformat 4.5: every cell has a unique id
        if not c.get('id') or c['id'] in seen: c['id'] = f"cell-{i}"
        seen.add(c['id'])
    meta = {k: v for k, v in nb['metadata'].items() if k == 'kernelspec'}
    meta['language_info'] = {'name': 'python', 'pygments_lexer': 'ipython3'}  # `!staged-rl ...` lines are IPython
    return {**nb, 'metadata': meta, 'cells': cells, 'nbformat': 4, 'nbformat_minor': 5}

# ---- the sidebar, from _quarto.yml -----------------------------------------------------------------------

def _expand(pattern:str, nbs:Path) -> list:
    "The notebooks a `_quarto.yml` sidebar entry names (a path or a glob), in name order."
    if any(ch in pattern for ch in '*?['):
        folder, _, pat = pattern.rpartition('/')
        base = nbs/folder if folder else nbs
        return [p.relative_to(nbs).as_posix() for p in sorted(base.glob('*')) if p.suffix == '.ipynb' and fnmatch.fnmatch(p.name, pat)]
    return [pattern] if (nbs/pattern).exists() else []

def sidebar(nbs:Path) -> list:
    "`[(section or None, [notebook paths])]` from `website.sidebar.contents` of nbs/_quarto.yml."
    import yaml
    q = yaml.safe_load((nbs/'_quarto.yml').read_text())
    out = []
    for item in q.get('website', {}).get('sidebar', {}).get('contents', []):
        if isinstance(item, str): out.append((None, _expand(item, nbs)))
        else:
            cont = item.get('contents', [])
            out.append((item.get('section'), [p for c in ([cont] if isinstance(cont, str) else cont) for p in _expand(c, nbs)]))
    return out

def toctree_cell(nbs:Path) -> dict:
    "A markdown cell of hidden toctrees (the book theme's sidebar), one per `_quarto.yml` section."
    blocks = []
    for section, paths in sidebar(nbs):
        entries = [Path(p).with_suffix('').as_posix() for p in paths if p != 'index.ipynb']
        if not entries: continue
        cap = f":caption: {section}\n" if section else ''
        blocks.append("```{toctree}\n:hidden:\n" + cap + '\n'.join(entries) + "\n```")
    return {'cell_type': 'markdown', 'id': 'site-toctree', 'metadata': {}, 'source': '\n\n'.join(blocks)}

def stage(proc:Path, nbs:Path) -> list:
    "Write the Sphinx source tree SRC from `_proc/`; return the pages written."
    cfg = settings()
    if SRC.exists(): shutil.rmtree(SRC)
    SRC.mkdir(parents=True)
    if (proc/ASSETS).is_dir(): shutil.copytree(proc/ASSETS, SRC/ASSETS)  # left in _proc/ by a Quarto build
    nbpaths = sorted(p.relative_to(proc) for p in proc.rglob('*.ipynb')
                     if not any(part.startswith(('.', '_')) for part in p.relative_to(proc).parts)
                     and (nbs/p.relative_to(proc)).exists())  # _proc/ is a cache: a deleted notebook may linger there
    nbs_json = {p: json.loads((proc/p).read_text(encoding='utf-8')) for p in nbpaths}
    pages = {}  # 'rollout.html' (nbdev's link target) -> '05_rollout.ipynb'
    for p, nb in nbs_json.items():
        fm = front_matter(nb['cells'][0]) if nb['cells'] else {}
        out = fm.get('output-file') or p.with_suffix('.html').name
        pages[(p.parent/out).as_posix()] = p.as_posix()
    host = doc_host_re(cfg)
    for p, nb in nbs_json.items():
        new = convert_nb(nb, p, pages, host, nbs)
        if p.as_posix() == 'index.ipynb': new['cells'].append(toctree_cell(nbs))
        (SRC/p).parent.mkdir(parents=True, exist_ok=True)
        (SRC/p).write_text(json.dumps(new, indent=1, ensure_ascii=False), encoding='utf-8')
    return nbpaths

def quarto(out:Path) -> int:
    "What `nbdev_docs` does, plus one step: files the pages link outside nbs/ are copied into the Quarto project."
    # Quarto copies no resource from outside its project (`_proc/`), so `../results/...` would break on the site.
    from nbdev.quarto import refresh_quarto_yml, nbdev_sidebar
    import nbdev.doclinks
    refresh_quarto_yml(); nbdev.doclinks._build_modidx(); nbdev_sidebar.__wrapped__()
    proc, nbs = proc_nbs(), ROOT/settings().get('nbs_path', 'nbs')
    for p in proc.rglob('*.ipynb'):
        rel = p.relative_to(proc)
        if any(part.startswith(('.', '_')) for part in rel.parts): continue
        nb, changed = json.loads(p.read_text(encoding='utf-8')), False
        for c in nb['cells']:
            if c['cell_type'] != 'markdown': continue
            new = copy_outside_files(''.join(c['source']), rel, nbs, proc)
            if new != ''.join(c['source']): c['source'], changed = new, True
        if changed: p.write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding='utf-8')
    r = subprocess.run(['quarto', 'render', '--no-cache'], cwd=proc).returncode
    if r == 0:
        if out.exists(): shutil.rmtree(out)
        shutil.move(str(proc/out.name), str(out))
    return r

def sphinx(out:Path, quiet:bool=False) -> None:
    "sphinx-build -W (warnings are errors) from SRC into `out`."
    cmd = [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-b', 'html', '-c', str(DOCS), '-d', str(DOCTREES),
           '-j', '1', str(SRC), str(out)] + (['-q'] if quiet else [])
    subprocess.run(cmd, check=True, cwd=ROOT)

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--sphinx', action='store_true', help='use Sphinx even where Quarto is installed')
    ap.add_argument('--quiet', '-q', action='store_true')
    a = ap.parse_args(argv)
    cfg = settings()
    out = ROOT/cfg.get('doc_path', '_docs')
    if shutil.which('quarto') and not a.sphinx:
        try: check_title_cells(ROOT/cfg.get('nbs_path', 'nbs'))
        except DocsError as e: print(f"docs: {e}", file=sys.stderr); return 1
        return quarto(out)  # nbdev_docs' steps (README: `make readme`)
    t0 = time.time()
    try:
        check_title_cells(ROOT/cfg.get('nbs_path', 'nbs'))
        proc = proc_nbs()
    except DocsError as e:
        print(f"docs: {e}", file=sys.stderr); return 1
    t1 = time.time()
    pages = stage(proc, ROOT/cfg.get('nbs_path', 'nbs'))
    if HTML.exists(): shutil.rmtree(HTML)
    try: sphinx(HTML, a.quiet)
    except subprocess.CalledProcessError as e:
        print(f"docs: sphinx-build failed (exit {e.returncode}): see the warnings above; {SRC.relative_to(ROOT)}/ mirrors nbs/, "
              "and `file.ipynb:NNNLLLL` is cell NNN (of the processed notebook), line LLLL", file=sys.stderr)
        return 1
    if out.exists(): shutil.rmtree(out)
    shutil.move(str(HTML), str(out))
    (out/'.nojekyll').touch()
    print(f"docs: {len(pages)} pages in {out.relative_to(ROOT)}/ (nbdev preprocessing {t1 - t0:.0f} s, "
          f"Sphinx {time.time() - t1:.0f} s); open {out.relative_to(ROOT)}/index.html or `python -m http.server -d {out.relative_to(ROOT)}`")
    return 0

if __name__ == '__main__': sys.exit(main())
