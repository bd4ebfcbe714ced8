"""A planned write as frozen, typed data: what each array receives, what to lay down, how to commit.

A :class:`WriteJob` is built once every input check has passed; nothing in it has touched the
store. Its steps are small objects, one class per kind, instead of closures:

- what to lay down before any chunk (:attr:`WriteJob.lay_down`): :class:`LayDownUnpublished` (a new
  Dataset, its root metadata held back), :class:`CreateArray` (a bare array),
  :class:`~parallelzarr.run.prepare_overwrite.OverwriteRun` (mode ``"a"``/``"r+"``: lease and
  staging), :class:`WithRectilinearGrids` (any of those, with rectilinear chunk grids), or ``None``;
- how to commit after the last chunk (:attr:`WriteJob.commit`): :class:`Publish` (a new store's
  root metadata), the overwrite's roll-forward, the append's journal and roll-forward, or ``None``
  (region writes and bare arrays publish nothing).

A change (the resume state found in the store, the write id the lay-down recorded, a commit taken
over by a job array's finalize) makes a new job with :func:`dataclasses.replace`; nothing mutates one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import dask.array as da
import numpy as np
import zarr

from parallelzarr.errors import StoreError
from parallelzarr.plan.write import VariablePlan, WritePlan, plan_variable
from parallelzarr.store.keys import zarr_format_of
from parallelzarr.store.locks import LockSpec
from parallelzarr.store.markers import Resume
from parallelzarr.store.staging import STAGING_HOOK, lay_down_unpublished, publish

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["AppendRows", "ArrayJob", "Commit", "CreateArray", "GivenArray", "LayDown", "LayDownUnpublished",
           "Publish", "StoredArray", "WithRectilinearGrids", "WriteJob", "plan_job"]


# --- where each array's chunks go ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class StoredArray:
    """The array at ``path`` of ``store``, opened for writing when the graph is built (after the lay-down)."""

    store: Any
    path: str = ""

    def open(self) -> zarr.Array:
        return zarr.open_array(self.store, path=self.path, mode="r+")


@dataclass(frozen=True, eq=False)
class GivenArray:
    """An array object at hand already: an existing bare array, or the appended view of a stored one."""

    array: zarr.Array

    def open(self) -> zarr.Array:
        return self.array


Target = StoredArray | GivenArray


@dataclass(frozen=True, eq=False)
class ArrayJob:
    """One array to fill.

    Attributes
    ----------
    plan
        The variable's plan (grid segments, strategy, memory, counts).
    data
        The (encoded, cast and, for the ``rechunk`` strategy, rechunked) values to write.
    target
        Where they go: the array opened when the graph is built.
    """

    plan: VariablePlan
    data: da.Array
    target: Target

    def open_target(self) -> zarr.Array:
        """The target array, opened for writing."""
        return self.target.open()


# --- what to lay down before the chunks -------------------------------------------------------------------------


class LayDown(Protocol):
    """A lay-down step: metadata written before any chunk."""

    def run(self, resume: Resume | None) -> str | None:
        """Write the metadata; return the id of the unpublished write it recorded, if any.

        ``resume``: the task markers of this write (a step that replaces the chunks they name
        clears them).
        """


@dataclass(frozen=True, eq=False)
class LayDownUnpublished:
    """A new Dataset store: its metadata laid down under an *unpublished* marker.

    The root metadata is held back until the last chunk is written (:class:`Publish`), so readers
    never see a half-written new store, and a failed write leaves none.

    Attributes
    ----------
    store
        The target store.
    mode
        ``"w"`` (replace what is there) or ``"w-"``.
    template
        The Dataset with one-block placeholder arrays (see ``metadata_template``): the same metadata.
    encoding
        The encoding per variable, as xarray takes it.
    zarr_format, consolidated, write_empty_chunks
        As given to the write.
    """

    store: Any
    mode: str
    template: xr.Dataset
    encoding: Mapping[str, Mapping[str, Any]]
    zarr_format: int
    consolidated: bool
    write_empty_chunks: bool | None = None

    def run(self, resume: Resume | None) -> str | None:
        return lay_down_unpublished(self.store, self.mode, self._write_metadata)

    def _write_metadata(self, staging: Any) -> None:
        self.template.to_zarr(
            staging, mode="w", compute=False, encoding=dict(self.encoding), zarr_format=self.zarr_format,
            consolidated=self.consolidated, safe_chunks=False, write_empty_chunks=self.write_empty_chunks,
        )


@dataclass(frozen=True, eq=False)
class CreateArray:
    """A bare array created in place (bare arrays are not staged: they have no root to hold back).

    Attributes
    ----------
    store, description
        The target store and how messages name it.
    shape, chunks, shards, dtype, dimension_names, zarr_format
        The array's metadata.
    overwrite
        Replace what is at the store (``mode="w"``).
    options
        zarr's other creation keywords from the encoding (codecs, fill value, attributes).
    """

    store: Any
    description: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    dtype: np.dtype
    dimension_names: tuple[str, ...] | None
    overwrite: bool
    zarr_format: int
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def create(self, store: Any, overwrite: bool) -> zarr.Array:
        """Create the array in ``store`` (the target, or a scratch store to let zarr judge the encoding)."""
        return zarr.create_array(
            store, shape=self.shape, chunks=self.chunks, shards=self.shards, dtype=self.dtype,
            dimension_names=self.dimension_names, overwrite=overwrite, zarr_format=zarr_format_of(self.zarr_format),
            **dict(self.options),
        )

    def run(self, resume: Resume | None) -> str | None:
        try:
            self.create(self.store, self.overwrite)
        except Exception as exc:
            raise StoreError(f"cannot create the array at {self.description}: {exc}") from exc
        return None


@dataclass(frozen=True, eq=False)
class KeepArray:
    """Lay down nothing: the array of an interrupted run of this very write is kept (its chunks stay valid)."""

    def run(self, resume: Resume | None) -> str | None:
        return None


@dataclass(frozen=True, eq=False)
class WithRectilinearGrids:
    """Another lay-down step, with rectilinear chunk grids patched into the metadata it writes.

    Attributes
    ----------
    inner
        The step that writes the metadata (``None``: nothing is laid down).
    grids
        The chunk edges per variable.
    in_place
        For a bare array (created in place, not staged): the store and key prefix to patch after it.
    """

    inner: LayDown | None
    grids: Mapping[str, Any]
    in_place: tuple[Any, str] | None = None

    def run(self, resume: Resume | None) -> str | None:
        from parallelzarr.store.rectilinear import _patch

        token = STAGING_HOOK.set(self._patch_staging)
        try:
            write_id = self.inner.run(resume) if self.inner is not None else None
        finally:
            STAGING_HOOK.reset(token)
        if self.in_place is not None:
            root, base = self.in_place
            _patch(root, {"": self.grids["array"]}, base)
        return write_id

    def _patch_staging(self, staging: Any) -> None:
        from parallelzarr.store.rectilinear import _patch

        _patch(staging, self.grids)


# --- how to commit after the chunks -----------------------------------------------------------------------------


class Commit:
    """A commit step: what runs after the last chunk is written (the graph's last task)."""

    #: Whether ``compute=False`` keeps the commit for after the data. ``False``: it runs at once
    #: (xarray's convention: a new store's metadata is a readable template that region writes fill).
    after_data: ClassVar[bool] = False

    def commit(self) -> Any:
        """Publish what the chunks wrote."""
        raise NotImplementedError

    def failed(self, exc: BaseException) -> None:
        """The run failed before its commit point: undo what it holds (its staging, its lease)."""

    def describe_failure(self, cause: str) -> str | None:
        """What readers see after an I/O failure (``cause``) and how to recover; ``None``: the write's default."""
        return None


@dataclass(frozen=True, eq=False)
class Publish(Commit):
    """A new store: write its root metadata documents (the commit point), drop the unpublished marker."""

    store: Any

    def commit(self) -> None:
        publish(self.store)


# --- the job ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AppendRows:
    """The facts of an append the run needs besides the plan.

    Attributes
    ----------
    labels
        The first and last appended label along the append dimension (``None`` without an index).
    offset, length
        Where the new rows start along the append dimension, and how many there are.
    shapes, old_shapes
        Each appended array's shape after and before the append.
    digest_inputs
        Per variable: the values, the stored dtype and the append axis, for the rows' content digests.
    axes
        Per variable: the append axis.
    """

    labels: tuple[str, str] | None
    offset: int
    length: int
    shapes: Mapping[str, list[int]]
    old_shapes: Mapping[str, list[int]]
    digest_inputs: Mapping[str, tuple[da.Array, np.dtype, int]]
    axes: Mapping[str, int]


@dataclass(frozen=True, eq=False)
class WriteJob:
    """Everything a write needs once all input checks have passed; nothing has been written yet.

    Attributes
    ----------
    plan
        The write plan (what :func:`parallelzarr.plan_write` returns). Its run counters
        (``tasks_done``, ``tasks_run``) are filled in as the run goes.
    jobs
        One :class:`ArrayJob` per array written.
    lay_down
        What to write before any chunk (see the module docstring); ``None``: nothing.
    commit
        What to run after the last chunk; ``None``: nothing (region writes, bare arrays, parts).
    locks
        The lock factory for ``strategy="lock"`` and shared partial cells, if any.
    store
        The store of a Dataset write whose unpublished-write marker records a failure (``None`` for
        bare arrays and region writes).
    write_id
        The id of the unpublished write :attr:`lay_down` recorded (after :meth:`setup`).
    resume
        Task markers of this write in the store: a rerun skips the tasks already done.
    rows
        For appends: offsets, shapes, labels (see :class:`AppendRows`).
    """

    plan: WritePlan
    jobs: tuple[ArrayJob, ...]
    lay_down: LayDown | None = None
    commit: Commit | None = None
    locks: LockSpec | None = None
    store: Any = None
    write_id: str | None = None
    resume: Resume | None = None
    rows: AppendRows | None = None

    def setup(self) -> WriteJob:
        """Lay the metadata down; return the job with the write id it recorded."""
        if self.lay_down is None:
            return self
        return dataclasses.replace(self, write_id=self.lay_down.run(self.resume))

    def replace(self, **changes: Any) -> WriteJob:
        """A copy with ``changes`` (:func:`dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)


def plan_job(
    name: str,
    values: da.Array,
    *,
    shape: Sequence[int],
    dims: Sequence[str],
    dtype: Any,
    chunks: Sequence[int],
    shards: Sequence[int] | None,
    target: Target,
    start: Sequence[int] | None = None,
    strategy: str = "auto",
    max_mem: int | None = None,
    lock_backend: str | None = None,
    lock_problem: str | None = None,
    partial_cells_shared: bool = False,
) -> ArrayJob:
    """Plan the write of ``values`` into one array and return the job (values cast and, for the
    ``rechunk`` strategy, rechunked as the plan says)."""
    dtype = np.dtype(dtype)
    if not isinstance(values, da.Array):
        # xarray's encoders compute some variables (object-dtype strings, with a SerializationWarning
        # as xarray itself gives): write what they produced, one block per grid cell.
        values = da.from_array(np.asarray(values), chunks=tuple(shards or chunks) or ())
    if values.dtype != dtype:
        values = values.astype(dtype)
    vplan = plan_variable(
        name,
        shape=shape,
        dims=dims,
        dtype=str(dtype),
        itemsize=dtype.itemsize,
        dask_chunks=values.chunks,
        chunks=chunks,
        shards=shards,
        region_start=start,
        strategy=strategy,
        max_mem=max_mem,
        lock_backend=lock_backend,
        lock_problem=lock_problem,
        partial_cells_shared=partial_cells_shared,
    )
    if vplan.strategy == "rechunk":
        values = values.rechunk(vplan.write_chunks)
    return ArrayJob(plan=vplan, data=values, target=target)
