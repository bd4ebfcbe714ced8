"""The one place that touches zarr-python's private API (works on zarr 3.1.x and 3.4.x).

Chunk I/O (:mod:`parallelzarr.store.chunk_io`) encodes, decodes and stores chunks from the calling
(dask worker) thread instead of zarr's single event-loop thread. It needs, per array: the codec
pipeline, the spec of one stored object (chunk or shard), its store key, and a way to run zarr's
coroutines. Everything here is read from public attributes where zarr has them; the private names
are ``zarr.core.sync._get_loop`` (zarr's I/O loop), ``fill_value_or_default`` (which moved
between 3.1 and 3.4), ``ArraySpec`` and ``AsyncArray.codec_pipeline``.

zarr's codecs are coroutines that hand their CPU work to ``asyncio.to_thread``. Run on a private
event loop whose default executor runs each call inline, the same coroutines execute entirely in
the calling thread: zarr's own encoders, so the bytes are zarr's bytes, with no hop to its loop.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import dataclasses
import os
import selectors
import sys
import threading
import weakref
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import zarr
import zarr.storage
from numcodecs.compat import ensure_bytes
from zarr.core.array_spec import ArraySpec
from zarr.core.buffer import default_buffer_prototype

try:  # zarr >= 3.2 moved it (the ignore: mypy sees only the installed zarr's half of this pair)
    from zarr.core.chunk_utils import (  # type: ignore[import-not-found, unused-ignore]
        fill_value_or_default as _fill_value_or_default,
    )
except ImportError:  # zarr 3.1
    from zarr.core.codec_pipeline import fill_value_or_default as _fill_value_or_default

__all__ = ["ArrayCodec", "array_codec", "run_inline", "run_on_zarr_loop", "submit_to_zarr_loop",
           "loop_free", "run_for", "open_group_for", "group_member", "zarr_loop_thread_id"]

T = TypeVar("T")


class _InlineExecutor(concurrent.futures.ThreadPoolExecutor):
    """An executor that runs every call in the submitting thread (no worker threads ever start).

    A ``ThreadPoolExecutor`` subclass because ``loop.set_default_executor`` requires one.
    """

    def __init__(self) -> None:
        super().__init__(max_workers=1)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the awaiting coroutine, as a thread pool would
            fut.set_exception(exc)
        return fut


class _LoopHolder:
    """One thread's inline loop; closes it when the thread's storage is freed, or at exit.

    A select()-based selector holds no kernel object, so a loop inherited through fork can be
    closed in the child without touching the parent's (an epoll instance would be shared).
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
        self.loop.set_default_executor(_InlineExecutor())
        _holders.add(self)

    def close(self) -> None:
        if not self.loop.is_closed():
            self.loop.close()

    def __del__(self) -> None:
        self.close()


_local = threading.local()
_holders: weakref.WeakSet[_LoopHolder] = weakref.WeakSet()


@atexit.register
def _close_inline_loops() -> None:
    """Close every thread's inline loop at exit (an unclosed loop warns when collected)."""
    for holder in list(_holders):
        holder.close()


def _inline_loop() -> asyncio.AbstractEventLoop | None:
    """This thread's private inline loop, or None where one cannot run (a loop already runs here)."""
    try:
        asyncio.get_running_loop()
        return None  # e.g. a synchronous dask scheduler inside Jupyter's loop thread
    except RuntimeError:
        pass
    holder = getattr(_local, "holder", None)
    # A loop inherited through fork belongs to the parent's thread: make a new one.
    if holder is None or holder.pid != os.getpid() or holder.loop.is_closed():
        if holder is not None:
            holder.close()
        holder = _local.holder = _LoopHolder()
    return holder.loop


def run_inline(coro: Coroutine[Any, Any, T]) -> T:
    """Run a zarr coroutine to completion in this thread (its ``to_thread`` work included).

    Falls back to zarr's own loop when this thread already runs an event loop.
    """
    loop = _inline_loop()
    if loop is None:
        return run_on_zarr_loop(coro)
    return loop.run_until_complete(coro)


def _zarr_loop() -> asyncio.AbstractEventLoop:
    from zarr.core.sync import _get_loop

    return _get_loop()


def run_on_zarr_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on zarr's I/O loop and wait (what ``zarr.core.sync.sync`` does)."""
    from zarr.core.sync import sync

    return sync(coro)


def submit_to_zarr_loop(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future:
    """Start a coroutine on zarr's I/O loop without waiting (stores bound to that loop: fsspec)."""
    return asyncio.run_coroutine_threadsafe(coro, _zarr_loop())


def zarr_loop_thread_id() -> int | None:
    """Native thread id of zarr's I/O loop thread (None before zarr started it)."""
    from zarr.core import sync as zsync

    thread = zsync.iothread[0]
    return thread.native_id if thread is not None else None


def _innermost(store: Any) -> Any:
    while isinstance(store, zarr.storage.WrapperStore):
        store = store._store
    return store


def loop_free(store: Any) -> bool:
    """Whether the store's coroutines may run on any loop (local files, memory, once open).

    fsspec stores keep sessions bound to zarr's loop; their operations are submitted there. So is
    the first operation on a store not yet open: zarr opens a store inside its first operation,
    which is safe on zarr's one loop but a race between threads that each run their own.
    """
    inner = _innermost(store)
    return isinstance(inner, zarr.storage.LocalStore | zarr.storage.MemoryStore) and bool(getattr(inner, "_is_open", False))


def open_existing_here(store: Any) -> None:
    """Open a plain ``LocalStore`` over an existing directory now, in this thread.

    zarr opens a store in its first operation; until then :func:`loop_free` sends every operation
    to zarr's loop thread (about 0.5 ms a round trip here). Opened before any other thread sees
    the store, nothing races; the directory exists, so the open creates nothing.
    """
    inner = _innermost(store)
    if isinstance(inner, zarr.storage.LocalStore) and not getattr(inner, "_is_open", True) and inner.root.is_dir():
        run_inline(inner._open())


def run_for(store: Any, coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine on ``store``: in this thread where the store allows it, else on zarr's loop.

    A metadata read or an open from consolidated metadata is a fraction of a millisecond; the hop
    to zarr's loop thread and back costs about 0.15 ms more on the development machine.
    """
    return run_inline(coro) if loop_free(store) else run_on_zarr_loop(coro)


def open_group_for(store: Any, *, mode: Literal["r", "r+", "a", "w", "w-"], zarr_format: Literal[2, 3]) -> zarr.Group:
    """``zarr.open_group(store, mode=mode, zarr_format=zarr_format)``, run as :func:`run_for` runs it."""
    from zarr.api.asynchronous import open_group

    return zarr.Group(run_for(store, open_group(store=store, mode=mode, zarr_format=zarr_format)))


def array_from_document(store: Any, name: str, doc: Mapping[str, Any], zarr_format: int,
                        attrs: Mapping[str, Any] | None = None) -> zarr.Array:
    """The array ``name`` of ``store`` described by its metadata document (as consolidated), read nowhere.

    ``doc``: the v3 array document, or the v2 ``.zarray`` with its ``.zattrs`` in ``attrs``. What
    ``zarr.open_group`` builds for each member of consolidated metadata, for one array only.
    """
    from zarr.core.array import AsyncArray
    from zarr.core.metadata.v2 import ArrayV2Metadata
    from zarr.core.metadata.v3 import ArrayV3Metadata
    from zarr.storage import StorePath

    meta: Any = (ArrayV3Metadata.from_dict(dict(doc)) if zarr_format == 3
                 else ArrayV2Metadata.from_dict({**doc, "attributes": dict(attrs or {})}))
    return zarr.Array(AsyncArray(metadata=meta, store_path=StorePath(store, name)))


def group_member(group: zarr.Group, name: str) -> zarr.Array | zarr.Group | None:
    """``group.get(name)``, run as :func:`run_for` runs it (``None`` where there is no such member)."""
    from zarr.core.array import AsyncArray

    try:
        member = run_for(group.store, group._async_group.getitem(name))
    except KeyError:
        return None
    return zarr.Array(member) if isinstance(member, AsyncArray) else zarr.Group(member)


@dataclass(frozen=True)
class ArrayCodec:
    """What chunk I/O needs to encode and store the objects of one array.

    Attributes
    ----------
    store, prefix
        Store and key prefix (``"path/"`` or ``""``).
    grid
        Shape of one stored object: the shard shape when sharded, else the chunk shape.
    shape
        Array shape.
    dtype
        Native numpy dtype.
    order
        Memory order of a stored object's buffer (``"C"``/``"F"``).
    fill
        The value of unwritten elements (zarr's fill value or the dtype default).
    write_empty
        ``write_empty_chunks``: whether an all-fill object is stored (else deleted).
    spec, pipeline
        zarr's spec of one stored object and the array's codec pipeline.
    encode_key
        Maps grid coordinates to the object's key (without the prefix).
    raw_bytes
        True when an object's stored bytes are its raw buffer (zarr v2, no compressor or filters):
        encoding is then a view, not zarr's ``tobytes`` copy.
    direct
        A numcodecs decoder of a native-order array's stored objects: the compressor of a zarr v2
        array without filters, or for zarr v3 the decoder of a bytes codec followed by one Blosc,
        zstd or gzip codec. Its ``decode(data, out=...)`` writes a whole object straight into a slice
        of the caller's block (what zarr's codecs do, minus the copy out of their own buffer). None
        otherwise.
    v2_compressor
        The numcodecs compressor of a zarr v2 array without filters, in native byte order:
        :meth:`encode` calls it as zarr's V2 codec does, without running that codec's coroutine (in
        zarr 3.1 it has no synchronous form). None otherwise.
    steps
        The pipeline's codecs with the spec each one sees, when every codec can run synchronously
        (``_encode_sync``/``_decode_sync``, zarr 3.1 to 3.4; not sharding): :meth:`encode` and
        :meth:`decode` then call them directly instead of running the pipeline's coroutine, which
        costs about as much again as zstd-encoding a 160 KB chunk. ``None`` otherwise.
    """

    store: Any
    prefix: str
    grid: tuple[int, ...]
    shape: tuple[int, ...]
    dtype: np.dtype
    order: Literal["C", "F"]
    fill: Any
    write_empty: bool
    spec: Any
    pipeline: Any
    encode_key: Callable[[tuple[int, ...]], str]
    raw_bytes: bool
    direct: Any = None
    v2_compressor: Any = None
    steps: tuple[tuple[Any, Any], ...] | None = None

    def key(self, coords: tuple[int, ...]) -> str:
        """Store key of the object at grid ``coords``."""
        return self.prefix + self.encode_key(coords)

    def encode(self, chunk: np.ndarray) -> Any:
        """Encode one object-shaped buffer with the array's codecs (in this thread); a zarr Buffer."""
        proto = default_buffer_prototype()
        if self.raw_bytes:
            return proto.buffer.from_array_like(chunk.reshape(-1, order="A").view("B"))
        if self.v2_compressor is not None:
            return proto.buffer.from_bytes(ensure_bytes(self.v2_compressor.encode(chunk)))
        nd = proto.nd_buffer.from_numpy_array(chunk)
        if self.steps is not None:
            data: Any = nd
            for codec, spec in self.steps:
                data = codec._encode_sync(data, spec)
            return data
        out = run_inline(self.pipeline.encode([(nd, self.spec)]))
        return list(out)[0]

    def decode_into(self, data: Any, dest: np.ndarray) -> bool:
        """Decode one whole stored object straight into ``dest`` if it can be; False if not."""
        contiguous = dest.flags.c_contiguous if self.order == "C" else dest.flags.f_contiguous
        if self.direct is None or not contiguous or dest.dtype != self.dtype or dest.shape != self.grid:
            return False
        got = self.direct.decode(data.as_array_like(), out=dest)
        if not (isinstance(got, np.ndarray) and np.shares_memory(got, dest)):
            dest[...] = np.frombuffer(got, dtype=self.dtype).reshape(self.grid, order=self.order)
        return True

    def decode(self, data: Any) -> np.ndarray:
        """Decode one stored object (a zarr Buffer) into an array of the object's shape."""
        if self.steps is not None:
            for codec, spec in reversed(self.steps):
                data = codec._decode_sync(data, spec)
            return np.asarray(data.as_ndarray_like())
        out = run_inline(self.pipeline.decode([(data, self.spec)]))
        return np.asarray(list(out)[0].as_ndarray_like())


#: Dtype kinds encoded by the fast path; others (strings, objects, structured) go through zarr's setitem.
FAST_KINDS = frozenset("biufc")


def array_codec(arr: zarr.Array) -> ArrayCodec:
    """Collect an array's codec facts (cheap: no I/O)."""
    aa = arr.async_array
    meta = aa.metadata
    config = aa.config
    grid = tuple(int(c) for c in (arr.shards or arr.chunks))
    native = np.dtype(meta.dtype.to_native_dtype())
    direct = None
    if meta.zarr_format == 2:
        order = meta.order
        config = dataclasses.replace(config, order=order)
        raw = meta.compressor is None and not meta.filters
        if meta.compressor is not None and not meta.filters and native.isnative and native.kind in FAST_KINDS:
            direct = meta.compressor
    else:
        order = config.order
        raw = False
    spec = ArraySpec(shape=grid, dtype=meta.dtype, fill_value=meta.fill_value, config=config,
                     prototype=default_buffer_prototype())
    steps = _sync_steps(aa.codec_pipeline, spec)
    # v3 objects are stored in C order whatever the in-memory order (the bytes codec ravels them so).
    if meta.zarr_format == 3 and order == "C" and native.isnative and native.kind in FAST_KINDS and steps is not None:
        direct = _v3_direct_decoder([codec for codec, _ in steps])
    path = arr.path
    return ArrayCodec(
        store=arr.store, prefix=f"{path}/" if path else "", grid=grid, shape=tuple(arr.shape),
        dtype=np.dtype(meta.dtype.to_native_dtype()), order=order, fill=_fill_value_or_default(spec),
        write_empty=bool(config.write_empty_chunks), spec=spec, pipeline=aa.codec_pipeline,
        encode_key=meta.encode_chunk_key, raw_bytes=raw, direct=direct, steps=steps,
        v2_compressor=direct if meta.zarr_format == 2 else None,
    )


def _v3_direct_decoder(codecs: Sequence[Any]) -> Any:
    """A numcodecs decoder for a zarr v3 chain of native-order bytes plus one compressor, or None.

    Blosc, zstd and gzip frames carry what decoding needs (Blosc its shuffle and type size, zstd its
    checksum flag), so a default-configured numcodecs codec decodes what zarr's codec wrote, and can
    decode it straight into the caller's block.
    """
    import numcodecs
    from zarr.codecs import BloscCodec, BytesCodec, GzipCodec, ZstdCodec

    if len(codecs) != 2 or not isinstance(codecs[0], BytesCodec):
        return None
    endian = getattr(codecs[0].endian, "value", codecs[0].endian)
    if endian not in (None, sys.byteorder):
        return None
    decoders = {BloscCodec: numcodecs.Blosc, ZstdCodec: numcodecs.Zstd, GzipCodec: numcodecs.GZip}
    make = decoders.get(type(codecs[1]))
    return make() if make is not None else None


def _sync_steps(pipeline: Any, spec: ArraySpec) -> tuple[tuple[Any, Any], ...] | None:
    """Each codec of ``pipeline`` with the spec it sees (as zarr's pipeline resolves them), if all run synchronously."""
    from zarr.codecs import ShardingCodec

    try:
        codecs = [*pipeline.array_array_codecs, pipeline.array_bytes_codec, *pipeline.bytes_bytes_codecs]
    except AttributeError:  # another pipeline class (zarr's config can name one)
        return None
    steps = []
    for codec in codecs:
        if isinstance(codec, ShardingCodec) or not (hasattr(codec, "_encode_sync") and hasattr(codec, "_decode_sync")):
            return None
        steps.append((codec, spec))
        spec = codec.resolve_metadata(spec)
    return tuple(steps)


# --- rectilinear chunk grids (zarr >= 3.2, zarr format 3) -----------------------------------------
# Added for issue 14 (rectilinear writes); the only zarr-version difference they depend on.

#: zarr-python's version as a tuple, e.g. ``(3, 4, 2)``.
ZARR_VERSION = tuple(int(p) for p in zarr.__version__.split("+")[0].split(".")[:3] if p.isdigit())
#: Whether this zarr can store variable-sized ("rectilinear") chunk grids.
RECTILINEAR_SUPPORTED = ZARR_VERSION >= (3, 2)


def enable_rectilinear() -> None:
    """Let this process's zarr read and write rectilinear metadata (an experimental flag in zarr 3.2-3.4)."""
    if RECTILINEAR_SUPPORTED:
        zarr.config.set({"array.rectilinear_chunks": True})


def is_rectilinear(arr: Any) -> bool:
    """Whether ``arr`` (a ``zarr.Array``) has a rectilinear chunk grid (``arr.chunks`` raises on those)."""
    grid = getattr(getattr(arr, "metadata", None), "chunk_grid", None)
    return type(grid).__name__ == "RectilinearChunkGridMetadata"


def chunk_edges(arr: Any) -> tuple[tuple[int, ...], ...]:
    """Per axis, the sizes of ``arr``'s chunks (regular or rectilinear), clipped at the array's end."""
    if is_rectilinear(arr):
        return tuple(tuple(int(c) for c in axis) for axis in arr.read_chunk_sizes)
    out = []
    for n, c in zip(arr.shape, arr.chunks, strict=True):
        full, rest = divmod(int(n), int(c))
        out.append((int(c),) * full + ((rest,) if rest else ()))
    return tuple(out)


def nominal_chunks(arr: Any) -> tuple[int, ...]:
    """``arr.chunks``; for a rectilinear grid (where that raises) the largest chunk per axis."""
    if is_rectilinear(arr):
        return tuple(max(e, default=1) for e in chunk_edges(arr))
    return tuple(int(c) for c in arr.chunks)
