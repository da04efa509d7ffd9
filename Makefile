PY ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)

.PHONY: test lint typecheck pytest demo bench install

install:
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev]'

lint:
	$(PY) -m ruff check florsql grammar replay tests benchmarks examples
	$(PY) -m ruff format --check florsql grammar replay tests benchmarks examples

typecheck:
	$(PY) -m mypy

pytest:
	$(PY) -m pytest -n 2 -q

test: lint typecheck pytest

demo:
	$(PY) -m florsql.demo

bench:
	$(PY) benchmarks/record_overhead.py
