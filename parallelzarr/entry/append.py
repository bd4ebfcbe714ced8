"""Crash-safe, idempotent appends along a dimension (incremental ingest): the entry points.

Readers only ever see whole appends: new chunks are written beyond the stored shape (invisible while
the metadata keeps the old shape), then the commit publishes the new shapes. A first append (into
an empty store) is a new-store write; the run of an append to an existing store is
:func:`parallelzarr.run.append.run_append`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, overload

import xarray as xr
from dask.delayed import Delayed

from parallelzarr.commit.repair import RepairReport, repair_store
from parallelzarr.entry.kwargs import check_compute_kwargs
from parallelzarr.entry.notices import quiet_zarr_notices, quietly
from parallelzarr.errors import AppendError, StoreError
from parallelzarr.inputs.datasets import as_dataset
from parallelzarr.plan.write import WritePlan
from parallelzarr.run.append import (  # noqa: F401  (the fast-path tests use _runs_inline, prepare_append here)
    AppendResult,
    _open_consistent,
    _runs_inline,
    _split_repeats,
    append_data,
    prepare_append,
)
from parallelzarr.run.prepare import default_zarr_format, prepare
from parallelzarr.run.resume import with_resume
from parallelzarr.store.resolve import resolve_store, store_has_data
from parallelzarr.units import parse_bytes

__all__ = ["append", "plan_append", "repair", "AppendResult"]


@overload
def append(data: xr.Dataset | xr.DataArray, store: Any, append_dim: str, *, compute: Literal[False],
           **kwargs: Any) -> Delayed: ...
@overload
def append(data: xr.Dataset | xr.DataArray, store: Any, append_dim: str, *, compute: Literal[True] = ...,
           **kwargs: Any) -> AppendResult: ...
@quietly
def append(
    data: xr.Dataset | xr.DataArray,
    store: Any,
    append_dim: str,
    *,
    strategy: str = "auto",
    append_id: str | None = None,
    consolidated: bool | None = None,
    compute: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    max_mem: int | str | None = "256MiB",
    encoding: Mapping[str, Any] | None = None,
    static: str = "verify",
    zarr_format: int | None = None,
    write_empty_chunks: bool | None = None,
    append_step: Any = None,
    gaps: str = "refuse",
    repeat: str = "skip",
    wait: Any = None,
    progress: bool = False,
    **compute_kwargs: Any,
) -> AppendResult | Delayed:
    """Append ``data`` along ``append_dim`` so that readers only ever see the whole append.

    Parameters
    ----------
    data
        Dataset (or DataArray) holding the new rows.
    store
        Path, fsspec URL or zarr store of an existing dataset (an empty target is created).
    append_dim
        Dimension to append along.
    strategy
        Write strategy for the appended blocks (``auto``, ``direct``, ``gather-edges``, ``rechunk``).
    append_id
        Identity of this append; by default derived from the appended coordinate labels. An append
        whose id is already recorded returns without writing.
    consolidated
        Update consolidated metadata (the commit point for consolidated readers), where the store
        supports it (a store without support is appended to unconsolidated, as xarray does).
    compute
        If ``False``, validate and plan now (reading metadata only; an interrupted earlier commit is
        rolled forward first) and return a ``dask.delayed.Delayed`` that writes and commits when
        computed; it computes to the :class:`AppendResult`. Always a ``Delayed``: also for a first
        append (into an empty store) and for an append already applied. No lease is held until it
        runs: the graph's first task takes the store's lease and its commit task releases it, so a
        ``Delayed`` that is never computed leaves the store free. If its computation fails,
        ``.compute()`` releases the lease; after ``dask.compute``/``client.compute`` failures the
        next append names the lease as held by this process (clear it with ``repair(store, force=True)``).
        Rows at stored labels are compared (``repeat``) at once, reading them.
    storage_options
        fsspec options for URL stores.
    max_mem
        Memory budget per task.
    encoding
        Encoding for variables new to the store (stored variables keep their encoding; giving one is an error).
    zarr_format
        Zarr format of the store a first append creates (default 3); for an existing store it must
        match the stored format (an error otherwise, before any write).
    write_empty_chunks
        Write chunks that hold only the fill value (zarr's array option); ``None``: zarr's default.
    static
        ``"verify"`` (default) that variables without ``append_dim`` (a land-sea mask, a 0-d
        ``expver``) equal the stored ones: up to 64 MiB they are compared in memory, larger ones
        block by block with dask (both read once). ``"ignore"`` keeps the stored ones unchecked.
        Index coordinates other than ``append_dim`` (the grid) are compared with the stored ones
        either way: data on another grid is refused. And a variable stored with ``append_dim``
        must be appended with it (and the other way round).
    append_step
        The expected step between labels along ``append_dim`` (``"1h"``, ``"1D"``; a number for
        numeric labels), from the last stored label on: uneven steps (not a whole multiple) are
        refused, and so are gaps unless ``gaps="allow"``. ``None``: not checked.
    gaps
        ``"refuse"`` (default) or ``"allow"`` missing labels when ``append_step`` is given. Late
        data for a gap can only be written if rows for it exist: see the README's "Late data".
    repeat
        Data at labels already stored: ``"skip"`` (default) rows identical to the stored ones
        (compared by content digests: recorded by appends written through a graph, else read
        from the store), refusing changed rows with their labels;
        ``"overwrite"`` rewrites changed rows in place, crash-safely (readers see each value old
        or new); ``"error"`` refuses any repeated label. New labels after the stored ones are
        appended as usual.
    wait
        How long to wait for a lease held by another process (``"30s"``, seconds): polled with
        a growing interval, then :class:`LeaseError` as without waiting. ``None``: fail at once.
    progress
        Show a progress bar while computing (see :func:`parallelzarr.reports.progress.compute_progress`).
    **compute_kwargs
        Passed to ``dask.compute``; any other keyword raises ``TypeError`` naming it.

    Returns
    -------
    AppendResult or Delayed

    Raises
    ------
    AppendError, SchemaMismatchError
        The data does not continue the store (both are ``ValueError``); nothing is written.
    LeaseError
        Another append (or a lazy one of this process) holds the store's lease.
    StoreWriteError
        An I/O error during the run; readers still see the data before this append. Rerun the same
        append (or :func:`repair`) once the cause is fixed.
    """
    check_compute_kwargs("append", compute_kwargs)
    return append_data(
        data, store, append_dim, strategy=strategy, append_id=append_id, consolidated=consolidated, compute=compute,
        storage_options=storage_options, max_mem=max_mem, encoding=encoding, static=static, zarr_format=zarr_format,
        write_empty_chunks=write_empty_chunks, append_step=append_step, gaps=gaps, repeat=repeat, wait=wait,
        progress=progress, compute_kwargs=compute_kwargs, quiet=quiet_zarr_notices,
    )


@quietly
def plan_append(
    data: xr.Dataset | xr.DataArray,
    store: Any,
    append_dim: str,
    *,
    strategy: str = "auto",
    storage_options: Mapping[str, Any] | None = None,
    max_mem: int | str | None = "256MiB",
    encoding: Mapping[str, Any] | None = None,
    static: str = "verify",
    append_step: Any = None,
    gaps: str = "refuse",
    repeat: str = "skip",
) -> WritePlan:
    """Validate and plan an append like :func:`append` does; read metadata only, write nothing.

    Rows at labels already stored are left out of the plan (``repeat="error"`` refuses them);
    whether they are identical to the stored ones is decided by :func:`append` (it reads them).

    Returns
    -------
    WritePlan
        The plan of the chunks the append would write beyond the stored shape.
    """
    ds = as_dataset(data)
    if append_dim not in ds.dims:
        raise AppendError(f"append_dim {append_dim!r} is not a dimension of the data; its dimensions are {sorted(map(str, ds.dims))}")
    resolved = resolve_store(store, storage_options)
    budget = parse_bytes(max_mem) if max_mem is not None else None
    if not store_has_data(resolved.store):
        return prepare(ds, resolved.store, mode="w-", encoding=encoding, strategy=strategy, max_mem=max_mem,
                       zarr_format=default_zarr_format(None)).plan
    stored = _open_consistent(resolved)
    repeated = _split_repeats(ds, stored, append_dim, repeat)
    if repeated is not None:
        if not repeated.new.sizes[append_dim]:  # every label is stored: nothing to plan beyond the stored shape
            return WritePlan(target=resolved.description, mode="a", variables={}, append_dim=append_dim, max_mem=budget)
        ds = repeated.new
    prepared = prepare_append(ds, resolved, append_dim, strategy=strategy, max_mem=budget, encoding=encoding, static=static,
                              append_step=append_step, gaps=gaps, stored=stored)
    return with_resume(prepared, resolved.store).plan  # the plan says how many tasks an interrupted run finished


def repair(
    store: Any, *, force: bool = False, truncate: bool = False, storage_options: Mapping[str, Any] | None = None
) -> RepairReport:
    """Bring a store back to a consistent state after an interrupted append.

    Rolls forward an interrupted commit from its journal, clears a lease whose holder is gone (any
    lease with ``force=True``), and removes unreferenced chunks beyond each array's shape. Then
    checks that the arrays agree on the length of each dimension they share (xarray refuses a store
    where they do not, which an append of mismatched data used to leave); such a store is reported
    with the way out, and changed only with ``truncate=True``.

    Parameters
    ----------
    store
        Path, fsspec URL or zarr store.
    force
        Clear the lease even when its holder cannot be shown to be gone.
    truncate
        Cut the arrays that are longer along a disagreeing dimension back to the shortest length
        there (dropping the rows only some arrays have) and forget the appends whose rows are
        dropped, so they can be rerun. The report lists every array and append touched.
    storage_options
        fsspec options for URL stores.

    Returns
    -------
    RepairReport
        What was found and done (``print`` it, or ``.to_dict()``).

    Raises
    ------
    StoreError
        There is no zarr store (group) at ``store``.
    """
    resolved = resolve_store(store, storage_options)
    if not store_has_data(resolved.store):
        raise StoreError(f"no zarr store at {resolved.description}; nothing to repair")
    return repair_store(resolved.store, resolved.description, force=force, truncate=truncate)
