"""Region writes from several independent processes (and one shared Client) at once."""

from __future__ import annotations

import os
import subprocess
import sys

import dask.array as da
import numpy as np
import pytest
import zarr

import parallelzarr as pz

N, NX, CHUNK = 1000, 40, 100
CUTS = [0, 230, 470, 730, 1000]  # region edges fall mid-cell: cells 2, 4 and 7 are shared by two writers

SCRIPT = """
import numpy as np, dask.array as da, parallelzarr as pz
lo, hi = {lo}, {hi}
vals = np.full((hi - lo, {nx}), {value}, dtype="i4")
plan = pz.to_zarr(da.from_array(vals, chunks=(7, {nx})), {path!r}, mode="r+", region=(slice(lo, hi), slice(None)),
                  strategy={strategy!r}, scheduler="threads", num_workers=8)
print(plan.variables["array"].locks)
"""


def _expected() -> np.ndarray:
    out = np.zeros((N, NX), dtype="i4")
    for i, (lo, hi) in enumerate(zip(CUTS[:-1], CUTS[1:], strict=True)):
        out[lo:hi] = i + 1
    return out


@pytest.mark.parametrize("round_", range(2))
def test_independent_processes_with_file_locks(tmp_path, round_):
    path = str(tmp_path / "shared.zarr")
    zarr.create_array(path, shape=(N, NX), chunks=(CHUNK, NX), dtype="i4", fill_value=0)
    procs = []
    for i, (lo, hi) in enumerate(zip(CUTS[:-1], CUTS[1:], strict=True)):
        code = SCRIPT.format(lo=lo, hi=hi, nx=NX, value=i + 1, path=path, strategy="lock")
        procs.append(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=os.environ.copy()))
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        assert int(out.strip().splitlines()[-1]) > 0  # each plan locks the cells it shares with a neighbour
    np.testing.assert_array_equal(zarr.open_array(path)[...], _expected())
    assert os.path.isdir(os.path.join(path, ".parallelzarr", "locks"))


def test_plan_reports_cells_shared_with_neighbours(tmp_path):
    path = str(tmp_path / "p.zarr")
    zarr.create_array(path, shape=(N, NX), chunks=(CHUNK, NX), dtype="i4", fill_value=0)
    plan = pz.plan_write(da.zeros((240, NX), chunks=(7, NX), dtype="i4"), path, mode="r+",
                         region=(slice(230, 470), slice(None)), strategy="lock")
    v = plan.variables["array"]
    assert v.partial_cells == 2  # cells 2 and 4 hold data of the neighbours
    assert v.locks >= v.partial_cells
    assert v.lock_backend == "file"


def test_shared_client_distributed_locks(tmp_path, client):
    distributed = pytest.importorskip("distributed")
    path = str(tmp_path / "d.zarr")
    zarr.create_array(path, shape=(N, NX), chunks=(CHUNK, NX), dtype="i4", fill_value=0)
    with distributed.Client(client.scheduler.address, set_as_default=True) as c:
        lazies = []
        for i, (lo, hi) in enumerate(zip(CUTS[:-1], CUTS[1:], strict=True)):
            vals = da.full((hi - lo, NX), i + 1, chunks=(7, NX), dtype="i4")
            lazies.append(pz.to_zarr(vals, path, mode="r+", region=(slice(lo, hi), slice(None)), strategy="lock",
                                     lock="distributed", compute=False))
        c.compute(lazies, sync=True)  # all four writes run at once on the cluster
    np.testing.assert_array_equal(zarr.open_array(path)[...], _expected())
