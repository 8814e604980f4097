"""`benchmarks/gpu_rehearsal.py --tiny --length-mix`: the GPU rehearsal's code path (the paper-1.5b preset, one step per
stage, responses extended to the stage's limit; then the update alone on a length mix and at full length, with its
tokens/s and MFU) at tiny size on a CPU, so that it cannot rot between GPU loans."""
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def test_rehearsal_runs_at_tiny_size(tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])}
    p = subprocess.run([sys.executable, str(ROOT/'benchmarks'/'gpu_rehearsal.py'), '--tiny', '--length-mix', '--out', str(tmp_path)],
                       capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    rep = json.loads((tmp_path/'rehearsal.json').read_text())
    assert [s['stage'] for s in rep['stages']] == ['stage1', 'stage2']
    assert [s['limit'] for s in rep['stages']] == [64, 96] and all(s['responses'] == 16 for s in rep['stages'])
    # every response ran to its stage's limit, and the update trained on all of their tokens
    assert [s['update_tokens'] for s in rep['stages']] == [16 * 64, 16 * 96]
    assert all(s['update_s'] > 0 and s['projected']['update_s'] > s['update_s'] for s in rep['stages'])
    assert len(rep['eval_s']) == 3  # at the start and at both stage ends
    assert 'projected full step' in p.stdout
    # --length-mix: the update alone, full length and a mix, each stage; tokens/s and MFU with the formula and the measured rate
    mix = rep['length_mix']
    assert [(c['stage'], c['case']) for c in mix['cases']] == [('stage1', 'full'), ('stage1', 'mix'), ('stage2', 'full'), ('stage2', 'mix')]
    for c in mix['cases']:
        assert c['responses'] == 16 and c['layout'] == 'packed' and c['update_tokens_per_s'] > 0 and c['mfu'] > 0
        assert (c['mean_len'] == c['limit'] and c['cut'] == 0) if c['case'] == 'full' else (c['mean_len'] < c['limit'] and c['cut'] > 0)
    assert all(d < 1e-5 for d in mix['packed_vs_padded_max_abs_diff'].values())
    assert mix['peak_flops'] > 0 and sum('mfu=' in line for line in p.stdout.splitlines()) == 4
    assert 'MFU formula: update FLOPs = 6 x (N_body x sum(L) + N_head x T_head + n_layers x d_attn x sum(L^2))' in p.stdout
    assert 'measured matmul rate of this device (torch.float32)' in p.stdout

def test_length_mix_distribution():
    "The stated mix: 20% at the limit, the rest uniform on [1, 3/4 limit], so the mean is half the limit; fixed by the seed."
    import importlib.util
    spec = importlib.util.spec_from_file_location('gpu_rehearsal', ROOT/'benchmarks'/'gpu_rehearsal.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    lengths, cut = mod.draw_lengths(16384, 20000, seed=0)
    assert abs(sum(cut) / len(cut) - 0.2) < 0.01 and all(L == 16384 for L, c in zip(lengths, cut) if c)
    assert all(1 <= L <= 3 * 16384 // 4 for L, c in zip(lengths, cut) if not c)
    assert abs(sum(lengths) / len(lengths) / 16384 - 0.5) < 0.01
    assert mod.draw_lengths(64, 16, 0) == mod.draw_lengths(64, 16, 0) != mod.draw_lengths(64, 16, 1)
