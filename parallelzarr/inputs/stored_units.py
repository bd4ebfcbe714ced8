"""Values written under a stored variable's ``units`` attribute that say other units.

A write into a stored variable (append, region, ``mode="a"`` overwrite) keeps the stored attributes:
xarray never rewrites them, and neither do we. Air temperatures in ``degC`` appended to a store of
``K`` thus read back as 6.85 K, with nothing said (an ingest pipeline whose provider changed units).
:func:`check_units` refuses such a write before any byte is stored. Units are compared as given
(after stripping blanks); "K" and "kelvin" differ here, and the message says how to pass either.
Times and timedeltas keep their units in the encoding, not the attributes: :mod:`stored_times` and
``datasets.encoded_as_stored`` look after those.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from parallelzarr.errors import EncodingError

__all__ = ["StoredUnitsError", "check_units", "units_conflict"]


class StoredUnitsError(EncodingError):
    """New values whose ``units`` attribute is not the stored one (a ``ValueError``)."""


def units_conflict(new_attrs: Mapping[Any, Any], stored_attrs: Mapping[Any, Any]) -> tuple[str, str] | None:
    """(new units, stored units) when both attributes are given and differ; ``None`` otherwise."""
    new, old = new_attrs.get("units"), stored_attrs.get("units")
    if new is None or old is None or str(new).strip() == str(old).strip():
        return None
    return str(new), str(old)


def check_units(name: str, new_attrs: Mapping[Any, Any], stored_attrs: Mapping[Any, Any]) -> None:
    """Raise :class:`StoredUnitsError` when the new values of ``name`` say other units than the stored ones."""
    conflict = units_conflict(new_attrs, stored_attrs)
    if conflict is None:
        return
    new, old = conflict
    raise StoredUnitsError(
        f"variable {name!r} is stored in {old!r} but the new values are in {new!r}: they would be stored under the "
        f"stored units attribute (xarray keeps a stored variable's attributes), so they would read back as {old!r}. "
        f"Nothing was written. Convert the values to {old!r} and set ds[{name!r}].attrs['units'] = {old!r}; if both "
        f"name the same unit, set the stored spelling alone. To change the stored units, change the stored attribute "
        f"first (zarr.open_array(store, path={name!r}, mode='r+').attrs['units'] = {new!r}, then "
        "zarr.consolidate_metadata(store)) and write the new values after"
    )
