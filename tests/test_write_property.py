"""Property tests: any dask chunking, zarr chunking, shards and region read back equal a numpy oracle."""

from __future__ import annotations

import itertools
import tempfile

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parallelzarr as pz

STRATEGIES = ["auto", "gather-edges", "rechunk", "lock"]
_counter = itertools.count()


@st.composite
def chunking(draw, n: int, max_chunk: int):
    """Irregular dask chunks summing to n (any sizes, zarr's rules not required)."""
    out = []
    left = n
    while left > 0:
        c = draw(st.integers(1, max(1, min(left, max_chunk))))
        out.append(c)
        left -= c
    return tuple(out) if out else (0,)


@st.composite
def write_case(draw, max_ndim: int = 4):
    ndim = draw(st.integers(1, max_ndim))
    max_len = {1: 60, 2: 24, 3: 12, 4: 7}[ndim]
    shape = tuple(draw(st.integers(1, max_len)) for _ in range(ndim))
    chunks = tuple(draw(st.integers(1, max(1, n))) for n in shape)
    sharded = draw(st.booleans())
    shards = tuple(c * draw(st.integers(1, 3)) for c in chunks) if sharded else None
    use_region = draw(st.booleans())
    if use_region:
        starts = tuple(draw(st.integers(0, n - 1)) for n in shape)
        stops = tuple(draw(st.integers(s + 1, n)) for s, n in zip(starts, shape, strict=True))
    else:
        starts, stops = (0,) * ndim, shape
    extent = tuple(b - a for a, b in zip(starts, stops, strict=True))
    dchunks = tuple(draw(chunking(n, max(1, n))) for n in extent)
    strategy = draw(st.sampled_from(STRATEGIES))
    return shape, chunks, shards, starts, stops, dchunks, strategy


def run_case(case, root: str, **compute_kwargs) -> None:
    shape, chunks, shards, starts, stops, dchunks, strategy = case
    rng = np.random.default_rng(next(_counter))
    region = tuple(slice(a, b) for a, b in zip(starts, stops, strict=True))
    path = f"{root}/case-{next(_counter)}.zarr"
    oracle = np.full(shape, -1.0, dtype="f4")
    if region != tuple(slice(0, n) for n in shape):
        # the array exists first with known values; cells the region only partly covers must keep them
        base = rng.random(shape, dtype="f4")
        arr = zarr.create_array(path, shape=shape, chunks=chunks, shards=shards, dtype="f4")
        arr[...] = base
        oracle = base.copy()
        values = rng.random(tuple(b - a for a, b in zip(starts, stops, strict=True)), dtype="f4")
        pz.to_zarr(da.from_array(values, chunks=dchunks), path, mode="r+", region=region, strategy=strategy, **compute_kwargs)
    else:
        values = rng.random(shape, dtype="f4")
        enc = {"chunks": chunks}
        if shards:
            enc["shards"] = shards
        pz.to_zarr(da.from_array(values, chunks=dchunks), path, encoding=enc, strategy=strategy, **compute_kwargs)
    oracle[region] = values
    np.testing.assert_array_equal(zarr.open_array(path, mode="r")[...], oracle)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=write_case())
def test_threads_equal_oracle(case):
    with tempfile.TemporaryDirectory() as root:
        run_case(case, root, scheduler="threads", num_workers=8)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=write_case(max_ndim=3))
def test_local_cluster_equal_oracle(case, client, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("cluster"))
    with dask.config.set(scheduler=client):
        run_case(case, root, scheduler=client)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_on_cluster_with_shards(strategy, client, tmp_path):
    x = np.arange(97 * 31, dtype="i4").reshape(97, 31)
    path = str(tmp_path / "s.zarr")
    data = da.from_array(x, chunks=((13, 30, 20, 34), (7, 24)))
    pz.to_zarr(data, path, encoding={"chunks": (10, 8), "shards": (20, 16)}, strategy=strategy, scheduler=client)
    np.testing.assert_array_equal(zarr.open_array(path)[...], x)


def test_distributed_lock_backend(client, tmp_path):
    x = np.arange(200, dtype="f8")
    path = str(tmp_path / "d.zarr")
    with dask.config.set(scheduler=client), client.as_current():
        client_default = client
        import distributed

        # the distributed backend needs the Client to be the default one in this process
        with distributed.Client(client_default.scheduler.address, set_as_default=True) as c:
            plan = pz.to_zarr(da.from_array(x, chunks=33), path, encoding={"chunks": (50,)}, strategy="lock", lock="distributed", scheduler=c)
    assert plan.variables["array"].lock_backend == "distributed"
    assert plan.variables["array"].locks > 0
    np.testing.assert_array_equal(zarr.open_array(path)[...], x)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=write_case(max_ndim=3), nparts=st.integers(1, 5), order=st.randoms(use_true_random=False))
def test_job_array_parts_equal_oracle(case, nparts, order):
    """Any write split into parts, written part by part in any order, equals the oracle; parts are
    balanced to within one write task's bytes and cover every task once."""
    from parallelzarr.entry import parts

    shape, chunks, shards, starts, stops, dchunks, strategy = case
    strategy = "auto" if strategy == "lock" else strategy  # lock plans share cells between tasks: refused
    rng = np.random.default_rng(next(_counter))
    region = tuple(slice(a, b) for a, b in zip(starts, stops, strict=True))
    with tempfile.TemporaryDirectory() as root:
        path = f"{root}/p.zarr"
        values = rng.random(tuple(b - a for a, b in zip(starts, stops, strict=True)), dtype="f4")
        data = da.from_array(values, chunks=dchunks)
        if region != tuple(slice(0, n) for n in shape):
            oracle = rng.random(shape, dtype="f4")
            zarr.create_array(path, shape=shape, chunks=chunks, shards=shards, dtype="f4")[...] = oracle
            kw = {"mode": "r+", "region": region, "strategy": strategy}
        else:
            oracle = np.empty(shape, dtype="f4")
            kw = {"encoding": {"chunks": chunks, **({"shards": shards} if shards else {})}, "strategy": strategy}
        status = parts.init(data, path, nparts, **kw)
        table = status.plan.parts
        assert sum(p["tasks"] for p in table) == sum(
            int(np.prod([len(ax.segments) for ax in v.axes])) for v in status.plan.variables.values())
        assert sum(p["bytes"] for p in table) == status.plan.bytes_total
        v = status.plan.variables["array"]
        biggest = int(np.prod([max((s.size for s in ax.segments), default=0) for ax in v.axes])) * v.itemsize
        mean = status.plan.bytes_total / nparts
        assert all(abs(p["bytes"] - mean) <= biggest for p in table), (table, biggest)
        ids = list(range(nparts))
        order.shuffle(ids)
        for i in ids:
            pz.to_zarr(data, path, part=(i, nparts), scheduler="threads", **kw)
        parts.finalize(path)
        oracle[region] = values
        np.testing.assert_array_equal(zarr.open_array(path, mode="r")[...], oracle)
