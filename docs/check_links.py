"""Offline link check of the built site: every local link, image, script and stylesheet resolves, and so does its anchor.

    python docs/check_links.py [_docs]

Checked: `href` and `src` of every HTML page under the folder. A local target must exist (a folder means its
`index.html`); a `#fragment` into an HTML page must name an `id` (or `name`) in that page. Links to the project's
own published site (`doc_host` + `doc_baseurl` of settings.ini) count as broken too: on this site they must be
local. Other external links are not fetched (there is no network here). Exit 1 with one line per broken link.
"""
import configparser, sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent

class _Page(HTMLParser):
    "The ids a page defines and the links it makes."
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids, self.links = set(), []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ('id', 'name'):
            if a.get(k) and (k == 'id' or tag == 'a'): self.ids.add(a[k])
        for k in ('href', 'src'):
            if a.get(k) is not None and not (tag == 'link' and a.get('rel') in ('preconnect', 'dns-prefetch')):
                self.links.append((tag, k, a[k], self.getpos()[0]))

def parse(path:Path) -> _Page:
    "The parsed page."
    p = _Page(); p.feed(path.read_text(encoding='utf-8', errors='replace')); p.close()
    return p

def own_site() -> str:
    "The published site's base URL from settings.ini (`doc_host` + `doc_baseurl`), or ''."
    cp = configparser.ConfigParser(); cp.read(ROOT/'settings.ini')
    s = cp['DEFAULT'] if cp.has_section('DEFAULT') or cp.defaults() else {}
    host = s.get('doc_host', '').rstrip('/')
    return (host + '/' + s.get('doc_baseurl', '').strip('/')).rstrip('/') if host else ''

def check(site:Path) -> list:
    "`file:line: what` for every broken local link or anchor under `site`."
    site = site.resolve()
    pages = {p: parse(p) for p in sorted(site.rglob('*.html')) if p.relative_to(site).parts[0] != '_static'}  # _static: theme templates
    base, bad, n = own_site(), [], 0
    for page, parsed in pages.items():
        for tag, attr, url, line in parsed.links:
            where = f"{page.relative_to(site)}:{line}: <{tag} {attr}={url!r}>"
            if base and (url == base or url.startswith(base + '/')):
                bad.append(f"{where} links the published site, not the local page"); continue
            u = urlsplit(url)
            if u.scheme or url.startswith('//'): continue  # external (http, mailto, data, javascript): not fetched
            n += 1
            target = page if not u.path else (page.parent/unquote(u.path)).resolve()
            if target.is_dir(): target = target/'index.html'
            try: target.relative_to(site)
            except ValueError: bad.append(f"{where} points outside the site"); continue
            if not target.exists(): bad.append(f"{where} -> no file {target.relative_to(site)}"); continue
            frag = unquote(u.fragment)
            if frag and target.suffix == '.html':
                ids = pages[target].ids if target in pages else parse(target).ids
                if frag not in ids: bad.append(f"{where} -> no anchor #{frag} in {target.relative_to(site)}")
    print(f"links: {n} local links and anchors in {len(pages)} pages checked, {len(bad)} broken")
    return bad

def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    site = Path(argv[0]) if argv else ROOT/'_docs'
    if not (site/'index.html').exists():
        print(f"links: {site}/index.html does not exist; run `make docs` first", file=sys.stderr); return 2
    bad = check(site)
    for b in bad: print(b)
    return 1 if bad else 0

if __name__ == '__main__': sys.exit(main())
