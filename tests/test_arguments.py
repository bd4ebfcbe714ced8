"""Finding 6 of issue 11: arguments never vanish silently, and a file name is not data."""

from __future__ import annotations

import os

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

import parallelzarr as pz
from parallelzarr.errors import DataTypeError, ParallelZarrError


def _ds() -> xr.Dataset:
    data = da.from_array(np.arange(24, dtype="f4").reshape(4, 6), chunks=(2, 3))
    return xr.Dataset({"t2m": (("time", "x"), data)}, coords={"time": np.arange(4)})


def _files(root: str) -> list[str]:
    out = []
    for d, _, names in os.walk(root):
        out.extend(os.path.join(d, n) for n in names)
    return sorted(out)


@pytest.mark.parametrize("bad", [{"grup": "era5"}, {"consolidate": False}, {"safe_chunk": True}])
def test_to_zarr_unknown_keyword_is_type_error(tmp_path, bad):
    target = str(tmp_path / "g.zarr")
    with pytest.raises(TypeError, match=repr(next(iter(bad)))):
        pz.to_zarr(_ds(), target, **bad)
    assert not os.path.exists(target), "nothing may be written when an argument is refused"


def test_to_zarr_compute_keywords_still_pass(tmp_path):
    target = str(tmp_path / "ok.zarr")
    pz.to_zarr(_ds(), target, scheduler="threads", num_workers=2)
    np.testing.assert_array_equal(xr.open_zarr(target)["t2m"].values, _ds()["t2m"].values)


def test_unknown_keyword_on_an_existing_store_leaves_it_unchanged(tmp_path):
    target = str(tmp_path / "s.zarr")
    pz.to_zarr(_ds(), target)
    before = {f: open(f, "rb").read() for f in _files(target)}
    with pytest.raises(TypeError, match="'regoin'"):
        pz.to_zarr(_ds(), target, mode="r+", regoin={"time": slice(0, 2)})
    assert {f: open(f, "rb").read() for f in _files(target)} == before


def test_plan_write_unknown_keyword(tmp_path):
    with pytest.raises(TypeError, match="grup"):
        pz.plan_write(_ds(), str(tmp_path / "p.zarr"), grup="x")


@pytest.mark.parametrize("as_path", [str, os.fsencode, lambda p: __import__("pathlib").Path(p)])
def test_path_as_data_is_refused_with_a_pointer(tmp_path, as_path):
    src = tmp_path / "era5.nc"
    _ds().compute().to_netcdf(src)
    target = str(tmp_path / "f.zarr")
    with pytest.raises(DataTypeError, match="open_mfdataset") as info:
        pz.to_zarr(as_path(str(src)), target)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ParallelZarrError)
    assert "xr.open_dataset" in str(info.value)
    assert not os.path.exists(target)
    with pytest.raises(DataTypeError):
        pz.plan_write(str(src), target)


def test_numpy_string_array_is_still_data(tmp_path):
    # Refusing file names must not refuse real string arrays.
    target = str(tmp_path / "s.zarr")
    values = np.array(["a", "bc", "def"])
    pz.to_zarr(values, target)
    np.testing.assert_array_equal(zarr.open_array(target)[:], values)


# --- xarray's keywords, with xarray's meaning ---------------------------------------------------


def test_group_writes_into_a_subgroup(tmp_path):
    root = str(tmp_path / "g.zarr")
    pz.to_zarr(_ds(), root, group="era5")
    pz.to_zarr(_ds() * 2, root, mode="w-", group="a/b")
    xr.testing.assert_identical(xr.open_zarr(root, group="era5").compute(), _ds().compute())
    xr.testing.assert_identical(xr.open_zarr(root, group="a/b").compute(), (_ds() * 2).compute())
    assert "t2m" not in zarr.open_group(root, mode="r")  # nothing at the root itself
    with pytest.raises(ParallelZarrError):
        pz.to_zarr(_ds(), root, group="../escape")


def test_group_on_a_local_store_object(tmp_path):
    store = zarr.storage.LocalStore(str(tmp_path / "s.zarr"))
    pz.to_zarr(_ds(), store, group="g")
    xr.testing.assert_identical(xr.open_zarr(str(tmp_path / "s.zarr"), group="g").compute(), _ds().compute())


def test_positional_mode_group_encoding_like_xarray(tmp_path):
    path = str(tmp_path / "p.zarr")
    pz.to_zarr(_ds(), path, "w", None, {"t2m": {"chunks": (4, 6)}})
    assert xr.open_zarr(path)["t2m"].encoding["chunks"] == (4, 6)


def test_write_empty_chunks(tmp_path):
    ds = xr.Dataset({"z": (("x",), da.full(40, np.nan, chunks=10, dtype="f4"))})  # NaN: the fill value
    for flag, expect_files in ((False, 0), (True, 4)):
        path = tmp_path / f"e{flag}.zarr"
        pz.to_zarr(ds, str(path), write_empty_chunks=flag, encoding={"z": {"chunks": (10,)}})
        chunk_files = [f for f in _files(str(path / "z")) if "/c/" in f]
        assert len(chunk_files) == expect_files, chunk_files
        np.testing.assert_array_equal(xr.open_zarr(str(path))["z"].values, np.full(40, np.nan, "f4"))


def test_safe_chunks_false_and_align_chunks_still_write_exactly(tmp_path):
    ds = xr.Dataset({"t": (("x",), da.arange(100, chunks=7, dtype="i4"))})
    for kwargs in ({"safe_chunks": False}, {"align_chunks": True}):
        path = str(tmp_path / f"{sorted(kwargs)[0]}.zarr")
        plan = pz.to_zarr(ds, path, encoding={"t": {"chunks": (10,)}}, **kwargs)
        np.testing.assert_array_equal(xr.open_zarr(path)["t"].values, np.arange(100))
        if "align_chunks" in kwargs:
            assert plan.variables["t"].strategy == "rechunk"
    with pytest.raises(TypeError, match="safe_chunks"):
        pz.to_zarr(ds, str(tmp_path / "x.zarr"), safe_chunks="no")


def test_chunkmanager_store_kwargs_are_checked_and_used(tmp_path):
    pz.to_zarr(_ds(), str(tmp_path / "c.zarr"), chunkmanager_store_kwargs={"scheduler": "threads"})
    with pytest.raises(TypeError, match="'lock'"):
        pz.to_zarr(_ds(), str(tmp_path / "d.zarr"), chunkmanager_store_kwargs={"lock": True})
    assert not os.path.exists(tmp_path / "d.zarr")


def test_default_mode_follows_xarray(tmp_path):
    path = str(tmp_path / "m.zarr")
    pz.to_zarr(_ds().isel(time=slice(0, 2)), path)  # mode None -> "w-"
    with pytest.raises(ParallelZarrError):
        pz.to_zarr(_ds().isel(time=slice(0, 2)), path)  # exists
    pz.to_zarr(_ds().isel(time=slice(2, 4)), path, append_dim="time")  # mode None -> "a"
    xr.testing.assert_identical(xr.open_zarr(path).compute(), _ds().compute())


def test_append_through_to_zarr_keeps_encoding_and_checks_format(tmp_path):
    path = str(tmp_path / "a.zarr")
    pz.to_zarr(_ds().isel(time=slice(0, 2)), path, zarr_format=2)
    with pytest.raises(ParallelZarrError, match="zarr format 2"):
        pz.to_zarr(_ds().isel(time=slice(2, 4)), path, mode="a", append_dim="time", zarr_format=3)
    with pytest.raises(ParallelZarrError, match="region"):
        pz.to_zarr(_ds().isel(time=slice(2, 4)), path, mode="a", append_dim="time", region={"time": slice(2, 4)})
    extra = _ds().isel(time=slice(2, 4)).assign(v=lambda d: d["t2m"] * 0 + 1)
    with pytest.raises(ParallelZarrError, match="'t2m'"):  # stored variables keep their encoding
        pz.to_zarr(extra, path, mode="a", append_dim="time", encoding={"t2m": {"dtype": "f8"}})
    before = {f: open(f, "rb").read() for f in _files(path)}
    assert before


@pytest.mark.parametrize("mode", ["w", "w-"])
def test_region_with_a_create_mode_is_refused_like_xarray(tmp_path, mode):
    path = str(tmp_path / "r.zarr")
    pz.to_zarr(_ds(), path)
    before = {f: open(f, "rb").read() for f in _files(path)}
    with pytest.raises(ParallelZarrError, match="cannot set region"):
        pz.to_zarr(_ds().isel(time=slice(0, 2)), path, mode=mode, region={"time": slice(0, 2)})
    assert {f: open(f, "rb").read() for f in _files(path)} == before


def test_zarr_format_follows_zarr_config_like_xarray(tmp_path):
    path = str(tmp_path / "v2.zarr")
    with zarr.config.set({"default_zarr_format": 2}):
        pz.to_zarr(_ds(), path)
    assert zarr.open_group(path, mode="r").metadata.zarr_format == 2
    pz.to_zarr(_ds(), str(tmp_path / "v3.zarr"))
    assert zarr.open_group(str(tmp_path / "v3.zarr"), mode="r").metadata.zarr_format == 3


def test_object_dtype_dask_strings_round_trip(tmp_path):
    ds = xr.Dataset({"s": (("y",), np.array(["foo", "bar"], dtype=object))}).chunk()
    path = str(tmp_path / "o.zarr")
    with pytest.warns(xr.SerializationWarning, match="dtype=object"):  # xarray's own warning, kept
        pz.to_zarr(ds, path)
    xr.testing.assert_identical(xr.open_zarr(path).compute(), ds.compute())


def test_write_empty_chunks_on_append(tmp_path):
    ds = xr.Dataset({"z": (("t",), da.full(20, np.nan, chunks=10, dtype="f4"))}, coords={"t": np.arange(20)})
    path = tmp_path / "ap.zarr"
    pz.to_zarr(ds.isel(t=slice(0, 10)), str(path), encoding={"z": {"chunks": (10,)}}, write_empty_chunks=False)
    pz.to_zarr(ds.isel(t=slice(10, 20)), str(path), append_dim="t", write_empty_chunks=True)
    assert sorted(os.path.basename(f) for f in _files(str(path / "z")) if "/c/" in f) == ["1"]
    assert xr.open_zarr(str(path)).sizes["t"] == 20


def test_refusals_keep_the_builtin_type_xarray_raises(tmp_path):
    ds = _ds()
    ds.attrs["bad"] = {"nested": object()}  # xarray: TypeError("Invalid attribute in Dataset.attrs.")
    with pytest.raises(TypeError) as info:
        pz.to_zarr(ds, str(tmp_path / "t.zarr"))
    assert isinstance(info.value, ParallelZarrError) and "Invalid attribute" in str(info.value)
    assert not os.path.exists(tmp_path / "t.zarr")


@pytest.mark.parametrize("mode", ["w", "w-", "r+"])
def test_append_dim_with_another_mode_is_refused_not_a_replace(tmp_path, mode):
    path = str(tmp_path / "keep.zarr")
    pz.to_zarr(_ds().isel(time=slice(0, 2)), path)
    before = {f: open(f, "rb").read() for f in _files(path)}
    with pytest.raises(ParallelZarrError, match="needs mode='a'"):
        pz.to_zarr(_ds().isel(time=slice(2, 4)), path, mode=mode, append_dim="time")
    assert {f: open(f, "rb").read() for f in _files(path)} == before
    assert xr.open_zarr(path).sizes["time"] == 2


class _NoConsolidatedStore(zarr.storage.MemoryStore):
    """A store kind without consolidated metadata (as some object-store adapters are)."""

    @property
    def supports_consolidated_metadata(self) -> bool:
        return False


def test_store_without_consolidated_metadata_writes_and_appends_unconsolidated():
    store = _NoConsolidatedStore()
    pz.to_zarr(_ds().isel(time=slice(0, 2)), store)  # consolidated=None: not consolidated here
    pz.to_zarr(_ds().isel(time=slice(2, 3)), store, append_dim="time")
    pz.append(_ds().isel(time=slice(3, 4)), store, "time", consolidated=True)  # written unconsolidated, as xarray
    out = xr.open_zarr(store, consolidated=False).compute()
    xr.testing.assert_identical(out, _ds().compute())
    report = pz.repair(store)
    assert report.ok and not report.actions, str(report)


def test_plain_dict_is_an_in_memory_store_like_in_xarray():
    store: dict = {}
    pz.to_zarr(_ds().isel(time=slice(0, 2)), store)
    pz.append(_ds().isel(time=slice(2, 4)), store, "time")
    assert "zarr.json" in store
    xr.testing.assert_identical(xr.open_zarr(store).compute(), _ds().compute())


@pytest.mark.parametrize("name", [0, (4, 5), True])
def test_non_string_names_are_type_errors_like_xarray(tmp_path, name):
    ds = xr.Dataset({name: xr.DataArray(np.zeros((2, 2)))})
    with pytest.raises(TypeError, match="string or None") as info:
        pz.to_zarr(ds, str(tmp_path / "n.zarr"))
    assert isinstance(info.value, ParallelZarrError) and repr(name) in str(info.value)
    assert not os.path.exists(tmp_path / "n.zarr")


def test_mode_a_minus_appends(tmp_path):
    path = str(tmp_path / "am.zarr")
    pz.to_zarr(_ds().isel(time=slice(0, 2)), path)
    pz.to_zarr(_ds().isel(time=slice(2, 4)), path, mode="a-", append_dim="time")
    xr.testing.assert_identical(xr.open_zarr(path).compute(), _ds().compute())
    # without append_dim, xarray's "a-" is "a": the stored variables are overwritten
    pz.to_zarr(_ds() * 2, path, mode="a-")
    xr.testing.assert_identical(xr.open_zarr(path).compute(), (_ds() * 2).compute())
