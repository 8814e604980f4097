"""Open pages of the built site in headless Chromium and check that they render.

    python docs/check_browser.py [--site _docs] [--out _docs_check] [PAGE ...]

The site is served from 127.0.0.1 (an ephemeral port); Chromium (Debian's `chromium`) is driven over the DevTools
protocol with `websocket-client`. For each page: the title is present (document title and one `h1`), no console
error, no uncaught exception and no failed request, every image loaded (`naturalWidth > 0`), every math element
typeset by MathJax (an `mjx-container` inside it); then what the page is there to show: figures (`img` elements
count) or math; and the main content is there, visible and whole: it has text a reader can see (not hidden by CSS),
lies inside the 1280 px window, is not clipped by an ancestor, holds no table wider than itself, and the sidebar is visible beside it. Two screenshots
of each page go to the output folder: the window a reader first sees (`*_window.png`) and the whole page, shot with
the window as tall as the page (so that the sticky sidebar stays in place and the bottom is not blank). Exit 1 with
one line per failure. Then the search: one search box on the home page, and a query whose results show snippets.
"""
import argparse, base64, functools, json, os, shutil, subprocess, sys, tempfile, threading, time, urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# page -> what it must show: the home page (Results figures), a library page (equations), experiment pages and the results page (figures)
PAGES = {'index.html': 'figures', '06_grpo.html': 'math', 'experiments/02_difficulty_ablation.html': 'figures',
         'experiments/03_staged_run.html': 'figures', 'results.html': 'figures'}
MAX_SHOT = 16000  # px: Chromium's screenshots stop here (longer pages are shot down to this height, and say so)
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--hide-scrollbars', '--window-size=1280,900']

def chromium() -> str:
    "The Chromium executable (Debian's `chromium`, or $CHROMIUM)."
    exe = os.environ.get('CHROMIUM') or shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')
    if not exe: raise SystemExit("browser check: no `chromium` on the PATH; install it with `make chromium` (apt-get install chromium)")
    return exe

class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *a): pass

def serve(folder:Path):
    "A static server for `folder` on 127.0.0.1 in a daemon thread: `(server, base url)`."
    srv = ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/"

class Browser:
    "One headless Chromium, one tab, driven over the DevTools protocol."
    def __init__(self, timeout:float=60):
        import websocket  # websocket-client
        self.profile = tempfile.mkdtemp(prefix='chromium-profile-')
        self.proc = subprocess.Popen([chromium(), *FLAGS, f'--user-data-dir={self.profile}', '--remote-debugging-port=0', 'about:blank'],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file, t0 = Path(self.profile)/'DevToolsActivePort', time.time()
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None: raise RuntimeError(f"chromium exited with {self.proc.returncode} before DevTools started")
            if time.time() - t0 > timeout: raise TimeoutError("chromium did not open its DevTools port in time")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        tabs = json.load(urllib.request.urlopen(f'http://127.0.0.1:{port}/json/list', timeout=10))
        page = next(t for t in tabs if t.get('type') == 'page')
        self.ws = websocket.create_connection(page['webSocketDebuggerUrl'], timeout=timeout, suppress_origin=True)
        self.id, self.events = 0, []
        for domain in ('Page', 'Runtime', 'Log', 'Network'): self.call(f'{domain}.enable')

    def call(self, method:str, **params):
        "Send one command and return its result (events that arrive meanwhile are kept in `self.events`)."
        self.id += 1; mid = self.id
        self.ws.send(json.dumps({'id': mid, 'method': method, 'params': params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get('id') == mid:
                if 'error' in msg: raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get('result', {})
            if 'method' in msg: self.events.append(msg)

    def wait_event(self, name:str, timeout:float=30):
        "Wait for the event `name` (already received or coming)."
        t0 = time.time()
        while time.time() - t0 < timeout:
            if any(e['method'] == name for e in self.events): return True
            self.ws.settimeout(max(0.1, timeout - (time.time() - t0)))
            try: msg = json.loads(self.ws.recv())
            except Exception: break
            if 'method' in msg: self.events.append(msg)
        return False

    def eval(self, expr:str, await_promise:bool=False):
        "The value of a JavaScript expression in the page."
        r = self.call('Runtime.evaluate', expression=expr, returnByValue=True, awaitPromise=await_promise)
        if 'exceptionDetails' in r: raise RuntimeError(f"page script failed: {r['exceptionDetails'].get('text')} in {expr[:60]!r}")
        return r['result'].get('value')

    def close(self):
        try: self.ws.close()
        finally:
            self.proc.terminate()
            try: self.proc.wait(10)
            except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)

_STATE = """(() => {
  const imgs = [...document.images];
  const maths = [...document.querySelectorAll('.math')];
  return {title: document.title, h1: (document.querySelector('h1') || {}).textContent || '',
          images: imgs.length, loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
          broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
          figures: imgs.filter(i => i.naturalWidth > 0 && !i.closest('.navbar-brand, .sidebar-primary-items__start')).length,
          math: maths.length, typeset: maths.filter(m => m.querySelector('mjx-container')).length,
          mathjax: !!(window.MathJax && window.MathJax.version), height: document.documentElement.scrollHeight};
})()"""

# The page's main content (the article) is there, visible and not cut off: it has text a reader can see, it sits inside
# the window horizontally, no ancestor clips it, and the sidebar (the site's navigation) is visible next to it.
_MAIN = """(() => {
  const out = [];
  const main = document.querySelector('article.bd-article') || document.querySelector('[role=main] article') || document.querySelector('[role=main]');
  if (!main) return ['no main content element ([role=main] / article)'];
  const hidden = el => { for (let e = el; e && e.nodeType === 1; e = e.parentElement) { const s = getComputedStyle(e);
      if (s.display === 'none' || s.visibility === 'hidden' || s.visibility === 'collapse' || parseFloat(s.opacity) < 0.1) return true; } return false; };
  const r = main.getBoundingClientRect(), W = document.documentElement.clientWidth;
  const text = (main.innerText || '').trim().length, all = (main.textContent || '').replace(/\\s+/g, ' ').trim().length;
  if (hidden(main) || r.width < 200 || r.height < 100) out.push(`main content hidden (${Math.round(r.width)}x${Math.round(r.height)} px)`);
  else if (text < 100) out.push(`main content has ${text} visible characters`);
  else if (text < 0.5 * all) out.push(`most of the main content is hidden: ${text} of ${all} characters visible`);
  if (r.left < -1 || r.right > W + 1) out.push(`main content cut off at the sides (${Math.round(r.left)}..${Math.round(r.right)} px, window ${W} px)`);
  const blocks = [...main.querySelectorAll('h1, h2, h3, p, li, pre, table, img, figure')].filter(e => !hidden(e));
  const last = blocks[blocks.length - 1];
  if (last) {
    const lb = last.getBoundingClientRect().bottom;
    for (let e = main; e && e !== document.documentElement; e = e.parentElement) {
      const s = getComputedStyle(e);
      if (/(hidden|clip|auto|scroll)/.test(s.overflow + s.overflowY) && e.getBoundingClientRect().bottom < lb - 2) {
        out.push(`main content cut off: ${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}${e.className ? '.' + String(e.className).split(' ')[0] : ''} ends at ${Math.round(e.getBoundingClientRect().bottom)} px, its content at ${Math.round(lb)} px`); break; }
    }
  }
  const wide = [...main.querySelectorAll('table')].filter(t => !hidden(t) && !t.closest('.cell_output, .output')  // a cell's DataFrame output may scroll
                                                       && t.getBoundingClientRect().right > r.right + 2);
  if (wide.length) out.push(`${wide.length} table(s) wider than the main content (columns cut off): ${wide.map(t => (t.innerText || '').trim().split(/\\s+/).slice(0, 6).join(' ')).join('; ')}`);
  const side = document.querySelector('#pst-primary-sidebar, .bd-sidebar-primary');
  if (side && (hidden(side) || side.getBoundingClientRect().right <= 0)) out.push('the sidebar is not visible');
  return out;
})()"""

def errors(events:list) -> list:
    "Console errors, uncaught exceptions and failed requests among DevTools events."
    out = []
    for e in events:
        m, p = e['method'], e.get('params', {})
        if m == 'Runtime.consoleAPICalled' and p.get('type') in ('error', 'assert'):
            out.append('console.error: ' + ' '.join(str(a.get('value', a.get('description', ''))) for a in p.get('args', [])))
        elif m == 'Runtime.exceptionThrown':
            d = p.get('exceptionDetails', {}); out.append(f"uncaught: {d.get('text')} {d.get('exception', {}).get('description', '')}".strip())
        elif m == 'Log.entryAdded' and p.get('entry', {}).get('level') == 'error':
            en = p['entry']; out.append(f"console ({en.get('source')}): {en.get('text')} {en.get('url', '')}".strip())
        elif m == 'Network.loadingFailed' and not p.get('canceled'):
            out.append(f"request failed: {p.get('errorText')} ({p.get('type')})")
    return out

def check_page(b:Browser, url:str, expect:str, shot:Path) -> tuple:
    "`(state, failures)` for one page."
    b.events.clear()
    b.call('Page.navigate', url=url)
    if not b.wait_event('Page.loadEventFired', 60): return {}, [f"{url}: did not finish loading in 60 s"]
    b.eval("window.MathJax && MathJax.startup && MathJax.startup.promise ? MathJax.startup.promise.then(() => true) : true", True)
    b.eval("Promise.all([...document.images].map(i => i.complete ? 1 : new Promise(r => { i.onload = i.onerror = r; })))", True)
    st = b.eval(_STATE)
    main_bad = b.eval(_MAIN)  # in the 1280x900 window a reader sees
    shot.parent.mkdir(parents=True, exist_ok=True)
    b.call('Page.bringToFront')
    shot.with_name(shot.stem + '_window.png').write_bytes(base64.b64decode(b.call('Page.captureScreenshot', format='png')['data']))
    # The whole page: the window is made as tall as the page (up to MAX_SHOT), so that nothing lies beyond it; a screenshot
    # beyond the window shifts the sticky sidebar off-screen and leaves the bottom blank.
    h = min(int(st['height']), MAX_SHOT)
    b.call('Emulation.setDeviceMetricsOverride', width=1280, height=h, deviceScaleFactor=1, mobile=False)
    h = min(int(b.eval('document.documentElement.scrollHeight')), MAX_SHOT)  # the page may reflow at the new height
    b.call('Emulation.setDeviceMetricsOverride', width=1280, height=h, deviceScaleFactor=1, mobile=False)
    b.eval('new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))', True)
    png = b.call('Page.captureScreenshot', format='png', clip={'x': 0, 'y': 0, 'width': 1280, 'height': h, 'scale': 1})['data']
    b.call('Emulation.clearDeviceMetricsOverride')
    shot.write_bytes(base64.b64decode(png))
    st['shot_height'] = h
    b.wait_event('__settle__', 0.5)  # late console messages
    bad = [f"{url}: {e}" for e in errors(b.events)] + [f"{url}: {e}" for e in main_bad]
    if not st['title'].strip() or not st['h1'].strip(): bad.append(f"{url}: no title (document title {st['title']!r}, h1 {st['h1']!r})")
    if st['broken']: bad.append(f"{url}: images not loaded: {st['broken']}")
    if st['typeset'] < st['math']: bad.append(f"{url}: {st['math'] - st['typeset']} of {st['math']} math elements not typeset by MathJax")
    if expect == 'math' and not (st['math'] and st['mathjax']): bad.append(f"{url}: no math rendered (expected equations)")
    if expect == 'figures' and not st['figures']: bad.append(f"{url}: no figure image loaded")
    return st, bad

_SEARCH_BOXES = """[...document.querySelectorAll('.search-button-field, .search-button, .bd-search input, input[type=search]')]
  .filter(e => e.offsetParent !== null && !e.closest('#pst-search-dialog')).length"""

def check_search(b:Browser, base:str, term:str='advantage', timeout:float=30) -> list:
    "The site's search: one search box on the home page, and results for `term` that come with a snippet of text."
    bad = []
    b.events.clear()
    b.call('Page.navigate', url=base + 'index.html'); b.wait_event('Page.loadEventFired', 60)
    if (n := b.eval(_SEARCH_BOXES)) != 1: bad.append(f"index.html: {n} search boxes (one expected)")
    b.events.clear()
    b.call('Page.navigate', url=base + f'search.html?q={term}'); b.wait_event('Page.loadEventFired', 60)
    t0, st = time.time(), [0, 0]
    while time.time() - t0 < timeout:
        st = b.eval("[document.querySelectorAll('#search-results li').length, document.querySelectorAll('#search-results li p.context').length,"
                    " (document.querySelector('#search-results') || {}).innerText || '']")
        if st[0] and st[1] >= st[0] * 0.5 and 'Search finished' in st[2]: break
        time.sleep(0.5)
    if not st[0]: bad.append(f"search.html?q={term}: no results")
    elif st[1] < st[0] * 0.5: bad.append(f"search.html?q={term}: {st[1]} of {st[0]} results have a snippet")
    noise = b.eval("[...document.querySelectorAll('#search-results p.context')].filter(p => /^\\W*Contents\\b/.test(p.innerText)).length")
    if noise: bad.append(f"search.html?q={term}: {noise} snippet(s) taken from the page's table of contents, not its text")
    print(f"search: {st[0]} results for {term!r}, {st[1]} with a snippet")
    return bad

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--site', default=str(ROOT/'_docs'))
    ap.add_argument('--out', default=str(ROOT/'_docs_check'), help='screenshots (gitignored)')
    ap.add_argument('pages', nargs='*', help="pages to check, as 'path.html' or 'path.html=figures|math' (default: home, a library and an experiment page)")
    a = ap.parse_args(argv)
    site, out = Path(a.site), Path(a.out)
    if not (site/'index.html').exists(): print(f"browser check: {site}/index.html does not exist; run `make docs` first", file=sys.stderr); return 2
    pages = dict(p.split('=', 1) if '=' in p else (p, '') for p in a.pages) or PAGES
    srv, base = serve(site)
    b, failures, t0 = Browser(), [], time.time()
    try:
        for page, expect in pages.items():
            shot = out/(page.replace('/', '_').replace('.html', '.png'))
            st, bad = check_page(b, base + page, expect, shot)
            failures += bad
            if st: print(f"{page}: title {st['title']!r}; images {st['loaded']}/{st['images']} loaded; math {st['typeset']}/{st['math']} typeset"
                         f"{' (MathJax ' + ('loaded' if st['mathjax'] else 'absent') + ')'}; {len(bad)} problem(s); "
                         f"{'' if st['shot_height'] >= st['height'] else 'first ' + str(st['shot_height']) + ' of ' + str(st['height']) + ' px in the '}screenshot {shot.relative_to(out.parent) if out.is_absolute() and shot.is_relative_to(ROOT) else shot}")
        if not a.pages: failures += check_search(b, base)
    finally:
        b.close(); srv.shutdown()
    for f in failures: print(f)
    print(f"browser check: {len(pages)} pages, {len(failures)} failure(s), {time.time() - t0:.1f} s")
    return 1 if failures else 0

if __name__ == '__main__': sys.exit(main())
