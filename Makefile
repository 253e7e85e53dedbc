# make test | make demo | make bench -- each installs what it needs first.
#
# Inside an active virtual environment ($VIRTUAL_ENV set) the requirements go there; otherwise
# a virtual environment is created in .venv/ (override with `make VENV=path ...`).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv

ifdef VIRTUAL_ENV
ENV_DIR := $(VIRTUAL_ENV)
else
ENV_DIR := $(VENV)
endif
PY := $(ENV_DIR)/bin/python
RUNTIME_STAMP := $(ENV_DIR)/.align-runtime-stamp
DEV_STAMP := $(ENV_DIR)/.align-dev-stamp

.PHONY: test lint methods demo bench install clean-venv

$(PY):
	$(PYTHON) -m venv $(ENV_DIR)

$(RUNTIME_STAMP): requirements.txt | $(PY)
	$(PY) -m pip install -r requirements.txt
	touch $(RUNTIME_STAMP)

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install -r requirements-dev.txt
	touch $(DEV_STAMP) $(RUNTIME_STAMP)

install: $(RUNTIME_STAMP)

# One style for the whole tree (pyproject.toml): lint, import order and formatting.
# `$(PY) -m ruff format . && $(PY) -m ruff check --fix .` applies it.
lint: $(DEV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# What each registered method (scripts/<method>/env.sh) still lacks: trainer, recipes, step
# scripts, docs section, the methods tables (tools/methods.py). Like lint, it runs before pytest.
methods: $(DEV_STAMP)
	$(PY) -m tools.methods check

# The suite runs in TEST_WORKERS processes (pytest-xdist), a test file per process: most of its
# time is train.py subprocesses importing torch, so two files at once halve it on 2 cores. One
# intra-op thread each: the tensors are tiny and the workers already use the cores.
# pytest exits with 5 when it collected no tests: here that is a failure, not a pass.
TEST_WORKERS ?= 2
test: lint methods
	@OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5): failing"; fi; \
	exit $$rc

# Zero-shot CLIP, ALIGN and the other methods of DEMO_METHODS on the toy world, end to end
# (scripts/demo.sh): prints the Base/New/HM comparison table and writes output/demo/demo.png.
demo: $(RUNTIME_STAMP)
	PYTHON=$(abspath $(PY)) bash scripts/demo.sh

# Speed and memory against the reference computation of the official code, reduced sizes
# (about a minute on 2 CPU cores); the full runs and the measured figures: benchmarks/RESULTS.md.
bench: $(RUNTIME_STAMP)
	$(PY) -m benchmarks.bench_align --preset quick

clean-venv:
	rm -rf $(VENV)
