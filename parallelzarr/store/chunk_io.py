"""Chunk I/O in the calling thread: read regions, write whole stored objects (chunks or shards).

zarr-python runs a ``zarr.Array`` read or write as coroutines on its one event-loop thread; the
merge of each chunk (``np.full`` plus strided copies), its empty-chunk test (a compare through a
void view on zarr 3.1) and the v2 ``tobytes`` copy all ran there, so a rechunk on two cores used
one. Here a dask task does that work itself: per stored object it makes at most one contiguous copy
(none when the task's block already holds the object contiguously), tests it against the fill value
with an early exit, encodes it with the array's own codecs (so the bytes are zarr's), and stores it.

Store operations run in the task's thread for local and in-memory stores (a plain ``LocalStore``'s
objects as files, directly: :mod:`parallelzarr.store.local_files`). Stores bound to zarr's
loop (fsspec: S3, GCS, ...) are driven from there, with at most ``window`` operations in flight per
call: reads prefetch ``window`` objects, writes keep up to ``window`` encoded objects queued. That
bound is what the rechunk memory model counts (:class:`parallelzarr.plan.rechunk.MemoryModel`).

Whatever the fast path does not cover (string and object dtypes, 0-d arrays, writes of part of a
stored object) goes through zarr's own ``setitem``/``getitem``, run in this thread where the store
allows it.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype

from parallelzarr.store.local_files import files_target, read_object
from parallelzarr.store.zarr_compat import (
    FAST_KINDS,
    ArrayCodec,
    array_codec,
    is_rectilinear,
    loop_free,
    run_inline,
    run_on_zarr_loop,
    submit_to_zarr_loop,
)

__all__ = ["read_region", "write_region", "is_fill", "StoreOps"]

Box = tuple[slice, ...]

#: Elements compared at a time by :func:`is_fill` (bounds its boolean scratch to 64 KiB).
_FILL_STEP = 1 << 16


def is_fill(chunk: np.ndarray, fill: Any) -> bool:
    """Whether every element of ``chunk`` equals ``fill``, as zarr's empty-chunk test decides.

    Same semantics as ``NDBuffer.all_equal(fill)`` (zarr 3.1 and 3.4): a zero float fill compares
    bit patterns (``-0.0`` is data), a NaN fill matches NaNs, no fill (``None``) never matches.
    Unlike it, this stops at the first differing slice of 64 Ki elements, so a chunk of data costs
    one small compare instead of a pass over the whole chunk.

    Parameters
    ----------
    chunk
        A contiguous array.
    fill
        The fill value (``fill_value_or_default`` of the chunk's spec).
    """
    if fill is None:
        return False
    flat = chunk.reshape(-1, order="A")
    kind = flat.dtype.kind
    fill_arr = np.asarray(fill)
    nan = False
    if fill_arr.dtype.kind == "f" and fill == 0.0 and kind in "biuf" and flat.dtype.itemsize in (1, 2, 4, 8):
        unsigned = np.dtype(f"u{flat.dtype.itemsize}")
        flat = flat.view(unsigned)
        target: Any = np.asarray(fill, dtype=chunk.dtype).view(unsigned)
    elif kind in "biuf":
        target = fill
        nan = kind == "f" and fill_arr.dtype.kind == "f" and bool(np.isnan(fill_arr))
    else:  # complex, strings, ...: zarr's own comparison
        buf = default_buffer_prototype().nd_buffer.from_numpy_array(chunk)
        return bool(buf.all_equal(fill))
    for i in range(0, flat.size, _FILL_STEP):
        part = flat[i:i + _FILL_STEP]
        if not (np.isnan(part).all() if nan else (part == target).all()):
            return False
    return True


class StoreOps:
    """Store operations of one task, in its thread or on zarr's loop with a bounded window.

    Parameters
    ----------
    store
        A zarr store.
    window
        Most operations in flight at once on zarr's loop (1 = one at a time).
    """

    def __init__(self, store: Any, window: int) -> None:
        self.store = store
        self.inline = loop_free(store)
        # A plain LocalStore (or an append's ReadCache over one): its objects are files, used directly.
        self.files = files_target(store)
        self.window = max(1, int(window))
        self._pending: deque[Any] = deque()

    @property
    def root(self) -> Path | None:
        """The directory whose files hold the store's objects, or ``None`` (through the store)."""
        return None if self.files is None else self.files.root

    def _submit(self, coro: Any) -> None:
        while len(self._pending) >= self.window:
            self._pending.popleft().result()
        self._pending.append(submit_to_zarr_loop(coro))

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` (a zarr Buffer) at ``key``."""
        if self.files is not None:
            self.files.write(key, value)
        elif self.inline:
            run_inline(self.store.set(key, value))
        else:
            self._submit(self.store.set(key, value))

    def delete(self, key: str) -> None:
        """Delete ``key`` (an absent key is fine), as zarr does for an all-fill chunk."""
        if self.files is not None and self.files.delete(key):
            return
        if self.inline:
            run_inline(self.store.delete(key))
        else:
            self._submit(self.store.delete(key))

    def flush(self) -> None:
        """Wait for every queued operation; raise the first failure after all have ended."""
        first: BaseException | None = None
        while self._pending:
            try:
                self._pending.popleft().result()
            except BaseException as exc:  # keep draining: nothing may still be writing after we return
                first = first or exc
        if first is not None:
            raise first

    def drain(self) -> None:
        """Wait for every queued operation, ignoring failures (the caller is already failing)."""
        while self._pending:
            try:
                self._pending.popleft().result()
            except BaseException:  # noqa: S110 - the error being raised says what went wrong
                pass

    def get_many(self, keys: Iterable[str]) -> Iterator[Any]:
        """Yield the Buffer (or None) at each key in order, prefetching ``window`` on zarr's loop."""
        proto = default_buffer_prototype()
        if self.files is not None:
            for key in keys:
                yield read_object(self.files.root, key, proto)
            return
        if self.inline:
            for key in keys:
                yield run_inline(self.store.get(key, prototype=proto))
            return
        ahead: deque[Any] = deque()
        try:
            for key in keys:
                if len(ahead) >= self.window:
                    yield ahead.popleft().result()
                ahead.append(submit_to_zarr_loop(self.store.get(key, prototype=proto)))
            while ahead:
                yield ahead.popleft().result()
        finally:
            for fut in ahead:
                fut.cancel()


def _cells(box: Box, grid: Sequence[int]) -> Iterator[tuple[int, ...]]:
    return itertools.product(*(range(s.start // g, -(-s.stop // g)) for s, g in zip(box, grid, strict=True)))


def _fast(codec: ArrayCodec, ndim: int) -> bool:
    return ndim > 0 and codec.dtype.kind in FAST_KINDS


def read_region(arr: zarr.Array, region: Box, out: np.ndarray | None = None, *, window: int = 1) -> np.ndarray:
    """Read ``arr[region]`` decoding in this thread; into ``out`` when given (no other copy).

    Parameters
    ----------
    arr
        The array.
    region
        One slice (step 1) per axis.
    out
        A writable array of the region's shape and the array's dtype.
    window
        Objects fetched ahead on loop-bound stores.
    """
    if is_rectilinear(arr):  # variable-sized chunks (zarr >= 3.2): zarr maps the region to them
        data = np.asarray(_zarr_get(arr, region))
        if out is not None:
            out[...] = data
        return data if out is None else out
    codec = array_codec(arr)
    shape = tuple(s.stop - s.start for s in region)
    if not _fast(codec, arr.ndim):
        data = np.asarray(_zarr_get(arr, region))
        if out is None:
            return data
        out[...] = data
        return out
    if out is None:
        out = np.empty(shape, dtype=codec.dtype)
    cells = list(_cells(region, codec.grid))
    ops = StoreOps(codec.store, window)
    for coords, data in zip(cells, ops.get_many(codec.key(c) for c in cells), strict=True):
        inner, dest = [], []
        for c, g, s in zip(coords, codec.grid, region, strict=True):
            lo, hi = max(c * g, s.start), min((c + 1) * g, s.stop)
            inner.append(slice(lo - c * g, hi - c * g))
            dest.append(slice(lo - s.start, hi - s.start))
        if data is None:
            out[tuple(dest)] = codec.fill
        elif not codec.decode_into(data, out[tuple(dest)]):  # whole objects decode in place
            out[tuple(dest)] = codec.decode(data)[tuple(inner)]
        del data
    return out


def _aligned(box: Box, grid: Sequence[int], shape: Sequence[int]) -> bool:
    return all(s.start % g == 0 and (s.stop % g == 0 or s.stop == n) for s, g, n in zip(box, grid, shape, strict=True))


def write_region(arr: zarr.Array, box: Box, value: Any, *, window: int = 1) -> None:
    """Write ``value`` into ``arr[box]``, encoding and storing whole objects from this thread.

    Objects (chunks, or shards when sharded) that ``box`` covers whole (clipped at the array's
    end) are encoded here with at most one copy each; objects it covers in part are written by
    zarr's setitem (a read-modify-write), as are dtypes the fast path does not encode.

    Parameters
    ----------
    arr
        The target array.
    box
        One slice (step 1) per axis.
    value
        Array of the box's shape (cast to the array's dtype as zarr casts).
    window
        Encoded objects queued at once on loop-bound stores.
    """
    value = np.asarray(value)
    shape = tuple(s.stop - s.start for s in box)
    if value.shape != shape:  # a scalar or broadcast value: zarr broadcasts it
        _zarr_set(arr, box, value)
        return
    write_parts(arr, box, [(tuple(slice(0, n) for n in shape), value)], window=window)


def write_parts(arr: zarr.Array, box: Box, parts: Sequence[tuple[Box, np.ndarray]], *, window: int = 1) -> None:
    """Write pieces that together tile ``arr[box]``, assembling each stored object once.

    Each object is assembled straight from the pieces into its own contiguous buffer (the one
    copy), so no box-sized buffer is ever built; an object lying whole inside one contiguous
    piece is encoded where it lies, with no copy at all.

    Parameters
    ----------
    arr
        The target array.
    box
        One slice (step 1) per axis: the region the pieces tile.
    parts
        ``(where, piece)``: ``where`` is the piece's place, relative to ``box``.
    window
        Encoded objects queued at once on loop-bound stores.
    """
    if is_rectilinear(arr):  # variable-sized chunks (zarr >= 3.2): zarr maps the box to them
        _zarr_set(arr, box, _assemble(box, parts, None, np.dtype(arr.dtype)))
        return
    codec = array_codec(arr)
    if not _fast(codec, arr.ndim):
        _zarr_set(arr, box, _assemble(box, parts, None, np.dtype(arr.dtype)))
        return
    ops = StoreOps(codec.store, window)
    try:
        for coords in _cells(box, codec.grid):
            cell, inter, extent = [], [], []
            for c, g, s, n in zip(coords, codec.grid, box, codec.shape, strict=True):
                lo, hi = c * g, min((c + 1) * g, n)
                cell.append(slice(lo, hi))
                inter.append(slice(max(lo, s.start), min(hi, s.stop)))
                extent.append(hi - lo)
            if cell != inter:  # part of an object: zarr merges it with what is stored
                _zarr_set(arr, tuple(inter), _assemble(tuple(inter), parts, box, codec.dtype))
                continue
            chunk = _object_buffer(codec, tuple(cell), tuple(extent), box, parts)
            key = codec.key(coords)
            if not codec.write_empty and is_fill(chunk, codec.fill):
                ops.delete(key)
            else:
                ops.set(key, codec.encode(chunk))
            del chunk
    except BaseException:
        ops.drain()  # nothing of this call may still be writing once it has failed
        raise
    ops.flush()


def _overlaps(region: Box, box: Box, parts: Sequence[tuple[Box, np.ndarray]]) -> Iterator[tuple[Box, Box, np.ndarray]]:
    """``(within region, within piece, piece)`` for each piece overlapping ``region`` (array coordinates)."""
    for where, piece in parts:
        dst, src = [], []
        for r, w, b in zip(region, where, box, strict=True):
            lo, hi = max(r.start, b.start + w.start), min(r.stop, b.start + w.stop)
            if hi <= lo:
                break
            dst.append(slice(lo - r.start, hi - r.start))
            src.append(slice(lo - b.start - w.start, hi - b.start - w.start))
        else:
            yield tuple(dst), tuple(src), piece


def _object_buffer(codec: ArrayCodec, cell: Box, extent: tuple[int, ...], box: Box,
                   parts: Sequence[tuple[Box, np.ndarray]]) -> np.ndarray:
    """One stored object's contiguous buffer, padded with the fill value past the array's end."""
    hits = list(_overlaps(cell, box, parts))
    whole = extent == codec.grid
    if whole and len(hits) == 1:
        piece = hits[0][2][hits[0][1]]
        contiguous = piece.flags.c_contiguous if codec.order == "C" else piece.flags.f_contiguous
        if contiguous and piece.dtype == codec.dtype and piece.shape == codec.grid:
            return piece  # already one contiguous object: encode it where it lies
    if whole:
        chunk = np.empty(codec.grid, dtype=codec.dtype, order=codec.order)
    else:  # an object past the array's end: zarr stores it padded with the fill value
        chunk = np.full(codec.grid, codec.fill, dtype=codec.dtype, order=codec.order)
    for dst, src, piece in hits:
        chunk[dst] = piece[src]
    return chunk


def _assemble(region: Box, parts: Sequence[tuple[Box, np.ndarray]], box: Box | None, dtype: np.dtype) -> np.ndarray:
    """The values of ``region`` from the pieces (``box`` None: the pieces tile ``region`` itself)."""
    box = region if box is None else box
    if len(parts) == 1 and region == box:
        return parts[0][1]
    out = np.empty(tuple(s.stop - s.start for s in region), dtype=dtype)
    for dst, src, piece in _overlaps(region, box, parts):
        out[dst] = piece[src]
    return out


def _zarr_set(arr: zarr.Array, box: Box, value: Any) -> None:
    """zarr's own setitem, in this thread where the store allows it."""
    if loop_free(arr.store):
        run_inline(arr.async_array.setitem(box, value))
    else:
        run_on_zarr_loop(arr.async_array.setitem(box, value))


def _zarr_get(arr: zarr.Array, region: Box) -> Any:
    """zarr's own getitem, in this thread where the store allows it."""
    if loop_free(arr.store):
        return run_inline(arr.async_array.getitem(region))
    return run_on_zarr_loop(arr.async_array.getitem(region))
