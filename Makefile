# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-slow test-all lint typecheck pytest demo bench install bi-check

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned: 2.13.0 is a local CPU build here, any other release pulls CUDA wheels.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check florsql grammar replay tests benchmarks examples
	$(PY) -m ruff format --check florsql grammar replay tests benchmarks examples

typecheck: $(STAMP)
	$(PY) -m mypy

# Byte-compiled once here, as pip compiles an installed package: where PYTHONDONTWRITEBYTECODE is
# set (CI machines, containers), every process of the tests and benchmarks would compile
# florsql's sources again.
COMPILE := $(PY) -m compileall -q florsql > /dev/null

pytest: $(STAMP)
	$(COMPILE)
	$(PY) -m pytest -n 2 -q $(PYTEST_ARGS)

test: lint typecheck pytest

# The tests `make test` leaves out (marked slow: more corpus patterns, heavier cases); CI runs half of
# them after it (FLORSQL_SLOW_SHARD, tests/conftest.py). PYTEST_ARGS adds pytest options to either.
test-slow: $(STAMP)
	$(COMPILE)
	$(PY) -m pytest -n 2 -q -m slow $(PYTEST_ARGS)

test-all: test test-slow

demo: $(STAMP)
	$(PY) -m florsql.demo

# Every benchmark writes its figures to benchmarks/results/<name>.json; report.py assembles
# benchmarks/report.md (a table against the goals and FlorDB 4.0.1) and its PNG plots.
# `make bench BENCH=--quick` runs each with small sizes.
BENCH ?=
bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	$(COMPILE)
	rm -rf benchmarks/results
	$(PY) benchmarks/record_overhead.py $(BENCH)
	$(PY) benchmarks/propagate.py $(BENCH)
	$(PY) benchmarks/query_latency.py $(BENCH)
	$(PY) benchmarks/hindsight.py $(BENCH)
	$(PY) benchmarks/fixed_cost.py $(BENCH)
	$(PY) benchmarks/threads.py $(BENCH)
	$(PY) benchmarks/ray_executor.py $(BENCH)
	$(PY) benchmarks/flight.py $(BENCH)
	$(PY) benchmarks/flight_load.py $(BENCH)
	$(PY) benchmarks/report.py

# Superset's Flight SQL dialect (flightsql-dbapi, SQLAlchemy < 2) against `florsql serve`, in its own
# virtualenv (.venv-bi); not part of `make test`.
bi-check: $(STAMP)
	$(PY) benchmarks/bi_check.py
