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


def _era5_netcdf_files(folder, n_files: int = 3):
    """Daily ERA5-like netCDF files as the CDS served them: time as int32 hours since 1900, t2m packed."""
    rng = np.random.default_rng(3)
    paths = []
    for i in range(n_files):
        times = np.datetime64("2001-01-01T00", "ns") + np.arange(24 * i, 24 * (i + 1)) * np.timedelta64(1, "h")
        ds = xr.Dataset(
            {"t2m": (("time", "latitude", "longitude"), (250 + 40 * rng.random((24, 7, 12))).astype("f4"),
                     {"units": "K"}),
             "lsm": (("latitude", "longitude"), rng.random((7, 12)).astype("f4"))},
            coords={"time": times, "latitude": np.linspace(90, -90, 7), "longitude": np.arange(0, 360, 30.0)},
        )
        ds.coords["expver"] = "0001"
        ds.time.encoding = {"units": "hours since 1900-01-01 00:00:00.0", "calendar": "gregorian", "dtype": "int32"}
        path = folder / f"era5_{i}.nc"
        ds.to_netcdf(path, encoding={"t2m": {"dtype": "int16", "scale_factor": 0.002, "add_offset": 270.0,
                                              "_FillValue": -32767}})
        paths.append(path)
    return paths


def test_open_mfdataset_with_int32_times_rechunks(tmp_path) -> None:
    # xarray's lazy time encoding declares the encoding's int32 and computes int64 blocks: their bytes,
    # read as int32, failed the run ("cannot reshape array of size 144 into shape (72,)").
    src = xr.open_mfdataset(_era5_netcdf_files(tmp_path), combine="by_coords", data_vars="minimal",
                            coords="minimal", compat="override")
    assert src.time.encoding["dtype"] == np.dtype("int32")
    target = tmp_path / "t.zarr"
    pz.rechunk(src, {"time": -1, "latitude": 7, "longitude": 4}, "16MB", str(target),
               temp_store=str(tmp_path / "tmp.zarr")).execute(scheduler="threads")
    out = xr.open_zarr(target)
    assert out.time.encoding["dtype"] == np.dtype("int32")
    assert out.time.encoding["units"] == src.time.encoding["units"]
    assert out.t2m.encoding["chunks"] == (72, 7, 4)
    xr.testing.assert_identical(out.load(), src.load())


def test_block_values_the_declared_dtype_cannot_hold_are_refused(tmp_path) -> None:
    import dask.array as da

    from parallelzarr.errors import StoreWriteError
    from parallelzarr.inputs.stored_range import StoredRangeError

    # A dask array declaring int8 whose blocks compute int64 values beyond int8's range.
    data = da.from_array(np.arange(6), chunks=3).map_blocks(lambda b: b * 100, dtype="i1")
    target = tmp_path / "t.zarr"
    with pytest.raises(StoredRangeError, match=r"declared int8 but computed int64 values it cannot hold.*200") as err:
        pz.rechunk(data, (6,), "16MB", str(target)).execute(scheduler="threads")
    assert isinstance(err.value, StoreWriteError) and "is not published" in str(err.value)
    with pytest.raises(FileNotFoundError):  # nothing published: no root document
        zarr.open_array(str(target), mode="r")
    fits = da.from_array(np.arange(6), chunks=3).map_blocks(lambda b: b + 1, dtype="i1")
    out = pz.rechunk(fits, (6,), "16MB", str(tmp_path / "fits.zarr")).execute(scheduler="threads")
    assert out.dtype == np.dtype("i1") and out[:].tolist() == [1, 2, 3, 4, 5, 6]


def test_block_of_the_declared_itemsize_in_another_dtype_is_cast_not_reinterpreted(tmp_path) -> None:
    import dask.array as da

    # Declared int32, computed float32: the same 4 bytes per value, which were stored as raw bits
    # (1.0 read back as 1065353216).
    data = da.from_array(np.arange(6), chunks=3).map_blocks(lambda b: b.astype("f4"), dtype="i4")
    out = pz.rechunk(data, (6,), "16MB", str(tmp_path / "t.zarr")).execute(scheduler="threads")
    assert out.dtype == np.dtype("i4") and out[:].tolist() == [0, 1, 2, 3, 4, 5]
    halves = da.from_array(np.arange(6), chunks=3).map_blocks(lambda b: (b / 2).astype("f4"), dtype="i4")
    with pytest.raises(ValueError, match=r"declared int32 but computed float32 values it cannot hold.*0\.5"):
        pz.rechunk(halves, (6,), "16MB", str(tmp_path / "h.zarr")).execute(scheduler="threads")


def test_dask_block_shorter_than_its_chunks_is_refused_not_padded_with_zeros(tmp_path) -> None:
    import dask.array as da

    from parallelzarr.errors import StoreWriteError

    # The middle block computes 2 values where its chunks declare 3: the rechunk padded it with a zero
    # and stored [1 2 3 4 5 0 7 8 9]; dask.array.store and pz.to_zarr raise on the same array.
    short = da.from_array(np.arange(1, 10), chunks=3).map_blocks(lambda b: b[:2] if b[0] == 4 else b, dtype="i8")
    target = tmp_path / "t.zarr"
    with pytest.raises(ValueError, match=r"block \(1,\) computed shape \(2,\) where its chunks declare \(3,\)") as err:
        pz.rechunk(short, (9,), "16MB", str(target)).execute(scheduler="threads")
    assert isinstance(err.value, StoreWriteError) and "is not published" in str(err.value)
    with pytest.raises(FileNotFoundError):
        zarr.open_array(str(target), mode="r")


def test_dask_array_of_unknown_chunk_sizes_is_refused_before_any_write(tmp_path) -> None:
    import dask.array as da

    from parallelzarr.errors import ChunkSpecError

    x = da.from_array(np.arange(10), chunks=5)
    x = x[x > 2]  # boolean indexing: chunk sizes NaN
    for run in (lambda p: pz.rechunk(x, (4,), "16MB", str(p)).execute(scheduler="threads"),
                lambda p: pz.to_zarr(x, str(p))):
        where = tmp_path / f"{len(list(tmp_path.iterdir()))}.zarr"
        with pytest.raises(ChunkSpecError, match="unknown chunk sizes.*compute_chunk_sizes"):
            run(where)
        assert not where.exists()
    x.compute_chunk_sizes()
    out = pz.rechunk(x, (4,), "16MB", str(tmp_path / "ok.zarr")).execute(scheduler="threads")
    assert out[:].tolist() == list(range(3, 10))


def test_source_block_errors_survive_pickling() -> None:
    import pickle

    from parallelzarr.errors import StoreWriteError
    from parallelzarr.inputs.rechunk_inputs import SourceBlockError, SourceBlockWriteError

    # A distributed worker raises them; the client unpickles them from ``args`` plus their attributes.
    err = pickle.loads(pickle.dumps(SourceBlockError("block (1,) computed shape (2,)", "fix it")))
    assert (str(err), err.problem, err.fix) == ("block (1,) computed shape (2,); fix it", "block (1,) computed shape (2,)", "fix it")
    werr = pickle.loads(pickle.dumps(SourceBlockWriteError("rechunking failed: ...", "the problem", "the fix")))
    assert isinstance(werr, StoreWriteError) and isinstance(werr, ValueError)
    assert (str(werr), werr.problem, werr.fix) == ("rechunking failed: ...", "the problem", "the fix")


def test_short_dask_block_on_a_local_cluster_comes_back_as_store_write_error(tmp_path, client) -> None:
    import dask.array as da

    from parallelzarr.errors import StoreWriteError

    short = da.from_array(np.arange(1, 10), chunks=3).map_blocks(lambda b: b[:2] if b[0] == 4 else b, dtype="i8")
    with pytest.raises(StoreWriteError, match=r"computed shape \(2,\)"):
        pz.rechunk(short, (9,), "16MB", str(tmp_path / "t.zarr")).execute(scheduler=client)
