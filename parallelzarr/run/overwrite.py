"""Plan a ``mode="a"``/``"r+"`` write without ``append_dim``: new variables, overwritten ones, their commit.

The data goes to a staging area; :mod:`parallelzarr.commit.overwrite` holds the protocol (what
readers see at each step) and the roll-forward that finishes it after the commit point.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import dask.array as da
import numpy as np
import xarray as xr
import zarr
import zarr.storage
from zarr.core.sync import sync

from parallelzarr.commit.journal import pending_journal, write_journal
from parallelzarr.commit.lease import Lease, acquire_lease
from parallelzarr.commit.overwrite import (
    STAGING_PREFIX,
    chunk_keys,
    discard_staging,
    roll_forward_overwrite,
    tidy_bookkeeping,
)
from parallelzarr.commit.rollforward import roll_forward
from parallelzarr.errors import ModeError, SchemaMismatchError
from parallelzarr.hooks import fault_point
from parallelzarr.inputs.datasets import (
    DATASET_ENCODING_KEYS,
    encoded_as_stored,
    encoded_variable,
    new_chunks,
    open_stored,
    relabelling,
)
from parallelzarr.inputs.stored_range import check_range
from parallelzarr.inputs.xarray_checks import check_dtype, check_stored_encoding, in_stored_dims, same_attrs
from parallelzarr.plan.write import WritePlan
from parallelzarr.run.job import ArrayJob, Commit, StoredArray, WriteJob, plan_job
from parallelzarr.store.keys import get as get_key
from parallelzarr.store.keys import put as put_key
from parallelzarr.store.locks import choose_lock_backend, lock_spec
from parallelzarr.store.markers import Resume
from parallelzarr.store.resolve import ResolvedStore
from parallelzarr.store.staging import lay_down_in_memory, unpublished_write

__all__ = ["prepare_overwrite", "static_changes", "OverwriteRun"]


def _check_overwritten(name: str, var: xr.Variable, old: xr.Variable) -> xr.Variable:
    """xarray's checks for a stored variable written again: dims (transposed if only their order
    differs), sizes, fixed-width dtypes; returns ``var`` in the stored dimension order."""
    var = in_stored_dims(name, var, old)
    check_dtype(name, var.dtype, old.dtype)
    return var


def _check_new(name: str, var: xr.Variable, stored: xr.Dataset) -> None:
    """A new variable must agree with the store on the length of every dimension they share."""
    for dim, size in var.sizes.items():
        if dim in stored.sizes and stored.sizes[dim] != size:
            raise SchemaMismatchError(
                f"new variable {name!r} has length {size} along {dim!r} but the store's {dim!r} has length "
                f"{stored.sizes[dim]}: readers would refuse the store. Give it the stored length, or append "
                f"along {dim!r} with append_dim={dim!r}"
            )


def _template(ds: xr.Dataset, existing: set[str]) -> xr.Dataset:
    """``ds`` for laying down metadata: dask data (and stored variables' data) as one-block placeholders.

    Object-dtype variables keep their data (xarray infers their stored dtype from the values).
    """
    template = ds.copy(deep=False)
    for name, var in template.variables.items():
        if var.dtype.kind == "O":
            continue
        if name in existing:
            var.encoding = {}  # only the new variables' metadata is taken from the template
        if isinstance(var, xr.IndexVariable):
            continue  # one-dimensional labels (and xarray refuses to replace their data)
        if isinstance(var.data, da.Array) or name in existing:
            var.data = da.empty(var.shape, dtype=var.dtype, chunks=tuple(max(1, int(n)) for n in var.shape))
    return template


def prepare_overwrite(
    ds: xr.Dataset,
    resolved: ResolvedStore,
    *,
    mode: str,
    encoding: Mapping[str, Any],
    strategy: str,
    max_mem: int | None,
    consolidated: bool,
    lock: str | None = None,
    write_empty_chunks: bool | None = None,
) -> WriteJob:
    """Validate and plan a ``mode="a"``/``"r+"`` write into an existing store; write nothing.

    Parameters
    ----------
    ds
        The Dataset to write (its names already checked).
    resolved
        The existing store.
    mode
        ``"a"`` or ``"a-"`` (add and overwrite variables, replace the root attributes) or ``"r+"``
        (overwrite stored variables only, keep the root attributes).
    encoding
        Encoding of new variables; one for a stored variable is refused, as by xarray.
    strategy, max_mem, lock, write_empty_chunks
        As for :func:`parallelzarr.to_zarr`.
    consolidated
        Whether to consolidate the metadata at the commit (decided for this store already).
    """
    stored = open_stored(resolved)
    group = zarr.open_group(resolved.store, mode="r", use_consolidated=False)
    stored_arrays = {str(n) for n, _ in group.arrays()}
    zarr_format = group.metadata.zarr_format
    check_stored_encoding(encoding, stored_arrays)
    names, new, variables = _checked_variables(ds, resolved, stored, stored_arrays, mode)
    relabelled = relabelling(ds, stored)
    if relabelled is not None:
        warnings.warn(relabelled, UserWarning, stacklevel=2)

    write_id = uuid.uuid4().hex
    staging = f"{STAGING_PREFIX}{write_id}"
    xr_encoding, dask_new = _new_encodings(new, variables, encoding, max_mem)

    # xarray lays down the new arrays' metadata (and writes small in-memory new variables) into a
    # scratch store; only what belongs to new variables (and the root attributes) is taken from it.
    template = _template(ds, set(stored_arrays))
    scratch = lay_down_in_memory(template, "xarray refused the dataset or its encoding", encoding=xr_encoding,
                                 zarr_format=zarr_format, consolidated=False, safe_chunks=False,
                                 write_empty_chunks=write_empty_chunks)
    new_docs, scratch_chunks = _scratch_documents(scratch, new, dask_new)
    root_attrs = dict(zarr.open_group(scratch, mode="r").attrs) if mode != "r+" else None

    backend, problem = choose_lock_backend(resolved.local_path, lock) if strategy == "lock" else (None, None)
    planner = _StagingPlanner(resolved, stored, zarr_format, staging, strategy, max_mem, backend, problem)
    plans, jobs = planner.jobs(names, new, variables, xr_encoding, dask_new)

    journal = {
        "kind": "overwrite",
        "entry": {"id": write_id, "mode": mode},  # "entry" id: how repair and appends name a journal
        "staging": staging,
        "overwrite": [n for n in names if n not in new],
        "new": new_docs,
        "root_attrs": root_attrs,
        "consolidated": consolidated,
        "phase": "staged",
    }
    run = OverwriteRun(resolved.store, resolved.description, write_id, journal, scratch, scratch_chunks,
                       [n for n in names if n not in new], consolidated)
    locks = lock_spec(backend if strategy == "lock" else None, resolved.description, resolved.local_path)
    plan = WritePlan(target=resolved.description, mode=mode, variables=plans, max_mem=max_mem)
    return WriteJob(plan=plan, jobs=tuple(jobs), lay_down=run, commit=run, locks=locks, store=resolved.store)


def _checked_variables(ds: xr.Dataset, resolved: ResolvedStore, stored: xr.Dataset, stored_arrays: set[str],
                       mode: str) -> tuple[list[str], list[str], dict[str, xr.Variable]]:
    """The names to write, the new ones among them, and each variable checked (stored ones in the stored dim order)."""
    names = [str(n) for n in ds.variables]
    new = [n for n in names if n not in stored_arrays]
    if mode == "r+" and new:
        raise ModeError(
            f"dataset contains non-pre-existing variables {new!r}, which is not allowed in "
            "``xarray.Dataset.to_zarr()`` with ``mode='r+'``. To allow writing new variables, set ``mode='a'``."
        )
    for name in new:
        _check_new(name, ds.variables[name], stored)
    variables = {}
    for name in names:
        var = ds.variables[name]
        if name in stored_arrays:
            if name not in stored.variables:
                raise SchemaMismatchError(f"array {name!r} of {resolved.description} is not a variable xarray can read")
            var = _check_overwritten(name, var, stored.variables[name])
        variables[name] = var
    return names, new, variables


def _new_encodings(new: list[str], variables: Mapping[str, xr.Variable], encoding: Mapping[str, Any],
                   max_mem: int | None,
                   ) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[tuple[int, ...], tuple[int, ...] | None]]]:
    """The encoding xarray lays down with (the user's, with the grid of new dask variables) and those grids."""
    user = {str(k): dict(v) for k, v in encoding.items()}
    xr_encoding: dict[str, dict[str, Any]] = dict(user)
    dask_new: dict[str, tuple[tuple[int, ...], tuple[int, ...] | None]] = {}
    for name in new:
        var = variables[name]
        if not isinstance(var.data, da.Array):  # written by xarray into the scratch store: checked first
            check_range(name, var, user[name] if name in user else var.encoding)
        else:
            chunks, shards = new_chunks(name, var, user.get(name, {}), max_mem)
            base = dict(user[name]) if name in user else {
                k: v for k, v in var.encoding.items() if k in DATASET_ENCODING_KEYS
            }
            base["chunks"] = chunks
            if shards is not None:
                base["shards"] = shards
            xr_encoding[name] = base
            dask_new[name] = (chunks, shards)
    return xr_encoding, dask_new


def _scratch_documents(scratch: Any, new: list[str], dask_new: Mapping[str, Any],
                       ) -> tuple[dict[str, dict[str, str]], dict[str, list[str]]]:
    """Per new variable, its metadata documents in the scratch store, and the chunk keys xarray wrote there."""
    new_docs: dict[str, dict[str, str]] = {}
    scratch_chunks: dict[str, list[str]] = {}
    for name in new:
        new_docs[name] = {
            doc: data.decode()
            for doc in ("zarr.json", ".zarray", ".zattrs")
            if (data := get_key(scratch, f"{name}/{doc}")) is not None
        }
        if name not in dask_new:
            scratch_chunks[name] = chunk_keys(scratch, f"{name}/")
    return new_docs, scratch_chunks


@dataclass(frozen=True, eq=False)
class _StagingPlanner:
    """What the staged writes of one overwrite share: the store, what it holds, the staging path, the options."""

    resolved: ResolvedStore
    stored: xr.Dataset
    zarr_format: int
    staging: str
    strategy: str
    max_mem: int | None
    backend: str | None
    problem: str | None

    def jobs(self, names: list[str], new: list[str], variables: Mapping[str, xr.Variable],
             xr_encoding: Mapping[str, Mapping[str, Any]], dask_new: Mapping[str, Any],
             ) -> tuple[dict[str, Any], list[ArrayJob]]:
        """The plan and job of each variable written through the staging, in ``names`` order."""
        plans, jobs = {}, []
        for name in names:
            var = variables[name]
            if name in new:
                if name not in dask_new:
                    continue  # written into the scratch store by xarray: copied into staging at setup
                job = self.new_job(name, var, xr_encoding[name], *dask_new[name])
            else:
                job = self.overwritten_job(name, var)
            plans[name] = job.plan
            jobs.append(job)
        return plans, jobs

    def new_job(self, name: str, var: xr.Variable, enc: Mapping[str, Any], chunks: tuple[int, ...],
                shards: tuple[int, ...] | None) -> ArrayJob:
        """Plan the staged write of the new dask variable ``name`` (encoded with ``enc``)."""
        enc_var = encoded_variable(name, var, enc, self.zarr_format)
        dtype = np.dtype(enc_var.dtype) if enc_var.dtype.kind != "O" else np.dtype(object)
        return self._job(name, var, enc_var.data, dtype, var.shape, chunks, shards)

    def overwritten_job(self, name: str, var: xr.Variable) -> ArrayJob:
        """Plan the staged write of the stored variable ``name`` (encoded as stored, on the stored grid)."""
        arr = zarr.open_array(self.resolved.store, path=name, mode="r")
        enc_var = encoded_as_stored(name, var, self.stored, self.zarr_format)
        if not np.can_cast(enc_var.dtype, arr.dtype, casting="same_kind") and enc_var.dtype.kind not in "OSUT":
            raise SchemaMismatchError(
                f"variable {name!r}: encoded dtype {enc_var.dtype} cannot be stored in the existing dtype "
                f"{arr.dtype}; cast the data, or rewrite the store with mode='w'"
            )
        return self._job(name, var, enc_var.data, arr.dtype, arr.shape, arr.chunks, arr.shards)

    def _job(self, name: str, var: xr.Variable, values: Any, dtype: Any, shape: tuple[int, ...],
             chunks: tuple[int, ...], shards: tuple[int, ...] | None) -> ArrayJob:
        """Plan the write of ``values`` into the staging array of ``name``."""
        path = f"{self.staging}/{name}"
        if not isinstance(values, da.Array):
            values = da.from_array(np.asarray(values), chunks=tuple(shards or chunks) or ())
        return plan_job(
            name, values, shape=shape, dims=tuple(map(str, var.dims)), dtype=dtype, chunks=chunks, shards=shards,
            strategy=self.strategy, max_mem=self.max_mem, lock_backend=self.backend, lock_problem=self.problem,
            target=StoredArray(self.resolved.store, path),
        )


@dataclass(frozen=True, eq=False)
class OverwriteRun(Commit):
    """Lay-down (lease, staging metadata), commit (journal, roll forward) and failure of one write.

    Attributes
    ----------
    store, description
        The target store and how messages name it.
    write_id
        The id of this write: its lease's and its journal entry's.
    journal
        The journal written at the commit point (what to move from the staging, new metadata).
    scratch, scratch_chunks
        The scratch store xarray wrote new in-memory variables to, and their chunk keys there.
    overwritten
        The stored variables this write replaces.
    consolidated
        Whether the commit consolidates the metadata.
    """

    #: The staged chunks are the new data: the commit waits for them even with ``compute=False``.
    after_data: ClassVar[bool] = True

    store: Any
    description: str
    write_id: str
    journal: dict[str, Any]
    scratch: Any
    scratch_chunks: dict[str, list[str]]
    overwritten: list[str]
    consolidated: bool

    def run(self, resume: Resume | None) -> str | None:
        """Take the lease, finish or drop what an earlier writer left, lay down the staging arrays."""
        lease = acquire_lease(self.store, self.description, "overwrite", lease_id=self.write_id)
        try:
            self.stage(resume)
        except BaseException:
            lease.release()
            raise
        return None  # no unpublished-write marker: the lease and the journal say what is under way

    def stage(self, resume: Resume | None) -> None:
        """With the lease held: finish or drop what an earlier writer left, lay down the staging arrays."""
        try:
            pending = pending_journal(self.store)
            if pending is not None:
                roll_forward(self.store, pending, pending.get("consolidated", self.consolidated))
            discard_staging(self.store)
            # Task markers of an earlier try of this very write (parallelzarr.store.markers) name chunks of
            # its staging, which is gone: the tasks must run again, into this write's staging.
            if resume is not None:
                resume.markers.clear()
            staging = self.journal["staging"]
            for name in self.overwritten:
                for doc in ("zarr.json", ".zarray", ".zattrs"):
                    data = get_key(self.store, f"{name}/{doc}")
                    if data is not None:
                        put_key(self.store, f"{staging}/{name}/{doc}", data)
            for name, docs in self.journal["new"].items():
                for doc, text in docs.items():
                    put_key(self.store, f"{staging}/{name}/{doc}", text.encode())
                for rel in self.scratch_chunks.get(name, ()):
                    data = get_key(self.scratch, f"{name}/{rel}")
                    if data is not None:
                        put_key(self.store, f"{staging}/{name}/{rel}", data)
            fault_point("overwrite:staging-laid")
        except BaseException:
            self.drop_staging()
            raise

    def commit(self) -> None:
        """After the last staged chunk: write the journal (the commit point), roll forward, release."""
        fault_point("overwrite:data-written")
        try:
            write_journal(self.store, self.journal)
            fault_point("overwrite:journaled")
            roll_forward_overwrite(self.store, self.journal)
        finally:
            self.release()  # a journal that stays is rolled forward by repair or the next write
        fault_point("overwrite:released")

    def describe_failure(self, cause: str) -> str:
        """What readers see after an I/O failure of this write, and how to recover."""
        try:
            journal = pending_journal(self.store)
        except (OSError, ValueError):
            journal = None
        if journal is not None and journal.get("entry", {}).get("id") == self.write_id:
            return (
                f"writing variables into {self.description} failed while committing: {cause}. All new data had "
                "been written (staged under .parallelzarr/staging) and the commit is journaled; until it is "
                "finished, each chunk of an overwritten variable reads as its old or its new value and new "
                "variables may be missing. Fix the cause, then run parallelzarr.repair(store) (or any write or "
                "append to the store): it finishes the commit from the journal."
            )
        return (
            f"writing variables into {self.description} failed: {cause}. Nothing was committed: readers see the "
            "store as it was before this write (the new data went to a staging area, now dropped). Fix the "
            "cause, then rerun the same write."
        )

    def release(self) -> None:
        """Release this write's lease (a no-op when it is not held)."""
        Lease(self.store, {"id": self.write_id}).release()

    def failed(self, exc: BaseException | None = None) -> None:
        """The write failed before its commit point: drop its staging, release the lease."""
        self.drop_staging()
        self.release()

    def drop_staging(self) -> None:
        """Drop this write's staging unless its journal (the commit point) was written."""
        try:
            journal = pending_journal(self.store)
            if journal is None or journal.get("entry", {}).get("id") != self.write_id:
                sync(self.store.delete_dir(self.journal["staging"]))
                tidy_bookkeeping(self.store)
        except OSError:
            pass  # best effort: repair drops staging left without a journal


def static_changes(ds: xr.Dataset, resolved: ResolvedStore, append_dim: str,
                   stored: xr.Dataset | None = None) -> tuple[list[str], list[str], bool]:
    """What xarray's ``mode="a"`` with ``append_dim`` writes besides the appended rows.

    xarray overwrites every variable without ``append_dim`` and replaces the root attributes;
    here only what would change is rewritten. Returns (new variables without ``append_dim``, stored
    ones whose values differ, whether the root attributes differ). Values are compared blockwise
    (by stored chunk) for dask data, so a large static variable is not loaded whole. ``stored``:
    the store just opened by the caller (lazily), which saves opening it again.
    """
    from parallelzarr.store.resolve import store_has_data

    if stored is None:
        if not store_has_data(resolved.store) or unpublished_write(resolved.store) is not None:
            return [], [], False
        try:
            stored = xr.open_zarr(resolved.store, chunks=None, decode_cf=True)
        except Exception:  # an unreadable or inconsistent store: parallelzarr.append says what is wrong
            return [], [], False
    new, changed = [], []
    for name, var in ds.variables.items():
        if append_dim in var.dims:
            continue
        if name not in stored.variables:
            new.append(str(name))
        elif not var.equals(_comparable_stored(var, stored.variables[name])):
            changed.append(str(name))
    return new, changed, not same_attrs(stored.attrs, ds.attrs)


def _comparable_stored(new: xr.Variable, stored: xr.Variable) -> xr.Variable:
    """``stored`` as dask blocks of its stored chunks when ``new`` is chunked (dask) data (compared block by
    block, never loaded whole), else as it is."""
    chunks = stored.encoding.get("chunks")
    # ``.chunks``, not ``.data``: the data of a lazily opened variable is read when asked for.
    if new.chunks is None or stored.chunks is not None or not chunks or len(chunks) != stored.ndim:
        return stored
    return stored.chunk(dict(zip(stored.dims, (int(c) for c in chunks), strict=True)))
