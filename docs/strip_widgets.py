"""Remove progress-bar widget outputs and widget state from notebooks (nbdev_clean keeps both).

    python docs/strip_widgets.py [--check] [PATH ...]     # default: every notebook under nbs/

A tqdm bar saved from Jupyter is a `application/vnd.jupyter.widget-view+json` output whose model lives in the
notebook's `widgets` metadata: on a web page it renders as an empty widget that loads its scripts from a CDN.
`--check` changes nothing and exits 1 when a notebook has either.
"""
import json, sys
from pathlib import Path

WIDGET = 'application/vnd.jupyter.widget-view+json'
ROOT = Path(__file__).resolve().parent.parent

def widget_parts(nb:dict) -> list:
    "What a notebook holds of widgets: `cell <id>` per cell with a widget output, and `metadata` for the state."
    out = [f"cell {c.get('id', i)}" for i, c in enumerate(nb.get('cells', []))
           if any(WIDGET in o.get('data', {}) for o in c.get('outputs', []))]
    return out + (['metadata.widgets'] if 'widgets' in nb.get('metadata', {}) else [])

def strip(nb:dict) -> dict:
    "The notebook without widget outputs and widget state."
    for c in nb.get('cells', []):
        if 'outputs' in c: c['outputs'] = [o for o in c['outputs'] if WIDGET not in o.get('data', {})]
    nb.get('metadata', {}).pop('widgets', None)
    return nb

def notebooks(paths) -> list:
    "The notebooks named, or under the folders named (checkpoints skipped)."
    out = []
    for p in map(Path, paths):
        out += [p] if p.suffix == '.ipynb' else sorted(q for q in p.rglob('*.ipynb') if '.ipynb_checkpoints' not in q.parts)
    return out

def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    check = '--check' in argv
    paths = [a for a in argv if a != '--check'] or [ROOT/'nbs']
    found = 0
    for p in notebooks(paths):
        nb = json.loads(p.read_text(encoding='utf-8'))
        parts = widget_parts(nb)
        if not parts: continue
        found += 1
        print(f"{p}: widget {'outputs/state' if check else 'removed'}: {', '.join(parts)}")
        if not check: p.write_text(json.dumps(strip(nb), indent=1, ensure_ascii=False) + '\n', encoding='utf-8')
    return 1 if check and found else 0

if __name__ == '__main__': sys.exit(main())
