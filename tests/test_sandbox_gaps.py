"""The five sandbox gaps of issue 14, each as a hostile (or merely unusual) program that was mis-scored before.

1. a program that deletes its working directory; 2. writes outside the capped /tmp (covered here as root, and as
an unprivileged user through `test_sandbox.py::test_hostile_other_configs`); 3. third-party imports (allow-list);
4. linked lists and trees (refused at load time); 5. floats in stdin output (tolerance)."""
import json, os, shutil, subprocess, sys, tempfile
from pathlib import Path
import pytest
from staged_rl.code_reward import score_code, score_code_batch, code_verdict, check_tests, same_stdout
from staged_rl.sandbox import SandboxLimits, package_paths
from staged_rl.config import RewardsConfig
from staged_rl.rewards import sandbox_limits, score_batch
from staged_rl.data import Problem, load_file

LIM = SandboxLimits(timeout_s=2.0, total_timeout_s=10, startup_s=5, memory_mb=512, max_procs=16,
                    max_output_bytes=1 << 16, tmp_mb=8, max_timeouts=1)
def block(code): return f"```python\n{code}```"
ECHO2 = {'kind': 'stdin', 'cases': [{'input': 'hello\n', 'output': 'hello\n'}, {'input': 'world\n', 'output': 'world\n'}]}

# ---- 1. a program that deletes its own working directory ------------------------------------------------------
RMCWD = 'import os, shutil\nfor n in os.listdir("."):\n    try: os.remove(n)\n    except OSError: shutil.rmtree(n, ignore_errors=True)\nshutil.rmtree(os.getcwd(), ignore_errors=True)\nprint(input())'

def test_deleting_workdir_keeps_the_answer():
    "The runner read the output back by file name from the working directory the program had just emptied."
    assert score_code(block(RMCWD), ECHO2, limits=LIM) == 1.0

def test_input_larger_than_output_cap():
    "Found on the way: an input larger than max_output_bytes crashed the runner (RLIMIT_FSIZE hit the runner's own write)."
    t = {'kind': 'stdin', 'cases': [{'input': 'x' * (LIM.max_output_bytes * 3) + '\n', 'output': str(LIM.max_output_bytes * 3)}]}
    assert score_code(block('print(len(input()))'), t, limits=LIM) == 1.0
    big_file = 'print(len(input()))\nopen("/tmp/f", "w").write("x" * %d)' % (LIM.max_output_bytes * 2)
    assert code_verdict(block(big_file), t, limits=LIM)['details'][0].startswith('case 0: error (OSError')  # files stay capped

# ---- 2. nothing outside the capped /tmp is writable -----------------------------------------------------------
FILL_ROOT = '''import os
dirs = ["/", "/etc", "/usr", "/dev", "/dev/shm", "/var/tmp", "/run", "/home"] + ([os.getcwd()] if os.getcwd() != "/tmp" else [])
total = 0
for d in dirs:
    for i in range(400):
        try:
            with open(os.path.join(d, "fill%d" % i), "wb") as f: f.write(b"x" * 60000)
            total += 60000
        except OSError: break
print("written=%d" % total)'''

def test_root_and_dev_not_writable():
    "As root the private uid could not write there already; the same program runs as a user in test_sandbox.py."
    assert score_code(block(FILL_ROOT), {'kind': 'stdin', 'cases': [{'input': '', 'output': 'written=0'}]}, limits=LIM) == 1.0

# ---- 3. third-party imports -----------------------------------------------------------------------------------
SORTED_SOL = 'from sortedcontainers import SortedList\nclass Solution:\n    def kth(self, xs, k):\n        s = SortedList(xs)\n        return s[k]\n'
SORTED_TESTS = {'kind': 'functional', 'entry_point': 'Solution().kth',
                'cases': [{'input': '[5, 1, 4]\n0', 'output': '1'}, {'input': '[5, 1, 4]\n2', 'output': '5'}]}
SORTED_STDIN = 'from sortedcontainers import SortedList\nprint(list(SortedList(map(int, input().split()))))'

def test_allow_listed_package_imports():
    pytest.importorskip('sortedcontainers')
    assert score_code(block(SORTED_SOL), SORTED_TESTS, limits=LIM) == 1.0
    assert score_code(block(SORTED_STDIN), {'kind': 'stdin', 'cases': [{'input': '3 1 2\n', 'output': '[1, 2, 3]'}]}, limits=LIM) == 1.0

def test_import_outside_allow_list_is_reported():
    pytest.importorskip('sortedcontainers')
    lim = SandboxLimits(**{**LIM.__dict__, 'packages': ()})
    v = code_verdict(block(SORTED_SOL), SORTED_TESTS, limits=lim)
    assert v['score'] == 0.0 and any("not in the sandbox allow-list" in d and 'sortedcontainers' in d for d in v['details']), v
    v = code_verdict(block('import numpy\nprint(1)'), {'kind': 'stdin', 'cases': [{'input': '', 'output': '1'}]}, limits=LIM)
    assert v['score'] == 0.0 and any("ModuleNotFoundError" in d and "'numpy' is not in the sandbox allow-list" in d for d in v['details']), v
    v = code_verdict(block('def add(a, b):\n    import numpy\n    return a + b\n'),
                     {'kind': 'functional', 'entry_point': 'add', 'test': 'def check(c):\n    assert c(1, 2) == 3\n'}, limits=LIM)
    assert v['score'] == 0.0 and any("'numpy' is not in the sandbox allow-list" in d for d in v['details']), v

def test_allow_list_is_not_the_host_site_packages():
    "A package installed on the host but not allow-listed stays out, even when the program adds site-packages to sys.path."
    pytest.importorskip('sortedcontainers')
    sneak = ('import sys, glob\nsys.path += glob.glob(sys.base_prefix + "/lib/*/site-packages") + [p + "/site-packages" for p in sys.path]\n'
             'try:\n    import sortedcontainers; print("imported")\nexcept ImportError: print("refused")')
    lim = SandboxLimits(**{**LIM.__dict__, 'packages': ()})
    assert score_code(block(sneak), {'kind': 'stdin', 'cases': [{'input': '', 'output': 'refused'}]}, limits=lim) == 1.0

def test_unknown_package_fails_loudly_before_work():
    with pytest.raises(ValueError, match="no_such_pkg_srl.*not installed"):
        score_code_batch([block('print(1)')], [{'kind': 'stdin', 'cases': [{'input': '', 'output': '1'}]}], workers=1,
                         limits=SandboxLimits(packages=('no_such_pkg_srl',)))
    with pytest.raises(ValueError, match="packages"): SandboxLimits(packages=('os.path',))
    with pytest.raises(ValueError, match="packages"): SandboxLimits(packages='sortedcontainers')

# ---- 4. linked lists and trees --------------------------------------------------------------------------------
STARTER = ('# Definition for singly-linked list.\n# class ListNode:\n#     def __init__(self, val=0, next=None):\n'
           '#         self.val = val\n#         self.next = next\nclass Solution:\n'
           '    def reverseList(self, head: Optional[ListNode]) -> Optional[ListNode]:\n        ')
LIST_TESTS = {'kind': 'functional', 'entry_point': 'Solution().reverseList', 'prelude': '', 'starter_code': STARTER,
              'cases': [{'input': '[1,2,3]', 'output': '[3,2,1]'}, {'input': '[]', 'output': '[]'}]}
TREE_TESTS = {'kind': 'functional', 'entry_point': 'Solution().maxDepth',
              'prelude': 'class TreeNode:\n    def __init__(self, val=0, left=None, right=None):\n        self.val, self.left, self.right = val, left, right\n',
              'cases': [{'input': '[3,9,20,null,null,15,7]', 'output': '3'}]}

def test_linked_structures_refused_by_check_tests():
    for t, name in ((LIST_TESTS, 'ListNode'), (TREE_TESTS, 'TreeNode')):
        with pytest.raises(ValueError, match=name): check_tests(t, "problem 'lc-206': tests")

def test_linked_structures_refused_at_load_time(tmp_path):
    row = {'id': 'lc-206', 'domain': 'code', 'prompt': 'Reverse a linked list.', 'tests': LIST_TESTS}
    ok = {'id': 'ok-1', 'domain': 'code', 'prompt': 'Echo.', 'tests': ECHO2}
    f = tmp_path / 'p.jsonl'; f.write_text(json.dumps(ok) + '\n' + json.dumps(row) + '\n')
    with pytest.raises(ValueError, match=r"p\.jsonl:2.*lc-206.*ListNode"): load_file(f)
    got = load_file(f, strict=False)
    assert [p.id for p in got] == ['ok-1'] and 'ListNode' in got.skipped[0][1]
    with pytest.raises(ValueError, match="lc-206.*ListNode"):
        score_batch([Problem('lc-206', 'code', 'Reverse.', None, LIST_TESTS)], [block('class Solution: pass')], workers=1)

def test_humaneval_not_refused():
    p = Path(os.environ.get('STAGED_RL_DATA_DIR', Path(__file__).resolve().parents[2] / 'shared' / 'data')) / 'humaneval.jsonl'
    if not p.exists(): pytest.skip(f"no {p}")
    assert len(load_file(p)) == 164

# ---- 5. floats in stdin output --------------------------------------------------------------------------------
def test_same_stdout_tolerance():
    assert same_stdout('0.3333333333333333\n', '0.333333333', abs_tol=1e-6, rel_tol=1e-6)
    assert same_stdout('1  2.0000001\n3', '1 2\n3', abs_tol=1e-6, rel_tol=1e-6) is False  # integers compare exactly
    assert same_stdout('1  2.0000001\n3', '1 2.0\n3', abs_tol=1e-6, rel_tol=1e-6)
    assert same_stdout('1000000000000000000', '1000000000000000001', abs_tol=1e-6, rel_tol=1e-6) is False
    assert same_stdout('1e9', '1000000000.5', abs_tol=1e-6, rel_tol=1e-6)  # relative error 5e-10
    assert same_stdout('0.34', '0.333333333', abs_tol=1e-6, rel_tol=1e-6) is False
    assert same_stdout('0.3333333333333333', '0.333333333', abs_tol=0, rel_tol=0) is False
    assert same_stdout('nan', '0.5', abs_tol=1, rel_tol=1) is False and same_stdout('YES 0.5', 'NO 0.5') is False

def test_stdin_float_tolerance_end_to_end():
    t = {'kind': 'stdin', 'cases': [{'input': '1 3\n', 'output': '0.333333333\n'}, {'input': '2 3\n', 'output': '0.666666667'}]}
    prog = block('a, b = map(int, input().split())\nprint(a / b)')
    assert score_code(prog, t, limits=LIM) == 1.0
    assert score_code(prog, t, limits=SandboxLimits(**{**LIM.__dict__, 'float_abs_tol': 0.0, 'float_rel_tol': 0.0})) == 0.0

# ---- the config reaches the sandbox ---------------------------------------------------------------------------
def test_rewards_config_reaches_sandbox_limits():
    lim = sandbox_limits(RewardsConfig(code_packages=[], code_float_abs_tol=1e-3, code_float_rel_tol=0.0))
    assert lim.packages == () and lim.float_abs_tol == 1e-3 and lim.float_rel_tol == 0.0
    d = sandbox_limits(RewardsConfig())
    assert d.packages == ('sortedcontainers',) and d.float_abs_tol == 1e-6 and d.float_rel_tol == 1e-6
    with pytest.raises(ValueError, match='code_float_abs_tol'): RewardsConfig(code_float_abs_tol=-1)

# ---- the same gaps as an unprivileged user (bubblewrap in a user namespace; Landlock alone) and as root without bubblewrap
DRIVER = r'''
import json, sys
from staged_rl.code_reward import score_code_batch
from staged_rl.sandbox import SandboxLimits
job = json.load(sys.stdin)
print(json.dumps(score_code_batch(job["responses"], job["tests"], workers=1, limits=SandboxLimits(**job["limits"]))))
'''
NOBODY = 61235

@pytest.mark.parametrize('config,user,disable', [('user_bwrap', True, ''), ('user_landlock_only', True, 'bwrap'), ('root_no_bwrap', False, 'bwrap')])
def test_gaps_other_configs(config, user, disable, tmp_path):
    "Allow-list, read-only root and deleted work dir under the other isolation configurations (system python, a world-readable copy of the package)."
    sc = pytest.importorskip('sortedcontainers')
    repo = Path(__file__).resolve().parents[1]
    if os.geteuid() != 0 or not shutil.which('setpriv') or not os.path.exists('/usr/bin/python3'): pytest.skip("needs root, setpriv and a system python")
    if not repo.stat().st_mode & 0o005: pytest.skip("repository not world-readable")
    pkgs = Path(tempfile.mkdtemp(prefix='srl-pkgs-', dir='/tmp')); pkgs.chmod(0o755)
    try:
        shutil.copytree(Path(sc.__file__).parent, pkgs / 'sortedcontainers')
        for p in pkgs.rglob('*'): p.chmod(0o755 if p.is_dir() else 0o644)
        sneak = 'import sys\nsys.path.append(%r)\ntry:\n    import sortedcontainers; print("imported")\nexcept ImportError: print("refused")' % str(pkgs)
        cases = [(SORTED_STDIN, [{'input': '3 1 2\n', 'output': '[1, 2, 3]'}], ['sortedcontainers'], 1.0),
                 ('import numpy\nprint(1)', [{'input': '', 'output': '1'}], ['sortedcontainers'], 0.0),
                 (FILL_ROOT, [{'input': '', 'output': 'written=0'}], [], 1.0),
                 (RMCWD, ECHO2['cases'], [], 1.0)]
        if disable != 'bwrap': cases.append((sneak, [{'input': '', 'output': 'refused'}], [], 1.0))  # Landlock cannot hide a directory
        lim = {'timeout_s': 2.0, 'total_timeout_s': 10, 'startup_s': 5, 'memory_mb': 512, 'max_procs': 16, 'max_output_bytes': 1 << 16, 'tmp_mb': 8}
        got = []
        for packages in ([], ['sortedcontainers']):  # one batch per allow-list
            sel = [c for c in cases if c[2] == packages]
            env = {'PATH': '/usr/bin:/bin', 'PYTHONPATH': f'{repo}:{pkgs}', 'HOME': '/tmp', 'STAGED_RL_SANDBOX_DISABLE': disable}
            cmd = (['setpriv', '--reuid', str(NOBODY), '--regid', str(NOBODY), '--clear-groups'] if user else []) + ['/usr/bin/python3', '-c', DRIVER]
            job = {'responses': [block(c[0]) for c in sel], 'tests': [{'kind': 'stdin', 'cases': c[1]} for c in sel], 'limits': {**lim, 'packages': packages}}
            r = subprocess.run(cmd, input=json.dumps(job), capture_output=True, text=True, env=env, cwd='/tmp', timeout=240)
            if r.returncode != 0 and 'SandboxUnavailable' in r.stderr: pytest.skip(f"{config}: the sandbox refuses here: {r.stderr.strip().splitlines()[-1]}")
            assert r.returncode == 0, r.stderr[-3000:]
            got += [(c[0][:30], s, c[3]) for c, s in zip(sel, json.loads(r.stdout.strip().splitlines()[-1]))]
        assert [(n, s) for n, s, w in got if s != w] == [], f"{config}: wrong scores"
        assert sorted(p.name for p in pkgs.iterdir()) == ['sortedcontainers']
    finally: shutil.rmtree(pkgs, ignore_errors=True)

# ---- repeated programs are graded once ------------------------------------------------------------------------
def test_identical_programs_graded_once(monkeypatch):
    "A batch grades each distinct (program, tests) pair once and every copy gets its score, in order; the same program against other tests is graded again."
    import staged_rl.code_reward as cr
    sent, real = [], cr.shared_pool
    class Recording:
        def __init__(self, pool): self.pool = pool
        def run(self, tasks, **kw): sent.append([t[1][0] for t in tasks]); return self.pool.run(tasks, **kw)
    monkeypatch.setattr(cr, 'shared_pool', lambda workers=None: Recording(real(workers)))
    echo, upper = 'print(input())', 'print(input().upper())'
    loud = {'kind': 'stdin', 'cases': [{'input': 'hi\n', 'output': 'HI\n'}]}
    resp = [block(echo), block(upper), block(echo), 'no code', block(echo), block(upper)]
    tsts = [ECHO2, ECHO2, ECHO2, ECHO2, loud, loud]
    assert score_code_batch(resp, tsts, workers=1, limits=LIM) == [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    assert sent == [[echo, upper, echo, upper]]  # echo and upper once each per tests; the copy of echo on ECHO2 not again
