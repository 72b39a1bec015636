# tensornic — one Makefile for users, developers and CI.
# The first target that needs Python creates .venv from pyproject.toml (nothing is installed by hand).

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
BOARD   ?= ulx3s
JOBS    ?= 2
PYTEST  := $(PY) -m pytest -n $(JOBS)

.PHONY: all demo test test-all sim quick bitstream program bench lint clean distclean venv

all: test

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tensornic demo

# CI's suite: everything but the tests marked slow (full sweeps, million-vector runs).
test: $(STAMP)
	$(PYTEST) -m "not slow"

test-all: $(STAMP)
	$(PYTEST)

quick: $(STAMP)
	$(PYTEST) -m "not slow" tests

sim: $(STAMP)
	$(PYTEST) -m "not slow" sim

bitstream: $(STAMP)
	$(VENV)/bin/tensornic bitstream $(BOARD)

program: $(STAMP)
	$(VENV)/bin/tensornic program $(BOARD)

bench: $(STAMP)
	$(VENV)/bin/tensornic bench

lint: $(STAMP)
	$(VENV)/bin/tensornic lint

clean:
	rm -rf build .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
