# Two commands on a fresh machine: `make run` and `make test`.
# Each creates .venv and installs what it needs; nothing else has to be set up.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
BSTAMP  := $(VENV)/.installed-bench
RUN_ARGS ?= --config config/demo.toml --duration 60
BENCH_ARGS ?=

.PHONY: run test lint bench clean venv

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# The bench extra (the CDNOW data set, py-spy) on top of the test extra.
$(BSTAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $(BSTAMP)

venv: $(STAMP)

## run: a bounded run (about a minute) on the embedded defaults: synthetic events (45 simulated days, then live), embedded Valkey, chDB under .scrm/
run: $(STAMP)
	$(BIN)/scrm run $(RUN_ARGS)

## test: lint, type check and the whole test suite (unit + integration against real engines started by fixtures)
test: $(STAMP)
	$(BIN)/ruff check flows scoring rules sinks tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest

## bench: every throughput target beside its baseline measured in the same run (bench/targets.py; BENCH_ARGS=--quick for a smoke run)
bench: $(BSTAMP)
	$(BIN)/python bench/targets.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .scrm .pytest_cache .hypothesis
