"""Values an encoding cannot hold, refused instead of wrapped around.

xarray's encoder casts with numpy's ``astype``: 3e9 stored as ``int32`` becomes -1294967296, 400.0
packed as ``int16`` with ``scale_factor=0.01`` becomes -255.36, 1e40 stored as ``float32`` becomes
``inf``, NaN stored as an integer without a fill value becomes an arbitrary integer, and a float
whose packed code equals the fill value reads back as missing (integers equal to it are left alone:
they are often missing values already encoded). Each is a silent change of the data
(an ERA5-style monthly file whose values leave the range of the packing the first file chose).
:func:`check_range` says which value, before any write for numpy data; dask data is checked block by
block as it is written (checking first would compute it twice).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from parallelzarr.errors import EncodingError, StoreWriteError

__all__ = ["StoredRange", "StoredRangeError", "StoredRangeWriteError", "check_range", "stored_range"]


class StoredRangeError(EncodingError):
    """Values the stored dtype or packing cannot hold (a ``ValueError``).

    ``problem`` and ``fix``: the two halves of the message without what the write has done, for the
    run that catches it to say that exactly (:class:`StoredRangeWriteError`); ``while_writing``: found
    in a block as it was written (else before any write). Instance attributes survive pickling (a
    distributed worker raises it).
    """

    def __init__(self, message: str, problem: str | None = None, fix: str | None = None,
                 while_writing: bool = False) -> None:
        super().__init__(message)
        self.problem = message if problem is None else problem
        self.fix = "" if fix is None else fix
        self.while_writing = while_writing


class StoredRangeWriteError(StoredRangeError, StoreWriteError):
    """A :class:`StoredRangeError` found while a run was writing: also a
    :class:`~parallelzarr.errors.StoreWriteError`, whose message says what readers see and how to recover."""


@dataclass(frozen=True)
class StoredRange:
    """What variable ``name`` can hold once encoded as ``dtype`` with ``scale`` and ``offset``."""

    name: str
    dtype: np.dtype
    scale: float = 1.0
    offset: float = 0.0
    fill: float | None = None  # the code that reads back as missing

    def describe(self) -> str:
        """The dtype, packing and range, as the refusal names them."""
        packing = "" if (self.scale, self.offset) == (1.0, 0.0) else f" packed with scale_factor {self.scale}, add_offset {self.offset}"
        if self.dtype.kind in "iu":
            info = np.iinfo(self.dtype)
            low, high = (self.offset + self.scale * v for v in (info.min, info.max))
            held = f"{low:g} to {high:g}" if packing else f"{info.min} to {info.max}"
        else:
            held = f"magnitudes up to {np.finfo(self.dtype).max:g}"
        fill = "" if self.fill is None else f", code {self.fill:g} meaning missing"
        return f"{self.dtype}{packing} (it holds {held}{fill})"

    def problem(self, block: Any, origin: tuple[int, ...] | None = None) -> str | None:
        """What in ``block`` (decoded values) this range cannot hold, naming the first such value (its index,
        counted from ``origin``: where the block starts in the variable); else ``None``."""
        x = np.asarray(block)
        found = self._problem(x)
        if found is None:
            return None
        at, what = found
        index = tuple(int(i) + int(o) for i, o in zip(at, origin or (0,) * x.ndim, strict=True))
        return f"{x[at].item()!r} at {index} {what}"

    def holds_all(self, x: np.ndarray) -> bool:
        """Whether every value of ``x`` is held, from its extremes alone (packing is monotonic): two passes,
        no temporaries, where :meth:`_problem` makes several whole-block ones to find the first that is not."""
        flat = x.ravel()
        if x.dtype.kind == "f" and self.fill is None and self.dtype.kind in "iu" and np.isnan(np.sum(flat)):
            return False  # NaN (or inf) without a fill value: found and named below
        with warnings.catch_warnings():  # all NaN: "All-NaN slice", answered below
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = np.nanmin(flat), np.nanmax(flat)  # NaN ignored unless all are
        if x.dtype.kind == "f" and np.isnan(low):
            return True
        if self.dtype.kind == "f":
            return bool(max(abs(float(low) - self.offset), abs(float(high) - self.offset)) / abs(self.scale)
                        <= np.finfo(self.dtype).max)
        codes: list[float] | list[int]
        if x.dtype.kind in "iu" and (self.scale, self.offset) == (1.0, 0.0):
            codes = sorted((int(low), int(high)))  # as integers: no float rounding of int64
        else:
            codes = sorted(float(np.round((float(v) - self.offset) / self.scale)) for v in (low, high))
        info = np.iinfo(self.dtype)
        return bool(info.min <= codes[0] and codes[1] <= info.max
                    and (self.fill is None or x.dtype.kind != "f" or not codes[0] <= self.fill <= codes[1]))

    def _problem(self, x: np.ndarray) -> tuple[tuple[int, ...], str] | None:
        if x.size == 0 or x.dtype.kind not in "iuf" or self.holds_all(x):
            return None
        if self.dtype.kind == "f":
            finite = np.isfinite(x)
            over = finite & (np.abs((x - self.offset) / self.scale) > np.finfo(self.dtype).max)
            return _first(x, over, "would be stored as inf")
        missing = np.isnan(x) if x.dtype.kind == "f" else np.zeros(x.shape, dtype=bool)
        if missing.any() and self.fill is None:
            return _first(x, missing, "has no fill value to be stored as: the stored integers have none")
        if x.dtype.kind in "iu" and (self.scale, self.offset) == (1.0, 0.0):
            info = np.iinfo(self.dtype)
            outside = (x < info.min) | (x > info.max)  # compared as integers: no float rounding of int64
            codes = x
        else:
            with np.errstate(invalid="ignore"):
                codes = np.round((x.astype("f8") - self.offset) / self.scale)
            info = np.iinfo(self.dtype)
            outside = ~missing & ((codes < info.min) | (codes > info.max))
        found = _first(x, outside, "would wrap around")
        # Integers equal to the fill value are often missing values already encoded: left alone.
        if found is None and self.fill is not None and x.dtype.kind == "f":
            found = _first(x, ~missing & (codes == self.fill), "would read back as missing (its code is the fill value)")
        return found


def _first(x: np.ndarray, bad: np.ndarray, what: str) -> tuple[tuple[int, ...], str] | None:
    """Where ``bad`` is first true in ``x``, and ``what`` happens to that value; ``None`` when nowhere."""
    if not bad.any():
        return None
    return tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(bad.ravel())[0]), x.shape)), what


def stored_range(name: str, var: xr.Variable, encoding: Mapping[str, Any]) -> StoredRange | None:
    """The range ``var`` must lie in to be stored with ``encoding`` (xarray's CF keys); ``None`` when
    there is nothing to check (the same or a wider dtype, times, strings, booleans, ``_Unsigned``)."""
    if var.dtype.kind not in "iuf" or "dtype" not in encoding or "_Unsigned" in encoding or "_Unsigned" in var.attrs:
        return None
    units = encoding.get("units", var.attrs.get("units"))
    if isinstance(units, str) and " since " in units:
        return None
    dtype = np.dtype(encoding["dtype"])
    scale, offset = float(encoding.get("scale_factor", 1.0)), float(encoding.get("add_offset", 0.0))
    packed = (scale, offset) != (1.0, 0.0)
    if dtype.kind not in "iuf" or (dtype.kind == "f" and (packed or var.dtype.kind != "f" or dtype.itemsize >= var.dtype.itemsize)):
        return None
    if dtype.kind in "iu" and not packed and var.dtype.kind in "iu" and np.can_cast(var.dtype, dtype, casting="safe"):
        return None
    fill = encoding.get("_FillValue", encoding.get("missing_value"))
    fill = None if fill is None or (isinstance(fill, float) and np.isnan(fill)) else float(np.asarray(fill).ravel()[0])
    return StoredRange(name, dtype, scale, offset, fill)


def _refusal(rng: StoredRange, problem: str, during_write: bool) -> StoredRangeError:
    when = (
        "Found while writing: an append or a mode='a' write commits nothing when it fails (readers see the "
        "store as before), a new store is not published (its root metadata comes last), a region write may "
        "have written other blocks of its region (rerun it with the data fixed). "
        if during_write else "Nothing was written. "
    )
    what = f"variable {rng.name!r} is stored as {rng.describe()}: the value {problem}"
    fix = (f"clip or mask the data to that range, or rewrite the store with a wider dtype or packing, e.g. "
           f"encoding={{{rng.name!r}: {{'dtype': 'float32'}}}}")
    return StoredRangeError(f"{what}. {when}{fix[0].upper()}{fix[1:]}", what, fix, during_write)


def _checked_block(block: np.ndarray, rng: StoredRange, block_info: Any = None) -> np.ndarray:
    origin = tuple(start for start, _ in block_info[0]["array-location"]) if block_info else None
    problem = rng.problem(block, origin)
    if problem is not None:
        raise _refusal(rng, problem, during_write=True)
    return block


def check_range(name: str, var: xr.Variable, encoding: Mapping[str, Any]) -> xr.Variable:
    """``var`` unchanged when ``encoding`` can hold all of it; raises :class:`StoredRangeError` naming the
    first value it cannot hold. Dask data comes back with the check in each block (raising as it is written)."""
    rng = stored_range(name, var, encoding)
    if rng is None:
        return var
    if isinstance(var.data, da.Array):
        return var.copy(deep=False, data=da.map_blocks(_checked_block, var.data, rng, dtype=var.dtype,
                                                    meta=np.array((), var.dtype)))
    problem = rng.problem(var.values)
    if problem is not None:
        raise _refusal(rng, problem, during_write=False)
    return var
