"""The rechunk memory model: what one task holds at its peak, and the two meanings of ``max_mem``.

Pure integer arithmetic on shapes; :mod:`.stages` and :mod:`.planner` size every task with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MemoryModel", "PEAK_MEANING", "DATA_MEANING", "task_memory", "ceildiv"]


@dataclass(frozen=True)
class MemoryModel:
    """What one task holds at its peak, as multiples of chunk sizes.

    A task reads its block into one assembled buffer (which is also what it writes),
    so the peak is ``block + max(read transients, write transients)``. Chunk I/O runs in the
    task's thread (:mod:`parallelzarr.store.chunk_io`): it decodes one stored object at a time
    straight into the block, and encodes one at a time from a contiguous copy (none when the
    block already holds the object contiguously). On stores driven from zarr's loop (fsspec) up
    to ``io_chunks`` encoded objects are in flight besides (prefetched reads, queued writes);
    on local and in-memory stores each operation completes before the next, so the model is an
    upper bound there. The planner picks the largest ``io_chunks`` that fits, up to zarr's
    ``async.concurrency``.

    Per task, with ``k`` objects in flight and ``c`` bytes per object (raw):
    reading holds ``k * c * encoded_factor + c * decode_factor``; writing holds
    ``k * c * encoded_factor + c * encode_factor`` (plus ``c * shard_extra`` for a shard, whose
    inner chunks are encoded before they are concatenated).

    Attributes
    ----------
    encoded_factor
        Bytes of one encoded object in flight, in units of its raw size (compressed data is
        smaller; incompressible data adds a header of a few bytes).
    decode_factor
        Bytes held while one object is decoded: the decoded object (uncompressed data is a view).
    encode_factor
        Bytes held while one object is encoded: its contiguous copy and the codec's output buffer.
    shard_extra
        Extra raw multiples held while a shard is encoded (its encoded inner chunks).
    io_concurrency
        Most objects in flight per task.
    overhead
        Fixed bytes per task for Python objects, selections and the marker write.
    data_only
        Count only the chunk data a task holds, as rechunker reads ``max_mem``: the largest of
        its block, one read cell and one write cell (no buffers, no overhead). Plans made this
        way are re-estimated with the full model (:func:`estimate_peaks`) before they are shown.
    """

    encoded_factor: float = 1.0
    decode_factor: float = 1.0
    encode_factor: float = 2.0
    shard_extra: float = 1.0
    io_concurrency: int = 10
    overhead: int = 2**20
    data_only: bool = False


#: How :class:`ArrayPlan` reads ``max_mem``: parallelzarr's whole estimated peak, or rechunker's meaning.
PEAK_MEANING = "peak"
DATA_MEANING = "chunk data"


def ceildiv(a: int, b: int) -> int:
    """``ceil(a / b)`` in integers (exact at any size)."""
    return -(-a // b)


def _axis_touch(n: int, block: int, grid: int) -> int:
    """Most read-grid cells one block touches along an axis.

    Block starts are multiples of ``block``, so their offsets inside a cell are
    multiples of ``gcd(block, grid)``: the worst offset is ``grid - gcd``.
    """
    worst = grid - math.gcd(block, grid)
    return min(ceildiv(worst + min(block, n), grid), ceildiv(n, grid))


def task_memory(
    shape: Sequence[int],
    itemsize: int,
    block: Sequence[int],
    read_grid: Sequence[int],
    write_grid: Sequence[int],
    model: MemoryModel,
    *,
    write_sharded: bool = False,
    io_chunks: int | None = None,
) -> dict[str, int]:
    """Estimate the peak bytes one task holds (see :class:`MemoryModel`).

    ``io_chunks`` caps the cells per zarr call (default: ``model.io_concurrency``).

    Returns
    -------
    dict
        ``assembled``, ``read_transient``, ``write_transient``, ``overhead`` and ``total``
        in bytes.
    """
    clipped = [min(b, n) for b, n in zip(block, shape, strict=True)]
    assembled = math.prod(clipped) * itemsize
    touched = math.prod(_axis_touch(n, b, g) for n, b, g in zip(shape, clipped, read_grid, strict=True))
    written = math.prod(ceildiv(b, g) for b, g in zip(clipped, write_grid, strict=True))
    read_cell = math.prod(read_grid) * itemsize
    write_cell = math.prod(write_grid) * itemsize
    k = max(1, min(io_chunks or model.io_concurrency, model.io_concurrency))
    k_r = min(k, touched)
    k_w = min(k, written)
    enc = model.encode_factor + (model.shard_extra if write_sharded else 0.0)
    read_t = int(read_cell * (k_r * model.encoded_factor + model.decode_factor))
    write_t = int(write_cell * (k_w * model.encoded_factor + enc))
    if model.data_only:
        # rechunker's meaning: block, read chunk and write chunk each within max_mem, nothing else counted.
        return {"assembled": assembled, "read_transient": 0, "write_transient": 0, "overhead": 0,
                "total": max(assembled, read_cell, write_cell)}
    return {
        "assembled": assembled,
        "read_transient": read_t,
        "write_transient": write_t,
        "overhead": model.overhead,
        "total": assembled + max(read_t, write_t) + model.overhead,
    }

