"""pytest plugin: run rechunker 0.5.4's own tests on zarr 3 with rechunker's API routed to parallelzarr.

Loaded with ``-p pz_rechunker_shim`` (this folder on ``PYTHONPATH``, which also puts the stand-in
``rechunker`` package here ahead of any installed rechunker). rechunker's tests were written for
zarr-python 2; this plugin provides the zarr-2 names they use, each as its zarr 3 equivalent, before
the test modules import them. It changes no test body and no parallelzarr behaviour:

- ``zarr.storage.FSStore(path)``: zarr 2's fsspec store of a local path, i.e. ``zarr.storage.LocalStore``
  (``FsspecStore`` for URLs); ``LocalStore.path``: zarr 2's ``FSStore.path``/``DirectoryStore.path``.
- ``zarr.Blosc``: numcodecs' Blosc, which zarr 2 re-exported.
- ``zarr.core.Array`` and ``zarr.hierarchy.Group``: zarr 2's module paths of ``zarr.Array``/``zarr.Group``.
- ``Group.ones/zeros/empty/full(name, ...)``: zarr 2 took the array name positionally.
- the default zarr format is 2, the only one zarr-python 2 wrote (the tests check v2 metadata such
  as ``encoding["compressor"]``), and chunks equal to the fill value are written, as zarr-python 2
  did by default (the tests compare the bytes on disk of compressed and uncompressed targets).
"""

from __future__ import annotations

import functools
import sys
import types
from typing import Any

import numcodecs
import zarr
import zarr.storage


def _fsstore(url: str, **storage_options: Any) -> Any:
    """zarr 2's ``FSStore``: a store for a local path or an fsspec URL."""
    if "://" in url and not url.startswith("file://"):
        return zarr.storage.FsspecStore.from_url(url, storage_options=storage_options or None)
    return zarr.storage.LocalStore(url.removeprefix("file://"))


def _positional_name(method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(self: zarr.Group, name: str | None = None, /, **kwargs: Any) -> Any:
        if name is not None:
            kwargs["name"] = name
        return method(self, **kwargs)

    return wrapper


def _install() -> None:
    zarr.storage.FSStore = _fsstore  # type: ignore[attr-defined]
    if not hasattr(zarr.storage.LocalStore, "path"):
        zarr.storage.LocalStore.path = property(lambda self: str(self.root))  # type: ignore[attr-defined]
    zarr.Blosc = numcodecs.Blosc  # type: ignore[attr-defined]
    zarr.core.Array = zarr.Array  # type: ignore[attr-defined]
    hierarchy = types.ModuleType("zarr.hierarchy")
    hierarchy.Group = zarr.Group  # type: ignore[attr-defined]
    sys.modules["zarr.hierarchy"] = hierarchy
    zarr.hierarchy = hierarchy  # type: ignore[attr-defined]
    for name in ("ones", "zeros", "empty", "full"):
        setattr(zarr.Group, name, _positional_name(getattr(zarr.Group, name)))
    zarr.config.set({"default_zarr_format": 2, "array.write_empty_chunks": True})


def pytest_configure(config: Any) -> None:
    _install()
