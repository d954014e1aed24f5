# Two commands on a fresh machine: `make run` and `make test`.
# Each creates .venv and installs what it needs; nothing else has to be set up.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
BSTAMP  := $(VENV)/.installed-bench
NSTAMP  := $(VENV)/.compiled
# The per-event path's modules that setup.py compiles with mypyc (flows/core/compiled.py).
NATIVE  := $(shell $(PY) -c 'import runpy; print(*runpy.run_path("flows/core/compiled.py")["sources"]())')
RUN_ARGS ?= --config config/demo.toml --duration 60
BENCH_ARGS ?=

.PHONY: run test bench clean venv

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 'setuptools>=77'

# The packages; the per-event path is compiled by the next rule, not here.
$(STAMP): pyproject.toml setup.py | $(BIN)/python
	SCRM_PURE=1 $(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# The per-event path compiled with mypyc in place (setup.py, about 30 s), again whenever
# one of its sources changes; SCRM_PURE=1 leaves it interpreted.
$(NSTAMP): $(NATIVE) setup.py $(STAMP)
	$(BIN)/python setup.py -q build_ext --inplace
	touch $(NSTAMP)

# The bench extra (the CDNOW data set, py-spy) on top of the test extra.
$(BSTAMP): pyproject.toml | $(BIN)/python
	SCRM_PURE=1 $(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $(BSTAMP)

venv: $(STAMP) $(NSTAMP)

## run: a bounded run (about a minute) on the embedded defaults: synthetic events (45 simulated days, then live), embedded Valkey, chDB under .scrm/
run: $(STAMP) $(NSTAMP)
	$(BIN)/scrm run $(RUN_ARGS)

## test: lint, type check and the whole test suite (unit + integration against real engines started by fixtures)
test: $(STAMP) $(NSTAMP)
	$(BIN)/ruff check flows scoring rules sinks tests bench setup.py
	$(BIN)/ruff format --check flows scoring rules sinks tests bench setup.py
	$(BIN)/mypy
	$(BIN)/python -m pytest

## bench: every throughput target beside its baseline measured in the same run (bench/targets.py; BENCH_ARGS=--quick for a smoke run)
bench: $(BSTAMP) $(NSTAMP)
	$(BIN)/python bench/targets.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .scrm .pytest_cache .hypothesis build
	find flows scoring rules sinks -name '*.so' -delete
