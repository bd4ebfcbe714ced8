"""Job arrays: init, N independent OS processes (some SIGKILLed and rerun), finalize; as the
cluster-configs/*/job-array.sh scripts run them, through the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import dask
import numpy as np
import pytest
import xarray as xr
import zarr

import parallelzarr as pz
from parallelzarr.entry import parts
from parallelzarr.errors import LeaseError

N = 4
SHAPE = (50, 20, 12)


def _source(path: Path, t0: int = 0, n: int = SHAPE[0]) -> xr.Dataset:
    rng = np.random.default_rng(t0)
    v = rng.normal(size=(n, *SHAPE[1:])).astype("f4")
    ds = xr.Dataset({"v": (("time", "y", "x"), v), "w": (("time",), np.arange(t0, t0 + n, dtype="i8") * 3)},
                    coords={"time": np.arange(t0, t0 + n)})
    ds.to_zarr(path, mode="w", zarr_format=3, consolidated=False, encoding={"v": {"chunks": (7, 20, 12)}})
    return ds


def _cli(*args: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARALLELZARR_")}
    if fault:
        env["PARALLELZARR_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "parallelzarr.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def _spawn(*args: str, fault: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARALLELZARR_")}
    if fault:  # on the sync scheduler the first task is marked done before the second write kills it
        env.update(PARALLELZARR_FAULT=fault, PARALLELZARR_CLUSTER="sync")
    return subprocess.Popen([sys.executable, "-m", "parallelzarr.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _run_array(write_args: list[str], kill: set[int]) -> None:
    """Parts 0..N-1 as independent processes at once; the parts in ``kill`` die at their 2nd chunk write."""
    procs = {i: _spawn(*write_args, "--part", f"{i}/{N}", fault="write:2" if i in kill else None) for i in range(N)}
    for i, p in procs.items():
        out, err = p.communicate(timeout=300)
        if i in kill:
            assert p.returncode == -signal.SIGKILL, err[-2000:]
        else:
            assert p.returncode == 0, err[-3000:]


def test_job_array_new_store(tmp_path: Path) -> None:
    src = tmp_path / "src.zarr"
    oracle = _source(src)
    out = tmp_path / "out.zarr"
    enc = tmp_path / "enc.json"
    enc.write_text(json.dumps({"v": {"chunks": [5, 10, 6]}}))
    common = [str(src), str(out), "--chunks", "time=7", "--encoding", str(enc)]
    r = _cli("init", *common, "--parts", str(N))
    assert r.returncode == 0, r.stderr
    assert "part 3:" in r.stdout  # the plan lists the parts

    _run_array(["write", *common], kill={1, 3})
    with pytest.raises((FileNotFoundError, zarr.errors.NodeNotFoundError, KeyError)):
        xr.open_zarr(str(out))  # nothing published
    refused = _cli("finalize", str(out))
    assert refused.returncode == 1
    assert "2 of 4 part(s) not done: 1, 3" in refused.stderr
    with pytest.raises((FileNotFoundError, zarr.errors.NodeNotFoundError, KeyError)):
        xr.open_zarr(str(out))

    for i in (1, 3):  # the killed parts rerun: they skip what they finished
        r = _cli("write", *common, "--part", f"{i}/{N}", "--json")
        assert r.returncode == 0, r.stderr
        plan = json.loads(r.stdout)["plan"]
        assert plan["tasks_done"] >= 1 and plan["tasks_run"] >= 1
    again = _cli("write", *common, "--part", f"0/{N}", "--json")  # a finished part rerun writes nothing
    assert json.loads(again.stdout)["plan"]["tasks_run"] == 0

    done = _cli("finalize", str(out))
    assert done.returncode == 0, done.stderr
    got = xr.open_zarr(str(out)).compute()
    xr.testing.assert_equal(got, oracle)
    assert got["v"].encoding["chunks"] == (5, 10, 6)
    assert not (out / ".parallelzarr").exists()


def test_job_array_append_commits_at_finalize(tmp_path: Path) -> None:
    first, more = tmp_path / "first.zarr", tmp_path / "more.zarr"
    a = _source(first, 0, 30)
    b = _source(more, 30, 26)
    out = tmp_path / "out.zarr"
    assert _cli("write", str(first), str(out), "--chunks", "time=10").returncode == 0
    common = [str(more), str(out), "--chunks", "time=7"]
    r = _cli("init", *common, "--append-dim", "time", "--parts", str(N))
    assert r.returncode == 0, r.stderr
    _run_array(["append", *common, "--append-dim", "time"], kill={2})
    assert xr.open_zarr(str(out)).sizes["time"] == 30  # readers see the old store
    assert "part(s) not done: 2" in _cli("finalize", str(out)).stderr
    r = _cli("append", *common, "--append-dim", "time", "--part", f"2/{N}")
    assert r.returncode == 0, r.stderr
    assert xr.open_zarr(str(out)).sizes["time"] == 30
    assert _cli("finalize", str(out)).returncode == 0
    xr.testing.assert_equal(xr.open_zarr(str(out)).compute(), xr.concat([a, b], dim="time"))
    # The lease went with the commit: an ordinary append works again.
    c = _source(tmp_path / "c.zarr", 56, 4)
    pz.to_zarr(c, str(out), append_dim="time")
    assert xr.open_zarr(str(out)).sizes["time"] == 60


def test_job_array_region(tmp_path: Path) -> None:
    src = tmp_path / "src.zarr"
    oracle = _source(src)
    out = tmp_path / "out.zarr"
    pz.to_zarr(xr.zeros_like(oracle).chunk({"time": 10}), str(out), encoding={"v": {"chunks": (5, 10, 6)}})
    new = (oracle.isel(time=slice(10, 40)) * 2).chunk({"time": 7})
    kw = dict(region={"time": slice(10, 40)}, scheduler="threads")
    parts.init(new, str(out), 3, region=kw["region"])
    for i in range(3):
        plan = pz.to_zarr(new, str(out), part=(i, 3), **kw)
        assert plan.part == (i, 3)
    parts.finalize(str(out))
    got = xr.open_zarr(str(out)).compute()
    expect = xr.zeros_like(oracle).compute()
    expect["v"][10:40] = new["v"].values
    expect["w"][10:40] = new["w"].values
    np.testing.assert_array_equal(got["v"].values, expect["v"].values)
    np.testing.assert_array_equal(got["w"].values, expect["w"].values)


def test_parts_split_balanced_and_disjoint(tmp_path: Path) -> None:
    """Parts cover every write task once, are balanced by bytes, and each reads only its source blocks."""
    src = tmp_path / "src.zarr"
    _source(src)
    ds = xr.open_zarr(str(src), chunks={"time": 7})
    plan = pz.plan_write(ds, str(tmp_path / "o.zarr"), encoding={"v": {"chunks": (5, 10, 6)}}, parts=N)
    table = plan.parts
    assert sum(p["tasks"] for p in table) == plan.tasks
    assert sum(p["bytes"] for p in table) == plan.bytes_total
    sizes = [p["bytes"] for p in table]
    assert max(sizes) - min(sizes) <= 2 * max(plan.variables["v"].peak_memory_per_task, 1)
    assert "job array: 4 part(s)" in str(plan)
    spans, _ = parts.split_plan(plan, N)
    covered = sorted(r for s in spans for r in range(*s["v"]))
    assert covered == list(range(plan.variables["v"].tasks))

    # A part's graph, culled as dask.compute culls it, reads only the source chunks its cells need.
    from parallelzarr.entry.write import build_graph, prepare
    from parallelzarr.run.resume import with_resume

    reads = []
    for i in range(N):
        prepared = prepare(ds, str(tmp_path / "o.zarr"), mode="w", encoding={"v": {"chunks": (5, 10, 6)}})
        prepared.setup()  # the metadata of the target arrays the graph opens
        prepared = with_resume(prepared, zarr.storage.LocalStore(str(tmp_path / "o.zarr")), spans=spans[i])
        graph = build_graph(prepared)
        (opt,) = dask.optimize(graph)
        keys = [k for k in dict(opt.__dask_graph__()) if isinstance(k, tuple) and str(k[0]).startswith("open_dataset-v")]
        reads.append(len(keys))
    nblocks = ds["v"].data.numblocks[0]
    assert all(0 < r < nblocks for r in reads), reads
    assert sum(reads) <= nblocks + 2 * (N - 1), (reads, nblocks)  # neighbours share at most the boundary block


def test_part_errors(tmp_path: Path) -> None:
    ds = xr.Dataset({"v": (("t",), np.arange(10.0))}).chunk({"t": 5})
    out = str(tmp_path / "o.zarr")
    with pytest.raises(parts.PartsError, match="run init first"):
        pz.to_zarr(ds, out, part=(0, 2))
    with pytest.raises(parts.PartsError, match="0 <= i < N"):
        pz.to_zarr(ds, out, part="2/2")
    parts.init(ds, out, 2)
    assert "already initialised" in parts.init(ds, out, 2).message  # init again: nothing more
    with pytest.raises(parts.PartsError, match="another write"):
        parts.init(ds * 2, out, 3)
    with pytest.raises(parts.PartsError, match="differs from the one initialised"):
        pz.to_zarr(ds.chunk({"t": 2}), out, part=(0, 2), strategy="gather-edges")
    with pytest.raises(parts.PartsError, match="in 2 part"):
        pz.to_zarr(ds, out, part=(0, 3))
    # The same plan with values stored otherwise (CF packing) would write wrong values: refused.
    with pytest.raises(parts.PartsError, match="differs from the one initialised"):
        pz.to_zarr(ds, out, part=(0, 2), encoding={"v": {"scale_factor": 0.5}})


def test_abort_an_append_job_array(tmp_path: Path) -> None:
    """An abandoned job-array append can be given up: lease released, unpublished rows deleted."""
    out = str(tmp_path / "o.zarr")
    a = xr.Dataset({"v": (("t",), np.arange(10.0))}, coords={"t": np.arange(10)}).chunk({"t": 5})
    b = xr.Dataset({"v": (("t",), np.arange(10.0, 20.0))}, coords={"t": np.arange(10, 20)}).chunk({"t": 5})
    pz.to_zarr(a, out, encoding={"v": {"chunks": (5,)}})
    parts.init(b, out, 2, append_dim="t")
    pz.to_zarr(b, out, part=(0, 2), append_dim="t")
    assert (Path(out) / "v" / "c" / "2").exists()  # rows beyond the stored shape, unpublished
    with pytest.raises(LeaseError):  # the job array holds the lease
        pz.to_zarr(b, out, append_dim="t")
    r = _cli("finalize", out, "--abort")
    assert r.returncode == 0 and "the append was dropped" in r.stdout, r.stderr
    assert not (Path(out) / "v" / "c" / "2").exists()
    xr.testing.assert_equal(xr.open_zarr(out).compute(), a.compute())
    pz.to_zarr(b, out, append_dim="t")  # an ordinary append works again
    xr.testing.assert_equal(xr.open_zarr(out).compute(), xr.concat([a, b], dim="t").compute())
