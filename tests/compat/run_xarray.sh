#!/usr/bin/env bash
# xarray's own zarr tests (shipped in its wheel), on xarray and then through parallelzarr's shim,
# compared test by test; exits 1 when a difference is not documented in xarray_differences.py.
# Usage: tests/compat/run_xarray.sh [OUTDIR] (needs `make venv`).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${PY:-$root/.venv/bin/python}"
[[ "$py" == */* && "$py" != /* ]] && py="$PWD/$py"  # a relative PY must survive the cd below
out="${1:-$root/benchmarks/results/compat}"
[[ "$out" != /* ]] && out="$PWD/$out"
mkdir -p "$out"
cd "$out"
select=(--pyargs xarray.tests.test_backends -k "Zarr or zarr" -q -p no:cacheprovider)
"$py" -m pytest "${select[@]}" --junitxml="$out/xarray-baseline.xml" > "$out/xarray-baseline.log" 2>&1
PYTHONPATH="$here" "$py" -m pytest "${select[@]}" -p pz_xarray_shim --junitxml="$out/xarray-shim.xml" \
  > "$out/xarray-shim.log" 2>&1
"$py" "$here/compare.py" "$out/xarray-baseline.xml" "$out/xarray-shim.xml" --json "$out/xarray-compare.json"
