# pilotstream: one command sets up and runs the demo, one sets up and runs the tests.
#   make demo    venv + packages + local stack (Mosquitto, Kafka, TimescaleDB) + the demo
#   make test    the same setup, then the whole test suite (unit, integration, e2e)
#   make check   format check, lint, types
#   make bench   every benchmark (full); make bench-smoke: short runs, as in CI
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BENCHES := simulate gateway storage kernels processor pipeline baselines

.PHONY: setup stack demo test check bench bench-smoke down status clean-state

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -U pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
	@touch $@

stack: setup
	$(BIN)/pilotstream stack up

demo: stack
	$(BIN)/pilotstream demo

# pytest exit code 5 means "no tests collected": that is a failure here, never a pass.
test: stack
	@$(BIN)/pytest tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

check: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: stack
	@for b in $(BENCHES); do test -f bench/$$b.py && $(BIN)/python -m bench $$b || true; done

bench-smoke: stack
	$(BIN)/python -m bench.smoke $(BENCHES)

status: setup
	$(BIN)/pilotstream stack status

down: setup
	$(BIN)/pilotstream stack down

clean-state: down
	rm -rf .stack
