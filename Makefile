# staged-rl: the two commands of the README are `make reproduce` and `make test`.
PY ?= python3
SHELL := /bin/bash

.PHONY: install test test-nbs test-py data reproduce sync-check readme docs clean

# CPU machines: install the CPU torch wheel first, so that nothing pulls GBs of CUDA wheels.
# GPU boxes: install torch for your CUDA yourself, then `pip install -e ".[dev,vllm]"` (see README).
install:
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	@command -v bwrap >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq bubblewrap) >/dev/null 2>&1; } \
	  || echo "note: bubblewrap (bwrap) is not installed; the code sandbox uses its other isolation layers (see nbs/03_sandbox.ipynb)"

# Notebook cells (fast checks next to the code), then pytest (real data, hostile programs, training runs).
test: install test-nbs test-py

test-nbs:
	nbdev_test --n_workers 2 --do_print --timing 2>&1 | tail -n 40; exit $${PIPESTATUS[0]}

test-py:
	$(PY) -m pytest -q tests

# Real benchmark files (MATH-500, AIME-2024, HumanEval, a Codeforces stdin sample) into data/, where the tests and
# notebooks find them (STAGED_RL_DATA_DIR overrides); needs the internet and `datasets`, says so in one line otherwise.
data:
	$(PY) scripts/get_data.py --out data

# The main job: the CPU reproduction of the paper's experiments (figures and tables under runs/tiny-cpu).
reproduce: install
	staged-rl reproduce --preset tiny-cpu

# Fails when the library or the notebooks are not what nbdev_export / nbdev_clean would make them.
sync-check:
	nbdev_export
	nbdev_clean
	@if [ -n "$$(git status --porcelain -- staged_rl nbs)" ]; then \
	  echo "Notebooks and library are not in sync (or notebooks are not clean):"; git status --porcelain -- staged_rl nbs; git diff --stat; exit 1; fi

# README.md comes from nbs/index.ipynb: through Quarto (nbdev_readme) where it is installed, else nbconvert.
readme:
	@if command -v quarto >/dev/null 2>&1; then nbdev_readme; else \
	  jupyter nbconvert --to markdown nbs/index.ipynb --output-dir . --output README --log-level WARN; fi

docs:
	nbdev_docs

clean:
	rm -rf _docs _proc .pytest_cache
