# tensornic — one Makefile for users, developers and CI.
# The first target that needs Python creates .venv from pyproject.toml (nothing is installed by hand).

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
BOARD   ?= ulx3s
JOBS    ?= 2
PYTEST  := $(PY) -m pytest -n $(JOBS)

.PHONY: all demo test test-all sim quick bitstream bitstream-all program bench lint clean distclean venv

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

# Synthesis, place and route, packing: build/$(BOARD)/ (bitstream, soc_map.json, report.md). Fails (status 1)
# when a clock misses its target or the design does not fit. One board at a time (nextpnr is single-threaded
# here, and memory-hungry on the 85F parts).
bitstream: $(STAMP)
	$(VENV)/bin/tensornic bitstream $(BOARD)

# Every board in turn; a failing board does not stop the others, but the target fails at the end.
bitstream-all: $(STAMP)
	$(VENV)/bin/tensornic bitstream all

# Load build/$(BOARD)/ with openFPGALoader: configuration SRAM, or the flash with FLASH=1 (iCEBreaker: always
# its flash).
program: $(STAMP)
	$(VENV)/bin/tensornic program $(BOARD) $(if $(FLASH),--flash)

bench: $(STAMP)
	$(VENV)/bin/tensornic bench

lint: $(STAMP)
	$(VENV)/bin/tensornic lint

clean:
	rm -rf build .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
