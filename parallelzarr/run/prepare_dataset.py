"""Plan the write of a Dataset into a new store, a region, or (via :mod:`.overwrite`) a stored dataset; write nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
import zarr

from parallelzarr.commit.journal import pending_journal
from parallelzarr.commit.lease import acquire_lease, read_lease
from parallelzarr.commit.rollforward import roll_forward
from parallelzarr.errors import (
    EncodingError,
    ModeError,
    RegionError,
    SchemaMismatchError,
    StoreExistsError,
)
from parallelzarr.inputs.datasets import (
    NONE_VAR_NAME,
    as_dataset,
    auto_region,
    check_dataset_encoding,
    check_region_labels,
    encoded_as_stored,
    encoded_variable,
    metadata_template,
    new_chunks,
    open_stored,
)
from parallelzarr.inputs.stored_range import check_range
from parallelzarr.inputs.validate import (
    DATASET_ENCODING_KEYS,
    normalize_region,
)
from parallelzarr.inputs.xarray_checks import check_region, in_stored_dims
from parallelzarr.plan.write import WritePlan
from parallelzarr.run.job import ArrayJob, LayDownUnpublished, Publish, StoredArray, WriteJob, plan_job
from parallelzarr.store.holders import describe_holder, holder_alive
from parallelzarr.store.locks import choose_lock_backend, lock_spec
from parallelzarr.store.resolve import (
    ResolvedStore,
    is_in_memory,
    resolve_consolidated,
    resolve_store,
    store_has_data,
)
from parallelzarr.store.staging import describe_unpublished, lay_down_in_memory, unpublished_write


def finish_overwrite(resolved: ResolvedStore) -> None:
    """Before a region write: finish an interrupted mode="a" commit, refuse one that is running.

    Its roll-forward moves staged chunks over the stored ones: a region written in between would be
    replaced by the older staged values.
    """
    from parallelzarr.errors import LeaseError

    lease = read_lease(resolved.store)
    if lease is not None and lease.get("operation") == "overwrite" and holder_alive(lease) is not False:
        raise LeaseError(
            f"{resolved.description} is being written with mode='a'/'r+' ({describe_holder(lease)}); its "
            "commit would replace what a region write puts there now: wait for it to finish, then write the region"
        )
    journal = pending_journal(resolved.store)
    if journal is not None and journal.get("kind") == "overwrite":
        held = acquire_lease(resolved.store, resolved.description, "roll-forward")
        try:
            roll_forward(resolved.store, journal, journal.get("consolidated", True))
        finally:
            held.release()


def check_auto_region(data: xr.Dataset | xr.DataArray, store: Any, region: Any,
                      storage_options: Mapping[str, Any] | None) -> None:
    """Resolve the ``"auto"`` parts of ``region`` against the store, for their refusals only
    (:class:`~parallelzarr.errors.RegionKeyError` for labels the store lacks, as in xarray)."""
    auto = [d for d, v in region.items() if isinstance(v, str) and v == "auto"] if isinstance(region, Mapping) \
        else (list(as_dataset(data).dims) if region == "auto" else [])
    resolved = resolve_store(store, storage_options)
    if not auto or not store_has_data(resolved.store):
        return
    ds = as_dataset(data)
    auto_region(ds[[d for d in auto if d in ds.indexes]], open_stored(resolved))


def prepare_dataset_write(
    data: xr.Dataset | xr.DataArray,
    store: Any,
    *,
    mode: str,
    region: Any,
    append_dim: str | None,
    encoding: Mapping[str, Any] | None,
    strategy: str,
    max_mem: int | None,
    storage_options: Mapping[str, Any] | None,
    zarr_format: int,
    consolidated: bool | None,
    lock: str | None = None,
    write_empty_chunks: bool | None = None,
) -> WriteJob:
    """Validate and plan the write of a Dataset; nothing is written here.

    ``write_empty_chunks`` reaches the variables xarray writes itself (in-memory ones); the dask
    ones get it as their arrays' runtime configuration when the graph is built.
    """
    ds = as_dataset(data)
    if isinstance(encoding, Mapping) and None in encoding:
        encoding = {NONE_VAR_NAME if k is None else k: v for k, v in encoding.items()}
    encoding = check_dataset_encoding(ds, encoding)
    resolved = resolve_store(store, storage_options)
    consolidated = resolve_consolidated(resolved.store, consolidated, resolved.description)
    has = store_has_data(resolved.store, resolved.description)
    unpublished = unpublished_write(resolved.store) if has else None
    if unpublished is not None and mode != "w":
        raise ModeError(describe_unpublished(unpublished, resolved.description))
    if mode == "w-" and has:
        raise StoreExistsError(f"{resolved.description} already holds data; use mode='w' to overwrite it, or mode='r+' with a region")
    if mode == "r+" and region is None and has and not unpublished_write(resolved.store):
        # xarray's mode="r+" without region overwrites every (stored) variable whole: staged and
        # committed like mode="a", so a failed write leaves the old data.
        from parallelzarr.run.overwrite import prepare_overwrite

        return prepare_overwrite(ds, resolved, mode="r+", encoding=encoding, strategy=strategy,
                                 max_mem=max_mem, consolidated=consolidated, lock=lock,
                                 write_empty_chunks=write_empty_chunks)
    if region is not None or mode == "r+":
        if encoding:
            raise EncodingError("encoding cannot be given for a region write: the stored encoding is reused")
        if not has:
            raise ModeError(f"region writes need an existing store; {resolved.description} is empty (write it first with mode='w-')")
        finish_overwrite(resolved)
        return _prepare_region(ds, resolved, region, strategy, max_mem, lock)
    if mode in ("a", "a-") and has:
        # xarray's mode="a" without append_dim: add new variables, overwrite stored ones (staged,
        # then committed under the store's lease and journal).
        from parallelzarr.run.overwrite import prepare_overwrite

        return prepare_overwrite(ds, resolved, mode=mode, encoding=encoding, strategy=strategy,
                                 max_mem=max_mem, consolidated=consolidated, lock=lock,
                                 write_empty_chunks=write_empty_chunks)
    return _prepare_new(ds, resolved, mode, encoding, strategy, max_mem, zarr_format, consolidated, lock,
                        write_empty_chunks)


def _prepare_new(
    ds: xr.Dataset,
    resolved: ResolvedStore,
    mode: str,
    encoding: dict[str, Any],
    strategy: str,
    max_mem: int | None,
    zarr_format: int,
    consolidated: bool,
    lock: str | None,
    write_empty_chunks: bool | None = None,
) -> WriteJob:
    xr_encoding: dict[str, dict[str, Any]] = {str(k): dict(v) for k, v in encoding.items()}
    backend, problem = choose_lock_backend(resolved.local_path, lock) if strategy == "lock" else (None, None)
    plans = {}
    jobs = []
    for name, var in ds.variables.items():
        name = str(name)
        user = xr_encoding.get(name, {})
        if not isinstance(var.data, da.Array):  # written by xarray below: refuse values its encoding would change
            check_range(name, var, user if name in xr_encoding else var.encoding)
            continue
        chunks, shards = new_chunks(name, var, user, max_mem)
        # xarray replaces a variable's own encoding by the one passed for it, so pass (and encode
        # with) exactly one dict: the user's, else the variable's own valid keys.
        base = dict(user) if name in xr_encoding else {
            k: v for k, v in var.encoding.items() if k in DATASET_ENCODING_KEYS
        }
        base["chunks"] = chunks
        if shards is not None:
            base["shards"] = shards
        xr_encoding[name] = base
        enc_var = encoded_variable(name, var, base, zarr_format)
        dtype = np.dtype(enc_var.dtype)
        job = plan_job(
            name, enc_var.data, shape=var.shape, dims=tuple(str(d) for d in var.dims), dtype=dtype, chunks=chunks,
            shards=shards, strategy=strategy, max_mem=max_mem, lock_backend=backend, lock_problem=problem,
            target=StoredArray(resolved.store, name),
        )
        plans[name] = job.plan
        jobs.append(job)

    # xarray judges codecs and encodings on a scratch in-memory store before the target is touched.
    template = metadata_template(ds)
    lay_down_in_memory(template, "xarray refused the dataset or its encoding", encoding=xr_encoding,
                       zarr_format=zarr_format, consolidated=False, safe_chunks=False)

    locks = lock_spec(backend if strategy == "lock" else None, resolved.description, resolved.local_path)
    plan = WritePlan(target=resolved.description, mode=mode, variables=plans, max_mem=max_mem)
    return WriteJob(
        plan=plan,
        jobs=tuple(jobs),
        # The root metadata is held back until the last chunk is written (Publish), so readers
        # never see a half-written new store, and a failed write leaves none.
        lay_down=LayDownUnpublished(resolved.store, mode, template, xr_encoding, zarr_format, consolidated,
                                    write_empty_chunks),
        commit=Publish(resolved.store),
        locks=locks,
        store=resolved.store,
    )


def _prepare_region(
    ds: xr.Dataset,
    resolved: ResolvedStore,
    region: Any,
    strategy: str,
    max_mem: int | None,
    lock: str | None,
) -> WriteJob:
    stored = open_stored(resolved)
    region = _resolve_region(ds, stored, region)
    same_labels = set(check_region_labels(ds, stored, region))  # not rewritten, as xarray leaves them
    region_dims = set(region)
    # Always resolved: whether a region needs locks is only known per variable, from its grid.
    backend, problem = choose_lock_backend(
        resolved.local_path, lock, cross_process=True, in_memory=is_in_memory(resolved.store)
    )
    plans = {}
    jobs = []
    for name, var in ds.variables.items():
        name = str(name)
        if name in same_labels or (region_dims and not region_dims.intersection(map(str, var.dims))):
            continue  # coordinates off the region are already stored
        job = _region_job(name, var, stored, resolved, region, strategy, max_mem, backend, problem)
        plans[name] = job.plan
        jobs.append(job)

    locked = any(p.lock_backend for p in plans.values())
    locks = lock_spec(backend if locked else None, resolved.description, resolved.local_path)
    plan = WritePlan(target=resolved.description, mode="r+", variables=plans, max_mem=max_mem)
    return WriteJob(plan=plan, jobs=tuple(jobs), locks=locks)


def _resolve_region(ds: xr.Dataset, stored: xr.Dataset, region: Any) -> dict[str, Any]:
    """The region as a dict of slices ("auto" parts resolved against ``stored``), checked against the store."""
    if region is None:
        region = {}
    if isinstance(region, str):
        if region != "auto":
            raise RegionError(f"region must be a dict of slices or 'auto', got {region!r}")
        region = auto_region(ds, stored)
    check_region(ds, region)  # xarray's checks and messages first (a TypeError for a non-dict)
    if any(isinstance(v, str) and v == "auto" for v in region.values()):
        # xarray's per-dimension "auto": from the labels where the dimension has them, else whole.
        found = auto_region(ds[[d for d, v in region.items() if v == "auto" and d in ds.indexes]], stored)
        region = {d: (found.get(d, slice(0, ds.sizes[d])) if isinstance(v, str) else v) for d, v in region.items()}
        check_region(ds, region)
    unknown = [d for d in region if d not in stored.dims]
    if unknown:
        raise RegionError(f"region names dimension(s) {unknown} that the store does not have; stored dims: {sorted(map(str, stored.dims))}")
    region_dims = set(region)
    outside = [
        str(n) for n, v in ds.data_vars.items() if region_dims and not region_dims.intersection(map(str, v.dims))
    ]
    if outside:
        raise RegionError(
            f"variable(s) {outside} share no dimension with the region {sorted(region_dims)}; drop them "
            "from the dataset before a region write"
        )
    return region


def _region_job(
    name: str,
    var: xr.Variable,
    stored: xr.Dataset,
    resolved: ResolvedStore,
    region: Mapping[str, Any],
    strategy: str,
    max_mem: int | None,
    backend: str | None,
    problem: str | None,
) -> ArrayJob:
    """Check one variable of a region write against its stored array and plan its write."""
    if name not in stored.variables:
        raise SchemaMismatchError(f"variable {name!r} is not in the store {resolved.description}; region writes only fill existing variables")
    old = stored.variables[name]
    var = in_stored_dims(name, var, old, sizes=False)  # sizes: against the region, below
    arr = zarr.open_array(resolved.store, path=name, mode="r")
    enc_var = encoded_as_stored(name, var, stored, arr.metadata.zarr_format)
    if not np.can_cast(enc_var.dtype, arr.dtype, casting="same_kind"):
        raise SchemaMismatchError(
            f"variable {name!r}: encoded dtype {enc_var.dtype} cannot be stored in the existing dtype {arr.dtype}"
        )
    dims = tuple(str(d) for d in var.dims)
    sub = {d: region[d] for d in dims if d in region}
    start = normalize_region(name, sub, dims, arr.shape, var.shape)
    values = enc_var.data
    if not isinstance(values, da.Array):
        values = da.from_array(np.asarray(values), chunks=arr.shards or arr.chunks)
    return plan_job(
        name, values, shape=arr.shape, dims=dims, dtype=arr.dtype, chunks=arr.chunks, shards=arr.shards,
        start=start, strategy=strategy, max_mem=max_mem, lock_backend=backend, lock_problem=problem,
        target=StoredArray(resolved.store, name), partial_cells_shared=True,
    )
