"""The append fast path: what a small append reads and writes, on both zarr formats."""

from __future__ import annotations

import importlib
import json
import threading

import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.storage import LocalStore, WrapperStore

import parallelzarr as pz
from parallelzarr.commit.appendlog import append_log

ap = importlib.import_module("parallelzarr.entry.append")  # the module (pz.append is the function)


class KeyLog(WrapperStore):
    """A real local store that records the key of every get and set (it changes nothing)."""

    def __init__(self, inner, log=None):
        super().__init__(inner)
        self.log = log if log is not None else []
        self._lock = threading.Lock()

    def _with_store(self, inner):
        return type(self)(inner, self.log)

    async def get(self, key, prototype, byte_range=None):
        with self._lock:
            self.log.append(("get", key))
        return await self._store.get(key, prototype, byte_range)

    async def set(self, key, value):
        with self._lock:
            self.log.append(("set", key))
        await self._store.set(key, value)


def _rows(start: int, n: int) -> xr.Dataset:
    v = (np.arange(start, start + n)[:, None] * 10.0 + np.arange(6)[None, :]).astype("f4")
    return xr.Dataset({"v": (("t", "x"), v)}, coords={"t": np.arange(start, start + n), "x": np.arange(6)})


@pytest.mark.parametrize("fmt", [2, 3])
def test_small_append_reads_no_index_chunk_but_the_last_and_writes_each_document_once(tmp_path, fmt):
    path = str(tmp_path / "s.zarr")
    pz.to_zarr(_rows(0, 40), path, encoding={"v": {"chunks": (2, 6)}, "t": {"chunks": (2,)}}, zarr_format=fmt)
    store = KeyLog(LocalStore(path))
    result = pz.append(_rows(40, 3), store, "t")
    assert result.applied and result.offset == 40
    gets = [k for op, k in store.log if op == "get"]
    sets = [k for op, k in store.log if op == "set"]
    index_chunks = {k for k in gets if k.startswith("t/") and not k.rsplit("/", 1)[-1].startswith((".", "zarr"))}
    # 20 index chunks are stored: validation reads the last ones only (xarray's time-free decode
    # peeks at the first and last; we read the last two labels), never all of them.
    assert len(index_chunks) <= 3, sorted(index_chunks)
    docs = [k for k in sets if k.endswith(("zarr.json", ".zarray", ".zmetadata"))]
    assert len(docs) == len(set(docs)), docs  # roll-forward writes each metadata document once
    assert not any("/tasks/" in k for k in sets)  # inline: no resume markers
    # Both kinds of readers see the whole append.
    for consolidated in (True, False):
        got = xr.open_zarr(path, consolidated=consolidated).load()
        assert got.sizes["t"] == 43
        np.testing.assert_array_equal(got.v.values, _rows(0, 43).v.values)
    if fmt == 3:
        root = json.load(open(f"{path}/zarr.json"))
        assert root["consolidated_metadata"]["metadata"]["v"]["shape"] == [43, 6]


@pytest.mark.parametrize("fmt", [2, 3])
def test_drop_in_to_zarr_append_does_not_read_every_stored_label(tmp_path, fmt):
    """``pz.to_zarr(ds, store, append_dim=...)``, xarray's spelling, takes the same short path: its
    checks once read every stored label twice (two full opens), so each append grew with the store."""
    path = str(tmp_path / "s.zarr")
    pz.to_zarr(_rows(0, 40), path, encoding={"v": {"chunks": (2, 6)}, "t": {"chunks": (2,)}}, zarr_format=fmt)
    store = KeyLog(LocalStore(path))
    pz.to_zarr(_rows(40, 3), store, append_dim="t")
    index_chunks = [k for op, k in store.log
                    if op == "get" and k.startswith("t/") and not k.rsplit("/", 1)[-1].startswith((".", "zarr"))]
    assert len(index_chunks) <= 3, sorted(index_chunks)  # of 20 stored (reads 1 now; 40 before)
    # xarray's checks open the store in its format, not probing the other format's documents: the v3
    # store's .zgroup, .zattrs and .zmetadata were read before 2026-12-04, and the v2 store's zarr.json
    # twice (once is the append's own format check under the lease).
    probes = ("zarr.json",) if fmt == 2 else (".zgroup", ".zattrs", ".zmetadata")
    other = [k for op, k in store.log if op == "get" and k in probes]
    assert len(other) <= (1 if fmt == 2 else 0), other
    got = xr.open_zarr(path).load()
    np.testing.assert_array_equal(got.v.values, _rows(0, 43).v.values)
    np.testing.assert_array_equal(got.t.values, np.arange(43))


def test_inline_and_graph_appends_give_the_same_store_and_repeat_checks(tmp_path):
    paths = [str(tmp_path / "inline.zarr"), str(tmp_path / "graph.zarr")]
    for p in paths:
        pz.to_zarr(_rows(0, 5), p, encoding={"v": {"chunks": (4, 6)}})
    assert ap._runs_inline(ap.prepare_append(_rows(5, 7), ap.resolve_store(paths[0], None), "t", strategy="auto",
                                             max_mem=None, encoding=None, static="verify"), None, {}, False)
    pz.append(_rows(5, 7), paths[0], "t")  # inline
    pz.append(_rows(5, 7).chunk({"t": 3}), paths[1], "t", progress=True)  # progress: through the graph
    a, b = (xr.open_zarr(p).load() for p in paths)
    assert a.identical(b)
    records = [append_log(LocalStore(p))[-1] for p in paths]
    # The graph records content digests as it writes; the inline path does not (see _append_inline).
    assert "digests" not in records[0] and len(records[1]["digests"]) == 7
    # Identical rows appended again are skipped, whichever path wrote them (digested from the store
    # where no digest is recorded); a changed row is refused, by its label, in both.
    for p in paths:
        again = pz.append(_rows(5, 7), p, "t")
        assert not again.applied and again.skipped == 7
        changed = _rows(5, 7)
        changed["v"][3] = -7.0
        with pytest.raises(ValueError, match="other content"):
            pz.append(changed, p, "t")
    a, b = (xr.open_zarr(p).load() for p in paths)
    assert a.identical(b) and a.sizes["t"] == 12


def test_labels_inside_the_stored_range_still_read_the_whole_index(tmp_path):
    path = str(tmp_path / "s.zarr")
    pz.to_zarr(_rows(0, 10), path, encoding={"v": {"chunks": (2, 6)}})
    changed = _rows(8, 4)
    changed["v"][:] = -1.0
    with pytest.raises(ValueError, match=r"\b8\b"):  # the changed stored rows are named
        pz.append(changed, path, "t")
    assert xr.open_zarr(path).sizes["t"] == 10


def test_large_appends_keep_the_graph(tmp_path):
    path = str(tmp_path / "s.zarr")
    pz.to_zarr(_rows(0, 4), path)
    prepared = ap.prepare_append(_rows(4, 4), ap.resolve_store(path, None), "t", strategy="auto", max_mem=None,
                                 encoding=None, static="verify")
    assert ap._runs_inline(prepared, None, {"scheduler": "threads"}, False)
    assert not ap._runs_inline(prepared, 100, {}, False)  # more than half the budget
    assert not ap._runs_inline(prepared, None, {"scheduler": "threads"}, True)  # progress bar
    assert not ap._runs_inline(prepared, None, {"scheduler": object()}, False)  # a client's scheduler
    assert zarr.open_group(path).attrs == {}


def test_a_small_appends_inputs_are_computed_once_even_when_variables_share_them(tmp_path):
    import dask
    import dask.array as da

    path = str(tmp_path / "s.zarr")
    pz.to_zarr(_rows(0, 4).assign(w=lambda d: d.v * 2), path)
    calls = []

    def source(block):
        calls.append(block.shape)
        return block

    base = da.from_array(_rows(4, 3).v.values, chunks=(3, 6)).map_blocks(source, dtype="f4")
    new = _rows(4, 3).assign(v=(("t", "x"), base), w=(("t", "x"), base * 2))
    with dask.config.set(scheduler="sync"):
        result = pz.append(new, path, "t")
    assert result.applied
    # Dask's meta inference may call map_blocks' function on empty blocks; the data block runs once.
    assert [c for c in calls if 0 not in c] == [(3, 6)]
    got = xr.open_zarr(path).load()
    np.testing.assert_array_equal(got.w.values, got.v.values * 2)
    np.testing.assert_array_equal(got.v.values[4:], _rows(4, 3).v.values)


def test_resolving_a_path_opens_an_existing_store_in_this_thread_and_creates_no_directory(tmp_path):
    from parallelzarr.store.resolve import resolve_store
    from parallelzarr.store.zarr_compat import loop_free

    path = tmp_path / "s.zarr"
    pz.to_zarr(_rows(0, 4), str(path))
    assert loop_free(resolve_store(str(path)).store)  # no round trip to zarr's loop for its first operation
    missing = tmp_path / "not-yet"
    assert not loop_free(resolve_store(str(missing)).store)
    assert not missing.exists()


def test_writer_threads_are_started_once_and_anew_in_a_forked_child():
    import multiprocessing

    from parallelzarr.store.writer_threads import writer_pool

    pool = writer_pool()
    assert writer_pool() is pool and pool.submit(sum, [1, 2]).result() == 3
    ctx = multiprocessing.get_context("fork")
    parent_id = id(pool)
    reader, writer = ctx.Pipe(duplex=False)

    def child():
        mine = writer_pool()  # the parent's pool has no threads here: a task on it would never run
        writer.send((id(mine) != parent_id, mine.submit(sum, [3, 4]).result(timeout=10)))

    proc = ctx.Process(target=child)
    proc.start()
    assert reader.poll(30)
    assert reader.recv() == (True, 7)
    proc.join(30)
    assert proc.exitcode == 0


def test_shared_writes_return_in_order_and_fail_only_after_every_started_task_ended():
    import time

    from parallelzarr.store.writer_threads import run_shared

    assert run_shared([lambda i=i: i * i for i in range(7)]) == [i * i for i in range(7)]
    assert run_shared([]) == []
    ended, started = [], []

    def slow(i):
        started.append(i)
        time.sleep(0.2)
        ended.append(i)
        return i

    def failing():
        started.append("f")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run_shared([lambda: slow(0), failing, lambda: slow(2), lambda: slow(3), lambda: slow(4)])
    # Every task that started has ended when the failure is raised; none starts after it.
    assert sorted(ended) == sorted(i for i in started if i != "f")
    assert len(started) < 5
