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
STAMP := $(ENV_DIR)/.align-requirements-stamp

.PHONY: test demo bench install clean-venv

$(PY):
	$(PYTHON) -m venv $(ENV_DIR)

$(STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

# pytest exits with 5 when it collected no tests: here that is a failure, not a pass.
test: $(STAMP)
	@$(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5): failing"; fi; \
	exit $$rc

clean-venv:
	rm -rf $(VENV)
