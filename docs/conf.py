"""Sphinx configuration of the documentation site (used where Quarto is not installed; see docs/build.py)."""
import configparser, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
_cfg = configparser.ConfigParser(); _cfg.read(ROOT/'settings.ini'); _s = _cfg['DEFAULT']

project = _s['title']
author = _s['author']
copyright = _s['copyright']
release = version = _s['version']

extensions = ['myst_nb', 'sphinx-mathjax-offline']  # MathJax 3 from the PyPI package, copied into _static/: no CDN
root_doc = 'index'
exclude_patterns = ['site-assets/**', '**/.ipynb_checkpoints']

# Notebooks are rendered with their saved outputs: nothing is executed.
nb_execution_mode = 'off'
nb_ipywidgets_js = {}  # no widget manager from a CDN (the notebooks keep no widget outputs)
nb_merge_streams = True
myst_enable_extensions = ['dollarmath', 'amsmath', 'colon_fence', 'deflist', 'smartquotes']
myst_dmath_double_inline = True
myst_heading_anchors = 4
myst_heading_slug_func = 'nbdev_sphinx.pandoc_slug'

def quarto_navbar(path=ROOT/'nbs'/'_quarto.yml') -> list:
    "`(text, page)` for every entry of `website.navbar.left` in nbs/_quarto.yml (the page: the notebook without `.ipynb`)."
    import yaml
    q = yaml.safe_load(Path(path).read_text())
    items = q.get('website', {}).get('navbar', {}).get('left', [])
    return [(i['text'], str(Path(i['href']).with_suffix('').as_posix())) for i in items if isinstance(i, dict) and 'href' in i]

html_theme = 'sphinx_book_theme'
html_title = project
templates_path = ['_templates']  # quarto-navbar.html; search-button.html (empty: one search box, in the navbar)
html_sidebars = {'**': ['sbt-sidebar-nav.html']}  # the book theme's sidebar without its own search field
html_static_path = ['_static']
html_favicon = '_static/favicon.svg'  # else browsers ask for /favicon.ico (a 404)
html_context = {'default_mode': 'light', 'quarto_navbar': quarto_navbar()}  # Quarto's cosmo is light; an empty mode logs a console error
html_css_files = ['site.css']
html_js_files = ['search-snippets.js']  # search snippets from the article only
html_theme_options = {
    'repository_url': _s['git_url'],
    'repository_branch': _s.get('branch', 'main'),
    'path_to_docs': _s.get('nbs_path', 'nbs'),
    'use_repository_button': True,
    'use_download_button': False,  # the processed notebooks are not the sources: the repository button links those
    'show_toc_level': 2,
    'navigation_with_keys': False,
    # the top navbar of nbs/_quarto.yml (the book theme has none by default): title, its links, the one search box
    'navbar_start': ['navbar-logo'],
    'navbar_center': ['quarto-navbar'],
    'navbar_end': ['search-button-field'],
    'navbar_persistent': [],
}
html_last_updated_fmt = None
html_copy_source = False
html_show_sourcelink = False
