"""Bad input gets a clear error naming what is wrong, before any byte is written."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from conftest import snapshot

import parallelzarr as pz
from parallelzarr.errors import (
    ChunkSpecError,
    EncodingError,
    MemoryBudgetError,
    ModeError,
    ParallelZarrError,
    RegionError,
    SchemaMismatchError,
    StrategyError,
)


@pytest.fixture
def stored(tmp_path):
    """An existing array store and a Dataset store, with their file digests."""
    arr_path = str(tmp_path / "arr.zarr")
    pz.to_zarr(da.arange(100, chunks=25, dtype="f8"), arr_path, encoding={"chunks": (25,)})
    ds_path = str(tmp_path / "ds.zarr")
    ds = xr.Dataset(
        {"t": (("time", "x"), da.zeros((10, 6), chunks=(5, 6), dtype="f4"))},
        coords={"time": np.arange(10), "x": np.arange(6)},
    )
    pz.to_zarr(ds, ds_path)
    return tmp_path, arr_path, ds_path, ds


def _unchanged(tmp_path, fn, exc, match):
    before = snapshot(tmp_path)
    with pytest.raises(exc, match=match) as info:
        fn()
    assert isinstance(info.value, ParallelZarrError)
    assert snapshot(tmp_path) == before
    return info.value


def test_unknown_array_encoding_key(stored):
    tmp, *_ = stored
    _unchanged(tmp, lambda: pz.to_zarr(da.ones(10, chunks=5), str(tmp / "n.zarr"), encoding={"chunk": 5}), EncodingError, r"unknown encoding key\(s\) \['chunk'\]")
    assert not (tmp / "n.zarr").exists()


def test_unknown_dataset_encoding_key(stored):
    tmp, _, _, ds = stored
    _unchanged(tmp, lambda: pz.to_zarr(ds, str(tmp / "n.zarr"), encoding={"t": {"compresor": None}}), EncodingError, r"\['compresor'\] for 't'")


def test_encoding_for_missing_variable(stored):
    tmp, _, _, ds = stored
    _unchanged(tmp, lambda: pz.to_zarr(ds, str(tmp / "n.zarr"), encoding={"nope": {}}), EncodingError, "'nope'")


def test_wrong_length_chunks(stored):
    tmp, *_ = stored
    _unchanged(tmp, lambda: pz.to_zarr(da.ones((4, 4), chunks=2), str(tmp / "n.zarr"), encoding={"chunks": (2,)}), ChunkSpecError, "1 entries but the array has 2")


def test_shards_not_multiple_of_chunks(stored):
    tmp, *_ = stored
    _unchanged(tmp, lambda: pz.to_zarr(da.ones(40, chunks=10), str(tmp / "n.zarr"), encoding={"chunks": (10,), "shards": (15,)}), ChunkSpecError, "multiples of chunks")


def test_bad_codec_refused_before_write(stored):
    tmp, *_ = stored
    _unchanged(tmp, lambda: pz.to_zarr(da.ones(40, chunks=10), str(tmp / "n.zarr"), encoding={"compressors": "nonsense"}), EncodingError, "zarr refused")
    assert not (tmp / "n.zarr").exists()


def test_region_out_of_bounds(stored):
    tmp, arr, *_ = stored
    _unchanged(tmp, lambda: pz.to_zarr(da.ones(30, chunks=10), arr, mode="r+", region=(slice(80, 110),)), RegionError, "out of bounds for the stored length 100")


def test_region_with_step(stored):
    tmp, arr, *_ = stored
    _unchanged(tmp, lambda: pz.to_zarr(da.ones(10, chunks=10), arr, mode="r+", region=(slice(0, 20, 2),)), RegionError, "step 2")


def test_region_length_mismatch(stored):
    tmp, arr, *_ = stored
    _unchanged(tmp, lambda: pz.to_zarr(da.ones(10, chunks=10), arr, mode="r+", region=(slice(0, 20),)), RegionError, "has length 20 but the data has length 10")


def test_dtype_mismatch_existing(stored):
    tmp, arr, *_ = stored
    _unchanged(tmp, lambda: pz.to_zarr(da.ones(100, chunks=10, dtype="c16"), arr, mode="r+"), SchemaMismatchError, "cannot be stored")


def test_dimension_mismatch_existing(stored):
    tmp, arr, *_ = stored
    _unchanged(tmp, lambda: pz.to_zarr(da.ones((10, 10), chunks=5), arr, mode="r+"), SchemaMismatchError, "2 dimension")


def test_dataset_region_dims_mismatch(stored):
    tmp, _, ds_path, ds = stored
    # (a transposed region is written in the stored order, as xarray does: tests/test_mode_a.py)
    bad = ds.isel(time=slice(0, 5)).rename_dims(x="z")
    _unchanged(tmp, lambda: pz.to_zarr(bad, ds_path, region={"time": slice(0, 5)}), SchemaMismatchError,
               "different dimension names")


def test_mode_w_minus_on_existing(stored):
    """Refused as xarray refuses it: a FileExistsError (and our ModeError, a ValueError), nothing written."""
    tmp, arr, ds_path, ds = stored
    for error in (ModeError, FileExistsError, ValueError):
        _unchanged(tmp, lambda: pz.to_zarr(da.ones(100, chunks=10), arr), error, "already holds data; use mode='w'")
        _unchanged(tmp, lambda: pz.to_zarr(ds, ds_path), error, "already holds data")


def test_unknown_mode_and_strategy(stored):
    tmp, *_ = stored
    _unchanged(tmp, lambda: pz.to_zarr(da.ones(10, chunks=5), str(tmp / "n.zarr"), mode="x"), ModeError, "unknown mode")
    _unchanged(tmp, lambda: pz.to_zarr(da.ones(10, chunks=5), str(tmp / "n.zarr"), strategy="fast"), StrategyError, "unknown strategy 'fast'")


def test_direct_on_misaligned_names_axis_and_fix(stored):
    tmp, *_ = stored
    err = _unchanged(
        tmp, lambda: pz.to_zarr(da.ones(100, chunks=30), str(tmp / "n.zarr"), encoding={"chunks": (25,)}, strategy="direct"),
        StrategyError, "along 'dim_0'",
    )
    assert "gather-edges" in str(err)


def test_lock_strategy_without_backend(stored):
    tmp, *_ = stored
    store = zarr.storage.MemoryStore()
    import dask

    with dask.config.set(scheduler="processes"):
        with pytest.raises(StrategyError, match="gather-edges"):
            pz.to_zarr(da.ones(100, chunks=30), store, encoding={"chunks": (25,)}, strategy="lock")


def test_memory_budget_refused(stored):
    tmp, *_ = stored
    _unchanged(tmp, lambda: pz.to_zarr(da.ones(10_000, chunks=10_000), str(tmp / "n.zarr"), max_mem="1KiB"), MemoryBudgetError, "raise max_mem to at least")


def test_region_auto_unknown_labels(stored):
    tmp, _, ds_path, ds = stored
    new = ds.isel(time=slice(0, 3)).assign_coords(time=[50, 51, 52])
    _unchanged(tmp, lambda: pz.to_zarr(new.drop_vars("x"), ds_path, region="auto"), RegionError, "not in the stored coordinate")
