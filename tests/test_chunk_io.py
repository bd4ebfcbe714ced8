"""Chunk I/O in the worker thread: zarr's bytes exactly, zarr's empty-chunk rule, bounded in-flight work."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import zarr
import zarr.storage
from hypothesis import given, settings
from hypothesis import strategies as st
from numcodecs import Blosc, GZip, Zstd
from zarr.core.buffer import default_buffer_prototype
from zarr.storage import WrapperStore

from parallelzarr import rechunk
from parallelzarr.store.chunk_io import is_fill, read_region, write_parts, write_region
from parallelzarr.store.zarr_compat import array_codec, zarr_loop_thread_id
from parallelzarr.testing import FaultyStore

CASES = {
    "v3-zstd": dict(zarr_format=3),
    "v2-blosc": dict(zarr_format=2),
    "v2-raw": dict(zarr_format=2, compressors=None),
    "v2-raw-F": dict(zarr_format=2, compressors=None, order="F"),
    "v2-lz4": dict(zarr_format=2, compressors=Blosc("lz4", 5, Blosc.SHUFFLE)),
    "v2-blosc-F": dict(zarr_format=2, order="F"),
    "v3-shards": dict(zarr_format=3, chunks=(5, 5), shards=(10, 10)),
    "v3-shards-write-empty": dict(zarr_format=3, chunks=(5, 5), shards=(10, 10),
                                  config={"write_empty_chunks": True}),
    "v3-nan-fill": dict(zarr_format=3, fill_value=np.nan),
    "v3-write-empty": dict(zarr_format=3, config={"write_empty_chunks": True}),
    "v3-int16-fill": dict(zarr_format=3, dtype="i2", fill_value=3),
    "v2-big-endian": dict(zarr_format=2, dtype=">f8"),
    "v3-order-F": dict(zarr_format=3, config={"order": "F"}),
    "v3-bool": dict(zarr_format=3, dtype="bool"),
    "v3-complex": dict(zarr_format=3, dtype="c8"),
}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _data(shape: tuple[int, ...], dtype: str, fill: float) -> np.ndarray:
    data = np.random.default_rng(1).normal(size=shape).astype(dtype)
    data[:7] = fill  # a row of all-fill chunks: zarr deletes (or, with write_empty_chunks, writes) them
    if np.dtype(dtype).kind == "f":
        data[7, 0] = -0.0  # data, not fill, for a zero fill value (zarr compares bit patterns)
    return data


def _pair(tmp_path: Path, name: str) -> tuple[zarr.Array, zarr.Array, np.ndarray, tuple[int, int]]:
    kw = dict(CASES[name])
    dtype = kw.pop("dtype", "f4")
    kw.setdefault("chunks", (7, 5))
    shape = (30, 17)
    a = zarr.create_array(str(tmp_path / "zarr"), shape=shape, dtype=dtype, **kw)
    b = zarr.create_array(str(tmp_path / "ours"), shape=shape, dtype=dtype, **kw)
    data = _data(shape, dtype, kw.get("fill_value", 0))
    a[...] = data
    return a, b, data, tuple(b.shards or b.chunks)


@pytest.mark.parametrize("name", sorted(CASES))
def test_write_region_stores_zarrs_bytes(tmp_path: Path, name: str) -> None:
    a, b, data, grid = _pair(tmp_path, name)
    for t0 in range(0, 30, 2 * grid[0]):
        box = (slice(t0, min(t0 + 2 * grid[0], 30)), slice(0, 17))
        write_region(b, box, data[box], window=3)
    assert _files(tmp_path / "ours") == _files(tmp_path / "zarr")
    got = read_region(b, (slice(3, 29), slice(2, 17)), window=2)
    np.testing.assert_array_equal(got, data[3:29, 2:17])


#: The cases whose whole objects numcodecs decodes straight into the caller's block (the rest go
#: through zarr's codecs): native byte order, no filters, one Blosc/zstd/gzip compressor, no shards,
#: and for v3 C order in memory (v3 stores C order, so an F-ordered block is not its layout; v2
#: stores the array's order).
DECODED_IN_PLACE = {"v3-zstd", "v2-blosc", "v2-blosc-F", "v2-lz4", "v3-nan-fill", "v3-write-empty", "v3-int16-fill",
                    "v3-bool", "v3-complex"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_whole_objects_decode_in_place(tmp_path: Path, name: str) -> None:
    a, _, data, grid = _pair(tmp_path, name)
    codec = array_codec(a)
    assert (codec.direct is not None) == (name in DECODED_IN_PLACE)
    rows = (slice(grid[0], 3 * grid[0]), slice(0, 17))  # whole rows of objects: contiguous in the block
    np.testing.assert_array_equal(read_region(a, rows), data[rows])
    if codec.direct is not None:
        dest = np.empty(grid, dtype=codec.dtype, order=codec.order)
        stored = a.store_path.store
        raw = asyncio.run(stored.get(codec.key((1, 0)), default_buffer_prototype()))
        assert codec.decode_into(raw, dest)
        np.testing.assert_array_equal(dest, data[grid[0]:2 * grid[0], :grid[1]])


@pytest.mark.parametrize("codec", [Blosc("zstd", 3, Blosc.BITSHUFFLE), Zstd(level=5, checksum=True), GZip(level=1)],
                         ids=["blosc-bitshuffle", "zstd-checksum", "gzip"])
def test_v3_compressors_decode_in_place_as_zarr_reads_them(tmp_path: Path, codec) -> None:
    from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

    v3 = {"blosc": BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle", typesize=8),
          "zstd": ZstdCodec(level=5, checksum=True), "gzip": GzipCodec(level=1)}[codec.codec_id]
    data = np.random.default_rng(2).normal(size=(24, 9, 5))
    arr = zarr.create_array(str(tmp_path / "a"), shape=data.shape, chunks=(6, 9, 5), dtype="f8", compressors=v3)
    arr[...] = data
    assert array_codec(arr).direct is not None
    np.testing.assert_array_equal(read_region(arr, (slice(6, 24), slice(0, 9), slice(0, 5))), data[6:])


@pytest.mark.parametrize("name", ["v3-zstd", "v2-raw", "v3-shards"])
def test_write_parts_and_partial_objects_match_zarr(tmp_path: Path, name: str) -> None:
    """Pieces assembled per object, and boxes covering objects in part (zarr merges those)."""
    a, b, data, grid = _pair(tmp_path, name)
    b[...] = a[...]
    # New values over a box whose edges cut objects: written by both paths, then compared.
    box = (slice(3, 26), slice(2, 16))
    new = np.asarray(data[box] * 2 + 1)
    a[box] = new
    cut = 9  # two pieces split inside an object
    parts = [((slice(0, cut), slice(0, 14)), new[:cut].copy()), ((slice(cut, 23), slice(0, 14)), new[cut:].copy())]
    write_parts(b, box, parts, window=2)
    assert _files(tmp_path / "ours") == _files(tmp_path / "zarr")


@pytest.mark.parametrize("fmt", [2, 3])
def test_rechunk_output_is_bit_identical_to_zarrs_own_write(tmp_path: Path, fmt: int) -> None:
    shape = (120, 80, 80)
    data = _data(shape, "f4", 0)
    src = zarr.create_array(str(tmp_path / "src.zarr"), shape=shape, chunks=(2, 80, 80), dtype="f4", zarr_format=fmt)
    src[...] = data
    r = rechunk(src, (120, 8, 8), "2MB", str(tmp_path / "tgt.zarr"))
    assert r.plan.passes == 2
    r.execute(scheduler="threads")
    out = zarr.open_array(str(tmp_path / "tgt.zarr"), mode="r")
    ref = zarr.create_array(str(tmp_path / "ref.zarr"), shape=shape, chunks=out.chunks, dtype="f4",
                            zarr_format=fmt, compressors=out.compressors, fill_value=out.fill_value)
    ref[...] = data
    ours, theirs = _files(tmp_path / "tgt.zarr"), _files(tmp_path / "ref.zarr")
    chunks = [k for k in theirs if not k.startswith((".z", "zarr.json"))]
    assert chunks and {k: ours.get(k) for k in chunks} == {k: theirs[k] for k in chunks}
    assert set(ours) - set(theirs) <= {".zattrs", "zarr.json", ".zarray"}


def _thread_cpu(tid: int) -> float:
    with open(f"/proc/self/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="per-thread CPU needs Linux /proc")
def test_codec_work_stays_off_zarrs_loop_thread(tmp_path: Path) -> None:
    # Large enough that the run's CPU time is many /proc clock ticks (10 ms): at 12 MB it was 5 ticks, and one
    # tick on the loop thread (metadata reads) failed the share by rounding alone.
    shape = (160, 400, 200)
    src = zarr.create_array(str(tmp_path / "src.zarr"), shape=shape, chunks=(4, 400, 200), dtype="f4",
                            zarr_format=2, compressors=Blosc("lz4", 5, Blosc.SHUFFLE))
    src[...] = _data(shape, "f4", 0)
    loop_tid = zarr_loop_thread_id()
    assert loop_tid is not None  # zarr's loop serves the metadata reads above
    tick = 1 / os.sysconf("SC_CLK_TCK")
    loop = total = 0.0
    # Repeated into fresh targets until the run's CPU time is many clock ticks: one run on a fast
    # machine took exactly 20 ticks, and a float sum of them fell just short of a 20-tick floor.
    for run in range(8):
        r = rechunk(src, (160, 20, 20), "32MB", str(tmp_path / f"tgt{run}.zarr"))
        before, cpu0 = _thread_cpu(loop_tid), os.times()
        r.execute(scheduler="threads", num_workers=2)
        cpu1 = os.times()
        loop += _thread_cpu(loop_tid) - before
        total += (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        if total >= 50 * tick:
            break
    # Before chunk I/O moved to the workers this share was 33-36% (decode, merge, empty test, encode).
    assert total >= 20 * tick, total  # enough ticks for a share to mean something
    assert loop <= 0.10 * total + (run + 1) * tick, (loop, total, run)  # a tick of rounding per reading


class _InFlight(WrapperStore):
    """Counts store operations in flight at once (a real store underneath)."""

    def __init__(self, store, state=None) -> None:
        super().__init__(store)
        self.state = state if state is not None else {"now": 0, "most": 0, "lock": threading.Lock()}

    def _with_store(self, store):
        return type(self)(store, self.state)

    async def _track(self, coro):
        with self.state["lock"]:
            self.state["now"] += 1
            self.state["most"] = max(self.state["most"], self.state["now"])
        try:
            await asyncio.sleep(0.002)
            return await coro
        finally:
            with self.state["lock"]:
                self.state["now"] -= 1

    async def set(self, key, value):
        return await self._track(self._store.set(key, value))

    async def get(self, key, prototype, byte_range=None):
        return await self._track(self._store.get(key, prototype, byte_range))


def test_loop_bound_store_keeps_at_most_window_in_flight(tmp_path: Path) -> None:
    """fsspec stores are driven from zarr's loop: reads prefetch and writes queue up to ``window``."""
    inner = zarr.storage.FsspecStore.from_url("file://" + str(tmp_path / "f.zarr"), storage_options={"auto_mkdir": True})
    store = _InFlight(inner)
    arr = zarr.create_array(store, shape=(40, 40), chunks=(4, 4), dtype="f4")
    data = _data((40, 40), "f4", 0)
    write_region(arr, (slice(0, 40), slice(0, 40)), data, window=3)
    assert store.state["most"] == 3  # overlapped, and bounded
    store.state["most"] = 0
    np.testing.assert_array_equal(read_region(arr, (slice(0, 40), slice(0, 40)), window=4), data)
    assert store.state["most"] == 4
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "f.zarr"))[...], data)


@pytest.mark.parametrize("fsspec", [False, True])
def test_store_failure_raises_and_nothing_is_left_writing(tmp_path: Path, fsspec: bool) -> None:
    inner = (zarr.storage.FsspecStore.from_url("file://" + str(tmp_path / "f.zarr"), storage_options={"auto_mkdir": True}) if fsspec
             else zarr.storage.LocalStore(str(tmp_path / "f.zarr")))
    store = FaultyStore(inner, fail_at=5)
    arr = zarr.create_array(store, shape=(40, 40), chunks=(4, 4), dtype="f4")
    with pytest.raises(OSError, match="injected store fault"):
        write_region(arr, (slice(0, 40), slice(0, 40)), _data((40, 40), "f4", 0), window=4)
    written = len(list((tmp_path / "f.zarr" / "c").rglob("*")))
    seen = store.chunk_writes
    threading.Event().wait(0.05)  # any write still queued would land now
    assert len(list((tmp_path / "f.zarr" / "c").rglob("*"))) == written
    assert store.chunk_writes == seen


def test_memory_store_and_strings_fall_back_to_zarr(tmp_path: Path) -> None:
    mem = zarr.storage.MemoryStore()
    arr = zarr.create_array(mem, shape=(9, 9), chunks=(3, 3), dtype="f8")
    write_region(arr, (slice(0, 9), slice(0, 9)), np.arange(81.0).reshape(9, 9))
    np.testing.assert_array_equal(arr[...], np.arange(81.0).reshape(9, 9))
    text = zarr.create_array(str(tmp_path / "s.zarr"), shape=(6,), chunks=(2,), dtype=str)
    write_region(text, (slice(0, 6),), np.array(list("abcdef")))
    assert list(read_region(text, (slice(1, 5),))) == list("bcde")


FILLS = [0.0, -0.0, 1.5, np.nan, None]


@settings(max_examples=200, deadline=None)
@given(dtype=st.sampled_from(["f4", "f8", "f2", "i4", "u1", "bool"]), fill=st.sampled_from(FILLS),
       values=st.lists(st.sampled_from([0.0, -0.0, 1.5, np.nan, 1.0, 2.0]), min_size=1, max_size=40))
def test_is_fill_decides_as_zarr_does(dtype: str, fill, values) -> None:
    dt = np.dtype(dtype)
    if dt.kind != "f" and (fill is not None and not np.isfinite(fill) or any(not np.isfinite(v) for v in values)):
        return  # NaN has no integer or boolean form
    chunk = np.array(values, dtype=np.float64).astype(dt)
    typed = None if fill is None else np.asarray(fill).astype(dt)[()]
    zarrs = default_buffer_prototype().nd_buffer.from_ndarray_like(chunk).all_equal(typed)
    assert is_fill(chunk, typed) == bool(zarrs)


def test_is_fill_exits_early_on_large_chunks() -> None:
    chunk = np.zeros(1 << 24, dtype="f4")
    chunk[0] = 1.0
    assert not is_fill(chunk, np.float32(0))
    chunk[0] = 0.0
    chunk[-1] = np.nan
    assert not is_fill(chunk, np.float32(0))
    chunk[-1] = 0.0
    assert is_fill(chunk, np.float32(0))


def test_works_inside_a_running_event_loop(tmp_path: Path) -> None:
    """A synchronous scheduler inside Jupyter's loop: the private loop cannot run there, zarr's does."""
    arr = zarr.create_array(str(tmp_path / "a.zarr"), shape=(8, 8), chunks=(4, 4), dtype="i4")
    data = np.arange(64, dtype="i4").reshape(8, 8)

    async def inside() -> np.ndarray:
        write_region(arr, (slice(0, 8), slice(0, 8)), data)
        return read_region(arr, (slice(0, 8), slice(0, 8)))

    np.testing.assert_array_equal(asyncio.run(inside()), data)
    np.testing.assert_array_equal(arr[...], data)


def test_inline_loops_are_closed_when_threads_end_and_at_exit(tmp_path: Path) -> None:
    """An unclosed event loop warns when collected (the CLI's stderr once showed that warning)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import gc, threading, numpy as np, zarr
        from parallelzarr.store.chunk_io import write_region
        arr = zarr.create_array({str(tmp_path / "a.zarr")!r}, shape=(8, 8), chunks=(4, 4), dtype="f4")
        def work():
            write_region(arr, (slice(0, 8), slice(0, 8)), np.ones((8, 8), "f4"))
        threads = [threading.Thread(target=work) for _ in range(3)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        del threads
        gc.collect()
        work()  # the main thread's loop lives until exit
    """)
    res = subprocess.run([sys.executable, "-X", "dev", "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "unclosed" not in res.stderr, res.stderr
