"""Plan the write of one bare array (numpy, dask or zarr) into a new store, or into a stored array; write nothing."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import zarr
import zarr.storage

from parallelzarr.errors import EncodingError, ModeError, SchemaMismatchError, StoreExistsError
from parallelzarr.inputs.arrays import (
    ARRAY_NAME,
    as_dask,
    as_numpy,
    check_array_encoding,
    check_known_chunks,
    check_storable,
    default_chunks,
)
from parallelzarr.inputs.validate import (
    ARRAY_ENCODING_KEYS,
    check_encoding_keys,
    normalize_chunk_spec,
    normalize_region,
)
from parallelzarr.plan.write import WritePlan
from parallelzarr.run.job import CreateArray, GivenArray, StoredArray, WriteJob, plan_job
from parallelzarr.store.locks import choose_lock_backend, lock_spec
from parallelzarr.store.resolve import ResolvedStore, is_in_memory, resolve_store, store_has_data


def _open_existing(resolved: ResolvedStore) -> zarr.Array:
    try:
        node = zarr.open(store=resolved.store, mode="r+")
    except Exception as exc:  # zarr raises FileNotFoundError or its own errors for missing nodes
        raise ModeError(
            f"no zarr array at {resolved.description}: {exc}; use mode='w-' or 'w' to create one"
        ) from exc
    if not isinstance(node, zarr.Array):
        raise ModeError(f"{resolved.description} holds a zarr group, not an array; write a Dataset or name the array's path")
    return node


@dataclass(frozen=True)
class _Layout:
    """Where and how one bare array is stored: its dimension names, shape, write offset, grid and dtype."""

    dims: tuple[str, ...]
    shape: tuple[int, ...]
    start: tuple[int, ...]
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    dtype: np.dtype


def prepare_array_write(
    data: Any,
    store: Any,
    *,
    mode: str,
    region: Any,
    encoding: Mapping[str, Any] | None,
    strategy: str,
    max_mem: int | None,
    storage_options: Mapping[str, Any] | None,
    zarr_format: int,
    lock: str | None = None,
) -> WriteJob:
    """Validate and plan the write of one bare array; nothing is written here."""
    check_encoding_keys(ARRAY_NAME, encoding if encoding is not None else {}, ARRAY_ENCODING_KEYS)
    encoding = dict(encoding or {})
    check_array_encoding(encoding)
    enc_chunks = encoding.get("chunks")
    darr = _as_checked_dask(data, enc_chunks)
    resolved, existing, mode = _resolve_target(store, mode, storage_options)
    dims = _dimension_names(encoding, darr.ndim)
    if existing is not None:
        layout = _existing_layout(existing, darr, dims, region, encoding, resolved)
    else:
        layout = _new_layout(darr, dims, region, encoding, enc_chunks)

    # Writes into an existing array may share partly covered cells with other writers (regions).
    into_existing = existing is not None
    if strategy == "lock" or into_existing:
        backend, problem = choose_lock_backend(
            resolved.local_path, lock, cross_process=into_existing, in_memory=is_in_memory(resolved.store)
        )
    else:
        backend, problem = None, None
    job = plan_job(
        ARRAY_NAME, darr, shape=layout.shape, dims=layout.dims, dtype=layout.dtype, chunks=layout.chunks,
        shards=layout.shards, start=layout.start, strategy=strategy, max_mem=max_mem, lock_backend=backend,
        lock_problem=problem, target=GivenArray(existing) if existing is not None else StoredArray(resolved.store),
        partial_cells_shared=into_existing,
    )
    vplan = job.plan
    plan = WritePlan(target=resolved.description, mode=mode, variables={ARRAY_NAME: vplan}, max_mem=max_mem)
    create = _checked_create(resolved, layout, encoding, mode, zarr_format) if existing is None else None
    locks = lock_spec(vplan.lock_backend, resolved.description, resolved.local_path)
    return WriteJob(plan=plan, jobs=(job,), lay_down=create, locks=locks)


def _as_checked_dask(data: Any, enc_chunks: Any) -> da.Array:
    """``data`` as a dask array of a storable dtype (numpy-like data cut by the encoding's ``chunks``)."""
    if isinstance(data, da.Array):
        darr = data
    else:
        arr = as_numpy(data)
        check_storable(arr.dtype)
        shape = arr.shape
        chunk_guess = normalize_chunk_spec(ARRAY_NAME, "chunks", enc_chunks, shape, [f"dim_{i}" for i in range(len(shape))])
        darr = as_dask(arr, chunk_guess or "auto")
    check_storable(darr.dtype)
    check_known_chunks(darr, ARRAY_NAME)
    return darr


def _resolve_target(store: Any, mode: str, storage_options: Mapping[str, Any] | None,
                    ) -> tuple[ResolvedStore, zarr.Array | None, str]:
    """The target store, the stored array written into (``None`` for a new one) and the effective mode."""
    if isinstance(store, zarr.Array):
        target = store
        resolved = ResolvedStore(store.store, f"{getattr(store.store, 'root', store.store)}/{store.path}", None)
        root = getattr(store.store, "root", None)
        if root is not None:
            resolved.local_path = os.path.join(str(root), store.path)
        existing: zarr.Array | None = target
        if mode in ("w-", "w"):
            mode = "r+"
    else:
        resolved = resolve_store(store, storage_options)
        has = store_has_data(resolved.store, resolved.description)
        existing = None
        if mode == "w-" and has:
            raise StoreExistsError(
                f"{resolved.description} already holds data; use mode='w' to overwrite it, or mode='r+' with a region"
            )
        if mode in ("r+", "a") and has:
            existing = _open_existing(resolved)
        elif mode == "r+":
            raise ModeError(f"mode='r+' needs an existing array at {resolved.description}; use mode='w-' to create one")
    return resolved, existing, mode


def _dimension_names(encoding: Mapping[str, Any], ndim: int) -> tuple[str, ...]:
    """The encoding's ``dimension_names`` (checked: one string per axis), else ``dim_0``, ``dim_1``, ..."""
    names = encoding.get("dimension_names")
    if names is not None and (isinstance(names, str | bytes) or not isinstance(names, list | tuple)
                              or not all(isinstance(n, str) for n in names)):
        raise EncodingError(f"dimension_names must be a list of {ndim} strings (one per axis), got {names!r}")
    dims = tuple(names or (f"dim_{i}" for i in range(ndim)))
    if len(dims) != ndim:
        raise EncodingError(f"dimension_names {dims} has {len(dims)} names for a {ndim}-D array")
    return dims


def _existing_layout(existing: zarr.Array, darr: da.Array, dims: tuple[str, ...], region: Any,
                     encoding: Mapping[str, Any], resolved: ResolvedStore) -> _Layout:
    """The layout of the stored array ``darr`` is written into, refusing data or encoding it cannot take."""
    ndim = darr.ndim
    if encoding:
        raise EncodingError(
            f"encoding {sorted(encoding)} given for the existing array at {resolved.description}; the stored "
            "encoding is reused, drop the encoding argument"
        )
    if existing.ndim != ndim:
        raise SchemaMismatchError(
            f"data has {ndim} dimension(s) but the stored array at {resolved.description} has {existing.ndim}"
        )
    stored_dims = getattr(existing.metadata, "dimension_names", None)
    if stored_dims:
        dims = tuple(d if d is not None else f"dim_{i}" for i, d in enumerate(stored_dims))
    if not np.can_cast(darr.dtype, existing.dtype, casting="same_kind"):
        raise SchemaMismatchError(
            f"data dtype {darr.dtype} cannot be stored in the existing array of dtype {existing.dtype} "
            f"at {resolved.description}; cast the data with .astype({str(existing.dtype)!r})"
        )
    if region is None and tuple(existing.shape) != tuple(darr.shape):
        raise SchemaMismatchError(
            f"data shape {darr.shape} differs from the stored shape {existing.shape} at {resolved.description}; "
            "pass region=... to write part of the array"
        )
    shape = tuple(existing.shape)
    start = normalize_region(ARRAY_NAME, region, dims, shape, darr.shape)
    chunks = tuple(existing.chunks)
    shards = tuple(existing.shards) if existing.shards else None
    return _Layout(dims, shape, start, chunks, shards, np.dtype(existing.dtype))


def _new_layout(darr: da.Array, dims: tuple[str, ...], region: Any, encoding: Mapping[str, Any],
                enc_chunks: Any) -> _Layout:
    """The layout of a new array for ``darr``, from the encoding (``chunks``, ``shards``, ``dtype``) or defaults."""
    if region is not None:
        raise ModeError("region writes need an existing array; create it first (mode='w-') or drop region")
    shape = tuple(darr.shape)
    start = (0,) * darr.ndim
    chunks = normalize_chunk_spec(ARRAY_NAME, "chunks", enc_chunks, shape, dims) or default_chunks(darr)
    shards = normalize_chunk_spec(ARRAY_NAME, "shards", encoding.get("shards"), shape, dims)
    dtype = np.dtype(encoding.get("dtype", darr.dtype))
    if not np.can_cast(darr.dtype, dtype, casting="same_kind") and not (darr.dtype.kind in "SU" and dtype.kind in "SU"):
        raise EncodingError(
            f"{ARRAY_NAME!r}: data of dtype {darr.dtype} cannot be stored as encoding dtype {dtype}; cast the data "
            "first or choose a compatible dtype"
        )
    return _Layout(dims, shape, start, chunks, shards, dtype)


def _checked_create(resolved: ResolvedStore, layout: _Layout, encoding: Mapping[str, Any], mode: str,
                    zarr_format: int) -> CreateArray:
    """The lay-down step creating the new array, tried first on a scratch store (zarr's refusals as EncodingError)."""
    create = CreateArray(
        resolved.store, resolved.description, layout.shape, layout.chunks, layout.shards, layout.dtype,
        layout.dims if "dimension_names" in encoding else None, mode == "w", zarr_format,
        {k: v for k, v in encoding.items() if k in ("compressors", "filters", "serializer", "fill_value", "attributes")},
    )
    # Let zarr judge codecs and fill values on a scratch in-memory store before touching the target.
    try:
        create.create(zarr.storage.MemoryStore(), False)
    except Exception as exc:
        raise EncodingError(f"zarr refused the array encoding {encoding}: {exc}") from exc
    return create
