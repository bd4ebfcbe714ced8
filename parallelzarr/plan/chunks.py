"""Default zarr chunks for new variables (pure: no I/O, no dask).

Without chunks in the encoding, a new variable takes its dask chunks (xarray's rule). A dask block
can be far larger than a good zarr chunk, though: dask's ``auto`` chunking of a month of hourly
ERA5 gives 82 MiB blocks, and a write task holds its block plus two copies of each cell, so the
write overran a 256 MiB budget. :func:`fit_chunks` splits such chunks by whole divisors, so every
block still covers whole cells (the write stays ``direct``) and each cell is at most
:data:`MAX_DEFAULT_CHUNK_BYTES` (10-100 MB is the range readers of object stores do well with).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: Largest default chunk; at most a quarter of the memory budget when that is smaller.
MAX_DEFAULT_CHUNK_BYTES = 64 * 2**20


def chunk_limit(max_mem: int | None) -> int:
    """Largest default chunk in bytes for a memory budget (``None``: no budget)."""
    if max_mem is None:
        return MAX_DEFAULT_CHUNK_BYTES
    return max(1, min(MAX_DEFAULT_CHUNK_BYTES, int(max_mem) // 4))


def fit_chunks(chunks: Sequence[int], itemsize: int, limit: int) -> tuple[int, ...]:
    """Split ``chunks`` along their longest axes by whole divisors until a chunk is at most ``limit`` bytes.

    Parameters
    ----------
    chunks
        Chunk shape derived from the dask chunks.
    itemsize
        Bytes per element.
    limit
        Largest chunk in bytes.

    Returns
    -------
    tuple of int
        The chunk shape; each entry divides the original one, so blocks aligned to the original
        chunks stay aligned. Unchanged when already small enough.
    """
    out = [max(1, int(c)) for c in chunks]
    while math.prod(out) * itemsize > limit:
        # The axis with the longest chunk is split by its smallest divisor > 1.
        order = sorted(range(len(out)), key=lambda i: -out[i])
        for i in order:
            divisor = _smallest_divisor(out[i])
            if divisor:
                out[i] //= divisor
                break
        else:  # every axis is 1 or prime-free of small divisors: split the longest one unevenly
            if not order or out[order[0]] == 1:
                break
            out[order[0]] = -(-out[order[0]] // 2)
    return tuple(out)


def _smallest_divisor(n: int) -> int:
    """Smallest divisor of ``n`` above 1 and at most 31 (0 if none): keeps chunks round, e.g. 744 -> 372."""
    for d in range(2, min(n, 31) + 1):
        if n % d == 0:
            return d
    return 0
