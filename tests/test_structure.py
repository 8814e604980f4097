"""The package's modules import each other without a cycle (read from the source, nothing is imported).

Imports inside functions count too: a cycle dodged by importing late is still a cycle. What does not count is a
plugin named in a table and loaded with `importlib` (`data.SOURCE_PLUGINS`, `models.MODEL_PLUGINS`): that is how the
tiny world, which builds on data, models and rewards, is found by them without their importing it."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1]/'staged_rl'

def module_imports(path:Path, nested:bool=True) -> set:
    "Modules of `staged_rl` that `path` imports (with `nested=False`, at module level only)."
    out, tree = set(), ast.parse(path.read_text())
    for node in (ast.walk(tree) if nested else tree.body):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ''
            if node.level == 1: mod = f'staged_rl.{mod}' if mod else 'staged_rl'
            if mod == 'staged_rl': out |= {f'staged_rl.{a.name}' for a in node.names}
            elif mod.startswith('staged_rl.'): out.add(mod)
        elif isinstance(node, ast.Import): out |= {a.name for a in node.names if a.name.startswith('staged_rl.')}
    return {m.split('.')[1] for m in out}

def import_graph() -> dict:
    "`{module: {modules it imports}}` over `staged_rl/*.py`."
    mods = {p.stem: p for p in PKG.glob('*.py') if p.stem not in ('__init__', '_modidx')}
    return {m: (module_imports(p) & mods.keys()) - {m} for m, p in mods.items()}  # a module importing itself by name is no cycle

def cycles(graph:dict) -> list:
    "Every import cycle, as a list of modules (depth-first search)."
    found, state = [], {}
    def visit(m, stack):
        state[m] = 'open'; stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 'open': found.append(stack[stack.index(n):] + [n])
            elif n not in state: visit(n, stack)
        stack.pop(); state[m] = 'done'
    for m in sorted(graph):
        if m not in state: visit(m, [])
    return found

def test_cycle_finder_finds_cycles():
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == [['a', 'b', 'c', 'a']]
    assert cycles({'a': {'b'}, 'b': set()}) == []

def test_reads_imports_anywhere(tmp_path):
    p = tmp_path/'m.py'
    p.write_text("from .data import Problem\nfrom staged_rl.config import ROLES\nimport staged_rl.tiny\nfrom staged_rl import rewards\n"
                 "import torch\ndef f():\n    from staged_rl.trainer import train\n")
    assert module_imports(p, nested=False) == {'data', 'config', 'tiny', 'rewards'}
    assert module_imports(p) == {'data', 'config', 'tiny', 'rewards', 'trainer'}

def test_no_import_cycles():
    g = import_graph()
    assert {'config', 'data', 'models', 'rewards', 'tiny', 'scoring', 'filtering', 'trainer'} <= g.keys()
    assert cycles(g) == [], cycles(g)

def test_loading_does_not_depend_on_the_tiny_world():
    "Model loading, data and rewards reach the tiny world only by name (a plugin table), never by import."
    g = import_graph()
    def reach(m, seen=None):
        seen = set() if seen is None else seen
        for n in g[m] - seen: seen.add(n); reach(n, seen)
        return seen
    for m in ('models', 'data', 'rewards', 'trainer', 'scoring', 'filtering'): assert 'tiny' not in reach(m), m
