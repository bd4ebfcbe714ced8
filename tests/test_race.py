"""The lost-update race that motivates parallelzarr, and that no strategy of ours has it."""

from __future__ import annotations

import dask
import dask.array as da
import pytest
import zarr

import parallelzarr as pz

N = 600_000
DASK_CHUNK = 300
ZARR_CHUNK = 1000


def _ones():
    return da.ones(N, chunks=DASK_CHUNK, dtype="i1")


def test_plain_dask_store_loses_updates(tmp_path):
    """dask.array.store(lock=False) with misaligned chunks loses writes (read-modify-write race)."""
    lost = []
    for attempt in range(3):
        arr = zarr.create_array(str(tmp_path / f"plain{attempt}.zarr"), shape=(N,), chunks=(ZARR_CHUNK,), dtype="i1", fill_value=0)
        with dask.config.set(scheduler="threads", num_workers=16):
            da.store(_ones(), arr, lock=False)
        lost.append(int(N - arr[...].sum(dtype="i8")))
        if lost[-1]:
            break
    assert max(lost) > 0, f"expected lost updates from the unsynchronised write, saw {lost}"


@pytest.mark.parametrize("strategy", ["auto", "gather-edges", "rechunk", "lock"])
def test_parallelzarr_loses_nothing(tmp_path, strategy):
    path = str(tmp_path / f"{strategy}.zarr")
    plan = pz.to_zarr(
        _ones(), path, encoding={"chunks": (ZARR_CHUNK,), "fill_value": 0}, strategy=strategy,
        scheduler="threads", num_workers=16,
    )
    assert plan.variables["array"].edge_cells > 0 or strategy == "rechunk" or plan.variables["array"].strategy == "rechunk"
    assert int(zarr.open_array(path)[...].sum(dtype="i8")) == N
