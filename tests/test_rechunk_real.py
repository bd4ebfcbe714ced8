"""Rechunk on the Datasets real archives hold (issue 11, finding 4) and unknown keywords.

ERA5 carries a 0-d string coordinate (``expver``); string variables come fixed-width (``<U``,
``S``) or variable-length; some stores hold coordinates only. Each must rechunk on threads, on a
``distributed.LocalCluster`` and from an object store opened with ``storage_options``.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import zarr

import parallelzarr as pz
from parallelzarr.entry.rechunk import plan_rechunk

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


def _era5_like() -> xr.Dataset:
    ds = xr.Dataset(
        {
            "t2m": (("time", "lat"), np.arange(48, dtype="f4").reshape(12, 4)),
            "station": (("time",), np.array([f"s{i}" * (i % 3 + 1) for i in range(12)])),  # <U
            "flag": (("time",), np.array([b"ok", b"no"] * 6, dtype="S2")),
            "label": (("time",), np.array([f"x{i}" * i for i in range(12)], dtype=object)),  # variable-length
            "scale": ((), np.float32(0.5)),
        },
        coords={"time": np.arange(12), "lat": np.linspace(0, 3, 4)},
    )
    ds.coords["expver"] = "0001"
    return ds


def _check(out_url: str, src: xr.Dataset, time_chunks: int, **open_kw) -> None:
    out = xr.open_zarr(out_url, **open_kw)
    for name in ("t2m", "station", "flag", "label", "time"):
        assert out[name].encoding["chunks"][0] == time_chunks, name
    xr.testing.assert_identical(out.load(), src.load())


def test_strings_and_0d_variables_threads(tmp_path) -> None:
    _era5_like().to_zarr(tmp_path / "src.zarr", mode="w")
    src = xr.open_zarr(tmp_path / "src.zarr")
    r = pz.rechunk(src, {"time": 5}, "16MB", str(tmp_path / "tgt.zarr"))
    r.execute(scheduler="threads")
    res = r.result
    assert res.tasks_run == r.plan.n_tasks
    _check(str(tmp_path / "tgt.zarr"), src, 5)


def test_coordinate_only_dataset(tmp_path) -> None:
    ds = xr.Dataset(coords={"x": np.arange(10), "name": ("x", np.array(list("abcdefghij"), dtype=object))})
    ds.coords["expver"] = "0005"
    ds.to_zarr(tmp_path / "src.zarr", mode="w")
    src = xr.open_zarr(tmp_path / "src.zarr")
    pz.rechunk(src, {"x": 3}, "16MB", str(tmp_path / "tgt.zarr")).execute(scheduler="threads")
    out = xr.open_zarr(tmp_path / "tgt.zarr")
    assert out["name"].encoding["chunks"] == (3,)
    xr.testing.assert_identical(out.load(), src.load())


def test_strings_and_0d_variables_local_cluster(tmp_path) -> None:
    distributed = pytest.importorskip("distributed")
    _era5_like().to_zarr(tmp_path / "src.zarr", mode="w")
    src = xr.open_zarr(tmp_path / "src.zarr")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster, distributed.Client(cluster):
        pz.rechunk(src, {"time": 4}, "16MB", str(tmp_path / "tgt.zarr")).execute()
    _check(str(tmp_path / "tgt.zarr"), src, 4)


def test_dataset_on_s3_uses_storage_options(moto_s3: dict) -> None:
    so = moto_s3
    _era5_like().to_zarr("s3://archive/rechunk-real/src.zarr", mode="w", storage_options=so)
    src = xr.open_zarr("s3://archive/rechunk-real/src.zarr", storage_options=so)
    r = pz.rechunk(src, {"time": 6}, "16MB", "s3://archive/rechunk-real/tgt.zarr", storage_options=so)
    assert so["secret"] not in str(r.plan)
    r.execute(scheduler="threads")
    _check("s3://archive/rechunk-real/tgt.zarr", src, 6, storage_options=so)


def test_unknown_keywords_raise_type_error(tmp_path) -> None:
    arr = zarr.create_array(str(tmp_path / "a.zarr"), shape=(10, 10), chunks=(5, 10), dtype="f4")
    tgt = str(tmp_path / "t.zarr")
    with pytest.raises(TypeError, match="'max_taks'"):
        pz.rechunk(arr, (10, 5), "8MB", tgt, max_taks=5)
    with pytest.raises(TypeError, match=r"'scheduler'.*execute"):
        pz.rechunk(arr, (10, 5), "8MB", tgt, scheduler="threads")
    with pytest.raises(TypeError, match="'consolidated'"):
        plan_rechunk(arr, (10, 5), "8MB", consolidated=True)
    r = pz.rechunk(arr, (10, 5), "8MB", tgt, max_tasks=50)  # a knob is fine
    with pytest.raises(TypeError, match="'keep_tmp'"):
        r.execute(keep_tmp=True)
    assert not any((tmp_path / "t.zarr").iterdir())  # refused before anything was written
    r.execute(scheduler="threads")
    assert zarr.open_array(tgt).chunks == (10, 5)
