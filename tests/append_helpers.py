"""Data and a subprocess runner shared by the append tests."""

from __future__ import annotations

import os
import subprocess
import sys

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

TIMES = pd.date_range("2020-01-01", periods=10_000, freq="h")


def rows(start: int, n: int, chunk: int, nx: int = 6) -> xr.Dataset:
    """Rows ``start:start+n`` of a deterministic two-variable dataset, dask-chunked by ``chunk``."""
    t = np.arange(start, start + n, dtype="f4")[:, None]
    x = np.arange(nx, dtype="f4")[None, :]
    temp = (t * 10 + x).astype("f4")
    return xr.Dataset(
        {
            "temp": (("time", "x"), da.from_array(temp, chunks=(max(1, chunk), nx)), {"units": "K"}),
            "wind": (("time", "x"), da.from_array((temp * 0.5).astype("f8"), chunks=(max(1, chunk), nx))),
            "elev": (("x",), np.arange(nx, dtype="f4")),
        },
        coords={"time": TIMES[start : start + n], "x": np.arange(nx)},
        attrs={"title": "ingest"},
    )


def data_only(ds: xr.Dataset) -> xr.Dataset:
    """Drop the append log from attributes, to compare with the oracle."""
    ds = ds.copy()
    ds.attrs = {k: v for k, v in ds.attrs.items() if k != "parallelzarr_appends"}
    return ds


SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import parallelzarr as pz
from append_helpers import rows
res = pz.append(rows({start}, {n}, {chunk}), {path!r}, "time", strategy={strategy!r}, scheduler="threads", num_workers=2)
print(res.message)
"""


def run_append_subprocess(path: str, start: int, n: int, chunk: int, *, env: dict[str, str] | None = None,
                          strategy: str = "gather-edges", wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:
    code = SCRIPT.format(tests=os.path.dirname(__file__), start=start, n=n, chunk=chunk, path=path, strategy=strategy)
    full_env = {**os.environ, **(env or {})}
    if wait:
        return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=300)
    return subprocess.Popen([sys.executable, "-c", code], env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
