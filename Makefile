# Two commands for a fresh clone: `make demo` and `make test`. `make install` is the shared,
# idempotent step: it re-runs only when setup.cfg or pyproject.toml change.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# On machines without a torch in the venv, install the CPU wheel 2.13.0 (an unpinned torch pulls a
# multi-GB CUDA build). GPU users: install your own torch into .venv first, or `make install TORCH_SPEC=`.
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-all bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	if [ -n "$(TORCH_SPEC)" ] && ! $(BIN)/python -c "import torch" 2>/dev/null; then \
		$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"; fi
	$(BIN)/python -m pip install --quiet -e '.[models,metrics,test]'
	touch $@

demo: install
	$(BIN)/radbench demo --output runs/demo

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

# Speed targets (ratios, whole-process and start-up times) measured in one run; writes
# benchmarks/RESULTS.md (not part of test).
bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs build *.egg-info
