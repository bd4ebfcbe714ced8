"""xarray's refusals of a write into an existing store, in xarray's order and with its key phrases.

Code written for xarray matches its messages (``pytest.raises(ValueError, match="...")``, log
filters); parallelzarr checks the same things, but in its own order and words. These checks run
first, so the same bad input gets xarray's phrase (plus what is wrong and how to fix it) and the
same built-in exception type.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from parallelzarr.errors import (
    AppendError,
    EncodingError,
    ModeError,
    RegionError,
    RegionTypeError,
    SchemaMismatchError,
)


def check_dtype(name: str, new: np.dtype, old: np.dtype) -> None:
    """xarray's rule for writing into a stored variable: dtypes other than numbers, datetimes, bools
    and objects (fixed-width strings) must match exactly, or values would be cut."""
    new, old = np.dtype(new), np.dtype(old)
    easy = (np.issubdtype(new, np.number) or np.issubdtype(new, np.datetime64) or np.issubdtype(new, np.bool_)
            or new.kind == "O" or (new.kind in "SU" and old.kind == "O"))
    if not easy and new != old:
        raise SchemaMismatchError(
            f"Mismatched dtypes for variable {name} between Zarr store on disk and dataset to append. Store has "
            f"dtype {old} but dataset to append has dtype {new}; cast it with .astype({str(old)!r}) (strings "
            "would otherwise be cut), or rewrite the store with mode='w'"
        )


def check_stored_encoding(encoding: Mapping[Any, Any] | None, stored_names: set[str]) -> None:
    """An encoding for a variable already in the store is refused (it keeps the stored encoding)."""
    for name in encoding or {}:
        if str(name) in stored_names:
            raise EncodingError(
                f"variable {str(name)!r} already exists, but encoding was provided; a stored variable keeps its "
                "stored encoding: drop its entry from encoding (or rewrite the store with mode='w')"
            )


def same_attrs(a: Mapping[Any, Any], b: Mapping[Any, Any]) -> bool:
    """Whether two attribute mappings hold the same keys and values; array-valued attributes (netCDF's
    ``valid_range``, ``flag_values``) compare element-wise, where ``dict ==`` raises."""
    if set(a) != set(b):
        return False
    for key, value in a.items():
        other = b[key]
        if isinstance(value, np.ndarray | list | tuple) or isinstance(other, np.ndarray | list | tuple):
            x, y = np.asarray(value), np.asarray(other)
            if x.shape != y.shape or not (x.dtype.kind == y.dtype.kind or {x.dtype.kind, y.dtype.kind} <= set("biuf")):
                return False
            if not np.array_equal(x, y):
                return False
        elif not bool(value == other):
            return False
    return True


#: Dtype kinds whose appends xarray never refuses for a stored dtype (:func:`check_dtype`).
_UNCHECKED_KINDS = frozenset("biufcM")


@dataclasses.dataclass(frozen=True)
class ConsolidatedView:
    """What :func:`nothing_for_xarray_to_check` read: the resolved store behind a read cache (each key
    read once), its zarr format and its arrays from the consolidated metadata."""

    resolved: Any
    zarr_format: int
    arrays: Mapping[str, Any]


def nothing_for_xarray_to_check(data: Any, store: Any, append_dim: str, encoding: Mapping[Any, Any] | None,
                                storage_options: Mapping[str, Any] | None) -> ConsolidatedView | None:
    """Whether the consolidated metadata alone shows that ``to_zarr(mode="a", append_dim=...)`` of
    ``data`` passes :func:`check_append`; returns what it read when it does, else ``None``.

    It does for a Dataset whose variables are all stored with the same dims in the same order and the
    same sizes but along ``append_dim`` (at least one has it), with numbers, booleans or datetimes
    (xarray compares no such dtype) or unicode strings of the stored width, no encoding, and root attributes equal to the stored ones
    as xarray reads them (without ``_nc*`` keys). The drop-in then skips opening the whole store as
    a dataset for those checks; what it writes besides the rows (the variables without
    ``append_dim`` whose values changed) is still decided from their stored values, and the append
    checks everything it checks for ``parallelzarr.append``. Any doubt (no consolidated metadata, a
    variable not stored) answers ``None``: the full checks run.
    """
    import xarray as xr

    from parallelzarr.inputs.stored_schema import stored_arrays
    from parallelzarr.store.keys import read_consolidated
    from parallelzarr.store.read_cache import ReadCache
    from parallelzarr.store.resolve import resolve_store, root_node_format

    if encoding or not isinstance(data, xr.Dataset):
        return None
    if any(v.dtype.kind not in _UNCHECKED_KINDS | {"U"} for v in data.variables.values()):
        return None
    if not any(append_dim in v.dims for v in data.variables.values()):
        return None
    resolved = resolve_store(store, storage_options)
    once = dataclasses.replace(resolved, store=ReadCache(resolved.store))  # the root document is read once
    fmt = root_node_format(once.store)
    found = read_consolidated(once.store, fmt) if fmt is not None else None
    arrays = stored_arrays(once.store, fmt, found) if found is not None and fmt is not None else None
    if found is None or arrays is None or fmt is None or set(arrays) != {str(n) for n in data.variables}:
        return None
    for name, var in data.variables.items():
        stored = arrays[str(name)]
        if tuple(map(str, var.dims)) != tuple(stored.dims) or any(
                n != m for d, n, m in zip(stored.dims, var.shape, stored.shape, strict=True) if d != append_dim):
            return None  # transposed or resized: xarray's own checks say how
        if var.dtype.kind == "U" and var.dtype != stored.dtype:
            return None  # xarray's check_dtype refuses another string width: its own words say so
    stored_attrs = {k: v for k, v in found.attributes.items() if not k.lower().startswith("_nc")}
    return ConsolidatedView(once, fmt, arrays) if same_attrs(stored_attrs, data.attrs) else None


def check_append(data: Any, store: Any, append_dim: str, encoding: Mapping[Any, Any] | None,
                 storage_options: Mapping[str, Any] | None) -> Any:
    """xarray's checks of ``to_zarr(append_dim=...)`` into an existing store; reads metadata only.

    In xarray's order: an encoding for a stored variable, an ``append_dim`` the store lacks, a
    mismatched fixed-width dtype. A store without data (a first append) is not checked here.
    Returns the stored dataset it opened (lazily, no dask), or ``None`` when it opened none.
    """
    import zarr

    from parallelzarr.inputs.datasets import as_dataset, open_stored
    from parallelzarr.store.dims import array_dims
    from parallelzarr.store.read_cache import ReadCache
    from parallelzarr.store.resolve import resolve_store, root_node_format, store_has_data
    from parallelzarr.store.staging import unpublished_write

    resolved = resolve_store(store, storage_options)
    fmt = root_node_format(resolved.store)  # given to the open: it then reads one format's documents
    if (fmt is None and not store_has_data(resolved.store)) or unpublished_write(resolved.store) is not None:
        return None
    try:
        # Metadata only: no index is built (that would read every label of every dimension coordinate).
        # Each document is read once during the open (a cache for this open only, before any lease).
        once = dataclasses.replace(resolved, store=ReadCache(resolved.store))
        stored = open_stored(once, zarr_format=fmt, indexes=False, from_ends=append_dim)
    except ModeError:
        stored = None  # xarray's refusals first, from the arrays zarr lists; then why it cannot be opened
    if stored is not None:
        names, dims = {str(n) for n in stored.variables}, {str(d) for d in stored.dims}
    else:
        try:
            group = zarr.open_group(resolved.store, mode="r", use_consolidated=False)
        except Exception:  # not a group: parallelzarr.append names the problem
            return None
        arrays = dict(group.arrays())
        names, dims = {str(n) for n in arrays}, set()
        for arr in arrays.values():
            dims.update(array_dims(arr) or ())
    check_stored_encoding(encoding, names)
    if append_dim not in dims:
        raise AppendError(
            f"append_dim={append_dim!r} does not match any existing dataset dimensions {sorted(dims)}; append "
            "along one of them, or write the new dimension's variables without append_dim (mode='a' adds variables)"
        )
    if stored is None:
        stored = open_stored(resolved, indexes=False)  # raises the ModeError that says why
    ds = as_dataset(data)
    for name, var in ds.variables.items():
        if name in stored.variables:
            check_dtype(str(name), var.dtype, stored.variables[name].dtype)
            in_stored_dims(str(name), var, stored.variables[name], except_dim=append_dim)
    return stored


def in_stored_dims(name: str, new: Any, old: Any, *, except_dim: str | None = None, sizes: bool = True) -> Any:
    """xarray's check of a variable written onto a stored one: the same dims in any order, and (with
    ``sizes``) the same sizes but along ``except_dim`` (an append's ``append_dim``). Returns ``new`` in
    the stored dimension order; raises :class:`~parallelzarr.errors.SchemaMismatchError` (a ``ValueError``)."""
    names, stored_names = [str(d) for d in new.dims], [str(d) for d in old.dims]
    if names != stored_names:
        if set(names) != set(stored_names):
            raise SchemaMismatchError(
                f"variable {name!r} already exists with different dimension names {old.dims} != {new.dims}, "
                "but changing variable dimensions is not supported by to_zarr(); rename the variable, or "
                "rewrite the store with mode='w'"
            )
        by_name = {str(d): d for d in new.dims}
        new = new.transpose(*(by_name[d] for d in stored_names))
    stored_sizes = {str(d): n for d, n in old.sizes.items() if str(d) != except_dim}
    new_sizes = {str(d): n for d, n in new.sizes.items() if str(d) != except_dim}
    if sizes and stored_sizes != new_sizes:
        raise SchemaMismatchError(
            f"variable {name!r} already exists with different dimension sizes: {stored_sizes} != {new_sizes}. "
            f"to_zarr() only supports changing dimension sizes when explicitly appending (append_dim=...); "
            f"select the stored extent of the other dimensions (ds.isel(...)), write a subset with "
            f"region=..., or replace the store with mode='w'"
        )
    return new


def check_region(ds: Any, region: Any, append_dim: str | None = None) -> None:
    """xarray's checks of a Dataset ``region`` (after ``"auto"`` is resolved), in its order.

    Raises :class:`~parallelzarr.errors.RegionTypeError` (a ``TypeError``) for a region that is not
    a dict or a value that is not a slice, :class:`~parallelzarr.errors.RegionError` (a
    ``ValueError``) for unknown dimensions, steps, variables off the region, ``append_dim`` in it.
    """
    if isinstance(region, str) and region == "auto":
        return
    if not isinstance(region, Mapping):
        raise RegionTypeError(
            f"``region`` must be a dict, got {type(region).__name__} {region!r}: give a dict of slices by "
            "dimension ({'time': slice(0, 10)}) or 'auto'"
        )
    dims = [str(d) for d in ds.dims]
    for key, value in region.items():
        if isinstance(value, str) and value == "auto":
            continue
        if key not in ds.dims:
            raise RegionError(
                f"all keys in ``region`` are not in Dataset dimensions, got {list(region)} and {dims}; name "
                "only dimensions of the data"
            )
        if not isinstance(value, slice):
            raise RegionTypeError(
                f"all values in ``region`` must be slice objects, got region={region}; write {key!r}: "
                "slice(start, stop)"
            )
        if value.step not in (1, None):
            raise RegionError(
                f"step on all slices in ``region`` must be 1 or None, got region={region}: only contiguous "
                "slices can be written"
            )
    # Data variables only: coordinates off the region are already stored and left alone here.
    off = [str(k) for k, v in ds.data_vars.items() if not set(region).intersection(v.dims)]
    if region and off:
        raise RegionError(
            "when setting `region` explicitly in to_zarr(), all variables in the dataset to write must have at "
            f"least one dimension in common with the region's dimensions {list(region)}, but that is not the "
            f"case for some variables here. To drop these variables from this dataset before exporting to "
            f"zarr, write: .drop_vars({off!r})"
        )
    if append_dim is not None and append_dim in region:
        raise RegionError(
            f"cannot list the same dimension in both ``append_dim`` and ``region`` with to_zarr(), got "
            f"{append_dim} in both: append along it, or write a region of it, not both"
        )
