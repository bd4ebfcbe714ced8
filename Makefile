PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pytest worker processes: the suite waits on subprocesses, clusters and disks, so 2 workers on 2 cores
# took 614 s where one took 1025 s (2026-12-08).
TEST_WORKERS ?= 2

.PHONY: venv demo test test-fast test-newest compat compat-rechunker lint typecheck bench clean

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
	$(PY) -m mypy parallelzarr
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --durations=15

# The same suite on the newest other CPython (>= 3.12) this machine has, in its own venv, with the
# newest zarr/xarray/dask the registry serves there; says so and passes when there is none.
test-newest:
	@py="$$(.ci/newest-python)"; \
	if [ -z "$$py" ]; then echo "test-newest: no CPython >= 3.12 besides python3 on this machine; skipped"; \
	else echo "test-newest: $$py"; $(MAKE) test PYTHON="$$py" VENV=.venv-newest; fi

# xarray's own zarr tests on xarray, then with to_zarr routed through parallelzarr (tests/compat/).
compat: $(STAMP) compat-rechunker
	PY=$(PY) tests/compat/run_xarray.sh

# rechunker 0.5.4's tests from its sdist on rechunker (benchmarks/.venv-rechunker) and through parallelzarr.
compat-rechunker: $(STAMP)
	PY=$(PY) tests/compat/rechunker/run.sh

test-fast: $(STAMP)
	$(PY) -m pytest -q -x -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check parallelzarr tests benchmarks

# mypy ([tool.mypy]) and ruff with its complexity rule (C90, [tool.ruff.lint.mccabe]): also part of `test`.
typecheck: $(STAMP)
	$(PY) -m mypy parallelzarr
	$(PY) -m ruff check parallelzarr tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_write.py

clean:
	rm -rf $(VENV) .venv-newest demo-output benchmarks/results
