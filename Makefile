# Two commands for a fresh clone: `make demo` and `make test`. `make install` is the shared,
# idempotent step: it re-runs only when setup.cfg or pyproject.toml change.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch, installed only when .venv has none (README, "Install"). From the default package index,
# torch==2.13.0 on Linux x86_64 is the CUDA build and pulls about 15 nvidia-* packages (several GB),
# whether or not the machine has a GPU. `make install TORCH_INDEX=cpu` takes the CPU-only wheel from
# PyTorch's CPU index instead; TORCH_INDEX=URL uses any other index (a mirror). GPU users may also
# install their own torch into .venv first, or skip it with `make install TORCH_SPEC=`.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
TORCH_INDEX_URL := $(if $(filter cpu,$(TORCH_INDEX)),https://download.pytorch.org/whl/cpu,$(TORCH_INDEX))
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-all layers bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	if [ -n "$(TORCH_SPEC)" ] && ! $(BIN)/python -c "import torch" 2>/dev/null; then \
		$(BIN)/python -m pip install --quiet $(if $(TORCH_INDEX_URL),--index-url "$(TORCH_INDEX_URL)" )"$(TORCH_SPEC)"; fi
	$(BIN)/python -m pip install --quiet -e '.[models,metrics,quickumls,data,api,test]'
	touch $@

# The browser step screenshots runs/demo/index.html at 1400 and 800 px (leaderboard-1400.png,
# leaderboard-800.png) where chromium is installed, and says in one line that it skipped otherwise.
demo: install
	$(BIN)/radbench demo --output runs/demo
	$(BIN)/python -m radbench.leaderboard.browser runs/demo/index.html

# Tests run with Python's bytecode cache on even where the shell turns it off (PYTHONDONTWRITEBYTECODE):
# without it every test module is re-parsed and assertion-rewritten at collection, and every
# `python -m radbench` a test starts recompiles radbench, on each run.
PYTEST := env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest

# The quick set (a few minutes): every test but those marked slow, one end-to-end run per command.
test: install
	$(PYTEST) -q -m "not slow"

# Everything, slow end-to-end and statistical tests included (what CI runs).
test-all: install
	$(PYTEST) -q

# The import-layer contracts of .importlinter, checked on a copy laid out as installed (tests/test_layers.py).
layers: install
	$(PYTEST) -q tests/test_layers.py

# Speed targets (ratios, whole-process and start-up times) measured in one run; writes
# benchmarks/RESULTS.md (not part of test).
bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs build *.egg-info
