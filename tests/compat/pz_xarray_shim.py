"""pytest plugin: route ``Dataset.to_zarr``/``DataArray.to_zarr`` through :func:`parallelzarr.to_zarr`.

Loaded with ``-p pz_xarray_shim`` (``tests/compat`` on ``PYTHONPATH``) when running xarray's own
installed test suite, so its zarr tests measure parallelzarr as a drop-in. Every argument xarray's
signature takes is forwarded as given; one parallelzarr does not take fails the test (that is the
measurement, not hidden). Only what xarray itself decides before writing (the default ``mode``) is
resolved here, the way xarray resolves it.
"""

from __future__ import annotations

import contextvars
from typing import Any

import xarray as xr

_ORIGINAL = {"Dataset": xr.Dataset.to_zarr, "DataArray": xr.DataArray.to_zarr}
#: parallelzarr itself lays down metadata with xarray's to_zarr: those inner calls go to xarray.
_INSIDE = contextvars.ContextVar("inside_parallelzarr", default=False)


def _shim(self: Any, store: Any = None, mode: Any = None, group: Any = None, encoding: Any = None, *,
          compute: bool = True, consolidated: Any = None, append_dim: Any = None, region: Any = None,
          safe_chunks: bool = True, align_chunks: bool = False, storage_options: Any = None,
          zarr_format: Any = None, write_empty_chunks: Any = None, chunkmanager_store_kwargs: Any = None,
          **rest: Any) -> Any:
    import parallelzarr as pz

    if _INSIDE.get():
        original = _ORIGINAL["Dataset" if isinstance(self, xr.Dataset) else "DataArray"]
        return original(self, store, mode, group, encoding, compute=compute, consolidated=consolidated,
                        append_dim=append_dim, region=region, safe_chunks=safe_chunks, align_chunks=align_chunks,
                        storage_options=storage_options, zarr_format=zarr_format,
                        write_empty_chunks=write_empty_chunks, chunkmanager_store_kwargs=chunkmanager_store_kwargs,
                        **rest)
    if mode is None:  # xarray's own default
        mode = "a" if append_dim is not None else "r+" if region is not None else "w-"
    kwargs: dict[str, Any] = {"mode": mode, "compute": compute}
    given = {
        "group": group, "encoding": encoding, "consolidated": consolidated, "append_dim": append_dim,
        "region": region, "storage_options": storage_options, "zarr_format": zarr_format,
        "write_empty_chunks": write_empty_chunks, "chunkmanager_store_kwargs": chunkmanager_store_kwargs,
    }
    kwargs.update({k: v for k, v in given.items() if v is not None})
    if safe_chunks is not True:
        kwargs["safe_chunks"] = safe_chunks
    if align_chunks:
        kwargs["align_chunks"] = align_chunks
    kwargs.update(rest)
    token = _INSIDE.set(True)
    try:
        return pz.to_zarr(self, store, **kwargs)
    finally:
        _INSIDE.reset(token)


def pytest_configure(config: Any) -> None:
    xr.Dataset.to_zarr = _shim  # type: ignore[method-assign]
    xr.DataArray.to_zarr = _shim  # type: ignore[method-assign]


def pytest_unconfigure(config: Any) -> None:
    xr.Dataset.to_zarr = _ORIGINAL["Dataset"]  # type: ignore[method-assign]
    xr.DataArray.to_zarr = _ORIGINAL["DataArray"]  # type: ignore[method-assign]
