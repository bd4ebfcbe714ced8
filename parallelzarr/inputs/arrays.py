"""Adapter for bare arrays (numpy, dask, ``zarr.Array`` targets)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dask.array as da
import numpy as np

from parallelzarr.errors import ChunkSpecError, EncodingError, SchemaMismatchError
from parallelzarr.plan.grid import choose_grid, is_uniform

ARRAY_NAME = "array"


def as_dask(data: Any, chunks: Any = "auto") -> da.Array:
    """A dask array for ``data`` (numpy arrays are split with ``chunks``)."""
    if isinstance(data, da.Array):
        return data
    arr = np.asarray(data)
    return da.from_array(arr, chunks=chunks if chunks is not None else "auto")


def check_known_chunks(data: da.Array, name: str) -> None:
    """Refuse a dask array whose chunk sizes are unknown (NaN, as after boolean indexing): neither its
    shape nor a write grid can be planned."""
    if any(np.isnan(c) for axis in data.chunks for c in axis):
        raise ChunkSpecError(f"{name!r}: the dask array has unknown chunk sizes (NaN, e.g. after boolean "
                             f"indexing): its shape {data.shape} cannot be written; call "
                             f"data.compute_chunk_sizes() first")


def default_chunks(data: da.Array) -> tuple[int, ...]:
    """Zarr chunks for new data: the dask chunks when zarr allows them, else a chosen grid."""
    out = []
    for ch, n in zip(data.chunks, data.shape, strict=True):
        out.append(max(1, ch[0]) if is_uniform(ch) else choose_grid(ch, n))
    return tuple(out)


def check_storable(dtype: Any) -> None:
    """Refuse dtypes zarr cannot store as a bare array (Python objects), before any planning."""
    if np.dtype(dtype).kind == "O":
        raise SchemaMismatchError(
            f"{ARRAY_NAME!r}: data of dtype object cannot be written as a zarr array; convert it first, "
            "e.g. .astype(str) for text or .astype(float) for numbers"
        )


def as_numpy(data: Any) -> np.ndarray:
    """A numpy array for array-like ``data``; refuse what is not one (``None``, dicts, sets)."""
    if data is None or isinstance(data, Mapping | set | frozenset):
        raise SchemaMismatchError(
            f"cannot write a {type(data).__name__} as a zarr array; give an xarray Dataset/DataArray, a dask "
            "array or a numpy array"
        )
    problem = None
    try:
        return np.asarray(data)
    except (ValueError, TypeError) as exc:  # ragged nested sequences
        problem = f"cannot turn the {type(data).__name__} data into an array: {exc}"
    raise SchemaMismatchError(f"{problem}; give a numpy or dask array with one shape and dtype")


def check_array_encoding(encoding: Mapping[str, Any]) -> None:
    """Check the types of the array encoding values zarr would otherwise reject deep inside."""
    if "dtype" in encoding:
        problem = None
        try:
            dt = np.dtype(encoding["dtype"])
        except (TypeError, ValueError) as exc:
            problem = f"encoding dtype {encoding['dtype']!r} is not a numpy dtype ({exc}); give e.g. 'float32'"
        if problem is not None:
            raise EncodingError(f"{ARRAY_NAME!r}: {problem}")
        if dt.kind in "OV":
            raise EncodingError(f"{ARRAY_NAME!r}: encoding dtype {dt} cannot be stored; give a numeric or string dtype")
    attrs = encoding.get("attributes")
    if attrs is not None and (not isinstance(attrs, Mapping) or not all(isinstance(k, str) for k in attrs)):
        raise EncodingError(f"{ARRAY_NAME!r}: encoding 'attributes' must be a dict with string keys, got {attrs!r}")


