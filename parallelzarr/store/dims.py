"""One array-dimension view of a group: each dimension's length per array, and disagreements.

Readers such as xarray refuse a group whose arrays disagree on a shared dimension's length; appends
check for that before they commit and ``repair`` reports (or truncates) it.
"""

from __future__ import annotations

from typing import Any

import zarr

from parallelzarr.store.keys import zarr_format_of


def array_dims(arr: zarr.Array) -> tuple[str, ...] | None:
    names = getattr(arr.metadata, "dimension_names", None)
    if names and all(n is not None for n in names):
        return tuple(str(n) for n in names)
    v2 = arr.attrs.get("_ARRAY_DIMENSIONS")
    return tuple(str(n) for n in v2) if isinstance(v2, list | tuple) and v2 else None


def dimension_lengths(store: Any, zarr_format: int | None = None, use_consolidated: bool | None = False
                      ) -> dict[str, dict[str, int]]:
    """For each dimension name of the root group's arrays: array name -> its length along it.

    ``use_consolidated``: as zarr's (``False``, the default: each array's own metadata).
    """
    group = zarr.open_group(store, mode="r", use_consolidated=use_consolidated, zarr_format=None if zarr_format is None else zarr_format_of(zarr_format))
    out: dict[str, dict[str, int]] = {}
    for name, arr in group.arrays():
        dims = array_dims(arr)
        if dims is None or len(dims) != len(arr.shape):
            continue
        for dim, size in zip(dims, arr.shape, strict=True):
            out.setdefault(dim, {})[str(name)] = int(size)
    return out


def dimension_conflicts(store: Any, zarr_format: int | None = None, use_consolidated: bool | None = False
                        ) -> dict[str, dict[str, int]]:
    """The dimensions whose length differs between arrays (readers such as xarray refuse those)."""
    lengths = dimension_lengths(store, zarr_format, use_consolidated)
    return {d: sizes for d, sizes in lengths.items() if len(set(sizes.values())) > 1}


def describe_conflict(dim: str, sizes: dict[str, int]) -> str:
    """``'time': 96 on t2m, u10, time; 72 on lsm``."""
    by_len: dict[int, list[str]] = {}
    for name, n in sizes.items():
        by_len.setdefault(n, []).append(name)
    parts = [f"{n} on {', '.join(sorted(names))}" for n, names in sorted(by_len.items(), reverse=True)]
    return f"{dim!r}: " + "; ".join(parts)

