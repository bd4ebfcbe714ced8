"""Independent region writers (a job array by hand): how many values are lost, per scenario.

The xarray recipe: lay down the store with ``to_zarr(template, compute=False)``, then N independent
OS processes each write their own ``region=`` with the default strategy. Regions that end mid-cell
share that cell with a neighbour. Scenarios:

* ``lon-tiles``: 8 processes write longitude tiles of a (T, lat, lon) float32 variable whose zarr
  chunks are map-shaped (whole latitude, 96 longitudes); tiles are 45 wide, so most end mid-chunk.
* ``time-slabs``: 8 processes write time slabs of 91 steps into 24-step chunks.

Prints a table and JSON (``--json PATH``): rounds, values written, values wrong, seconds. Run it on
any checkout (``PYTHONPATH=/path/to/checkout``) to compare versions.

    python benchmarks/region_job_array.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

WRITER = r"""
import sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np, pandas as pd, xarray as xr
import parallelzarr as pz
path, dim, lo, hi, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
stored = xr.open_zarr(path)
part = stored.isel({dim: slice(lo, hi)})[["t2m"]].drop_vars(["time", "latitude", "longitude"])
vals = np.fromfunction(lambda t, y, x: t * 1e4 + y * 1e2 + x, stored["t2m"].shape, dtype="f4")
idx = [slice(None)] * 3
idx[stored["t2m"].dims.index(dim)] = slice(lo, hi)
part["t2m"] = (part["t2m"].dims, vals[tuple(idx)])
part = part.chunk({d: n for d, n in zip(part["t2m"].dims, (13, 40, 40))})
time.sleep(max(0.0, go - time.time()))  # every writer starts at once, as array jobs often do
pz.to_zarr(part, path, region={dim: slice(lo, hi)}, scheduler="threads", num_workers=4)
"""

SCENARIOS = {
    # name: (shape (time, lat, lon), zarr chunks, split dim, number of writers)
    "lon-tiles": ((48, 121, 360), (48, 121, 96), "longitude", 8),
    "time-slabs": ((728, 20, 24), (24, 20, 24), "time", 8),
}


#: Writers import and prepare, then all start writing at this many seconds after launch.
STARTUP_SECONDS = float(os.environ.get("PZ_REGION_STARTUP", "8"))


def oracle(shape: tuple[int, int, int]) -> np.ndarray:
    return np.fromfunction(lambda t, y, x: t * 1e4 + y * 1e2 + x, shape, dtype="f4")


def lay_down(path: str, shape: tuple[int, int, int], chunks: tuple[int, int, int]) -> None:
    import dask.array as da
    import pandas as pd
    import xarray as xr

    import parallelzarr as pz

    warnings.simplefilter("ignore")
    t, y, x = shape
    template = xr.Dataset(
        {"t2m": (("time", "latitude", "longitude"), da.zeros(shape, dtype="f4", chunks=chunks))},
        coords={"time": pd.date_range("2024-01-01", periods=t, freq="h"),
                "latitude": np.linspace(90, -90, y), "longitude": np.arange(x, dtype="f8")},
    )
    pz.to_zarr(template, path, compute=False, encoding={"t2m": {"chunks": chunks}})


def run_round(root: str, name: str, env: dict[str, str]) -> tuple[int, int, float]:
    """One round: lay down, run the writers at once, count wrong values. Returns (wrong, total, seconds)."""
    import xarray as xr

    shape, chunks, dim, n = SCENARIOS[name]
    path = os.path.join(root, f"{name}.zarr")
    lay_down(path, shape, chunks)
    length = shape[("time", "latitude", "longitude").index(dim)]
    cuts = np.linspace(0, length, n + 1).astype(int)
    start = time.perf_counter()
    go = time.time() + STARTUP_SECONDS
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, path, dim, str(lo), str(hi), str(go)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"writer failed: {err[-3000:]}")
    seconds = time.perf_counter() - start
    got = xr.open_zarr(path)["t2m"].values
    want = oracle(shape)
    wrong = int(np.count_nonzero(~(got == want)))
    return wrong, int(want.size), seconds


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), action="append")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    env = os.environ.copy()
    results = []
    for name in args.scenario or sorted(SCENARIOS):
        for r in range(args.rounds):
            with tempfile.TemporaryDirectory() as root:
                wrong, total, seconds = run_round(root, name, env)
            results.append({"scenario": name, "round": r, "wrong": wrong, "total": total, "seconds": round(seconds, 2)})
            print(f"{name:11s} round {r}: {wrong:>9,d} of {total:,d} values wrong ({wrong / total:.1%}), {seconds:.1f} s",
                  flush=True)
    doc = {"pythonpath": env.get("PYTHONPATH"), "results": results}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=2)
    return doc


if __name__ == "__main__":
    main()
