"""Scale: lazy graph layers, plans of petabyte data, 1 vs 4 workers, a large write and rechunk in budget.

The timings themselves live in ``benchmarks/bench_scale.py``; these tests check the properties the
timings rest on (layers stay lazy, task counts follow from arithmetic, results do not depend on the
number of workers, memory stays within the budget, the data verifies).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr
from conftest import SCALE
from hypothesis import given, settings
from hypothesis import strategies as st

from parallelzarr.entry.write import build_graph, prepare
from parallelzarr.graph.lazy import FAN_IN, GridKeys, chain_sum_layers
from parallelzarr.graph.write import _Axes, _PieceKeys

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "benchmarks" / "bench_scale.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_scale", module)
    spec.loader.exec_module(module)
    return module


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=4))
def test_grid_keys_arithmetic_matches_iteration(shape):
    keys = GridKeys("g", shape)
    listed = list(keys)
    assert len(listed) == len(keys) == int(np.prod(shape))
    assert all(keys.key_at(i) == k and k in keys for i, k in enumerate(listed))
    assert ("g", *(n for n in shape)) not in keys and ("h", *(0 for _ in shape)) not in keys


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_piece_keys_len_and_membership_match_iteration(data):
    ndim = data.draw(st.integers(1, 3))
    shape = tuple(data.draw(st.integers(1, 40)) for _ in range(ndim))
    dchunks = tuple(data.draw(st.integers(1, 12)) for _ in range(ndim))
    zchunks = tuple(data.draw(st.integers(1, 12)) for _ in range(ndim))
    x = da.zeros(shape, chunks=dchunks, dtype="f4")
    from parallelzarr.plan.write import plan_variable

    vplan = plan_variable("v", shape=shape, dims=[f"d{i}" for i in range(ndim)], dtype="float32", itemsize=4,
                          dask_chunks=x.chunks, chunks=zchunks, shards=None, strategy="gather-edges")
    pieces = _PieceKeys("p", _Axes.of(vplan))
    listed = list(pieces)
    assert len(listed) == len(set(listed)) == len(pieces)
    assert all(k in pieces for k in listed)
    assert ("p", *(10**6 for _ in range(2 * ndim))) not in pieces


@pytest.mark.parametrize("shape", [(0,), (1,), (FAN_IN,), (FAN_IN + 1,), (FAN_IN**2 + 3,), (7, 5), (3, 2000), (40, 1, 3)])
def test_chain_sum_adds_every_leaf_once(shape):
    import dask
    from dask._task_spec import DataNode

    leaves = GridKeys("leaf", shape)
    graph = {k: DataNode(k, i) for i, k in enumerate(leaves)}
    layers, final = chain_sum_layers("total", leaves)
    for _, layer in layers:
        graph.update(dict(layer))
    n = len(leaves)
    assert dask.get(graph, final) == n * (n - 1) // 2
    assert len(graph) - n <= n // FAN_IN + 2  # the chain adds about one task per FAN_IN leaves


def test_write_graph_is_lazy_and_counts_match_the_plan(tmp_path):
    """A 200 TB misaligned write: the graph holds a handful of keys; its length matches the plan."""
    x = da.zeros((350640, 137, 721, 1440), chunks=(24, 1, 721, 1440), dtype="f4")
    prepared = prepare(x, str(tmp_path / "era5.zarr"), encoding={"chunks": (50, 1, 721, 1440)}, max_mem="1GB")
    prepared.setup()
    graph = build_graph(prepared).__dask_graph__()
    built = sum(len(layer) for layer in graph.layers.values() if layer.is_materialized())
    assert built <= 4
    vplan = prepared.plan.variables["array"]
    assert vplan.tasks == 960_781  # ceil(350640 / 50) time cells x 137 levels
    write_layer = next(layer for name, layer in graph.layers.items() if name.startswith("pz-write-"))
    assert len(write_layer) == vplan.tasks
    # Nothing but metadata was written.
    assert sorted(p.name for p in (tmp_path / "era5.zarr").rglob("*") if p.is_file()) == ["zarr.json"]


def test_paper_cases_plan_petabytes_without_materialising(tmp_path):
    rows = {r["case"]: r for r in _bench().paper_cases(tmp_path)}
    assert rows["era5-8x200TB-dataset"]["bytes"] > 1.5e15
    assert rows["10M-chunks-misaligned"]["chunks"] == 10_000_000
    assert rows["era5-8x200TB-group"]["tasks"] > 1_000_000
    for row in rows.values():
        # O(layers) keys exist before submission, never O(tasks).
        assert row["materialised_keys"] <= 5 * row["graph_layers"], row
        assert row["materialised_keys"] < 1000 < row["tasks"] or row["tasks"] <= 1000, row


def test_one_and_four_workers_store_identical_bytes(tmp_path):
    bench = _bench()
    one = bench.workers_run(1, 32, tmp_path / "one")
    four = bench.workers_run(4, 32, tmp_path / "four")
    assert [r["op"] for r in one] == ["write", "region", "rechunk"]
    assert [r["digest"] for r in one] == [r["digest"] for r in four]
    assert four[0]["worker_pids"] == 4
    assert all(r["tasks"] > 0 for r in one)


def test_block_crcs_detect_one_changed_value(tmp_path):
    bench = _bench()
    x = np.arange(24 * 6 * 5, dtype="f4").reshape(24, 6, 5)
    arr = zarr.create_array(str(tmp_path / "a.zarr"), shape=x.shape, chunks=(8, 3, 5), dtype="f4")
    arr[:] = x
    want = bench.block_crcs(da.from_array(x, chunks=(8, 3, 5)))
    assert (want == bench.block_crcs(da.from_zarr(str(tmp_path / "a.zarr")))).all()
    arr[9, 4, 2] = -1.0
    got = bench.block_crcs(da.from_zarr(str(tmp_path / "a.zarr")))
    assert want.shape == got.shape == (3, 2, 1, 2)
    assert int((want[..., 0] != got[..., 0]).sum()) == 1 and (want[..., 1] == got[..., 1]).all()


@pytest.mark.slow
def test_large_write_and_rechunk_within_budget(tmp_path):
    """The ``machine`` section of the scale benchmark at reduced size (20 GB in the benchmark)."""
    size = {"small": 300 * 10**6}.get(SCALE, 2 * 10**9)
    budget = 10**9
    result = _bench().run_machine(size, budget, 2, tmp_path)
    rows = {r["op"]: r for r in result["rows"]}
    assert rows["write"]["strategy"] == "gather-edges"
    for op in ("write", "rechunk"):
        assert rows[op]["within_budget"], (op, rows[op]["peak_rss"], result["idle_rss"])
    for op in ("verify-write", "verify-rechunk"):
        assert rows[op]["verified"], rows[op]
