"""Ingest checks of an append (pure validation, plus per-label content digests).

* the step of the append dimension (``append_step="1h"``): no gap, no uneven step, unless told;
* the index coordinates other than the append dimension equal the stored ones (a shifted grid);
* data that repeats stored labels: a per-label content digest tells identical rows from changed ones.

The digest of a label is a checksum of the *encoded* values (what the store holds: packed integers,
fill values) of every variable along the append dimension at that label. It does not depend on the
dask chunking, so it can be computed block by block, from the appended data or from the store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from parallelzarr.errors import AppendError, SchemaMismatchError

__all__ = [
    "GAP_POLICIES",
    "REPEAT_POLICIES",
    "STATIC_POLICIES",
    "STATIC_VERIFY_IN_MEMORY",
    "check_index_coordinates",
    "check_steps",
    "combine_digests",
    "label_text",
    "parse_step",
    "row_checksums",
]

GAP_POLICIES = ("refuse", "allow")
REPEAT_POLICIES = ("skip", "overwrite", "error")
STATIC_POLICIES = ("verify", "ignore")
#: Static variables up to this size are compared in memory; larger ones block by block with dask
#: (both read once, never all in memory).
STATIC_VERIFY_IN_MEMORY = 64 * 2**20


def label_text(value: Any) -> str:
    """A label as users write it: ``2024-04-01T05:00`` rather than nanoseconds."""
    arr = np.asarray(value)
    if arr.dtype.kind == "M":
        return str(pd.Timestamp(arr.item() if arr.ndim == 0 else value).isoformat())
    if arr.dtype.kind == "m":
        return str(pd.Timedelta(arr.item() if arr.ndim == 0 else value))
    return str(arr.item() if arr.ndim == 0 else value)


def labels_text(values: Sequence[Any], limit: int = 5) -> str:
    """``a, b, c ... (12 labels)``."""
    shown = ", ".join(label_text(v) for v in list(values)[:limit])
    return shown + (f" ... ({len(values)} labels)" if len(values) > limit else "")


def parse_step(step: Any, labels: np.ndarray) -> Any:
    """``"1h"`` -> ``np.timedelta64(1, "h")`` for datetime labels; numbers stay numbers."""
    kind = np.asarray(labels).dtype.kind
    if kind in "Mm":
        try:
            return np.timedelta64(pd.Timedelta(step).to_timedelta64())
        except (TypeError, ValueError) as exc:
            raise AppendError(f"append_step={step!r} is not a time step (e.g. '1h', '30min', '1D')") from exc
    if kind in "iuf":
        try:
            value = float(step)
        except (TypeError, ValueError) as exc:
            raise AppendError(f"append_step={step!r}: the labels are numbers, give a number") from exc
        if value == 0:
            raise AppendError("append_step must not be 0")
        return value
    if kind == "O" and _cftime_labels(labels):
        try:  # the differences of cftime dates are datetime.timedelta objects
            return pd.Timedelta(step).to_pytimedelta()
        except (TypeError, ValueError) as exc:
            raise AppendError(f"append_step={step!r} is not a time step (e.g. '1h', '30min', '1D')") from exc
    raise AppendError(f"append_step needs datetime or numeric labels; these are {np.asarray(labels).dtype}")


def _cftime_labels(labels: np.ndarray) -> bool:
    """Whether object labels are cftime dates (non-standard calendars, dates out of ``datetime64``'s range)."""
    values = np.asarray(labels).ravel()  # by module: cftime is not a dependency (no cftime, no such labels)
    return len(values) > 0 and all(type(v).__module__.split(".")[0] == "cftime" for v in values)


def check_steps(new: np.ndarray, last: Any, step: Any, gaps: str, dim: str) -> None:
    """Refuse steps other than ``step`` between ``last`` (the last stored label) and the new labels.

    With ``gaps="allow"`` a step that is a whole multiple of ``step`` (missing labels) passes; a
    step that is not a whole multiple never does (the labels leave the grid ``append_step`` names).
    """
    if gaps not in GAP_POLICIES:
        raise AppendError(f"gaps must be one of {GAP_POLICIES}, got {gaps!r}")
    values = np.asarray(new)
    full = values if last is None else np.concatenate([np.asarray([last], dtype=values.dtype), values])
    if len(full) < 2:
        return
    steps = np.diff(full)
    if isinstance(step, timedelta):
        ratio = np.asarray([s / step for s in steps], dtype=float)
    elif np.asarray(step).dtype.kind == "m":
        ratio = steps.astype("m8[ns]").astype(np.int64) / np.asarray(step).astype("m8[ns]").astype(np.int64)
    else:
        ratio = steps / float(step)
    whole = np.isclose(ratio, np.round(ratio)) & (np.round(ratio) >= 1)
    uneven = np.flatnonzero(~whole)
    gap = np.flatnonzero(whole & (np.round(ratio) > 1))
    if len(uneven):
        i = int(uneven[0])
        raise AppendError(
            f"uneven {dim!r} step: {label_text(full[i])} -> {label_text(full[i + 1])} is not a whole multiple of "
            f"append_step={_step_text(step)} ({len(uneven)} such step(s)); fix the labels or append_step"
        )
    if len(gap) and gaps != "allow":
        i = int(gap[0])
        missing = int(round(ratio[i])) - 1
        first = " (the last stored label and the first appended one)" if i == 0 and last is not None else ""
        raise AppendError(
            f"gap in {dim!r}: {missing} label(s) missing between {label_text(full[i])} and {label_text(full[i + 1])}"
            f"{first} at append_step={_step_text(step)} ({len(gap)} gap(s) in all). Append the missing data first; "
            "or, to keep room for it, append the rows with the gap filled (ds.reindex(...), missing values) and "
            "write the late data later with a region write (README: 'Late data'); or pass gaps='allow' "
            "(CLI --gaps allow) to store the jump"
        )


def _step_text(step: Any) -> str:
    if isinstance(step, timedelta) or np.asarray(step).dtype.kind == "m":
        return str(pd.Timedelta(step)).replace("0 days ", "")
    return str(step)


def check_index_coordinates(ds: xr.Dataset, stored: xr.Dataset, dim: str) -> None:
    """Refuse index coordinates (other than ``dim``) that differ from the stored ones: another grid."""
    for name, index in ds.indexes.items():
        name = str(name)
        if name == dim or name not in stored.indexes:
            continue
        new, old = np.asarray(index), np.asarray(stored.indexes[name])
        if new.shape == old.shape and (np.array_equal(new, old) or (
                new.dtype.kind == "f" and old.dtype.kind == "f" and np.array_equal(new, old, equal_nan=True))):
            continue
        raise SchemaMismatchError(grid_mismatch(name, new, old))


def reordered(new: np.ndarray, old: np.ndarray) -> bool:
    """Whether ``new`` holds each of the labels of ``old`` once, in another order (a flipped latitude)."""
    if new.shape != old.shape or new.ndim != 1 or np.array_equal(new, old):
        return False
    try:
        stored = pd.Index(old)
        at = stored.get_indexer(new) if stored.is_unique else None
    except (TypeError, ValueError):
        return False
    return at is not None and bool((at >= 0).all()) and len(np.unique(at)) == len(at)


def label_difference(new: np.ndarray, old: np.ndarray) -> str:
    """The first difference between labels (or coordinate values) ``new`` and the stored ``old``, in words."""
    if new.shape != old.shape:
        if new.ndim == old.ndim == 1:
            return f"{len(new)} labels where the store has {len(old)}"
        return f"shape {new.shape} where the store has {old.shape}"
    same = np.asarray(new == old, dtype=bool)
    if new.dtype.kind == "f" and old.dtype.kind == "f":
        same |= np.isnan(new) & np.isnan(old)
    at = np.unravel_index(int(np.flatnonzero(~same)[0]), new.shape) if not same.all() else (0,) * new.ndim
    where = f"label {int(at[0])}" if new.ndim == 1 else f"element {tuple(int(i) for i in at)}"
    return f"{where} is {label_text(new[at])} where the store has {label_text(old[at])}"


def grid_mismatch(name: str, new: np.ndarray, old: np.ndarray) -> str:
    """Why labels ``new`` of index coordinate ``name`` are refused where ``old`` are stored, and the fix."""
    detail = label_difference(new, old)
    if reordered(new, old):
        fix = f"these are the stored labels in another order: put the data in the stored order first, ds = ds.reindex({name}=stored[{name!r}].values)"
    else:
        fix = f"append data on the stored grid (if only rounding differs: ds = ds.assign_coords({name}=stored[{name!r}].values))"
    return f"the appended {name!r} coordinate differs from the stored one ({detail}): the rows would be stored on another grid; {fix}"


# --- content digests -------------------------------------------------------------------------------

#: Elements hashed at a time: the uint64 temporaries stay at a few MB whatever the block size.
_PIECE = 2**18
_M1, _M2, _GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise (uint64 arithmetic wraps, as intended); ``x`` is overwritten.

    In place, with one scratch array: each step of the finaliser would otherwise allocate an array
    of the piece's size (the digests of a small append are mostly this function).
    """
    scratch = np.empty_like(x)
    with np.errstate(over="ignore"):
        for shift, factor in ((30, _M1), (27, _M2)):
            np.right_shift(x, np.uint64(shift), out=scratch)
            np.bitwise_xor(x, scratch, out=x)
            np.multiply(x, factor, out=x)
        np.right_shift(x, np.uint64(31), out=scratch)
        np.bitwise_xor(x, scratch, out=x)
    return x


def _bits(block: np.ndarray) -> np.ndarray:
    """The values' bit patterns as uint64 (strings and objects: a hash of each value)."""
    arr = np.ascontiguousarray(block)
    if arr.dtype.kind in "biufcmM" and arr.dtype.itemsize in (1, 2, 4, 8):
        return arr.view(f"u{arr.dtype.itemsize}").astype(np.uint64)
    flat = [int.from_bytes(hashlib.blake2b(repr(v).encode(), digest_size=8).digest(), "little") for v in arr.ravel()]
    return np.asarray(flat, dtype=np.uint64).reshape(arr.shape)


def _positions(starts: list[int], strides: list[int], shape: tuple[int, ...], first: int = 0) -> np.ndarray:
    """mix(global position) of each element of a piece of one row (``first``: offset along its first axis)."""
    pos = np.zeros(shape, dtype=np.uint64)
    for k, n in enumerate(shape):
        begin = starts[k] + (first if k == 0 else 0)
        idx = np.arange(begin, begin + n, dtype=np.uint64) * np.uint64(strides[k])
        pos = pos + idx.reshape([-1 if j == k else 1 for j in range(len(shape))])
    with np.errstate(over="ignore"):
        return _mix(pos * _GOLD + np.uint64(1))


def _block_sums(block: np.ndarray, axis: int, shape: tuple[int, ...], block_info: Any = None) -> np.ndarray:
    """Per row along ``axis``: the sum of mix(value bits + mix(position)) over this block's elements.

    The position of an element is its global row-major index among the other axes, so the sums
    of all blocks of a row add up to the same checksum however the array is chunked. Rows are
    hashed a few MB at a time, whatever the block size.
    """
    loc = block_info[0]["array-location"]
    others = [i for i in range(block.ndim) if i != axis]
    moved = np.moveaxis(block, axis, 0)
    strides = [int(np.prod([shape[j] for j in others[k + 1:]], dtype=np.int64)) for k in range(len(others))]
    starts = [loc[i][0] for i in others]
    rows, row_shape = moved.shape[0], moved.shape[1:]
    per_row = int(np.prod(row_shape, dtype=np.int64))
    sums = np.zeros(rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        if per_row <= _PIECE:  # whole rows, several at a time, one position mix for all
            mixed = _positions(starts, strides, row_shape)
            step = max(1, _PIECE // max(1, per_row))
            for r in range(0, rows, step):
                part = _mix(_bits(moved[r:r + step]) + mixed)
                sums[r:r + step] = part.reshape(part.shape[0], -1).sum(axis=1, dtype=np.uint64)
        else:  # long rows: pieces along the row's first axis
            inner = int(np.prod(row_shape[1:], dtype=np.int64))
            step = max(1, _PIECE // max(1, inner))
            for a in range(0, row_shape[0], step):
                mixed = _positions(starts, strides, moved[0, a:a + step].shape, a)
                for r in range(rows):
                    sums[r] += _mix(_bits(moved[r, a:a + step]) + mixed).sum(dtype=np.uint64)
    return sums.reshape([block.shape[axis] if i == axis else 1 for i in range(block.ndim)])


def row_checksums(values: da.Array, axis: int) -> da.Array:
    """A dask array of one uint64 checksum per index along ``axis``, independent of the chunking."""
    if values.ndim == 1:
        values = values[:, None]
    shape = tuple(int(s) for s in values.shape)
    chunks = tuple(c if i == axis else (1,) * len(c) for i, c in enumerate(values.chunks))
    # da.map_blocks(f, values, ...) is values.map_blocks(f, ...), typed (the method's functools.wraps is not)
    partial = da.map_blocks(_block_sums, values, axis, shape, dtype=np.uint64, chunks=chunks, meta=np.array((), np.uint64))
    others = tuple(i for i in range(values.ndim) if i != axis)
    return partial.sum(axis=others, dtype=np.uint64) if others else partial


def row_checksums_of(values: np.ndarray, axis: int) -> np.ndarray:
    """:func:`row_checksums` of an in-memory array, computed here (the same sums, no graph)."""
    values = np.asarray(values)
    if values.ndim == 1:
        values = values[:, None]
    whole = [{"array-location": [(0, int(n)) for n in values.shape]}]
    return _block_sums(values, axis, tuple(int(n) for n in values.shape), whole).reshape(-1)


def combine_digests(sums: Mapping[str, np.ndarray]) -> list[str]:
    """One hex digest per label from each variable's checksums (variables in name order)."""
    names = sorted(sums)
    if not names:
        return []
    n = len(sums[names[0]])
    out = []
    for i in range(n):
        h = hashlib.blake2b(digest_size=8)
        for name in names:
            h.update(name.encode() + b"\0" + int(sums[name][i]).to_bytes(8, "little"))
        out.append(h.hexdigest())
    return out
