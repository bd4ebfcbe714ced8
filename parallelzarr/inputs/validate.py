"""Checks of user input that do not need the store: encodings, chunk specs, regions, modes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from parallelzarr.errors import (
    EncodingError,
    InvalidNameError,
    InvalidNameTypeError,
    ModeError,
    RegionError,
)
from parallelzarr.plan.chunk_spec import parse_chunk_spec
from parallelzarr.store.keys import METADATA_NAMES

MODES = ("w-", "w", "a", "a-", "r+")
#: Names that would collide with zarr's metadata documents or parallelzarr's bookkeeping.
RESERVED_NAMES = METADATA_NAMES
RESERVED_PREFIX = ".parallelzarr"

#: Keys accepted in the encoding of a bare array (``zarr.create_array`` keywords).
ARRAY_ENCODING_KEYS = frozenset(
    {"chunks", "shards", "compressors", "filters", "serializer", "fill_value", "dimension_names", "attributes", "dtype"}
)
#: Keys accepted per variable for Datasets: xarray's zarr keys plus its CF encoding keys.
DATASET_ENCODING_KEYS = frozenset(
    {
        "chunks",
        "shards",
        "compressors",
        "filters",
        "serializer",
        "fill_value",
        "write_empty_chunks",
        "chunk_key_encoding",
        "dtype",
        "_FillValue",
        "missing_value",
        "scale_factor",
        "add_offset",
        "units",
        "calendar",
    }
)


def check_name(name: Any, what: str = "variable", fix: str = "rename it (ds.rename(...)) before writing") -> str:
    """Refuse a node name that would not stay one node inside the store; return it as ``str``.

    Parameters
    ----------
    name
        A variable, coordinate, array or group member name (one path component).
    what
        What the name is, for the message (``"variable"``, ``"coordinate"``, ``"array"``...).
    fix
        How to fix it, for the message.

    Raises
    ------
    InvalidNameError
        For non-string names, empty names, ``.``/``..``, names with ``/``, ``\\`` or NUL, zarr
        metadata document names and parallelzarr's ``.parallelzarr`` prefix.
    """
    if not isinstance(name, str):
        raise InvalidNameTypeError(
            f"{what} name {name!r} is a {type(name).__name__}; names must be a string or None (None: an unnamed "
            f"DataArray), {fix}"
        )
    problem = None
    if name in ("", ".", ".."):
        problem = ("is a relative path component ('.' or '..') and would escape its group" if name else
                   "is empty (string must be length 1 or greater for serialization to zarr)")
    elif "/" in name or "\\" in name:
        problem = "contains a path separator ('/' or '\\') and would escape its group"
    elif "\x00" in name:
        problem = "contains a NUL character"
    elif name in RESERVED_NAMES:
        problem = "is the name of a zarr metadata document"
    elif name.startswith(RESERVED_PREFIX):
        problem = f"starts with {RESERVED_PREFIX!r}, parallelzarr's bookkeeping prefix"
    if problem:
        raise InvalidNameError(f"{what} name {name!r} {problem}; {fix}")
    return name


def check_mode(mode: str) -> str:
    if not isinstance(mode, str) or mode not in MODES:
        raise ModeError(
            f"unknown mode {mode!r}. The only supported options for mode are 'w', 'w-', 'a', 'a-', and 'r+', "
            f"but mode={mode!r}: 'w-' "
            "creates, 'w' overwrites the store, 'a' appends (append_dim) or adds/overwrites variables, 'a-' appends "
            "without overwriting variables lacking append_dim, 'r+' overwrites stored variables or a region"
        )
    return mode


def check_encoding_keys(name: str, enc: Mapping[str, Any], allowed: frozenset[str]) -> None:
    """Refuse unknown encoding keys, naming the variable and the valid keys."""
    if not isinstance(enc, Mapping):
        raise EncodingError(
            f"encoding must be castable to a dictionary: the encoding for {name!r} must be a dict of encoding "
            f"keys, got {type(enc).__name__} {enc!r}"
        )
    bad = [k for k in enc if not isinstance(k, str)]
    if bad:
        raise EncodingError(f"encoding keys for {name!r} must be strings, got {bad}; valid keys are {sorted(allowed)}")
    unknown = sorted(set(enc) - allowed)
    if unknown:
        raise EncodingError(
            f"unexpected encoding parameters for zarr backend: unknown encoding key(s) {unknown} for {name!r}; "
            f"valid keys are {sorted(allowed)}"
        )


def normalize_chunk_spec(
    name: str, label: str, spec: Any, shape: Sequence[int], dims: Sequence[str]
) -> tuple[int, ...] | None:
    """Turn ``chunks``/``shards`` of a write's encoding into one length per axis (``None``: not given).

    The rules are those of every chunk request (:mod:`parallelzarr.plan.chunk_spec`), with the write
    options: a dict naming a dimension the variable does not have is refused, axes it leaves out
    take the whole axis, and lengths beyond an axis are kept (the array may grow by appends).
    Lengths are capped at :data:`parallelzarr.plan.chunk_spec.MAX_CHUNK_LENGTH`.
    """
    if spec is None:
        return None
    return parse_chunk_spec(spec, shape, dims, unknown_dims="error", clip=False, label=label, name=name)


def normalize_region(
    name: str,
    region: Mapping[Any, slice] | Sequence[slice] | None,
    dims: Sequence[str],
    shape: Sequence[int],
    data_shape: Sequence[int],
) -> tuple[int, ...]:
    """Validate a region against the stored ``shape`` and the data's shape; return its starts.

    ``region`` is a dict of slices keyed by dimension name (or axis number) or a tuple of slices.
    Axes not named are written whole.
    """
    ndim = len(shape)
    slices: list[slice] = [slice(None)] * ndim
    if region is None:
        pass
    elif isinstance(region, Mapping):
        for key, sl in region.items():
            if isinstance(key, int) and not isinstance(key, bool):
                axis = key
                if not 0 <= axis < ndim:
                    raise RegionError(f"{name!r}: region axis {key} out of range for {ndim} dimension(s)")
            elif key in dims:
                axis = list(dims).index(key)
            else:
                raise RegionError(f"{name!r}: region names unknown dimension {key!r}; dimensions are {tuple(dims)}")
            slices[axis] = sl
    elif isinstance(region, list | tuple):
        region = tuple(region)
        if len(region) != ndim:
            raise RegionError(f"{name!r}: region has {len(region)} slices but the array has {ndim} dimension(s)")
        slices = list(region)
    else:
        raise RegionError(
            f"{name!r}: region must be a tuple of slices (one per dimension) or a dict of slices by dimension, "
            f"got {type(region).__name__} {region!r}"
        )
    starts = []
    for d, sl, n, m in zip(dims, slices, shape, data_shape, strict=True):
        if not isinstance(sl, slice):
            raise RegionError(f"{name!r}: region for {d!r} must be a slice, got {sl!r}")
        if sl.step not in (None, 1):
            raise RegionError(f"{name!r}: region for {d!r} has step {sl.step}; only contiguous slices (step 1) can be written")
        start = 0 if sl.start is None else sl.start
        stop = n if sl.stop is None else sl.stop
        start = int(start) if isinstance(start, np.integer) else start
        stop = int(stop) if isinstance(stop, np.integer) else stop
        if (not isinstance(start, int) or not isinstance(stop, int) or isinstance(start, bool)
                or isinstance(stop, bool) or start < 0 or stop < 0):
            raise RegionError(f"{name!r}: region for {d!r} must use non-negative integer bounds, got {sl}")
        if stop > n or start > stop:
            raise RegionError(
                f"{name!r}: region {d}={start}:{stop} is out of bounds for the stored length {n}; "
                f"use bounds within 0:{n}"
            )
        if stop - start != m:
            raise RegionError(
                f"variable {name!r} already exists with different dimension sizes: region {d}={start}:{stop} has "
                f"length {stop - start} but the data has length {m} along {d!r}; make the region match the data"
            )
        starts.append(start)
    return tuple(starts)
