#!/usr/bin/env bash
# rechunker 0.5.4's own tests (from its sdist), on rechunker (zarr 2 peer venv) and then with its API routed
# to parallelzarr (zarr 3, this project's venv) through tests/compat/rechunker/shim, compared test by test.
# Usage: tests/compat/rechunker/run.sh [OUTDIR] [pytest args...]
# Env: PY (parallelzarr's python), PEER_PY (rechunker's python), RECHUNKER_SDIST, SKIP_BASELINE=1.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
py="${PY:-$root/.venv/bin/python}"
peer_py="${PEER_PY:-$root/benchmarks/.venv-rechunker/bin/python}"
case "$py" in /*) ;; *) py="$PWD/$py" ;; esac  # the tests run from a scratch directory
case "$peer_py" in /*) ;; *) peer_py="$PWD/$peer_py" ;; esac
sdist="${RECHUNKER_SDIST:-/tmp/rk/rechunker-0.5.4.tar.gz}"
out="${1:-$root/benchmarks/results/compat}"
shift || true
mkdir -p "$out"
out="$(cd "$out" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$py" "$here/extract.py" "$sdist" "$work" || exit 2
cd "$work/tests-root"
opts=(-q -p no:cacheprovider -p no:randomly -o addopts= "$@")
if [ -z "${SKIP_BASELINE:-}" ] && [ ! -x "$peer_py" ] && [ -z "${PEER_PY:-}" ]; then
  # The peer: rechunker 0.5.4 on zarr 2, pinned as measured (tests/compat/rechunker/peer-requirements.txt).
  python3 -m venv "$root/benchmarks/.venv-rechunker" \
    && "$peer_py" -m pip install --quiet -r "$here/peer-requirements.txt" || echo "could not build the peer venv" >&2
fi
if [ -z "${SKIP_BASELINE:-}" ]; then
  if [ -x "$peer_py" ]; then
    "$peer_py" -m pytest tests "${opts[@]}" --junitxml="$out/rechunker-baseline.xml" > "$out/rechunker-baseline.log" 2>&1
  else
    echo "no rechunker peer venv at $peer_py: baseline skipped" >&2
  fi
fi
PYTHONPATH="$here/shim" "$py" -m pytest tests "${opts[@]}" -p pz_rechunker_shim --continue-on-collection-errors \
  --junitxml="$out/rechunker-shim.xml" > "$out/rechunker-shim.log" 2>&1
if [ -f "$out/rechunker-baseline.xml" ]; then
  "$py" "$here/compare.py" "$out/rechunker-baseline.xml" "$out/rechunker-shim.xml" --json "$out/rechunker-compare.json"
elif [ -z "${SKIP_BASELINE:-}" ]; then
  echo "no baseline run on rechunker: nothing to compare against (set SKIP_BASELINE=1 to run the shim alone)" >&2
  exit 1
fi
