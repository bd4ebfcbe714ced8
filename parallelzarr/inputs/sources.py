"""Open input files (netCDF, zarr stores, globs of them) as one lazy Dataset, for the CLI and the API.

One place decides how a multi-file set combines, which variables are kept and how the files are
read, so ``parallelzarr write 'nc/*.nc' out.zarr`` and ``pz.to_zarr("nc/*.nc", "out.zarr")`` (or
``pz.open_sources``) give the same Dataset.
"""

from __future__ import annotations

import glob
import importlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from parallelzarr.errors import ParallelZarrError

__all__ = [
    "MFDATASET_OPTIONS",
    "SourceError",
    "SourceOptionError",
    "expand_sources",
    "is_sources",
    "load_preprocess",
    "open_sources",
    "sources_as_data",
]

#: How several input files combine. Only variables along the concatenated dimension are concatenated
#: (``"minimal"``): xarray's default ``"all"`` broadcasts static variables such as a land-sea mask
#: along time (one copy per step, and an append of a file without it would not fit). Static
#: variables must agree across files (``compat="no_conflicts"``), so none is silently dropped.
MFDATASET_OPTIONS: Mapping[str, Any] = MappingProxyType({
    "combine": "by_coords", "data_vars": "minimal", "coords": "minimal", "compat": "no_conflicts", "join": "outer",
})


class SourceError(ParallelZarrError, OSError):
    """An input is missing or cannot be opened (``OSError``, as xarray's "no files to open")."""


class SourceOptionError(ParallelZarrError, ValueError):
    """A source option is wrong: an unknown variable name, a ``--preprocess`` that cannot be loaded."""


def _is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _is_zarr(path: str) -> bool:
    if path.rstrip("/").endswith(".zarr"):
        return True
    return os.path.isdir(path) and any(os.path.exists(os.path.join(path, m)) for m in ("zarr.json", ".zgroup", ".zarray"))


def is_sources(data: Any) -> bool:
    """Whether ``data`` names files to open rather than holding data.

    A glob string (``"nc/*.nc"``) or a non-empty list/tuple of paths does; a single plain path is
    not taken as sources (the write API refuses it with a pointer, since it could be a typo for data).
    """
    if isinstance(data, str):
        return glob.has_magic(data) and not _is_url(data)
    if isinstance(data, list | tuple) and data:
        return all(isinstance(p, str | os.PathLike) for p in data)
    return False


def expand_sources(sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """Expand local globs (sorted); URLs and existing paths pass through.

    Raises
    ------
    SourceError
        When a glob matches nothing or a path does not exist.
    """
    items = [sources] if isinstance(sources, str | os.PathLike) else list(sources)
    if not items:
        raise SourceError("no input given")
    paths: list[str] = []
    for item in [os.fspath(i) for i in items]:
        if _is_url(item):
            paths.append(item)
        elif glob.has_magic(item):
            found = sorted(glob.glob(item))
            if not found:
                raise SourceError(f"no input matches {item!r}")
            paths += found
        elif os.path.exists(item):
            paths.append(item)
        else:
            raise SourceError(f"input {item!r} does not exist")
    return paths


def load_preprocess(spec: str | Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """Resolve ``module:function`` (or ``path/to/file.py:function``) to the function.

    The function gets each file's Dataset before the files are combined (``open_mfdataset``'s
    ``preprocess``) and returns the Dataset to use.
    """
    if spec is None or callable(spec):
        return spec
    module_name, sep, func_name = str(spec).rpartition(":")
    if not sep or not module_name or not func_name:
        raise SourceOptionError(f"preprocess {spec!r}: expected MODULE:FUNCTION or path/to/file.py:FUNCTION")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).resolve()
            if not path.is_file():
                raise SourceOptionError(f"preprocess {spec!r}: no file {str(path)!r}")
            loader_spec = importlib.util.spec_from_file_location(f"_pz_preprocess_{path.stem}", path)
            assert loader_spec is not None and loader_spec.loader is not None
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())  # a module next to the user, as `python -m` finds it
            module = importlib.import_module(module_name)
    except SourceOptionError:
        raise
    except Exception as exc:
        raise SourceOptionError(f"preprocess {spec!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise SourceOptionError(f"preprocess {spec!r}: {module_name!r} has no function {func_name!r}")
    return func


def _names(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    names = [value] if isinstance(value, str) else list(value)
    return [n.strip() for n in names if str(n).strip()]


def _dropped(first: Any, variables: list[str] | None, drop_variables: list[str] | None) -> list[str]:
    """Names to drop at open time, checked against the first file (a typo must not pass silently)."""
    known = set(map(str, first.variables))
    for option, names in (("variables", variables), ("drop_variables", drop_variables)):
        unknown = sorted(set(names or ()) - known)
        if unknown:
            raise SourceOptionError(
                f"{option}: {unknown} not in the input; its variables are {sorted(map(str, first.data_vars))} "
                f"and coordinates {sorted(map(str, first.coords))}"
            )
    drop = set(drop_variables or ())
    if variables is not None:
        # Keep the named variables and the coordinates (they label the kept data).
        drop |= {str(n) for n in first.data_vars if str(n) not in set(variables)}
    return sorted(drop)


def open_sources(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    chunks: Any = None,
    variables: str | Sequence[str] | None = None,
    drop_variables: str | Sequence[str] | None = None,
    preprocess: str | Callable[[Any], Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    **open_kwargs: Any,
) -> Any:
    """Open netCDF files or zarr stores (paths, URLs, globs) as one lazy ``xarray.Dataset``.

    One input opens with ``xr.open_zarr``/``xr.open_dataset``; several with ``xr.open_mfdataset``,
    combined by coordinates with :data:`MFDATASET_OPTIONS` (static variables such as a land-sea mask
    stay static and must agree across files).

    Parameters
    ----------
    sources
        A path, a URL, a glob (``"nc/*.nc"``, expanded and sorted) or a list of them.
    chunks
        dask chunks for reading. Default: zarr inputs keep their stored chunks, netCDF inputs use
        dask's ``"auto"`` (blocks of about 128 MiB that respect the file's own chunking; the zarr
        chunks of a write then follow :func:`parallelzarr.plan.chunks.fit_chunks`).
    variables
        Keep only these data variables (and every coordinate).
    drop_variables
        Leave these variables (data variables or coordinates) out.
    preprocess
        A function, or ``"module:function"`` / ``"path/to/file.py:function"``, applied to each
        file's Dataset before combining (``open_mfdataset``'s ``preprocess``; also to a single file).
    storage_options
        fsspec options for URL inputs (local inputs open without them).
    **open_kwargs
        Passed to ``xr.open_mfdataset`` (overriding :data:`MFDATASET_OPTIONS`) or ``xr.open_dataset``.

    Returns
    -------
    xarray.Dataset

    Raises
    ------
    SourceError
        An input does not exist or cannot be opened (an ``OSError``).
    SourceOptionError
        An unknown variable name or a preprocess that cannot be loaded (a ``ValueError``).
    """
    import xarray as xr

    paths = expand_sources(sources)
    zarrs = [_is_zarr(p) for p in paths]
    if any(zarrs) and not all(zarrs):
        raise SourceError("inputs mix zarr stores and other files; give one kind")
    func = load_preprocess(preprocess)
    keep, drop = _names(variables), _names(drop_variables)
    so = dict(storage_options or {}) if any(_is_url(p) for p in paths) else {}
    kind: dict[str, Any] = {"engine": "zarr", "backend_kwargs": {"storage_options": so} if so else None} if all(zarrs) else {}
    read_chunks = ({} if all(zarrs) else "auto") if chunks is None else chunks
    try:
        with warnings.catch_warnings():
            # zarr inputs without consolidated metadata: xarray's fallback warning is noise here.
            warnings.filterwarnings("ignore", message="Failed to open Zarr store with consolidated metadata")
            if keep is not None or drop is not None:
                with xr.open_dataset(paths[0], chunks={}, **kind) as first:
                    dropped = _dropped(first, keep, drop)
            else:
                dropped = []
            if len(paths) == 1:
                ds = xr.open_dataset(paths[0], chunks=read_chunks, drop_variables=dropped or None,
                                     **kind, **open_kwargs)
                return func(ds) if func is not None else ds
            options = {**MFDATASET_OPTIONS, **kind, **open_kwargs}
            return xr.open_mfdataset(paths, chunks=read_chunks, drop_variables=dropped or None, preprocess=func,
                                     **options)
    except ParallelZarrError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SourceError(f"cannot open input(s) {', '.join(paths)}: {type(exc).__name__}: {exc}") from exc


def sources_as_data(data: Any) -> Any:
    """``data`` itself, or the Dataset :func:`open_sources` opens when ``data`` is a glob or a list of paths.

    What ``pz.to_zarr("nc/*.nc", "out.zarr")`` and ``pz.to_zarr([a, b], ...)`` do: the files open
    as the CLI opens them. A single plain path stays data (the write API refuses it with a pointer).
    """
    return open_sources(data) if is_sources(data) else data
