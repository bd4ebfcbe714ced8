"""Data and a subprocess runner shared by the append tests."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

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
from typing import Any
sys.path.insert(0, {tests!r})
import parallelzarr as pz
from append_helpers import rows
import importlib
_run = importlib.import_module("parallelzarr.run.append")
_lean = _run._lean_append
def _said(*a, **k):  # says which path planned the append (the full path's protocol: the lean planner declines)
    job = None if {full_path!r} else _lean(*a, **k)
    print("planned by the", "full path" if job is None else "lean path", flush=True)
    return job
_run._lean_append = _said
res = pz.append(rows({start}, {n}, {chunk}), {path!r}, "time", strategy={strategy!r}, scheduler="threads", num_workers=2)
print(res.message)
"""


def run_append_subprocess(path: str, start: int, n: int, chunk: int, *, env: dict[str, str] | None = None,
                          strategy: str = "gather-edges", wait: bool = True,
                          full_path: bool = False) -> subprocess.CompletedProcess | subprocess.Popen:
    code = SCRIPT.format(tests=os.path.dirname(__file__), start=start, n=n, chunk=chunk, path=path, strategy=strategy,
                         full_path=full_path)
    full_env = {**os.environ, **(env or {})}
    if wait:
        return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=300)
    return subprocess.Popen([sys.executable, "-c", code], env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# --- ERA5-like multi-file netCDF sets and the CLI, for the ingest tests ------------------------------

NY, NX = 12, 16


def era5_step(times: pd.DatetimeIndex, seed: int, *, lat_shift: float = 0.0, lsm_flip: bool = False,
              expver: str = "0001") -> xr.Dataset:
    """ERA5-like rows: float32 t2m, int16-packable u10 with NaNs, static lsm, 0-d string expver."""
    rng = np.random.default_rng(seed)
    n = len(times)
    lsm = (np.random.default_rng(0).random((NY, NX)) > 0.7).astype("f4")
    if lsm_flip:
        lsm[0, 0] = 1 - lsm[0, 0]
    u10 = np.round(10 * rng.standard_normal((n, NY, NX)), 3).astype("f4")
    u10[:, 0, :2] = np.nan
    return xr.Dataset(
        {
            "t2m": (("time", "latitude", "longitude"), (250 + 30 * rng.random((n, NY, NX))).astype("f4")),
            "u10": (("time", "latitude", "longitude"), u10),
            "lsm": (("latitude", "longitude"), lsm),
        },
        coords={"time": times, "latitude": np.linspace(60, 30, NY) + lat_shift,
                "longitude": np.arange(NX) * 0.25, "expver": expver},
    )


def write_nc(ds: xr.Dataset, path: Any) -> Any:
    """Write ``ds`` as ERA5's files are: u10 int16-packed with scale_factor and _FillValue."""
    enc = {"u10": {"dtype": "int16", "scale_factor": 0.001, "add_offset": 0.0, "_FillValue": -32767}}
    ds.to_netcdf(path, encoding=enc)
    return path


def era5_set(root: Any, *, files: int = 3, steps: int = 24, start: str = "2024-01-01") -> list[Any]:
    """``files`` netCDF files of ``steps`` hourly rows each under ``root/nc``, continuing each other."""
    from pathlib import Path

    out = Path(root) / "nc"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        t = pd.date_range(start, periods=steps, freq="h") + pd.Timedelta(hours=steps * i)
        paths.append(write_nc(era5_step(t, i + 1), out / f"era5_{i}.nc"))
    return paths


def hourly_file(root: Any, when: str, seed: int, name: str | None = None, **kwargs: Any) -> Any:
    """One hour as its own netCDF file under ``root/hourly`` (``kwargs`` go to :func:`era5_step`)."""
    from pathlib import Path

    out = Path(root) / "hourly"
    out.mkdir(parents=True, exist_ok=True)
    t = pd.DatetimeIndex([pd.Timestamp(when)])
    return write_nc(era5_step(t, seed, **kwargs), out / (name or f"{pd.Timestamp(when):%Y%m%d%H%M}.nc"))


#: Every warning shown once per place (deprecations and ResourceWarning included), so a test sees any on stderr.
SHOW_WARNINGS = "default"


def cli(*args: str, cwd: Any, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m parallelzarr.cli ARGS`` with every warning shown (:data:`SHOW_WARNINGS`)."""
    full = {**os.environ, "PYTHONWARNINGS": SHOW_WARNINGS, **(env or {})}
    return subprocess.run([sys.executable, "-m", "parallelzarr.cli", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout)


LEASE_HOLDER = """
import sys, time
import zarr
from parallelzarr.commit.lease import acquire_lease
store = zarr.storage.LocalStore(sys.argv[1])
lease = acquire_lease(store, sys.argv[1], "append (test holder)")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
lease.release()
print("released", flush=True)
"""


def hold_lease(path: str, seconds: float) -> subprocess.Popen:
    """A second process that takes the store's lease, holds it ``seconds``, then releases it."""
    proc = subprocess.Popen([sys.executable, "-c", LEASE_HOLDER, path, str(seconds)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held", proc.stderr
    return proc


def warnings_of_run(code: str, cwd: str) -> list[tuple[str, str]]:
    """(category, message) of every warning ``code`` raises, run in a fresh interpreter: a user's
    normal run, free of what earlier tests left behind (open files that warn when collected)."""
    import json
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent('''
        import json, sys, warnings
        caught = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            exec(compile(sys.argv[1], "<run>", "exec"), {})
        print(json.dumps([[w.category.__name__, str(w.message)] for w in caught]))
    ''')
    res = subprocess.run([sys.executable, "-c", script, textwrap.dedent(code)], cwd=cwd, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return [tuple(w) for w in json.loads(res.stdout.strip().splitlines()[-1])]
