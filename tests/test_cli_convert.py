"""Convert a multi-file netCDF set with no flags (issue 16), and default chunk sizing (pure)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from append_helpers import SHOW_WARNINGS
from hypothesis import given, settings
from hypothesis import strategies as st

from parallelzarr.plan.chunks import MAX_DEFAULT_CHUNK_BYTES, chunk_limit, fit_chunks


def era5_like(root: Path, months: int = 3, steps: int = 24, ny: int = 30, nx: int = 40) -> list[Path]:
    """ERA5-like monthly files: float32 t2m, int16-packed u10 with _FillValue, static lsm, 0-d expver."""
    lat = np.linspace(90, -90, ny)
    lon = np.arange(nx) * (360 / nx)
    lsm = xr.DataArray((np.random.default_rng(0).random((ny, nx)) > 0.7).astype("f4"), dims=("latitude", "longitude"))
    paths = []
    for m in range(months):
        rng = np.random.default_rng(m + 1)
        t = pd.date_range("2024-01-01", periods=steps, freq="h") + pd.Timedelta(hours=steps * m)
        u10 = (10 * rng.standard_normal((steps, ny, nx))).astype("f4")
        u10[0, 0, :3] = np.nan
        ds = xr.Dataset(
            {
                "t2m": (("time", "latitude", "longitude"), (250 + 30 * rng.random((steps, ny, nx))).astype("f4")),
                "u10": (("time", "latitude", "longitude"), u10),
                "lsm": lsm,
            },
            coords={"time": t, "latitude": lat, "longitude": lon, "expver": "0001"},
        )
        enc = {
            "u10": {"dtype": "int16", "scale_factor": 0.001, "add_offset": 0.0, "_FillValue": -32767,
                    "chunksizes": (steps, ny // 2, nx // 2)},
            "t2m": {"chunksizes": (steps, ny // 2, nx // 2), "zlib": True},
        }
        path = root / f"era5_{m}.nc"
        ds.to_netcdf(path, encoding=enc)
        paths.append(path)
    return paths


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": SHOW_WARNINGS}  # a warning would show on stderr
    return subprocess.run([sys.executable, "-m", "parallelzarr.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_convert_multifile_set_with_no_flags(tmp_path):
    (tmp_path / "nc").mkdir()
    era5_like(tmp_path / "nc")
    res = _cli("write", "nc/*.nc", "out.zarr", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Warning" not in res.stderr, res.stderr
    out = xr.open_zarr(tmp_path / "out.zarr")
    assert out["lsm"].dims == ("latitude", "longitude"), "a static variable must not be broadcast along time"
    assert out["expver"].ndim == 0
    ref = xr.open_mfdataset(str(tmp_path / "nc" / "*.nc"), data_vars="minimal", coords="minimal", compat="no_conflicts",
                            combine="by_coords")
    xr.testing.assert_identical(out.load(), ref.load())


def test_convert_dry_run_fits_a_small_budget_by_splitting_chunks(tmp_path):
    (tmp_path / "nc").mkdir()
    era5_like(tmp_path / "nc", steps=48, ny=60, nx=80)  # one file's t2m block: 48*60*80*4 = 0.9 MB
    res = _cli("write", "nc/*.nc", "out.zarr", "--max-mem", "2MB", "--json", "--dry-run", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    import json

    plan = json.loads(res.stdout)
    t2m = plan["plan"]["variables"]["t2m"]
    assert math.prod(t2m["chunks"]) * 4 <= 2_000_000 // 4
    assert t2m["strategy"] == "direct", "split chunks divide the dask blocks, so the write stays aligned"
    assert not (tmp_path / "out.zarr").exists()


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    chunks=st.lists(st.integers(1, 5000), min_size=1, max_size=4),
    itemsize=st.sampled_from([1, 2, 4, 8]),
    limit=st.integers(1, 2**27),
)
def test_fit_chunks_property(chunks, itemsize, limit):
    out = fit_chunks(chunks, itemsize, limit)
    assert len(out) == len(chunks) and all(1 <= o <= c for o, c in zip(out, chunks, strict=True))
    if math.prod(chunks) * itemsize <= limit:
        assert out == tuple(chunks), "small enough chunks are left alone"
    elif min(out) > 0 and math.prod(out) * itemsize > limit:
        assert all(o == 1 for o in out) and itemsize > limit  # only a single element can exceed it
    divides = [c % o == 0 for o, c in zip(out, chunks, strict=True)]
    assert all(divides) or any(c > 31 for c in chunks)  # uneven splits only for chunks without small divisors


def test_chunk_limit():
    assert chunk_limit(None) == MAX_DEFAULT_CHUNK_BYTES
    assert chunk_limit(256 * 2**20) == MAX_DEFAULT_CHUNK_BYTES
    assert chunk_limit(4 * 2**20) == 2**20
    assert chunk_limit(3) == 1  # never zero
