# Quick start: `make run` (build the environment if needed, then `dvc repro`) and `make test`.
# The environment is a local virtualenv in .venv; torch/torchvision are pinned together first
# (an unpinned torchvision drags in a mismatched torch), then the project and its locked deps.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_PINS := torch==2.14.1 torchvision==0.29.1 "setuptools<82"

export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export PYTHONUNBUFFERED := 1

.PHONY: venv run test test-fast bench bench-search lock clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/pip install -q -c requirements.lock $(TORCH_PINS)
	$(BIN)/pip install -q -c requirements.lock -e ".[dev]"
	$(BIN)/python -c "import clip, decord, torch, torchvision; print('environment ok: torch', torch.__version__)"
	@# The fused scorer's C++ kernel (pipeline/kernels): built ahead here, lazily otherwise; without a
	@# compiler the scorer falls back to the fast form, so a failed build must not fail the venv.
	-$(BIN)/python -m pipeline.kernels.cpu
	touch $@

# A dvc.lock torn by a killed dvc command makes every dvc command fail: put the committed one back first.
run: venv
	$(BIN)/macvr repair-lock
	$(BIN)/dvc repro

test: venv
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q -m "not integration and not slow"

bench: venv
	$(BIN)/python benchmarks/bench_scoring.py

# Two-stage search at 100k videos x 1k queries (~15 min on 2 busy cores; see benchmarks/README.md).
bench-search: venv
	$(BIN)/python benchmarks/bench_search.py

# Re-pin after changing dependencies: writes the exact set installed in .venv.
lock: venv
	$(BIN)/pip freeze --all --exclude-editable | grep -vE '^(pip|macvr)==' > requirements.lock

clean-venv:
	rm -rf $(VENV)
