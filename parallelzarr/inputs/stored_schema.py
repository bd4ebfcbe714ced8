"""What a consolidated store holds, from its consolidated metadata alone: names, dims, shapes, dtypes.

A small append onto a store opened by xarray pays for building every variable (3 ms of a 16 ms
append here) when, for the common ingest shape (float fields and a CF time coordinate, every
variable growing), all its checks need only these facts and the last stored labels. This module
reads them from the one document the append has read already, and says which variables xarray
would store exactly as given (:func:`stored_as_given`): the lean append of
:mod:`parallelzarr.run.append` uses it, and hands anything else to the full path.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from parallelzarr.store.keys import Consolidated, read_consolidated

__all__ = ["StoredArray", "stored_arrays", "stored_as_given", "dimensions_agree", "reads_as_stored", "same_as_stored",
           "statics_as_stored"]

#: Attributes whose CF coders change values or dtypes on the way to the store (or refuse to).
_VALUE_CODING = frozenset({"_FillValue", "missing_value", "scale_factor", "add_offset", "_Unsigned", "dtype",
                           "calendar"})
#: ``units`` that make xarray decode numbers as timedeltas (``decode_timedelta``).
_TIME_UNITS = frozenset({"days", "day", "d", "hours", "hour", "h", "hr", "minutes", "minute", "min", "seconds",
                         "second", "sec", "s", "milliseconds", "millisecond", "ms", "microseconds", "microsecond",
                         "us", "nanoseconds", "nanosecond", "ns"})


@dataclass(frozen=True)
class StoredArray:
    """One array of the consolidated metadata.

    Attributes
    ----------
    name, dims, shape, dtype
        As xarray would name, dimension and type it (``dtype``: the stored native dtype).
    attrs
        Its attributes (v2: ``.zattrs`` without ``_ARRAY_DIMENSIONS``).
    doc
        Its metadata document (v3), or its ``.zarray`` (v2).
    fill
        zarr's fill value as stored in ``doc``.
    """

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: np.dtype
    attrs: Mapping[str, Any]
    doc: Mapping[str, Any]
    fill: Any


def stored_arrays(store: Any, zarr_format: int, found: Consolidated | None = None) -> dict[str, StoredArray] | None:
    """The arrays of the root group's consolidated metadata, or ``None``. ``found``: that metadata,
    when the caller has read it already.

    ``None`` without consolidated metadata, with a subgroup, or with any array this reading does
    not understand plainly (no dimension names, not a regular chunk grid, sharded, a dtype numpy
    cannot name): the caller then opens the store as xarray does.
    """
    found = found if found is not None else read_consolidated(store, zarr_format)
    if found is None:
        return None
    out: dict[str, StoredArray] = {}
    try:
        entries = _v3_entries(found.metadata) if zarr_format == 3 else _v2_entries(found.metadata)
        if entries is None:
            return None
        for name, (doc, attrs) in entries.items():
            arr = _stored_array(name, doc, attrs, zarr_format)
            if arr is None:
                return None
            out[name] = arr
    except (KeyError, TypeError, ValueError):
        return None
    return out


def _v3_entries(meta: Mapping[str, Any]) -> dict[str, tuple[dict, dict]] | None:
    entries = {}
    for name, doc in meta.items():
        if not isinstance(doc, dict) or doc.get("node_type") != "array" or "/" in name:
            return None  # a subgroup, or a node below one
        entries[name] = (doc, dict(doc.get("attributes") or {}))
    return entries


def _v2_entries(meta: Mapping[str, Any]) -> dict[str, tuple[dict, dict]] | None:
    entries = {}
    for key, doc in meta.items():
        if key in (".zgroup", ".zattrs"):
            continue
        name, _, leaf = key.rpartition("/")
        if "/" in name or leaf == ".zgroup":
            return None
        if leaf == ".zarray":
            entries[name] = (doc, dict(meta.get(f"{name}/.zattrs") or {}))
    return entries


def _stored_array(name: str, doc: dict, attrs: dict, zarr_format: int) -> StoredArray | None:
    if zarr_format == 3:
        grid = doc.get("chunk_grid") or {}
        codecs = doc.get("codecs") or []
        if grid.get("name") != "regular" or any(isinstance(c, dict) and c.get("name") == "sharding_indexed" for c in codecs):
            return None
        dims = doc.get("dimension_names")
        dtype = _v3_dtype(doc.get("data_type"))
        fill = doc.get("fill_value")
    else:
        dims = attrs.pop("_ARRAY_DIMENSIONS", None)
        dtype = np.dtype(doc["dtype"])
        if not dtype.isnative:
            return None
        fill = doc.get("fill_value")
    shape = tuple(int(n) for n in doc["shape"])
    if dims is None and not shape:
        dims = []  # a 0-d array (zarr v3 leaves dimension_names out)
    if not isinstance(dims, list) or len(dims) != len(shape) or not all(isinstance(d, str) for d in dims):
        return None
    if dtype is None or dtype.kind == "V":
        return None
    return StoredArray(name, tuple(dims), shape, dtype, attrs, doc, fill)


def _v3_dtype(data_type: Any) -> np.dtype | None:
    """numpy's dtype for a zarr v3 data type it names plainly (numbers, booleans, fixed-width UTF-32
    strings, which xarray writes for numpy ``<U``), else ``None``."""
    if isinstance(data_type, str):
        return np.dtype(data_type) if data_type in _V3_DTYPES else None
    if isinstance(data_type, dict) and data_type.get("name") == "fixed_length_utf32":
        length = (data_type.get("configuration") or {}).get("length_bytes")
        if isinstance(length, int) and length > 0 and length % 4 == 0:
            return np.dtype(f"<U{length // 4}")
    return None


#: zarr v3 data types that are numpy's names for the same dtype (others: the full path).
_V3_DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                        "float32", "float64", "complex64", "complex128"})


def dimensions_agree(arrays: Mapping[str, StoredArray]) -> dict[str, int] | None:
    """Each dimension's length when every array agrees on it, else ``None`` (readers could not open it)."""
    lengths: dict[str, int] = {}
    for arr in arrays.values():
        for dim, n in zip(arr.dims, arr.shape, strict=True):
            if lengths.setdefault(dim, n) != n:
                return None
    return lengths


def _nan_fill(value: Any) -> bool:
    """Whether a ``_FillValue`` attribute (zarr v3, as xarray writes it: base64 of a float64) is NaN."""
    if isinstance(value, str):
        try:
            raw = base64.standard_b64decode(value.encode("ascii"))
        except ValueError:
            return value == "NaN"
        return len(raw) == 8 and bool(np.isnan(np.frombuffer(raw, dtype="<f8")[0]))
    return isinstance(value, float) and bool(np.isnan(value))


def stored_as_given(var: xr.Variable, arr: StoredArray, zarr_format: int) -> bool:
    """Whether xarray would store the values of the float variable ``var`` in ``arr`` unchanged.

    Same float dtype; no attribute of ``var`` that its encoder acts on or refuses beside the stored
    encoding; no stored attribute that scales, masks with a number or decodes as times; and a
    fill value that masks only NaN (v3: a NaN ``_FillValue`` attribute or none; v2: zarr's fill
    value NaN or none, which xarray reads as ``_FillValue``).
    """
    dtype = np.dtype(var.dtype)
    if dtype.kind != "f" or dtype != arr.dtype:
        return False
    if any(k in var.attrs for k in _VALUE_CODING) or _time_units(var.attrs.get("units")):
        return False
    attrs = arr.attrs
    if any(k in attrs for k in _VALUE_CODING - {"_FillValue"}) or _time_units(attrs.get("units")):
        return False
    if zarr_format == 3:
        return "_FillValue" not in attrs or _nan_fill(attrs["_FillValue"])
    return "_FillValue" not in attrs and (arr.fill is None or arr.fill == "NaN")


def _time_units(units: Any) -> bool:
    return isinstance(units, str) and (" since " in units or units.strip().lower() in _TIME_UNITS)


def reads_as_stored(arr: StoredArray, zarr_format: int) -> bool:
    """Whether xarray's open gives the stored values of ``arr`` unchanged (no CF decoding acts on them).

    Numbers, booleans or fixed-width unicode strings; no stored attribute that scales, masks with a
    number or decodes as times; a fill value that masks only NaN (v3: a NaN ``_FillValue`` attribute or
    none; v2: zarr's fill value none, or NaN for floats, which xarray reads as ``_FillValue``).
    """
    attrs, kind = arr.attrs, arr.dtype.kind
    if kind not in "biufU" or any(k in attrs for k in _VALUE_CODING - {"_FillValue"}) or _time_units(attrs.get("units")):
        return False
    if zarr_format == 3:
        return "_FillValue" not in attrs or (kind == "f" and _nan_fill(attrs["_FillValue"]))
    return "_FillValue" not in attrs and (arr.fill is None or (kind == "f" and arr.fill == "NaN"))


def same_as_stored(var: xr.Variable, arr: StoredArray, store: Any, zarr_format: int, limit: int) -> bool | None:
    """Whether ``var`` holds the values xarray would read from ``arr`` (NaN equal to NaN, as
    ``Variable.equals``); ``None`` when that needs xarray's open (decoded values, or more than
    ``limit`` bytes stored or given, which are compared block by block there).

    Reads the stored values (each chunk once), decoding in this thread.
    """
    from parallelzarr.store.chunk_io import read_region
    from parallelzarr.store.zarr_compat import array_from_document

    if not reads_as_stored(arr, zarr_format) or max(var.nbytes, int(np.prod(arr.shape)) * arr.dtype.itemsize) > limit:
        return None
    if tuple(map(str, var.dims)) != arr.dims or tuple(var.shape) != arr.shape:
        return False
    stored = array_from_document(store, arr.name, arr.doc, zarr_format, {**arr.attrs, "_ARRAY_DIMENSIONS": list(arr.dims)})
    values = read_region(stored, tuple(slice(0, n) for n in arr.shape)) if arr.shape else np.asarray(stored[()])
    return bool(xr.Variable(arr.dims, values).equals(xr.Variable(arr.dims, np.asarray(var.values))))


def statics_as_stored(ds: xr.Dataset, arrays: Mapping[str, StoredArray], store: Any, zarr_format: int, append_dim: str,
                      compare: Callable[[str], bool] = lambda name: True) -> bool:
    """Whether every variable of ``ds`` without ``append_dim`` is stored in ``arrays`` with its dims and
    sizes and, where ``compare(name)``, holds the values xarray reads there (:func:`same_as_stored`, up to
    ``STATIC_VERIFY_IN_MEMORY`` bytes). ``False`` also when telling needs xarray's decoding or a blockwise
    comparison: the caller then opens the store as xarray does."""
    from parallelzarr.inputs.ingest import STATIC_VERIFY_IN_MEMORY

    for name, var in ds.variables.items():
        if append_dim in var.dims:
            continue
        arr = arrays.get(str(name))
        if arr is None or tuple(map(str, var.dims)) != arr.dims or tuple(var.shape) != arr.shape:
            return False
        if compare(str(name)) and not same_as_stored(var, arr, store, zarr_format, STATIC_VERIFY_IN_MEMORY):
            return False
    return True
