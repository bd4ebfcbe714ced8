"""Adapters: turn a zarr array, zarr group or xarray Dataset into per-array jobs.

This module reads metadata only.  It resolves stores, target chunk requests and the
target's metadata (staged in memory, committed to the target store last).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr
import zarr.storage
from zarr.abc.store import Store

from parallelzarr.errors import ChunkSpecError, EncodingError, PlanningError, StoreError
from parallelzarr.inputs.rechunk_inputs import dask_job_parts, dataset_parts
from parallelzarr.inputs.validate import check_name
from parallelzarr.inputs.xarray_checks import same_attrs
from parallelzarr.plan.rechunk import ArraySpec, normalize_chunks
from parallelzarr.store.dims import array_dims
from parallelzarr.store.zarr_compat import nominal_chunks

__all__ = ["ArrayJob", "SourceInfo", "resolve_source", "as_store", "dims_of"]


@dataclass
class ArrayJob:
    """One array to rechunk: its source handle and what the target should look like.

    Attributes
    ----------
    path
        Path of the array inside the source/target hierarchy (``""`` for a lone array).
    source
        The source :class:`zarr.Array` (its *stored*, encoded values are copied) or a
        zarr array computed from dask (:func:`~.inputs.dask_source`: dask arrays, Datasets not read from zarr).
    spec
        What the planner needs.
    create_kwargs
        Keyword arguments for :func:`zarr.create_array` that recreate the array with
        the target chunking (codecs, fill value, attributes, dimension names).
    """

    path: str
    source: zarr.Array
    spec: ArraySpec
    create_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class SourceInfo:
    """Everything resolved from the source.

    Attributes
    ----------
    kind
        ``"array"``, ``"group"`` or ``"dataset"``.
    jobs
        One :class:`ArrayJob` per array.
    groups
        ``(path, attributes)`` of every group to recreate, root first (empty for an array).
    zarr_format
        Format of the target.
    consolidated
        Whether to consolidate the target's metadata at commit (the source was).
    overwrite
        Per array path, whether ``target_options`` asked to replace an existing target there
        (rechunker's ``overwrite``).
    """

    kind: str
    jobs: list[ArrayJob]
    groups: list[tuple[str, dict[str, Any]]]
    zarr_format: int
    consolidated: bool
    overwrite: dict[str, bool] = field(default_factory=dict)


def as_store(target: Any, storage_options: Mapping[str, Any] | None = None) -> Store:
    """Return a writable zarr store for a path, fsspec URL or store.

    Parameters
    ----------
    target
        A local path (str or ``os.PathLike``), an fsspec URL such as ``"s3://bucket/x.zarr"``,
        or a :class:`zarr.abc.store.Store`.
    storage_options
        Passed to fsspec for URLs.

    Raises
    ------
    StoreError
        If ``target`` is none of these.
    """
    if isinstance(target, Store):
        return target
    if isinstance(target, os.PathLike):
        target = os.fspath(target)
    if isinstance(target, str):
        from parallelzarr.store.resolve import resolve_store

        is_url = "://" in target and not target.startswith("file://")
        # storage_options are for URL stores; a local target next to a remote source ignores them.
        return resolve_store(target, storage_options if is_url else None).store
    raise StoreError(
        f"cannot use {type(target).__name__} as a store; give a path, an fsspec URL or a zarr Store"
    )


def dims_of(arr: zarr.Array) -> tuple[str, ...] | None:
    """Dimension names of a zarr array (v3 metadata or v2 ``_ARRAY_DIMENSIONS``)."""
    return array_dims(arr)


def _itemsize(arr: zarr.Array) -> int:
    dt = np.dtype(arr.dtype)
    # Variable-length items (strings, objects) have no fixed size; assume a generous one.
    return dt.itemsize if dt.kind != "O" and dt.itemsize > 0 else 64


def _is_per_array(target_chunks: Any, names: set[str], dims: AbstractSet[str] = frozenset()) -> bool:
    """Whether a dict maps array names to chunk specs (rather than dims to sizes)."""
    if not isinstance(target_chunks, Mapping):
        return False
    # ``None`` reads as a dimension size ("whole axis") when the key is also a dimension, so
    # {"time": None} is dims-keyed even when a coordinate array is also called "time"; keys that name
    # arrays and no dimension ({"a": None, "b": None}: rechunker's "copy a and b unchanged") are per array.
    if any(isinstance(v, tuple | list | Mapping) for v in target_chunks.values()):
        return True
    if not target_chunks or not all(k in names for k in target_chunks):
        return False
    return not all(k in dims for k in target_chunks)


def _options_for(options: Mapping[str, Any] | None, path: str, names: set[str]) -> dict[str, Any]:
    """Per-array options when keyed by array name, else the same options for all."""
    if not options:
        return {}
    if any(k in names for k in options) and all(isinstance(v, Mapping) for v in options.values()):
        return dict(options.get(path, {}))
    return dict(options)


def _create_kwargs(
    src: zarr.Array, path: str, chunks: tuple[int, ...], shards: tuple[int, ...] | None,
    zarr_format: int, opts: Mapping[str, Any],
) -> dict[str, Any]:
    """Keyword arguments for :func:`zarr.create_array` reproducing ``src`` with new chunks."""
    same_format = src.metadata.zarr_format == zarr_format
    attrs = dict(src.attrs)
    dims = dims_of(src)
    kw: dict[str, Any] = {
        "name": path or None,
        "shape": src.shape,
        "dtype": src.metadata.data_type if src.metadata.zarr_format == 3 else src.metadata.dtype,
        "chunks": chunks,
        "shards": shards,
        "fill_value": src.metadata.fill_value,
        "zarr_format": zarr_format,
        "overwrite": True,
    }
    if same_format:
        kw["compressors"] = src.compressors or None
        kw["filters"] = src.filters or None
        if zarr_format == 3:
            kw["serializer"] = src.serializer
    if zarr_format == 3:
        attrs.pop("_ARRAY_DIMENSIONS", None)
        kw["dimension_names"] = dims
    elif dims is not None:
        attrs["_ARRAY_DIMENSIONS"] = list(dims)
    if not same_format and dims is not None:
        _convert_cf_fill_value(src, zarr_format, attrs, kw)
    kw["attributes"] = attrs
    for key in ("compressors", "filters", "serializer", "fill_value", "chunk_key_encoding"):
        if key in opts:
            kw[key] = opts[key]
    if "compressor" in opts:  # rechunker / zarr 2 spelling
        kw["compressors"] = opts["compressor"]
    if zarr_format == 3:
        for key in ("compressors", "filters"):
            kw[key] = as_zarr3_codecs(kw.get(key))
    return apply_zarr_options(kw, opts)


def as_zarr3_codecs(value: Any) -> Any:
    """numcodecs codecs (rechunker's ``compressor=Blosc()``) as their zarr-3 wrappers (``numcodecs.zarr3``)."""
    import numcodecs.abc
    import numcodecs.zarr3

    def one(codec: Any) -> Any:
        if not isinstance(codec, numcodecs.abc.Codec):
            return codec
        wrapper = getattr(numcodecs.zarr3, type(codec).__name__, None)
        if wrapper is None:
            return codec  # zarr judges it (and names it) in _validate_target
        config = {k: v for k, v in codec.get_config().items() if k != "id"}
        return wrapper(**config)

    if isinstance(value, list | tuple):
        return type(value)(one(c) for c in value)
    return one(value) if value is not None else value


def apply_zarr_options(kw: dict[str, Any], opts: Mapping[str, Any]) -> dict[str, Any]:
    """Add rechunker's zarr-2 creation options to ``zarr.create_array`` keywords.

    ``order`` and ``write_empty_chunks`` keep their meaning; ``cache_metadata``/``cache_attrs`` were
    zarr-2 caching hints with no zarr-3 counterpart (no effect on what is stored); ``overwrite`` is
    handled by the caller (it decides whether an occupied target is replaced).
    """
    if opts.get("order") is not None:
        kw["order"] = opts["order"]
    if opts.get("write_empty_chunks") is not None:
        kw["config"] = {**kw.get("config", {}), "write_empty_chunks": bool(opts["write_empty_chunks"])}
    return kw


def _convert_cf_fill_value(src: zarr.Array, zarr_format: int, attrs: dict[str, Any], kw: dict[str, Any]) -> None:
    """Carry xarray's missing-value marker across zarr formats.

    xarray keeps a variable's ``_FillValue`` in the metadata ``fill_value`` in zarr v2 but as an encoded
    ``_FillValue`` attribute in v3 (where ``fill_value`` only marks unwritten chunks). Copying
    ``fill_value`` unchanged would make xarray mask ordinary values (e.g. every 0 of an integer
    coordinate) after a v3 -> v2 rechunk.
    """
    from xarray.backends.zarr import FillValueCoder

    dtype = np.dtype(src.dtype)
    if zarr_format == 2:
        encoded = attrs.pop("_FillValue", None)
        kw["fill_value"] = FillValueCoder.decode(encoded, dtype) if encoded is not None else None
    else:
        value = src.metadata.fill_value
        if value is not None and "_FillValue" not in attrs:
            try:
                attrs["_FillValue"] = FillValueCoder.encode(value, dtype)
            except (TypeError, ValueError):
                pass  # not a value xarray could have written; keep the array's fill value only
        kw["fill_value"] = value


def _make_job(
    src: zarr.Array, path: str, request: Any, zarr_format: int, opts: Mapping[str, Any],
) -> ArrayJob:
    dims = dims_of(src)
    shape = tuple(src.shape)
    chunks = normalize_chunks(request, shape, dims, default=nominal_chunks(src), name=path)  # rectilinear too
    shards = None
    if opts.get("shards") is not None:
        if zarr_format != 3:
            raise ChunkSpecError(f"array {path or '<array>'!r}: shards need zarr format 3 (target_options zarr_format=3)")
        raw = normalize_chunks(opts["shards"], shape, dims, default=chunks, name=path)
        # A shard must hold whole chunks; round up, never beyond the array's padded length.
        shards = tuple(
            min(max(c, math.ceil(s / c) * c), math.ceil(max(n, 1) / c) * c)
            for s, c, n in zip(raw, chunks, shape, strict=True)
        )
        if all(s == c for s, c in zip(shards, chunks, strict=True)):
            shards = None
    read_grid = tuple(src.shards) if src.shards is not None else None
    dt = np.dtype(src.dtype)
    spec = ArraySpec(
        name=path, shape=shape, dtype=str(dt), itemsize=_itemsize(src),
        source_chunks=nominal_chunks(src), target_chunks=chunks,
        source_read_grid=read_grid, target_shards=shards,
    )
    kwargs = _create_kwargs(src, path, chunks, shards, zarr_format, opts)
    return ArrayJob(path=path, source=src, spec=spec, create_kwargs=kwargs)


#: ``target_options`` keys understood per array (besides ``zarr_format``, which applies to all).
TARGET_OPTION_KEYS = frozenset(
    {"shards", "compressors", "compressor", "filters", "serializer", "fill_value", "chunk_key_encoding"}
) | frozenset({"order", "cache_metadata", "cache_attrs", "overwrite", "write_empty_chunks"})  # rechunker's too


def _check_target_options(options: Any, names: set[str]) -> None:
    """Refuse malformed ``target_options`` (not a dict, unknown keys) naming the key and the valid ones."""
    if not isinstance(options, Mapping):
        raise EncodingError(
            f"target_options must be a dict (of options, or of array name -> options), got "
            f"{type(options).__name__} {options!r}"
        )
    per_array = any(k in names for k in options) and all(isinstance(v, Mapping) for v in options.values())
    groups = [(f" for array {k!r}", v) for k, v in options.items()] if per_array else [("", options)]
    if per_array:
        unknown_arrays = sorted(str(k) for k in options if k not in names)
        if unknown_arrays:
            raise EncodingError(f"target_options name arrays {unknown_arrays} that the source does not have "
                                f"(it has {sorted(names)})")
    for where, opts in groups:
        unknown = sorted(str(k) for k in opts if k not in TARGET_OPTION_KEYS)
        if unknown:
            # rechunker's wording, so code matching its message keeps working.
            raise EncodingError(f"unknown target_options key(s) {unknown}{where}: Zarr options must not include "
                                f"{unknown[0]} (got {unknown[0]}={opts[unknown[0]]!r}); valid keys are "
                                f"{sorted(TARGET_OPTION_KEYS | {'zarr_format'})}")


def _check_format(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or value not in (2, 3):
        raise EncodingError(f"target_options zarr_format must be 2 or 3, got {value!r}")
    return int(value)


def _check_dict_keys(target_chunks: Any, dims: set[str], ndim: int | None, names: set[str], what: str) -> None:
    """Refuse dims-keyed chunk requests naming no dimension (or axis, or array) of the source."""
    if not isinstance(target_chunks, Mapping):
        return
    unknown = []
    for key in target_chunks:
        if isinstance(key, int) and not isinstance(key, bool):
            if ndim is None or not 0 <= key < ndim:
                unknown.append(key)
        elif not isinstance(key, str) or (key not in dims and key not in names):
            unknown.append(key)
    if unknown:
        raise ChunkSpecError(
            f"target_chunks name {unknown}, which {what} does not have; dimensions are {sorted(dims)}"
            + (f", arrays are {sorted(names)}" if names else "")
            + (f", axes are 0..{ndim - 1}" if ndim else "")
        )


def _validate_target(info: SourceInfo) -> None:
    """Create every target array in memory so zarr judges codecs and fill values before any write."""
    staging = zarr.storage.MemoryStore()
    for job in info.jobs:
        problem = None
        try:
            zarr.create_array(staging, **{**job.create_kwargs, "name": job.path or None})
        except Exception as exc:  # zarr and numcodecs raise many kinds for bad codecs
            problem = f"{type(exc).__name__}: {exc}"
        if problem is not None:
            raise EncodingError(f"zarr refused the target of array {job.path or '<array>'!r} with target_options "
                                f"{ {k: v for k, v in job.create_kwargs.items() if k in TARGET_OPTION_KEYS} }: "
                                f"{problem}")


def _group_consolidated(group: zarr.Group) -> bool:
    meta = group.metadata
    return getattr(meta, "consolidated_metadata", None) is not None


def resolve_source(
    source: Any,
    target_chunks: Any,
    target_options: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> SourceInfo:
    """Describe ``source`` as array jobs with the requested target chunking.

    Parameters
    ----------
    source
        A :class:`zarr.Array`, a :class:`zarr.Group` or an :class:`xarray.Dataset`
        opened from zarr (its ``encoding["source"]`` names the store).
    target_chunks
        Tuple for an array; for groups and datasets a dict of array name -> chunks, or a
        dict of dimension name -> size applied to every array with that dimension.
    target_options
        ``zarr_format``, ``shards``, ``compressors`` ... globally or per array name.
    storage_options
        fsspec options for reopening a Dataset's store when ``encoding["source"]`` is a URL
        (xarray keeps only the URL, not the options it was opened with).

    Raises
    ------
    PlanningError
        For unsupported sources or datasets that no longer match their store.
    """
    if target_options is not None and not isinstance(target_options, Mapping):
        _check_target_options(target_options, set())
    target_options = dict(target_options or {})
    fmt_opt = _check_format(target_options.pop("zarr_format", None))
    if isinstance(source, zarr.Array):
        return _resolve_zarr_array(source, target_chunks, target_options, fmt_opt)
    if isinstance(source, zarr.Group):
        return _resolve_group(source, target_chunks, target_options, fmt_opt, "group", None)
    import dask.array as da
    import xarray as xr

    if isinstance(source, xr.Dataset):
        for name, opts in target_options.items():
            if isinstance(opts, Mapping) and "chunks" in opts:
                raise EncodingError(f"Chunks must be provided in 'target_chunks' rather than options (variable={name})")
        group = _stored_group(source, target_options, storage_options)
        if group is not None:
            return _resolve_group(group, target_chunks, target_options, fmt_opt, "dataset", set(map(str, source.variables)))
        return _resolve_xarray(source, target_chunks, target_options, fmt_opt)
    if isinstance(source, da.Array):
        return _resolve_dask_array(source, target_chunks, target_options, fmt_opt)
    raise PlanningError(
        f"Source must be a Zarr Array, Zarr Group, Dask Array or Xarray Dataset (not {type(source)}): "
        "parallelzarr rechunks those (a Dataset in memory, opened from netCDF or from zarr)"
    )


def _resolve_zarr_array(source: zarr.Array, target_chunks: Any, target_options: dict[str, Any],
                        fmt_opt: int | None) -> SourceInfo:
    """A stored zarr array as one rechunk job (target format: ``zarr_format`` or the source's)."""
    _check_target_options(target_options, set())
    fmt = int(fmt_opt or source.metadata.zarr_format)
    request = target_chunks
    if isinstance(request, Mapping) and "" in request:
        request = request[""]
    dims = dims_of(source)
    _check_dict_keys(request, set(dims or ()), source.ndim, set(), "the array")
    opts = _options_for(target_options, "", set())
    job = _make_job(source, "", request, fmt, opts)
    info = SourceInfo("array", [job], [], fmt, False, overwrite={"": bool(opts.get("overwrite"))})
    _validate_target(info)
    return info


def _resolve_dask_array(source: Any, target_chunks: Any, target_options: dict[str, Any],
                        fmt_opt: int | None) -> SourceInfo:
    """A dask array as one rechunk job (target format: ``zarr_format`` or zarr's configured default)."""
    _check_target_options(target_options, set())
    fmt = int(fmt_opt or zarr.config.get("default_zarr_format"))
    request = target_chunks[""] if isinstance(target_chunks, Mapping) and "" in target_chunks else target_chunks
    _check_dict_keys(request, set(), source.ndim, set(), "the dask array")
    opts = _options_for(target_options, "", set())
    src, spec, kw = dask_job_parts(source, "", request, None, fmt, opts)
    for key in ("compressors", "filters", "fill_value", "chunk_key_encoding", "serializer"):
        if key in opts:
            kw[key] = opts[key]
    if "compressor" in opts:
        kw["compressors"] = opts["compressor"]
    if fmt == 3:
        for key in ("compressors", "filters"):
            if key in kw:
                kw[key] = as_zarr3_codecs(kw[key])
    info = SourceInfo("array", [ArrayJob("", src, spec, apply_zarr_options(kw, opts))], [], fmt, False,
                      overwrite={"": bool(opts.get("overwrite"))})
    _validate_target(info)
    return info


def _stored_group(ds: Any, target_options: Mapping[str, Any], storage_options: Mapping[str, Any] | None) -> Any:
    """The zarr group a Dataset was opened from, when copying its stored values gives the same result.

    That holds when the Dataset still matches the store (same variables and shapes) and
    ``target_options`` only holds zarr options (no xarray encodings such as ``dtype`` or
    ``scale_factor``, which need the values re-encoded). Else None: the Dataset is encoded anew.
    """
    where = ds.encoding.get("source")
    if not where:
        return None
    per_array = any(k in ds.variables for k in target_options)
    groups = target_options.values() if per_array else [target_options]
    if any(not isinstance(g, Mapping) or set(g) - TARGET_OPTION_KEYS for g in groups):
        return None
    try:
        group = _open_dataset_group(where, storage_options)
    except Exception:  # not a zarr store (netCDF, ...): encode the Dataset itself
        return None
    for name, var in ds.variables.items():
        node = group.get(str(name))
        if not isinstance(node, zarr.Array) or tuple(node.shape) != tuple(var.shape):
            return None  # changed since it was opened: its values, not the stored ones, are wanted
    return group if _unchanged(ds, group) else None


#: Wrappers xarray puts around arrays it reads lazily from a store (values still the stored ones).
_LAZY_WRAPPERS = ("MemoryCachedArray", "CopyOnWriteArray", "LazilyIndexedArray", "LazilyVectorizedIndexedArray")


def _unchanged(ds: Any, group: zarr.Group) -> bool:
    """Whether every variable of ``ds`` still holds the values and attributes stored in ``group``.

    ``ds["t"] = ds.t * 2`` keeps the Dataset's ``encoding["source"]`` and the shapes: copying the
    stored values would silently give the old data. A variable counts as unchanged when its dask
    graph only reads that same variable from the store (xarray's ``open_dataset-<name>`` layers), or
    its data is still xarray's lazy store wrapper; index coordinates and attributes are compared with
    the stored ones (small). Anything else is encoded from its values instead.
    """
    import dask.array as da
    import xarray as xr

    try:
        stored = xr.open_zarr(group.store, group=group.path or None, chunks=None, consolidated=None)
    except Exception:  # cannot tell: encode the values themselves
        return False
    if not same_attrs(stored.attrs, ds.attrs):
        return False
    for name, var in ds.variables.items():
        name = str(name)
        if name not in stored.variables or not same_attrs(stored[name].attrs, var.attrs):
            return False
        data = var.variable._data if hasattr(var, "variable") else var._data
        if isinstance(var, xr.IndexVariable) or type(data).__name__ == "PandasIndexingAdapter":
            if not np.array_equal(np.asarray(stored[name].values), np.asarray(var.values)):
                return False
        elif isinstance(var.data, da.Array):
            layers = list(var.data.dask.layers)
            if not layers or not all(lay.startswith((f"open_dataset-{name}-", f"original-open_dataset-{name}-"))
                                     for lay in layers):
                return False
        elif type(data).__name__ not in _LAZY_WRAPPERS:
            return False
    return True


def _resolve_xarray(ds: Any, target_chunks: Any, target_options: dict[str, Any], fmt_opt: int | None) -> SourceInfo:
    """A Dataset encoded as ``to_zarr`` encodes it (in memory, from netCDF, or changed since opened)."""
    names = set(map(str, ds.variables))
    unknown = sorted(str(k) for k in target_options if str(k) not in names)
    if unknown or any(not isinstance(v, Mapping) for v in target_options.values()):
        raise EncodingError(f"for a Dataset, target_options map variable names to encodings (as in to_zarr); got "
                            f"{sorted(map(str, target_options))}, the Dataset has {sorted(names)}")
    fmt = int(fmt_opt or zarr.config.get("default_zarr_format"))
    parts, root_attrs, overwrite = dataset_parts(ds, target_chunks, target_options, fmt)
    jobs = [ArrayJob(name, src, spec, kw) for name, src, spec, kw in parts]
    info = SourceInfo("dataset", jobs, [("", root_attrs)], fmt, False, overwrite=overwrite)
    _validate_target(info)
    return info


def _open_dataset_group(where: Any, storage_options: Mapping[str, Any] | None) -> zarr.Group:
    """Open the zarr group a Dataset was read from, read-only, with the caller's fsspec options."""
    if isinstance(where, str | os.PathLike):
        from parallelzarr.store.resolve import resolve_store

        text = os.fspath(where)
        is_url = "://" in text and not text.startswith("file://")
        # Options given for a remote target do not apply to a local source (and fsspec would refuse them).
        where = resolve_store(text, dict(storage_options or {}) if is_url else None, read_only=True).store
    return zarr.open_group(where, mode="r")


def _resolve_group(
    group: zarr.Group, target_chunks: Any, target_options: dict[str, Any], fmt_opt: Any,
    kind: str, only: set[str] | None,
) -> SourceInfo:
    fmt = int(fmt_opt or group.metadata.zarr_format)
    arrays: list[tuple[str, zarr.Array]] = []
    groups: list[tuple[str, dict[str, Any]]] = [("", dict(group.attrs))]
    for path, node in sorted(group.members(max_depth=None), key=lambda kv: kv[0]):
        for part in path.split("/"):
            check_name(part, "array" if isinstance(node, zarr.Array) else "group",
                       "rename it in the source before rechunking")
        if isinstance(node, zarr.Array):
            if only is None or path in only:
                arrays.append((path, node))
        elif only is None:
            groups.append((path, dict(node.attrs)))
    names = {p for p, _ in arrays}
    _check_target_options(target_options, names)
    tc = target_chunks if target_chunks is not None else {}
    all_dims = {d for _, a in arrays for d in (dims_of(a) or ())}
    per_array = _is_per_array(tc, names, all_dims)
    if per_array:
        unknown = set(tc) - names
        if unknown:
            raise ChunkSpecError(f"target_chunks names arrays {sorted(unknown)} that the source does not have "
                                 f"(it has {sorted(names)})")
    elif not isinstance(tc, Mapping):
        raise ChunkSpecError(f"You must specify ``target-chunks`` as a dict when rechunking a {kind}: array name -> "
                             "chunks, or dimension name -> size")
    else:
        _check_dict_keys({k: v for k, v in tc.items() if not isinstance(k, int) or isinstance(k, bool)},
                         all_dims, None, set(), f"the {kind}")
    jobs = []
    overwrite = {}
    for path, arr in arrays:
        request = tc.get(path) if per_array else tc
        if not per_array and dims_of(arr) is None and tc:
            request = None  # no dimension names: the array keeps its chunks
        opts = _options_for(target_options, path, names)
        overwrite[path] = bool(opts.get("overwrite"))
        jobs.append(_make_job(arr, path, request, fmt, opts))
    info = SourceInfo(kind, jobs, groups, fmt, _group_consolidated(group), overwrite=overwrite)
    _validate_target(info)
    return info
