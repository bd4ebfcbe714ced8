PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m parallelzarr.demo

test: $(STAMP)
	$(PY) -m ruff check parallelzarr tests benchmarks
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(PY) -m pytest -q -x -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check parallelzarr tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_write.py

clean:
	rm -rf $(VENV) demo-output benchmarks/results
