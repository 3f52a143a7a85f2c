# Two entry points for a fresh machine: `make demo` and `make test`.
# Both build their own virtual environment; nothing needs installing by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" -ne 0 ] && command -v sudo)

.PHONY: demo test lint typecheck unit prometheus bench bench-quick lock native clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,sim]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/nim-autoscaler demo

# Debian's prometheus package is needed by the integration tests (a real server on 127.0.0.1).
prometheus:
	@command -v prometheus >/dev/null || { \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends prometheus; }
	@command -v prometheus >/dev/null

lint: $(BIN)/.installed
	$(BIN)/ruff format --check autoscaler tests benchmarks
	$(BIN)/ruff check autoscaler tests benchmarks
	$(BIN)/lint-imports

typecheck: $(BIN)/.installed
	$(BIN)/mypy

unit: $(BIN)/.installed prometheus
	$(BIN)/pytest

test: lint typecheck unit

# The simulator's engine compiled with mypyc (optional: without it the same code runs as Python).
native: $(BIN)/.installed
	$(BIN)/python -m autoscaler.sim.native build

bench: $(BIN)/.installed prometheus native
	$(BIN)/python -m benchmarks

bench-quick: $(BIN)/.installed prometheus native
	$(BIN)/python -m benchmarks --quick

# The image's pinned dependency set (Dockerfile), from pyproject.toml's runtime dependencies
# (no extras). Re-run after changing them; tests/chart/test_lock.py fails while they disagree.
lock: $(BIN)/.installed
	$(BIN)/uv pip compile pyproject.toml --quiet --python-version 3.11 --python-platform linux \
	  --generate-hashes --output-file requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache autoscaler/sim/_engine_native*
