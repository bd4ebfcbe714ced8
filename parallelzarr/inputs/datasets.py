"""Adapter for xarray Datasets: xarray lays down metadata and encodes values, parallelzarr writes chunks.

xarray's own machinery keeps every convention (dimension names, CF-encoded times, ``_FillValue``,
scale/offset, attributes, coordinates, strings): ``Dataset.to_zarr(compute=False)`` creates the
arrays and writes small in-memory variables, and ``encode_zarr_variable`` turns each dask variable
into the exact values xarray would store. parallelzarr only decides how those values reach the chunks.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from xarray.backends.zarr import encode_zarr_variable
from xarray.core.common import contains_cftime_datetimes

from parallelzarr.errors import (
    EncodingError,
    EncodingKeyError,
    ModeError,
    RegionError,
    RegionKeyError,
    SchemaMismatchError,
    encoding_error,
)
from parallelzarr.inputs.ingest import label_difference
from parallelzarr.inputs.stored_range import check_range
from parallelzarr.inputs.stored_times import open_with_dim_from_ends, same_time_units
from parallelzarr.inputs.stored_units import check_units
from parallelzarr.inputs.validate import (
    DATASET_ENCODING_KEYS,
    check_encoding_keys,
    check_name,
    normalize_chunk_spec,
)
from parallelzarr.plan.chunks import chunk_limit, fit_chunks
from parallelzarr.plan.grid import choose_grid, is_uniform
from parallelzarr.store.keys import zarr_format_of
from parallelzarr.store.resolve import (
    ResolvedStore,
)

#: CF keys of a stored variable's encoding that decide its stored values.
CF_KEYS = ("units", "calendar", "dtype", "_FillValue", "missing_value", "scale_factor", "add_offset")
DATAARRAY_NAME = "__xarray_dataarray_variable__"
#: The array name xarray gives a variable named ``None``.
NONE_VAR_NAME = "__values__"


def as_dataset(data: xr.Dataset | xr.DataArray) -> xr.Dataset:
    """A Dataset for ``data`` (a DataArray becomes one variable, as ``DataArray.to_zarr`` does).

    Raises :class:`~parallelzarr.errors.InvalidNameError` for variable, coordinate or DataArray names
    that would not stay one node inside the store.
    """
    ds = _as_dataset(data)
    if None in ds.variables:
        # xarray stores a variable named None as "__values__" and reads it back as None.
        ds = ds.rename_vars({None: NONE_VAR_NAME})
    check_variable_names(ds)
    return ds


def _as_dataset(data: xr.Dataset | xr.DataArray) -> xr.Dataset:
    if isinstance(data, xr.DataArray):
        name = data.name if data.name is not None else DATAARRAY_NAME
        check_name(name, "DataArray", "give it a name with .rename('...')")
        if name in data.coords or name in data.dims:
            # As xarray's DataArray.to_zarr: stored under the generic name, the real one in the root
            # attributes (xr.open_dataarray restores it); stored as "x" it would read back as the
            # coordinate "x", its data lost.
            ds = data.to_dataset(name=DATAARRAY_NAME)
            ds.attrs["__xarray_dataarray_name__"] = name
            return ds
        return data.to_dataset(name=name)
    if not isinstance(data, xr.Dataset):
        raise SchemaMismatchError(
            f"expected an xarray Dataset or DataArray, got {type(data).__name__}; wrap numpy/dask arrays with "
            "xarray.DataArray(data, dims=...)"
        )
    return data


def check_variable_names(ds: xr.Dataset) -> None:
    """Refuse variable and coordinate names that would escape the store or collide with its metadata."""
    for name in ds.variables:
        check_name(name, "coordinate" if name in ds.coords else "variable")


def check_dataset_encoding(ds: xr.Dataset, encoding: Any) -> dict[str, Any]:
    """Validate a per-variable encoding dict (its shape, names and keys); return it as a dict."""
    if encoding is None:
        return {}
    if not isinstance(encoding, Mapping):
        raise EncodingError(
            f"encoding for a Dataset must be a dict of variable name -> dict of encoding keys, got "
            f"{type(encoding).__name__} {encoding!r}"
        )
    for name, enc in encoding.items():
        if name not in ds.variables:
            raise EncodingKeyError(
                f"encoding names variable {name!r}, which is not in the dataset; variables: {sorted(map(str, ds.variables))}"
            )
        check_encoding_keys(str(name), enc, DATASET_ENCODING_KEYS)
        var = ds.variables[name]
        dims = tuple(str(d) for d in var.dims)
        for label in ("chunks", "shards"):
            normalize_chunk_spec(str(name), label, enc.get(label), var.shape, dims)
    return dict(encoding)


def new_chunks(
    name: str, var: xr.Variable, user: Mapping[str, Any], max_mem: int | None = None,
) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """Zarr chunks and shards of a new dask variable: encoding, else source encoding, else dask chunks
    (split by :func:`~parallelzarr.plan.chunks.fit_chunks` when larger than the default limit)."""
    dims = tuple(str(d) for d in var.dims)
    spec = user.get("chunks")
    if spec is None:
        spec = var.encoding.get("chunks")
        if spec is not None and (not isinstance(spec, tuple | list) or len(spec) != var.ndim):
            spec = None
    chunks = normalize_chunk_spec(name, "chunks", spec, var.shape, dims)
    if chunks is None:
        chunks = tuple(
            max(1, ch[0]) if is_uniform(ch) else choose_grid(ch, n)
            for ch, n in zip(var.chunks or tuple((n,) for n in var.shape), var.shape, strict=True)
        )
        chunks = fit_chunks(chunks, np.dtype(var.dtype).itemsize, chunk_limit(max_mem))
    shards = normalize_chunk_spec(name, "shards", user.get("shards", var.encoding.get("shards")), var.shape, dims)
    return chunks, shards


#: Encoding keys that pack or mask values; in a variable's attributes too, they mean it was opened undecoded.
_PACKING = ("scale_factor", "add_offset", "_FillValue", "missing_value")


def encoded_variable(name: str, var: xr.Variable, encoding: Mapping[str, Any], zarr_format: int) -> xr.Variable:
    """``var`` as xarray's encoder stores it with ``encoding``; values the encoding cannot hold are refused
    (:func:`~parallelzarr.inputs.stored_range.check_range`: numpy now, dask as each block is written)."""
    if not any(k in var.attrs and k in encoding for k in _PACKING):  # else xarray's encoder refuses, below
        var = check_range(name, var, encoding)
    var = var.copy(deep=False)
    var.encoding = dict(encoding)
    try:
        return encode_zarr_variable(var, name=name, zarr_format=zarr_format_of(zarr_format))
    except (ValueError, TypeError, OverflowError) as exc:
        packed = [k for k in _PACKING if k in var.attrs]
        hint = (f"; its attributes already hold {packed}: packed values (opened with mask_and_scale=False or "
                "decode_cf=False?) must be decoded first, with xr.decode_cf(ds), or the file opened without "
                "that option" if packed and "already exists" in str(exc) else "")
        raise encoding_error(f"cannot encode variable {name!r} with encoding {dict(encoding)}: {exc}{hint}", exc) from exc


def stored_encoding(stored: xr.Dataset, name: str) -> dict[str, Any]:
    enc = stored[name].encoding
    return {k: enc[k] for k in CF_KEYS if k in enc}


#: Time variables of at most this many bytes given as dask arrays are computed to check them before a write.
TIMES_CHECKED_BEFORE_WRITE = 64 * 2**20


def encoded_as_stored(name: str, var: xr.Variable, stored: xr.Dataset, zarr_format: int) -> xr.Variable:
    """``var`` encoded with the encoding of the stored variable ``name``, the values it will store.

    Raises :class:`~parallelzarr.errors.EncodingError` before anything is written where times or
    timedeltas cannot be held exactly by the stored integer units ("days since ..." for 12-hourly
    data). xarray then encodes them in finer units but keeps the stored units attribute, so they read
    back as other dates (pydata/xarray#5969); from a dask array it fails during the write instead.
    Small dask time variables are computed here so that the check sees their values. Values whose
    ``units`` attribute is not the stored one are refused too (:mod:`parallelzarr.inputs.stored_units`).
    """
    check_units(name, var.attrs, stored[name].attrs)
    encoding = stored_encoding(stored, name)
    units = encoding.get("units")
    timelike = isinstance(units, str) and (var.dtype.kind in "Mm" or (var.dtype.kind == "O" and contains_cftime_datetimes(var)))
    if timelike and isinstance(var.data, da.Array) and var.nbytes <= TIMES_CHECKED_BEFORE_WRITE:
        var = var.compute(scheduler="synchronous")
    encoded = encoded_variable(name, var, encoding, zarr_format)
    if timelike and not isinstance(encoded.data, da.Array) and not same_time_units(encoded.attrs.get("units"), str(units)):
        raise EncodingError(_inexact_times_message(name, var, encoding, str(encoded.attrs.get("units")), zarr_format))
    return encoded


def _inexact_times_message(name: str, var: xr.Variable, encoding: Mapping[str, Any], needed: str, zarr_format: int) -> str:
    """Why the stored units of ``name`` cannot hold ``var``, naming its first such value, and what to do."""
    units, dtype = encoding["units"], np.dtype(encoding.get("dtype", "int64"))
    as_float = np.asarray(encoded_variable(name, var, {**encoding, "dtype": "float64"}, zarr_format).values).ravel()
    inexact = np.flatnonzero(np.isfinite(as_float) & (as_float != np.round(as_float)))
    first = f"{np.asarray(var.values).ravel()[inexact[0]]} (element {int(inexact[0])} of the new data)" if len(inexact) else "some"
    return (
        f"variable {name!r} is stored as {dtype} {units!r}, which cannot hold the new values exactly: "
        f"{first} needs {needed!r}. xarray would store them in those units under the stored {units!r} attribute, "
        "so they would read back as other values (pydata/xarray#5969). Nothing was written. Round the new values "
        f"to whole stored units, or rewrite the store with finer units, e.g. encoding={{{name!r}: {{'units': {needed!r}}}}}"
    )


def auto_region(ds: xr.Dataset, stored: xr.Dataset) -> dict[str, slice]:
    """Find the region of ``ds`` in ``stored`` from the labels of their index coordinates."""
    region: dict[str, slice] = {}
    for dim in ds.dims:
        if dim not in ds.indexes:
            continue
        if dim not in stored.indexes:
            raise RegionError(f"region='auto': dimension {dim!r} has no coordinate in the store to match labels against")
        new = ds.indexes[dim]
        old = stored.indexes[dim]
        pos = old.get_indexer(new)
        if (pos < 0).any():
            missing = list(new[pos < 0][:3])
            raise RegionKeyError(
                f"Not all values of coordinate {str(dim)!r} in the new array were found in the original store "
                f"(region='auto': labels {missing} are not in the stored coordinate); write only labels that "
                "exist, or append new ones with append_dim"
            )
        if len(pos) and not (np.diff(pos) == 1).all():
            run = np.sort(pos)
            fix = (f"; these are stored labels in another order: put the data in the stored order first, "
                   f"ds = ds.reindex({dim}=stored[{str(dim)!r}].values[{int(run[0])}:{int(run[-1]) + 1}])"
                   if len(np.unique(pos)) == len(pos) and (np.diff(run) == 1).all() else "")
            raise RegionError(
                f"The auto-detected region of coordinate {str(dim)!r} for writing new data to the original store "
                f"had non-contiguous indices: the labels must be one contiguous, increasing run of the stored ones{fix}"
            )
        start = int(pos[0]) if len(pos) else 0
        region[str(dim)] = slice(start, start + len(pos))
    return region


def check_region_labels(ds: xr.Dataset, stored: xr.Dataset, region: Mapping[str, slice]) -> list[str]:
    """The index coordinates of ``ds``, each checked to equal the stored labels where the region puts it.

    xarray drops them from a region write ("can't modify indexes") and writes the data wherever the
    slices say, so rows labelled 05:00 and 06:00 written at ``slice(4, 6)`` land on 04:00 and 05:00:
    refused here instead (:class:`~parallelzarr.errors.RegionError`), naming the first label that
    differs. The caller leaves them out of the write, as xarray does.
    """
    names = []
    for name, index in ds.indexes.items():
        name = str(name)
        if name not in stored.indexes:
            continue  # not an index in the store: written as a variable
        stored_index = stored.indexes[name]
        where = region.get(name, slice(None))
        expected = stored_index[where]
        if len(expected) == len(index) and expected.equals(index):
            names.append(name)
            continue
        at = next((i for i, (a, b) in enumerate(zip(index, expected, strict=False)) if a != b), min(len(index), len(expected)))
        got = index[at] if at < len(index) else "(none)"
        want = expected[at] if at < len(expected) else "(none)"
        raise RegionError(
            f"the {name!r} labels of the data are not the stored ones where region {name}={where} puts them: "
            f"label {at} is {got}, the store has {want} there. Writing would put the data under other labels. "
            f"Pass region={{{name!r}: 'auto'}} to place the data by its labels, fix the slice, or, if these are "
            f"the stored labels in another spelling, assign them: ds.assign_coords({name}=stored[{name!r}])"
        )
    return names


def relabelling(ds: xr.Dataset, stored: xr.Dataset) -> str | None:
    """What ``mode="a"`` relabels: stored variables ``ds`` leaves as they are, along an index it changes.

    ``mode="a"`` overwrites each variable of ``ds``, index coordinates included ("mode='a' will
    overwrite all coordinates", xarray's own tests). A variable added on a time axis one day off thus
    replaces the stored ``time``, and every stored variable along it keeps its values under the new
    labels. The write goes ahead as in xarray; the caller warns with this text (``None``: nothing relabelled).
    """
    for name, index in ds.indexes.items():
        name = str(name)
        if name not in stored.indexes:
            continue
        old = stored.indexes[name]
        if len(old) != len(index) or old.equals(index):
            continue  # other sizes: refused by the size checks, in xarray's words
        kept = sorted(str(v) for v, var in stored.variables.items()
                      if name in var.dims and str(v) != name and v not in ds.variables)
        if not kept:
            continue
        return (
            f"mode='a' overwrites {name!r} with other labels, as xarray does: the values already stored in {kept} "
            f"stay as they are, under the new labels ({label_difference(np.asarray(index), np.asarray(old))}). To add "
            f"variables on the stored labels instead, align them first "
            f"(ds.reindex({name}=stored[{name!r}]) or ds.assign_coords({name}=stored[{name!r}]))"
        )
    return None


def metadata_template(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with every dask variable replaced by a one-block lazy array of the same dtype and shape.

    ``to_zarr(compute=False)`` on the template lays down the same metadata (names, dims, attrs,
    encodings) while its delayed store has one task per variable, not one per dask block: on the
    real data it materialises the whole graph (40 s and GBs of RAM for a 20 TB variable).
    """
    template = ds.copy(deep=False)
    for var in template.variables.values():  # a shallow copy: these Variables are the template's own
        # Object-dtype variables keep their data: xarray infers their stored dtype (strings) from the
        # values, and an empty placeholder would be inferred as float.
        if isinstance(var.data, da.Array) and var.dtype.kind != "O":
            var.data = da.empty(var.shape, dtype=var.dtype, chunks=tuple(max(1, int(n)) for n in var.shape))
    return template


def open_stored(resolved: ResolvedStore, zarr_format: int | None = None, indexes: bool = True,
                from_ends: str | None = None, drop: Collection[str] = ()) -> xr.Dataset:
    """Open the stored dataset lazily, reading metadata only (and, with ``indexes``, the labels of
    the dimension coordinates, to build their indexes). ``zarr_format``: the stored format, when known.
    ``drop``: variables left out (xarray's ``drop_variables``; without ``indexes`` only).

    ``from_ends`` (without ``indexes``, with a known format): a dimension whose CF datetimes are
    decoded from the labels at its ends (:func:`parallelzarr.inputs.stored_times.open_with_dim_from_ends`).
    """

    def _open(**decoding: Any) -> xr.Dataset:
        try:
            if not indexes:
                return xr.open_zarr(resolved.store, chunks=None, decode_cf=True, zarr_format=zarr_format,
                                    create_default_indexes=False, drop_variables=list(drop) or None,
                                    **{"mask_and_scale": True, **decoding})
            return xr.open_zarr(resolved.store, chunks=None, decode_cf=True, mask_and_scale=True, zarr_format=zarr_format)
        except Exception as exc:
            raise ModeError(f"cannot open {resolved.description} as an xarray dataset: {exc}") from exc

    if from_ends is not None and not indexes and zarr_format in (2, 3):
        opened = open_with_dim_from_ends(_open, resolved.store, int(zarr_format), from_ends)
        if opened is not None:
            return opened[0]
    return _open()


