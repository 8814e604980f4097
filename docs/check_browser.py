"""Open pages of the built site in headless Chromium and check that they render.

    python docs/check_browser.py [--site _docs] [--out _docs_check] [PAGE ...]

The site is served from 127.0.0.1 (an ephemeral port); Chromium (Debian's `chromium`) is driven over the DevTools
protocol with `websocket-client`. For each page: the title is present (document title and one `h1`), no console
error, no uncaught exception and no failed request, every image loaded (`naturalWidth > 0`), every math element
typeset by MathJax (an `mjx-container` inside it); then what the page is there to show: figures (`img` elements
count) or math. A full-page screenshot of each page goes to the output folder. Exit 1 with one line per failure.
"""
import argparse, base64, functools, json, os, shutil, subprocess, sys, tempfile, threading, time, urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# page -> what it must show: the home page (Results figures), a library page (equations), an experiment page (figures)
PAGES = {'index.html': 'figures', '06_grpo.html': 'math', 'experiments/02_difficulty_ablation.html': 'figures'}
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
    b.call('Emulation.setDeviceMetricsOverride', width=1280, height=min(int(st['height']), 12000), deviceScaleFactor=1, mobile=False)
    png = b.call('Page.captureScreenshot', format='png', captureBeyondViewport=True)['data']
    b.call('Emulation.clearDeviceMetricsOverride')
    shot.parent.mkdir(parents=True, exist_ok=True); shot.write_bytes(base64.b64decode(png))
    b.wait_event('__settle__', 0.5)  # late console messages
    bad = [f"{url}: {e}" for e in errors(b.events)]
    if not st['title'].strip() or not st['h1'].strip(): bad.append(f"{url}: no title (document title {st['title']!r}, h1 {st['h1']!r})")
    if st['broken']: bad.append(f"{url}: images not loaded: {st['broken']}")
    if st['typeset'] < st['math']: bad.append(f"{url}: {st['math'] - st['typeset']} of {st['math']} math elements not typeset by MathJax")
    if expect == 'math' and not (st['math'] and st['mathjax']): bad.append(f"{url}: no math rendered (expected equations)")
    if expect == 'figures' and not st['figures']: bad.append(f"{url}: no figure image loaded")
    return st, bad

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
                         f"{' (MathJax ' + ('loaded' if st['mathjax'] else 'absent') + ')'}; {len(bad)} problem(s); screenshot {shot.relative_to(out.parent) if out.is_absolute() and shot.is_relative_to(ROOT) else shot}")
    finally:
        b.close(); srv.shutdown()
    for f in failures: print(f)
    print(f"browser check: {len(pages)} pages, {len(failures)} failure(s), {time.time() - t0:.1f} s")
    return 1 if failures else 0

if __name__ == '__main__': sys.exit(main())
