"""Rectilinear (variable-sized) chunk grids: irregular dask chunks stored as they are (zarr >= 3.2).

On zarr < 3.2 (the Python 3.11 venv) asking for one is a clear error before anything is written;
the round trips run on the newest venv (``make test-newest``), where zarr is 3.4.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parallelzarr as pz
from parallelzarr.reports.info import format_info, inspect_store
from parallelzarr.store.rectilinear import RectilinearUnsupportedError
from parallelzarr.store.zarr_compat import RECTILINEAR_SUPPORTED, chunk_edges

needs = pytest.mark.skipif(not RECTILINEAR_SUPPORTED, reason=f"zarr {zarr.__version__} < 3.2 has no rectilinear "
                           "chunk grids (test_unsupported_is_a_clear_error covers this side)")

V = np.arange(72 * 6, dtype="f4").reshape(72, 6)


def _ds(values: np.ndarray = V, chunks: tuple = ((24, 31, 17), (4, 2)), t0: int = 0) -> xr.Dataset:
    return xr.Dataset({"v": (("t", "x"), da.from_array(values, chunks=chunks))},
                      coords={"t": np.arange(t0, t0 + values.shape[0])})


def test_unsupported_is_a_clear_error(tmp_path: Path) -> None:
    """zarr < 3.2: refused, naming the zarr version and the fix; zarr >= 3.2: zarr format 2 is refused."""
    store = tmp_path / "s.zarr"
    fmt = {} if not RECTILINEAR_SUPPORTED else {"zarr_format": 2}
    for kwargs in ({"strategy": "rectilinear"}, {"encoding": {"v": {"chunks": ((24, 31, 17), 6)}}}):
        with pytest.raises(RectilinearUnsupportedError) as info:
            pz.to_zarr(_ds(), str(store), **kwargs, **fmt)
        assert isinstance(info.value, NotImplementedError)
        if RECTILINEAR_SUPPORTED:
            assert "only zarr format 3" in str(info.value)
        else:
            assert f"this is zarr {zarr.__version__}" in str(info.value) and ">= 3.2" in str(info.value)
        assert not store.exists()  # refused before any byte
    with pytest.raises(RectilinearUnsupportedError):
        pz.to_zarr(da.from_array(V, chunks=((5, 67), 6)), str(store), encoding={"chunks": ((5, 67), 6)}, **fmt)


@needs
def test_dataset_strategy_and_encoding(tmp_path: Path) -> None:
    plan = pz.to_zarr(_ds(), str(tmp_path / "a.zarr"), strategy="rectilinear")
    assert plan.variables["v"].strategy == "rectilinear" and plan.variables["v"].edge_cells == 0
    assert any("NOT by zarr-python < 3.2" in n for n in plan.notes)  # the plan says who can read it
    got = xr.open_zarr(str(tmp_path / "a.zarr"))
    assert got["v"].chunks == ((24, 31, 17), (4, 2))
    np.testing.assert_array_equal(got["v"].values, V)
    # encoding= asks per variable; the data is rechunked to those edges.
    pz.to_zarr(_ds(chunks=(10, 6)), str(tmp_path / "b.zarr"), encoding={"v": {"chunks": ((24, 31, 17), 6)}})
    arr = zarr.open_array(str(tmp_path / "b.zarr"), path="v")
    assert chunk_edges(arr) == ((24, 31, 17), (6,))
    np.testing.assert_array_equal(arr[...], V)
    # auto never picks it, however irregular the chunks.
    auto = pz.plan_write(_ds(), str(tmp_path / "c.zarr"))
    assert auto.variables["v"].strategy != "rectilinear"


@needs
def test_append_adds_a_chunk_of_its_own_length(tmp_path: Path) -> None:
    store = tmp_path / "a.zarr"
    pz.to_zarr(_ds(), str(store), strategy="rectilinear")
    last = store / "v" / "c" / "2" / "0"
    before = os.stat(last).st_mtime_ns
    more = np.arange(10 * 6, dtype="f4").reshape(10, 6) + 1000
    pz.to_zarr(_ds(more, chunks=(4, 6), t0=72), str(store), append_dim="t")
    assert chunk_edges(zarr.open_array(str(store), path="v")) == ((24, 31, 17, 10), (4, 2))
    assert os.stat(last).st_mtime_ns == before  # the short last chunk (17) was not rewritten
    got = xr.open_zarr(str(store)).compute()
    np.testing.assert_array_equal(got["v"].values, np.concatenate([V, more]))
    np.testing.assert_array_equal(got["t"].values, np.arange(82))


@needs
def test_rechunk_reads_rectilinear_writes_regular(tmp_path: Path) -> None:
    pz.to_zarr(da.from_array(V, chunks=((5, 60, 7), (6,))), str(tmp_path / "s.zarr"), strategy="rectilinear")
    src = zarr.open_array(str(tmp_path / "s.zarr"))
    assert chunk_edges(src) == ((5, 60, 7), (6,))
    pz.rechunk(src, (10, 3), "10MB", str(tmp_path / "t.zarr")).execute()
    out = zarr.open_array(str(tmp_path / "t.zarr"))
    assert out.chunks == (10, 3)
    np.testing.assert_array_equal(out[...], V)


@st.composite
def _case(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    ndim = draw(st.integers(1, 3))
    chunks = []
    for _ in range(ndim):
        chunks.append(tuple(draw(st.lists(st.integers(1, 9), min_size=1, max_size=5))))
    return tuple(sum(c) for c in chunks), tuple(chunks)


@needs
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_case(), as_dataset=st.booleans())
def test_roundtrip_property(case: tuple, as_dataset: bool) -> None:
    """Any irregular dask chunking is stored as its own grid and reads back equal to numpy."""
    shape, chunks = case
    values = np.random.default_rng(sum(shape)).normal(size=shape).astype("f8")
    data = da.from_array(values, chunks=chunks)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s.zarr")
        if as_dataset:
            dims = [f"d{i}" for i in range(len(shape))]
            pz.to_zarr(xr.Dataset({"v": (dims, data)}), path, strategy="rectilinear")
            got = xr.open_zarr(path)["v"]
            assert got.chunks == chunks
            np.testing.assert_array_equal(got.values, values)
            arr = zarr.open_array(path, path="v")
        else:
            pz.to_zarr(data, path, strategy="rectilinear")
            arr = zarr.open_array(path)
        assert chunk_edges(arr) == chunks
        np.testing.assert_array_equal(arr[...], values)


@needs
def test_region_into_rectilinear_is_refused(tmp_path: Path) -> None:
    store = str(tmp_path / "a.zarr")
    pz.to_zarr(_ds(), store, strategy="rectilinear")
    with pytest.raises(RectilinearUnsupportedError, match="region writes"):
        pz.to_zarr(_ds()[["v"]].isel(t=slice(0, 24)), store, region={"t": slice(0, 24)})
    np.testing.assert_array_equal(xr.open_zarr(store)["v"].values, V)  # untouched


@needs
def test_info_lists_rectilinear_chunk_sizes(tmp_path: Path) -> None:
    """``info`` has no single chunk shape to show for a rectilinear array: it lists each axis's sizes."""
    pz.to_zarr(_ds(), str(tmp_path / "a.zarr"), strategy="rectilinear")
    report = inspect_store(str(tmp_path / "a.zarr"))
    v = next(a for a in report["arrays"] if a["path"] == "v")
    assert v["chunks"] == [[24, 31, 17], [4, 2]] and v["nchunks"] == 6, v
    assert "v" in format_info(report)
