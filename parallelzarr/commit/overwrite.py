"""``mode="a"``/``"r+"`` without ``append_dim``: add variables to a stored dataset, overwrite stored ones.

xarray's semantics: every variable of the Dataset is written whole; variables new to the store are
created (``mode="a"`` only), stored ones are overwritten with their stored encoding and metadata
(shape, chunks, attributes stay), and ``mode="a"`` replaces the root attributes. Variables of the store
absent from the Dataset are left alone.

Crash safety, with the append machinery of :mod:`.commit` (one lease, one journal, one repair):

1. take the store's lease; roll forward a pending journal and drop staging left by a dead writer;
2. write every variable into a *staging* array under ``.parallelzarr/staging/<id>/<name>`` (same
   metadata as the target; readers never look there): the stored data is untouched;
3. write the journal (the commit point: before it, a crash leaves the store as it was and the staging
   is garbage; after it, :func:`roll_forward_overwrite` finishes the job without the caller's data);
4. roll forward: delete chunks of overwritten arrays that the new data leaves empty, move every staged
   chunk to its final key (a rename on a local filesystem, a copy then delete elsewhere), write the
   metadata of new arrays after their chunks, replace the root attributes, consolidate, drop the
   staging and the journal; release the lease.

What readers see: before step 4, the old dataset; after it, the new one. During step 4 itself (renames
or copies only, no computation), a reader opening the store sees each chunk of an overwritten variable
either old or new, and each new variable either absent or whole (consolidated readers see new
variables only after the consolidation). A crash during step 4 is rolled forward by
:func:`parallelzarr.repair` or by the next write or append to the store.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import dask.array as da
import numpy as np
import xarray as xr
import zarr
import zarr.storage
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from parallelzarr.commit.appendlog import migrate_legacy_log
from parallelzarr.commit.journal import pending_journal, roll_forward, write_journal
from parallelzarr.commit.lease import Lease, acquire_lease
from parallelzarr.errors import ModeError, SchemaMismatchError
from parallelzarr.hooks import fault_point
from parallelzarr.inputs.datasets import (
    DATASET_ENCODING_KEYS,
    _encoded,
    _new_chunks,
    _stored_encoding,
    open_stored,
)
from parallelzarr.inputs.xarray_checks import check_dtype, check_stored_encoding
from parallelzarr.plan.write import WritePlan
from parallelzarr.run.job import Commit, StoredArray, WriteJob, plan_job
from parallelzarr.store.keys import JOURNAL_KEY, METADATA_NAMES, PREFIX
from parallelzarr.store.keys import delete as delete_key
from parallelzarr.store.locks import choose_lock_backend, lock_spec
from parallelzarr.store.markers import Resume
from parallelzarr.store.resolve import ResolvedStore
from parallelzarr.store.staging import lay_down_in_memory, unpublished_write

__all__ = ["prepare_overwrite", "roll_forward_overwrite", "discard_staging", "STAGING_PREFIX"]

STAGING_PREFIX = f"{PREFIX}/staging/"
#: Names of zarr metadata documents inside an array's prefix (never moved as chunks).
META_DOCS = METADATA_NAMES


# --- raw key helpers -------------------------------------------------------------------------------


def _list(store: Any, prefix: str) -> list[str]:
    async def _keys() -> list[str]:
        return [k async for k in store.list_prefix(prefix)]

    try:
        return sync(_keys())
    except (FileNotFoundError, OSError):
        return []


def _get(store: Any, key: str) -> bytes | None:
    buf = sync(store.get(key, prototype=default_buffer_prototype()))
    return None if buf is None else buf.to_bytes()


def _set(store: Any, key: str, data: bytes) -> None:
    from zarr.core.buffer import cpu

    sync(store.set(key, cpu.Buffer.from_bytes(data)))


def _chunk_keys(store: Any, prefix: str) -> list[str]:
    """Keys under ``prefix`` (``"name/"``) that are chunks, relative to it (metadata docs left out)."""
    rel = [k[len(prefix):] for k in _list(store, prefix)]
    return [r for r in rel if r.rsplit("/", 1)[-1] not in META_DOCS]


def _move(store: Any, src: str, dst: str) -> None:
    """Move one key; a rename on a local filesystem (atomic per chunk), else copy then delete."""
    inner = store
    if isinstance(inner, zarr.storage.LocalStore):
        root = str(inner.root)
        target = os.path.join(root, dst)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            os.replace(os.path.join(root, src), target)
        except FileNotFoundError:
            pass  # moved by an earlier, interrupted roll-forward
        return
    data = _get(store, src)
    if data is None:
        return  # moved already
    _set(store, dst, data)
    delete_key(store, src)


# --- planning --------------------------------------------------------------------------------------


def _check_overwritten(name: str, var: xr.Variable, old: xr.Variable) -> xr.Variable:
    """xarray's checks for a stored variable written again: dims (transposed if only their order
    differs), sizes, fixed-width dtypes; returns ``var`` in the stored dimension order."""
    if var.dims != old.dims:
        if set(var.dims) != set(old.dims):
            raise SchemaMismatchError(
                f"variable {name!r} already exists with different dimension names {old.dims} != {var.dims}, "
                f"but changing variable dimensions is not supported by to_zarr(); rename the variable, or "
                f"rewrite the store with mode='w'"
            )
        var = var.transpose(*old.dims)
    if dict(var.sizes) != dict(old.sizes):
        raise SchemaMismatchError(
            f"variable {name!r} already exists with different dimension sizes: {dict(old.sizes)} != "
            f"{dict(var.sizes)}. to_zarr() only supports changing dimension sizes when explicitly appending "
            f"(append_dim=...); to write a subset of the store give region=..., to replace it use mode='w'"
        )
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

    write_id = uuid.uuid4().hex
    staging = f"{STAGING_PREFIX}{write_id}"
    user = {str(k): dict(v) for k, v in encoding.items()}
    xr_encoding: dict[str, dict[str, Any]] = dict(user)
    dask_new: dict[str, tuple[tuple[int, ...], tuple[int, ...] | None]] = {}
    for name in new:
        var = variables[name]
        if isinstance(var.data, da.Array):
            chunks, shards = _new_chunks(name, var, user.get(name, {}), max_mem)
            base = dict(user[name]) if name in user else {
                k: v for k, v in var.encoding.items() if k in DATASET_ENCODING_KEYS
            }
            base["chunks"] = chunks
            if shards is not None:
                base["shards"] = shards
            xr_encoding[name] = base
            dask_new[name] = (chunks, shards)

    # xarray lays down the new arrays' metadata (and writes small in-memory new variables) into a
    # scratch store; only what belongs to new variables (and the root attributes) is taken from it.
    template = _template(ds, set(stored_arrays))
    scratch = lay_down_in_memory(template, "xarray refused the dataset or its encoding", encoding=xr_encoding,
                                 zarr_format=zarr_format, consolidated=False, safe_chunks=False,
                                 write_empty_chunks=write_empty_chunks)
    new_docs: dict[str, dict[str, str]] = {}
    scratch_chunks: dict[str, list[str]] = {}
    for name in new:
        new_docs[name] = {
            doc: data.decode()
            for doc in ("zarr.json", ".zarray", ".zattrs")
            if (data := _get(scratch, f"{name}/{doc}")) is not None
        }
        if name not in dask_new:
            scratch_chunks[name] = _chunk_keys(scratch, f"{name}/")
    root_attrs = dict(zarr.open_group(scratch, mode="r").attrs) if mode != "r+" else None

    backend, problem = choose_lock_backend(resolved.local_path, lock) if strategy == "lock" else (None, None)
    plans, jobs = {}, []
    for name in names:
        var = variables[name]
        path = f"{staging}/{name}"
        if name in new:
            if name not in dask_new:
                continue  # written into the scratch store by xarray: copied into staging at setup
            chunks, shards = dask_new[name]
            enc = xr_encoding[name]
            enc_var = _encoded(name, var, enc, zarr_format)
            values, dtype, shape = enc_var.data, None, var.shape
        else:
            arr = zarr.open_array(resolved.store, path=name, mode="r")
            enc_var = _encoded(name, var, _stored_encoding(stored, name), zarr_format)
            if not np.can_cast(enc_var.dtype, arr.dtype, casting="same_kind") and enc_var.dtype.kind not in "OSUT":
                raise SchemaMismatchError(
                    f"variable {name!r}: encoded dtype {enc_var.dtype} cannot be stored in the existing dtype "
                    f"{arr.dtype}; cast the data, or rewrite the store with mode='w'"
                )
            values, dtype, shape = enc_var.data, arr.dtype, arr.shape
            chunks, shards = arr.chunks, arr.shards
        if dtype is None:
            dtype = np.dtype(enc_var.dtype) if enc_var.dtype.kind != "O" else np.dtype(object)
        if not isinstance(values, da.Array):
            values = da.from_array(np.asarray(values), chunks=tuple(shards or chunks) or ())
        job = plan_job(
            name, values, shape=shape, dims=tuple(map(str, var.dims)), dtype=dtype, chunks=chunks, shards=shards,
            strategy=strategy, max_mem=max_mem, lock_backend=backend, lock_problem=problem,
            target=StoredArray(resolved.store, path),
        )
        plans[name] = job.plan
        jobs.append(job)

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
                    data = _get(self.store, f"{name}/{doc}")
                    if data is not None:
                        _set(self.store, f"{staging}/{name}/{doc}", data)
            for name, docs in self.journal["new"].items():
                for doc, text in docs.items():
                    _set(self.store, f"{staging}/{name}/{doc}", text.encode())
                for rel in self.scratch_chunks.get(name, ()):
                    data = _get(self.scratch, f"{name}/{rel}")
                    if data is not None:
                        _set(self.store, f"{staging}/{name}/{rel}", data)
            fault_point("overwrite:staging-laid")
        except BaseException:
            self.failed()
            lease.release()
            raise
        return None  # no unpublished-write marker: the lease and the journal say what is under way

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
        try:
            journal = pending_journal(self.store)
            if journal is None or journal.get("entry", {}).get("id") != self.write_id:
                sync(self.store.delete_dir(self.journal["staging"]))
                _tidy(self.store)
        except OSError:
            pass  # best effort: repair drops staging left without a journal
        self.release()


def _docs(name: str, docs: Mapping[str, str]) -> list[tuple[str, str]]:
    # v2: attributes before the array document, so a reader finding the array finds its dims too.
    order = {".zattrs": 0, ".zarray": 1, "zarr.json": 2}
    return [(f"{name}/{d}", docs[d]) for d in sorted(docs, key=lambda d: order.get(d, 3))]


def roll_forward_overwrite(store: Any, journal: dict[str, Any]) -> list[str]:
    """Apply an overwrite journal; idempotent, so safe to rerun after a crash inside it.

    Chunks of overwritten arrays that have no staged counterpart (the new values are all fill) are
    deleted first, while the staging is complete; then staged chunks are moved. The phase recorded in
    the journal tells a rerun whether the staging is still complete.
    """
    done: list[str] = []
    staging = journal["staging"]
    if journal.get("phase") == "staged":
        for name in journal["overwrite"]:
            staged = set(_chunk_keys(store, f"{staging}/{name}/"))
            stale = [r for r in _chunk_keys(store, f"{name}/") if r not in staged]
            for rel in stale:
                delete_key(store, f"{name}/{rel}")
            if stale:
                done.append(f"dropped {len(stale)} chunk(s) of {name} that the new data leaves empty")
        journal = {**journal, "phase": "moving"}
        write_journal(store, journal)
        fault_point("overwrite:stale-dropped")
    for name in [*journal["overwrite"], *journal["new"]]:
        moved = _chunk_keys(store, f"{staging}/{name}/")
        for rel in moved:
            _move(store, f"{staging}/{name}/{rel}", f"{name}/{rel}")
        fault_point(f"overwrite:moved:{name}")
        if name in journal["new"]:
            for key, text in _docs(name, journal["new"][name]):
                _set(store, key, text.encode())
            done.append(f"added {name}")
        elif moved:
            done.append(f"overwrote {name} ({len(moved)} chunk(s))")
    consolidated = bool(journal.get("consolidated"))
    if journal.get("root_attrs") is not None:
        migrate_legacy_log(store, consolidated)
        # Written without the consolidated metadata: in zarr 3 both share the root document, and
        # new attributes beside the old member list would show readers a mix. Until the
        # consolidation below, readers list the group and find the whole new state.
        group = zarr.open_group(store, mode="r+", use_consolidated=False)
        group.attrs.put(journal["root_attrs"])
        fault_point("overwrite:attrs")
    if consolidated:
        zarr.consolidate_metadata(store)
        done.append("consolidated metadata")
    fault_point("overwrite:consolidated")
    sync(store.delete_dir(staging))
    delete_key(store, JOURNAL_KEY)
    _tidy(store)
    fault_point("overwrite:journal-removed")
    return done


def discard_staging(store: Any) -> list[str]:
    """Delete staging left by writes that died before their commit point (no journal names it).

    Only call with the lease held or known free: a running write's staging is not garbage.
    """
    journal = pending_journal(store)
    keep = journal.get("staging") if journal and journal.get("kind") == "overwrite" else None
    ids = {k[len(STAGING_PREFIX):].split("/", 1)[0] for k in _list(store, STAGING_PREFIX)}
    gone = []
    for wid in sorted(ids):
        prefix = f"{STAGING_PREFIX}{wid}"
        if prefix != keep:
            sync(store.delete_dir(prefix))
            gone.append(f"dropped the staging of an unfinished write {wid} (readers never saw it)")
    _tidy(store)
    return gone


def _tidy(store: Any) -> None:
    """Remove empty bookkeeping directories (zarr warns about foreign objects in a group)."""
    from parallelzarr.store.resolve import unwrap_store

    store = unwrap_store(store)
    if isinstance(store, zarr.storage.LocalStore):
        root = os.path.join(str(store.root), PREFIX)
        for sub in (os.path.join(root, "staging"), root):
            try:
                os.rmdir(sub)
            except OSError:
                pass


def static_changes(ds: xr.Dataset, resolved: ResolvedStore, append_dim: str) -> tuple[list[str], list[str], bool]:
    """What xarray's ``mode="a"`` with ``append_dim`` writes besides the appended rows.

    xarray overwrites every variable without ``append_dim`` and replaces the root attributes;
    here only what would change is rewritten. Returns (new variables without ``append_dim``, stored
    ones whose values differ, whether the root attributes differ). Values are compared blockwise
    for dask data, so a large static variable is not loaded whole.
    """
    from parallelzarr.store.resolve import store_has_data

    if not store_has_data(resolved.store) or unpublished_write(resolved.store) is not None:
        return [], [], False
    try:
        stored = xr.open_zarr(resolved.store, chunks={}, decode_cf=True)
    except Exception:  # an unreadable or inconsistent store: parallelzarr.append says what is wrong
        return [], [], False
    new, changed = [], []
    for name, var in ds.variables.items():
        if append_dim in var.dims:
            continue
        if name not in stored.variables:
            new.append(str(name))
        elif not var.equals(stored.variables[name]):
            changed.append(str(name))
    return new, changed, dict(stored.attrs) != dict(ds.attrs)
