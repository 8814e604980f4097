"""Hostile programs against the code sandbox (staged_rl.sandbox via staged_rl.code_reward.score_code).

Each program must be contained: it scores 0 (or its honest score), the grader returns within its limits, no
process is left behind, and no file outside the sandbox's temporary directory is created or changed. The same
programs also run as an unprivileged user (bubblewrap through a user namespace, and Landlock without it) and as
root without bubblewrap, when this machine allows it."""
import json, os, shutil, socket, subprocess, sys, threading, time, uuid
from pathlib import Path
import pytest
from staged_rl.code_reward import score_code, score_code_batch
from staged_rl.math_reward import shared_pool
from staged_rl.sandbox import SandboxLimits, SandboxUnavailable, UID_BASE, isolation_layers, _descendants

LIM = SandboxLimits(timeout_s=1.0, total_timeout_s=5, startup_s=4, memory_mb=512, max_procs=16,
                    max_output_bytes=1 << 16, tmp_mb=8, max_timeouts=1)
TOKEN = uuid.uuid4().hex[:12]
CANARY_DIR = Path(f'/tmp/srl_canary_{TOKEN}')
CANARY = CANARY_DIR / 'canary.txt'
PWNED = [f'/tmp/srl_pwned_{TOKEN}', str(Path(__file__).resolve().parents[1] / f'srl_pwned_{TOKEN}'),
         str(CANARY_DIR / 'pwned')]
SECRET = f'hunter2-{TOKEN}'
ADD_TESTS = {'kind': 'functional', 'entry_point': 'add',
             'test': 'def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(20, 22) == 42\n'}
ECHO_TESTS = {'kind': 'stdin', 'cases': [{'input': 'hello\n', 'output': 'hello\n'}]}
SECRET_ANSWER = int(TOKEN, 16) % 9 * 10 ** 11 + 10 ** 10 + 12345  # never in the sandbox: the grader compares it
SECRET_TESTS = {'kind': 'functional', 'entry_point': 'add', 'test': f'def check(candidate):\n    assert candidate(1, 2) == {SECRET_ANSWER}\n'}
def stdin_expect(out): return {'kind': 'stdin', 'cases': [{'input': '', 'output': out}]}

ADD = 'def add(a, b): return a + b\n'
# (name, program, tests, expected score)
HOSTILE = [
    ('infinite_loop_call', 'def add(a, b):\n    while True: pass\n', ADD_TESTS, 0.0),
    ('infinite_loop_load', 'while True: pass\n' + ADD, ADD_TESTS, 0.0),
    ('sleep_forever', 'import time\ntime.sleep(1000)\nprint(input())', ECHO_TESTS, 0.0),
    ('fork_bomb', 'import os\nwhile True:\n    try: os.fork()\n    except OSError: pass\n', ECHO_TESTS, 0.0),
    ('fork_bomb_then_answer', 'import os\nfor _ in range(200):\n    try: os.fork()\n    except OSError: break\n' + ADD, ADD_TESTS, None),
    ('subprocess_bomb', 'import subprocess, sys\nps = []\nwhile True:\n    try: ps.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))\n    except OSError: pass\n', ECHO_TESTS, 0.0),
    ('memory_bomb', 'x = bytearray(8 << 30)\nprint(input())', ECHO_TESTS, 0.0),
    ('memory_creep', 'xs = []\nwhile True: xs.append(" " * (1 << 20))\n', ECHO_TESTS, 0.0),
    ('huge_output', 'print("x" * (1 << 26))', stdin_expect('x' * 10), 0.0),
    ('endless_output', 'while True: print("spam " * 100)', stdin_expect('spam'), 0.0),
    ('huge_output_functional', 'def add(a, b):\n    while True: print("x" * 10000)\n', ADD_TESTS, 0.0),
    ('setsid_daemon', 'import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(60)\n    os._exit(0)\nprint(input())', ECHO_TESTS, 1.0),
    ('daemon_ignores_signals', 'import os, signal, time\nif os.fork() == 0:\n    os.setsid()\n    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT): signal.signal(s, signal.SIG_IGN)\n    while True: pass\n' + ADD, ADD_TESTS, 1.0),
    ('delete_files', f'import os, shutil\nfor p in [{str(CANARY)!r}, {str(CANARY_DIR)!r}]:\n    try: os.remove(p)\n    except OSError: pass\n    shutil.rmtree(p, ignore_errors=True)\n' + ADD, ADD_TESTS, 1.0),
    ('create_files', f'for p in {PWNED!r} + [{str(CANARY)!r}]:\n    try: open(p, "w").write("pwned")\n    except OSError: pass\n' + ADD, ADD_TESTS, 1.0),
    ('write_home_and_tmp', 'import os\nfor p in [os.path.expanduser("~/.bashrc"), "/root/.bashrc", "/tmp/x", "/etc/passwd", "/usr/lib/x"]:\n    try: open(p, "a").write("pwned")\n    except OSError: pass\n' + ADD, ADD_TESTS, 1.0),
    ('fill_tmp', 'i = 0\nwhile True:\n    try: open(f"/tmp/f{i}", "w").write("x" * 60000)\n    except OSError: break\n    i += 1\nimport os\nfor j in range(i + 1):\n    try: os.remove(f"/tmp/f{j}")\n    except OSError: pass\nprint(input())', ECHO_TESTS, 1.0),
    ('env_secrets', f'import os, glob\nfound = [v for v in os.environ.values() if {SECRET!r} in v]\nfor p in glob.glob("/proc/*/environ"):\n    try:\n        if {SECRET!r}.encode() in open(p, "rb").read(): found.append(p)\n    except OSError: pass\nprint({SECRET!r} if found else "none")', stdin_expect(SECRET), 0.0),
    ('read_test_data', 'import glob\nhits = []\nfor p in glob.glob("/work/**/*.jsonl", recursive=True) + glob.glob("/proc/*/cmdline"):\n    try:\n        if b"assert candidate" in open(p, "rb").read(): hits.append(p)\n    except OSError: pass\nprint("found" if hits else "nothing")', stdin_expect('found'), 0.0),
    ('socket_tcp', 'import socket, sys\nport = int(input())\ntry:\n    socket.create_connection(("127.0.0.1", port), timeout=0.5).sendall(b"pwned"); print("connected")\nexcept OSError: print("blocked")', None, 0.0),
    ('socket_udp', 'import socket\nport = int(input())\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"pwned", ("127.0.0.1", port)); print("connected")\nexcept OSError: print("blocked")', None, 0.0),
    ('exit_zero_load', 'import sys\nsys.exit(0)\n', ADD_TESTS, 0.0),
    ('os_exit_in_call', 'import os\ndef add(a, b): os._exit(0)\n', ADD_TESTS, 0.0),
    ('exit_zero_stdin', 'import os\nos._exit(0)', ECHO_TESTS, 0.0),
    ('fake_success_marker', 'def add(a, b):\n    print("PASSED", "OK", "{\'id\': 1, \'ok\': 3}")\n    return None\n', ADD_TESTS, 0.0),
    ('huge_return_value', 'def add(a, b): return [a + b] * (10 ** 7)\n', ADD_TESTS, 0.0),
    ('system_exit_in_call', 'def add(a, b): raise SystemExit(0)\n', ADD_TESTS, 0.0),
    ('keyboard_interrupt_in_call', 'def add(a, b): raise KeyboardInterrupt\n', ADD_TESTS, 0.0),
    ('monkeypatch_builtins', 'import builtins\nbuiltins.AssertionError = type("Never", (BaseException,), {})\nbuiltins.isinstance = lambda *a: True\nbuiltins.__import__ = None\ndef add(a, b): return -1\n', ADD_TESTS, 0.0),
    ('always_equal', 'class Eq:\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n    def __hash__(self): return 0\ndef add(a, b): return Eq()\n', ADD_TESTS, 0.0),
    ('lying_int_subclass', 'class I(int):\n    def __eq__(self, o): return True\ndef add(a, b): return I(-1)\n', ADD_TESTS, 0.0),
    ('lying_str_subclass', 'class S(str):\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\nprint(S("wrong"))', stdin_expect('right'), 0.0),
    ('forge_protocol', 'import os\ndef add(a, b):\n    for fd in range(3, 12):\n        try: os.write(fd, b"\\x00" * 8 + (12).to_bytes(8, "big") + b"{\'ok\': 3}  ")\n        except OSError: pass\n    return -1\n', ADD_TESTS, 0.0),
    ('read_expected_from_memory', 'import gc, re, sys\ndef add(a, b):\n    seen = [v for o in gc.get_objects() if type(o) in (list, tuple, dict) for v in (o.values() if type(o) is dict else o) if type(v) is int and v > 10 ** 9]\n    seen += [int(m) for o in gc.get_objects() if type(o) is dict for v in o.values() if type(v) is str for m in re.findall(r"\\d{10,}", v)]\n    f = sys._getframe()\n    while f: seen += [v for v in f.f_locals.values() if type(v) is int and v > 10 ** 9]; f = f.f_back\n    return seen[0] if seen else -1\n', SECRET_TESTS, 0.0),
    ('read_channel', 'import os, select\ndef add(a, b):\n    for fd in range(0, 12):\n        try:\n            if select.select([fd], [], [], 0)[0]: os.read(fd, 1 << 16)\n        except OSError: pass\n    return -1\n', ADD_TESTS, 0.0),
    ('recursion_bomb', 'import sys\nsys.setrecursionlimit(10 ** 8)\ndef f(n): return f(n + 1) + 1\ndef add(a, b): return f(0)\n', ADD_TESTS, 0.0),
    ('recursion_bomb_stdin', 'import sys, threading\nsys.setrecursionlimit(10 ** 8)\nthreading.stack_size(1 << 27)\ndef f(n): return f(n + 1)\nt = threading.Thread(target=f, args=(0,)); t.start(); t.join()', ECHO_TESTS, 0.0),
    ('ignore_sigterm', 'import signal\nfor s in range(1, 32):\n    try: signal.signal(s, signal.SIG_IGN)\n    except (OSError, ValueError): pass\nwhile True: pass', ECHO_TESTS, 0.0),
    ('endless_threads_stdin', 'import threading\ndef spin():\n    while True: pass\nfor _ in range(4): threading.Thread(target=spin).start()\nprint(input())', ECHO_TESTS, 0.0),
    ('endless_threads_functional', 'import threading\ndef spin():\n    while True: pass\nfor _ in range(4): threading.Thread(target=spin).start()\n' + ADD, ADD_TESTS, 1.0),
    ('thread_bomb', 'import threading, time\nwhile True:\n    try: threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n    except RuntimeError: break\nprint(input())', ECHO_TESTS, 1.0),
    ('kill_everything', 'import os, signal\nfor pid in [-1, 0, 1, os.getppid()]:\n    try: os.kill(pid, signal.SIGKILL)\n    except OSError: pass\n' + ADD, ADD_TESTS, 0.0),
    ('fd_exhaustion', 'fs = []\ntry:\n    while True: fs.append(open("/dev/null"))\nexcept OSError: pass\nprint(input())', ECHO_TESTS, 1.0),
    ('delete_workdir', 'import os, shutil\nfor n in os.listdir("."):\n    try: os.remove(n)\n    except OSError: shutil.rmtree(n, ignore_errors=True)\nshutil.rmtree(os.getcwd(), ignore_errors=True)\nprint(input())', ECHO_TESTS, 1.0),
    ('fill_root', 'import os\ndirs = ["/", "/etc", "/usr", "/dev", "/dev/shm", "/var/tmp", "/run", "/home"] + ([os.getcwd()] if os.getcwd() != "/tmp" else [])\ntotal = 0\nfor d in dirs:\n    for i in range(400):\n        try:\n            with open(os.path.join(d, "fill%d" % i), "wb") as f: f.write(b"x" * 60000)\n            total += 60000\n        except OSError: break\nprint("written=%d" % total)', stdin_expect('written=0'), 1.0),
    ('ptrace_parent', 'import ctypes, os\nlibc = ctypes.CDLL(None)\nok = [p for p in {os.getppid(), 1} if libc.ptrace(16, p, 0, 0) == 0]\ntry: open(f"/proc/{os.getppid()}/mem", "rb").read(1); ok.append("mem")\nexcept OSError: pass\nprint("attached" if ok else "no")', stdin_expect('attached'), 0.0),
]

def _uid_procs(pred) -> list:
    out = []
    for e in os.scandir('/proc'):
        if e.name.isdigit():
            try:
                if pred(e.stat().st_uid): out.append(int(e.name))
            except OSError: pass
    return out

def _describe(pids) -> list:
    out = []
    for p in pids:
        try: out.append((p, open(f'/proc/{p}/stat').read()[:120], open(f'/proc/{p}/cmdline', 'rb').read()[:100]))
        except OSError: pass
    return out

def _live_sandbox_procs() -> list:
    "Processes of our sandboxes: descendants of our pool workers, and (as root) any process of their private uids."
    pids = [w.proc.pid for w in shared_pool().ws]
    out = [p for w in pids for p in _descendants(w)]
    uids = {UID_BASE + w for w in pids}  # other people's graders on this machine use other uids
    return out + (_uid_procs(lambda u: u in uids) if os.geteuid() == 0 else [])

def _wait_gone(find, patience=0.0) -> list:
    "Processes `find()` still returns after `patience` seconds, described (pid, stat, cmdline)."
    end = time.monotonic() + patience
    while (left := find()) and time.monotonic() < end: time.sleep(0.05)
    return _describe(left)

@pytest.fixture(scope='module', autouse=True)
def canary():
    CANARY_DIR.mkdir(exist_ok=True); CANARY.write_text('precious')
    os.environ['SRL_SECRET_TOKEN'] = SECRET
    shared_pool().close()  # workers restart with the secret in their environment
    yield
    os.environ.pop('SRL_SECRET_TOKEN', None)
    shutil.rmtree(CANARY_DIR, ignore_errors=True)
    for p in PWNED:
        if os.path.exists(p): os.remove(p)

def _listener():
    "A TCP and a UDP socket on 127.0.0.1 that record anything they receive."
    tcp, udp = socket.socket(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp.bind(('127.0.0.1', 0)); tcp.listen(5); tcp.settimeout(0.05); udp.bind(('127.0.0.1', 0)); udp.settimeout(0.05)
    return tcp, udp

def _received(tcp, udp) -> bool:
    for sock, get in ((tcp, lambda: tcp.accept()), (udp, lambda: udp.recvfrom(100))):
        try: get(); return True
        except (socket.timeout, BlockingIOError): pass
    return False

def test_layers_active():
    layers = isolation_layers()
    assert layers['rlimits'] and layers['subreaper']
    assert layers['bubblewrap'] or layers['landlock_abi'], layers

@pytest.mark.parametrize('name,prog,tests,want', HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile(name, prog, tests, want):
    tcp = udp = None
    if tests is None:
        tcp, udp = _listener()
        port = (tcp if name == 'socket_tcp' else udp).getsockname()[1]
        tests = {'kind': 'stdin', 'cases': [{'input': f'{port}\n', 'output': 'connected'}]}
    t0 = time.monotonic()
    got = score_code(f"```python\n{prog}```", tests, limits=LIM)
    dt = time.monotonic() - t0
    if want is not None: assert got == want, f"{name}: score {got}, expected {want}"
    else: assert 0.0 <= got <= 1.0
    # a safety bound, not a timing: a program the sandbox failed to stop would run far past it (timings: benchmarks/)
    assert dt < 10 * (LIM.total_timeout_s + LIM.startup_s), f"{name} took {dt:.1f}s"
    assert _wait_gone(_live_sandbox_procs) == [], f"{name} left processes behind"
    assert CANARY.read_text() == 'precious', f"{name} changed a file outside its sandbox"
    assert not any(os.path.exists(p) for p in PWNED), f"{name} created a file outside its sandbox"
    if tcp is not None:
        assert not _received(tcp, udp), f"{name} reached a socket on 127.0.0.1"
        tcp.close(); udp.close()

def test_grader_survives():
    "After all of the above, the pool still grades correctly (a generous bound catches a pool left hanging)."
    t0 = time.monotonic()
    got = score_code_batch([f"```python\n{ADD}```"] * 8, [ADD_TESTS] * 8, workers=2, limits=LIM)
    assert got == [1.0] * 8 and time.monotonic() - t0 < 120

def test_partial_credit_after_crash():
    "A crash in one case restarts the sandbox; the other cases still count (until max_timeouts)."
    prog = 'import os\ndef add(a, b):\n    if a == 1: os._exit(1)\n    return a + b\n'
    assert score_code(f"```python\n{prog}```", ADD_TESTS, limits=SandboxLimits(timeout_s=1, max_timeouts=2)) == 0.5
    assert score_code(f"```python\n{prog}```", ADD_TESTS, limits=SandboxLimits(timeout_s=1, max_timeouts=1)) == 0.0

# ---- the same programs under the other isolation configurations -------------------------------------------
SUBSET = ['infinite_loop_call', 'fork_bomb', 'memory_bomb', 'huge_output', 'setsid_daemon', 'delete_files',
          'create_files', 'env_secrets', 'socket_tcp', 'socket_udp', 'exit_zero_load', 'always_equal',
          'read_expected_from_memory', 'ignore_sigterm', 'kill_everything', 'ptrace_parent', 'delete_workdir', 'fill_root']
DRIVER = r'''
import json, sys
from staged_rl.code_reward import score_code_batch
from staged_rl.sandbox import SandboxLimits, isolation_layers
job = json.load(sys.stdin)
lim = SandboxLimits(**job["limits"])
layers = isolation_layers(lim.python)
from staged_rl.math_reward import shared_pool
scores = score_code_batch(job["responses"], job["tests"], workers=2, limits=lim)
print(json.dumps({"layers": layers, "scores": scores, "workers": [w.proc.pid for w in shared_pool().ws]}))
'''
SYS_PY = '/usr/bin/python3'
NOBODY = 61234

def _run_driver(user:bool, disable:str, python:str|None, tcp_port:int, udp_port:int):
    progs = {h[0]: h for h in HOSTILE}
    resp, tests, want = [], [], []
    for n in SUBSET:
        _, prog, t, w = progs[n]
        if t is None: t = {'kind': 'stdin', 'cases': [{'input': f'{tcp_port if n == "socket_tcp" else udp_port}\n', 'output': 'connected'}]}
        resp.append(f"```python\n{prog}```"); tests.append(t); want.append(w)
    lim = {**{k: getattr(LIM, k) for k in ('timeout_s', 'total_timeout_s', 'startup_s', 'memory_mb', 'max_procs', 'max_output_bytes', 'tmp_mb', 'max_timeouts')}, 'python': python,
           'packages': []}  # the system python has no sortedcontainers; the pyenv one (which has) is not readable by a user
    env = {'PATH': '/usr/bin:/bin', 'PYTHONPATH': str(Path(__file__).resolve().parents[1]), 'HOME': '/tmp',
           'STAGED_RL_SANDBOX_DISABLE': disable, 'SRL_SECRET_TOKEN': SECRET}
    cmd = ([shutil.which('setpriv'), '--reuid', str(NOBODY), '--regid', str(NOBODY), '--clear-groups'] if user else []) + [python or SYS_PY, '-c', DRIVER]
    r = subprocess.run(cmd, input=json.dumps({'responses': resp, 'tests': tests, 'limits': lim}), capture_output=True, text=True, env=env, cwd='/tmp', timeout=240)
    return r, want

CONFIGS = {  # name: (run as an unprivileged uid, layers switched off)
    'user_bwrap': (True, ''),
    'user_landlock_only': (True, 'bwrap'),
    'root_no_bwrap': (False, 'bwrap'),
}

@pytest.mark.parametrize('config', list(CONFIGS))
def test_hostile_other_configs(config):
    user, disable = CONFIGS[config]
    if os.geteuid() != 0 or not shutil.which('setpriv') or not os.path.exists(SYS_PY): pytest.skip("needs root, setpriv and a system python")
    if not Path(__file__).resolve().parents[1].stat().st_mode & 0o005: pytest.skip("repository not world-readable")
    tcp, udp = _listener()
    r, want = _run_driver(user, disable, SYS_PY, tcp.getsockname()[1], udp.getsockname()[1])
    if r.returncode != 0 and 'SandboxUnavailable' in r.stderr: pytest.skip(f"{config}: the sandbox refuses here: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    if user: assert not out['layers']['private_uid']
    if 'bwrap' in disable: assert not out['layers']['bubblewrap']
    for n, got, w in zip(SUBSET, out['scores'], want):
        if w is not None: assert got == w, f"{config}/{n}: score {got}, expected {w}"
    assert not _received(tcp, udp), f"{config}: a program reached a socket on 127.0.0.1"
    tcp.close(); udp.close()
    assert CANARY.read_text() == 'precious' and not any(os.path.exists(p) for p in PWNED)
    uids = {NOBODY} | {UID_BASE + w for w in out['workers']}
    assert _wait_gone(lambda: _uid_procs(lambda u: u in uids)) == [], f"{config}: processes left behind"

def test_refuses_without_isolation():
    "With neither bubblewrap nor Landlock there is no filesystem isolation: grading refuses, loudly."
    r = subprocess.run([sys.executable, '-c', 'from staged_rl.sandbox import isolation_layers; isolation_layers()'],
                       env={**os.environ, 'STAGED_RL_SANDBOX_DISABLE': 'bwrap,landlock'}, capture_output=True, text=True)
    assert r.returncode != 0 and 'SandboxUnavailable' in r.stderr and 'no filesystem isolation' in r.stderr
    if os.geteuid() == 0:
        r = subprocess.run([sys.executable, '-c', 'from staged_rl.sandbox import isolation_layers; isolation_layers()'],
                           env={**os.environ, 'STAGED_RL_SANDBOX_DISABLE': 'bwrap'}, capture_output=True, text=True)
        from staged_rl.sandbox import _world_readable, _python
        if not _world_readable(str(Path(_python()).parent.parent / 'lib')): assert r.returncode != 0 and 'cannot read' in r.stderr
