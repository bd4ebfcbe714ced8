"""The ``.pz`` accessor on xarray objects: ``ds.pz.to_zarr(...)`` for ``ds.to_zarr(...)``.

Registered on import of :mod:`parallelzarr`, so a notebook swaps one call for another and keeps
every argument. Each method is the module-level function with the Dataset or DataArray as its
first argument; see those functions for the parameters.
"""

from __future__ import annotations

from typing import Any

import xarray as xr

__all__ = ["ParallelZarrAccessor"]


class ParallelZarrAccessor:
    """``obj.pz``: parallelzarr's writers with ``obj`` (a Dataset or DataArray) as the data."""

    def __init__(self, obj: xr.Dataset | xr.DataArray) -> None:
        self._obj = obj

    def to_zarr(self, store: Any = None, **kwargs: Any) -> Any:
        """:func:`parallelzarr.to_zarr` of this object into ``store``."""
        from parallelzarr.entry.write import to_zarr

        return to_zarr(self._obj, store, **kwargs)

    def plan_write(self, store: Any = None, **kwargs: Any) -> Any:
        """:func:`parallelzarr.plan_write` of this object into ``store`` (writes nothing)."""
        from parallelzarr.entry.write import plan_write

        return plan_write(self._obj, store, **kwargs)

    def append(self, store: Any, append_dim: str, **kwargs: Any) -> Any:
        """:func:`parallelzarr.append` of this object to ``store`` along ``append_dim``."""
        from parallelzarr.entry.append import append

        return append(self._obj, store, append_dim, **kwargs)

    def rechunk(self, target_chunks: Any, max_mem: int | str, target_store: Any, *args: Any, **kwargs: Any) -> Any:
        """:func:`parallelzarr.rechunk` with this object as the source (rechunker's argument order)."""
        from parallelzarr.entry.rechunk import rechunk

        return rechunk(self._obj, target_chunks, max_mem, target_store, *args, **kwargs)


def register() -> None:
    """Register ``.pz`` on Dataset and DataArray once (re-imports must not warn about overriding)."""
    for cls, register_accessor in (
        (xr.Dataset, xr.register_dataset_accessor),
        (xr.DataArray, xr.register_dataarray_accessor),
    ):
        if getattr(cls, "pz", None) is not ParallelZarrAccessor:
            register_accessor("pz")(ParallelZarrAccessor)
