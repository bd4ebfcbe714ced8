"""A stored CF datetime coordinate decoded as xarray decodes it, from the labels at its ends.

Opening a store, xarray decides each datetime variable's decoded dtype (``datetime64`` or cftime
objects) by decoding its first and last values, read one element at a time through zarr's event
loop; an append then reads the last two labels again for its continuity checks. Opened undecoded
instead, the append dimension's first and last two labels are read at once and decoded with
xarray's own coder: the same dtype, attributes and encoding (the first label matters: a date out of
``datetime64``'s range turns the whole variable into cftime objects). The full variable is decoded
lazily with the transform xarray applies, so reading it still gives xarray's values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import zarr
from xarray.coding.common import lazy_elemwise_func
from xarray.coding.times import CFDatetimeCoder, decode_cf_datetime

from parallelzarr.store.chunk_io import read_region
from parallelzarr.store.keys import read_consolidated
from parallelzarr.store.zarr_compat import array_from_document

__all__ = ["open_with_dim_from_ends", "plain_cf_datetime", "undecoded_open_kwargs", "decode_from_ends",
           "consolidated_array", "decode_labels", "encode_labels", "same_time_units", "NUMPY_CALENDARS", "read_positions"]

#: Attributes whose coders run before the datetime coder and behave differently when it does not.
_MASK_AND_SCALE = ("_FillValue", "missing_value", "scale_factor", "add_offset")


def plain_cf_datetime(attrs: Mapping[str, Any]) -> bool:
    """Whether stored attributes describe CF datetimes (units ``"... since ..."``) with no mask or scale."""
    units = attrs.get("units")
    return isinstance(units, str) and " since " in units and not any(k in attrs for k in _MASK_AND_SCALE)


def undecoded_open_kwargs(name: str) -> dict[str, Any]:
    """``xr.open_zarr`` keywords that leave only variable ``name`` undecoded (no mask, scale or times)."""
    return {"decode_times": {name: False}, "mask_and_scale": {name: False}}


def decode_from_ends(raw: xr.Variable, name: str,
                     read: Callable[[list[int]], np.ndarray] | None = None) -> tuple[xr.Variable, np.ndarray] | None:
    """``raw`` (opened with :func:`undecoded_open_kwargs`) decoded as xarray would, and its last two labels.

    Reads three labels (the first and the last two): through ``read(positions)`` when given (the
    stored values at those positions), else through ``raw``. ``None`` where the variable is not a
    plain 1-d CF datetime variable of at least two labels (units ``"... since ..."``, numbers, no
    mask or scale attributes): the caller then opens the store as xarray does.
    """
    if (raw.ndim != 1 or raw.shape[0] < 2 or raw.dtype.kind not in "iuf" or not plain_cf_datetime(raw.attrs)
            or any(k in raw.encoding for k in _MASK_AND_SCALE)):
        return None
    units = raw.attrs["units"]
    n = raw.shape[0]
    positions = sorted({0, n - 2, n - 1})
    values = np.asarray(raw[positions].values) if read is None else read(positions)
    probe = xr.Variable(raw.dims, values, dict(raw.attrs), dict(raw.encoding))
    coder = CFDatetimeCoder()  # what xr.open_zarr(decode_times=True) decodes with
    decoded_probe = coder.decode(probe, name)
    transform = partial(decode_cf_datetime, units=units, calendar=raw.attrs.get("calendar"),
                        use_cftime=coder.use_cftime, time_unit=coder.time_unit)
    data = lazy_elemwise_func(raw._data, transform, decoded_probe.dtype)
    decoded = xr.Variable(raw.dims, data, decoded_probe.attrs, decoded_probe.encoding, fastpath=True)
    return decoded, np.asarray(decoded_probe.values)[-2:]


#: Calendars whose dates numpy's ``datetime64`` holds: the lean append's labels (others: cftime objects).
NUMPY_CALENDARS = frozenset({"standard", "gregorian", "proleptic_gregorian"})


def decode_labels(values: np.ndarray, attrs: Mapping[str, Any], name: str) -> np.ndarray:
    """Stored labels ``values`` of CF datetime variable ``name`` decoded as ``xr.open_zarr`` decodes them."""
    return np.asarray(CFDatetimeCoder().decode(xr.Variable((name,), values, dict(attrs)), name).values)


def encode_labels(values: np.ndarray, attrs: Mapping[str, Any], dtype: np.dtype, name: str) -> np.ndarray | None:
    """``datetime64`` labels encoded as xarray encodes them for a store with CF attributes ``attrs``.

    ``None`` where xarray would not keep the stored units and ``dtype`` (labels the units cannot
    hold exactly): the caller then encodes them as the full append does.
    """
    encoding = {"units": attrs["units"], "calendar": attrs.get("calendar"), "dtype": dtype}
    encoded = CFDatetimeCoder().encode(xr.Variable((name,), values, {}, encoding), name)
    if not same_time_units(encoded.attrs.get("units"), attrs["units"]) or np.dtype(encoded.dtype) != dtype:
        return None
    return np.asarray(encoded.values)


def same_time_units(a: Any, b: str) -> bool:
    """Whether CF time units ``a`` and ``b`` are the same (xarray rewrites ``2000-01-01 00:00:00`` as ``2000-01-01``).

    Units without ``since`` (timedeltas: ``"hours"``) are the same when their names are.
    """
    if isinstance(a, str) and " since " not in a and " since " not in b:
        return a.strip().lower() == b.strip().lower()
    if not isinstance(a, str) or " since " not in a or " since " not in b:
        return False
    (unit_a, ref_a), (unit_b, ref_b) = (u.split(" since ", 1) for u in (a, b))
    try:
        return unit_a.strip().lower() == unit_b.strip().lower() and pd.Timestamp(ref_a.strip()) == pd.Timestamp(ref_b.strip())
    except (ValueError, TypeError):
        return False


def consolidated_array(store: Any, zarr_format: int, name: str) -> tuple[dict[str, Any], zarr.Array] | None:
    """Array ``name`` as the consolidated metadata (the document xarray opens) describes it: its attributes
    and the array, built from its document with no further read; ``None`` without such an entry."""
    found = read_consolidated(store, zarr_format)
    if found is None:
        return None
    doc = found.metadata.get(name) if zarr_format == 3 else found.metadata.get(f"{name}/.zarray")
    attrs = (doc or {}).get("attributes") if zarr_format == 3 else found.metadata.get(f"{name}/.zattrs")
    if not isinstance(doc, dict) or not isinstance(attrs, dict):
        return None
    try:
        return attrs, array_from_document(store, name, doc, zarr_format, attrs)
    except (KeyError, TypeError, ValueError):  # not an array zarr reads plainly: the caller opens as xarray does
        return None


def read_positions(arr: zarr.Array, positions: list[int]) -> np.ndarray:
    """The values of 1-d ``arr`` at ascending ``positions``, read and decoded in this thread."""
    runs: list[list[int]] = []
    for p in positions:  # consecutive positions read as one region
        if runs and p == runs[-1][-1] + 1:
            runs[-1].append(p)
        else:
            runs.append([p])
    return np.concatenate([read_region(arr, (slice(r[0], r[-1] + 1),)) for r in runs])


def open_with_dim_from_ends(open_zarr: Callable[..., xr.Dataset], store: Any, zarr_format: int,
                            dim: str) -> tuple[xr.Dataset, np.ndarray] | None:
    """The stored dataset with coordinate ``dim`` decoded from its ends, and its last two labels.

    ``open_zarr(**kwargs)`` opens the store (``kwargs``: :func:`undecoded_open_kwargs`). ``None``,
    with nothing opened or the open discarded, where the consolidated metadata does not show plain
    CF datetimes for ``dim`` or :func:`decode_from_ends` declines: the caller opens as xarray does.
    """
    found = consolidated_array(store, zarr_format, dim)
    if found is None or not plain_cf_datetime(found[0]):
        return None
    stored = open_zarr(**undecoded_open_kwargs(dim))
    # The labels read in this thread (through zarr's getitem, a round trip to its loop thread).
    from_ends = decode_from_ends(stored.variables[dim], dim, partial(read_positions, found[1])) \
        if dim in stored.variables else None
    if from_ends is None:
        return None
    decoded, last_two = from_ends
    return stored.assign_coords(xr.Coordinates({dim: decoded}, indexes={})), last_two
