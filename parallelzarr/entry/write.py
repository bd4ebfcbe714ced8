"""The Python API: validate, plan, build, run, commit.

Every function validates all of its input and plans the whole write before it writes any byte.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any, Literal, overload

import numpy as np
from dask.delayed import Delayed

from parallelzarr.entry.kwargs import check_compute_kwargs
from parallelzarr.entry.notices import quietly
from parallelzarr.errors import ModeError, RepeatedLabelsError
from parallelzarr.inputs.sources import sources_as_data
from parallelzarr.plan.write import WritePlan
from parallelzarr.run.append import AppendResult
from parallelzarr.run.prepare import (
    check_bool,
    default_mode,
    default_zarr_format,
    is_xarray,
    prepare,
)
from parallelzarr.run.runner import build_graph, execute
from parallelzarr.store import rectilinear as _rectilinear  # noqa: F401  (lets zarr >= 3.2 read rectilinear grids)

__all__ = ["to_zarr", "plan_write", "build_graph", "prepare"]


def in_group(store: Any, group: str | None, storage_options: Mapping[str, Any] | None) -> Any:
    """``store`` re-rooted at ``group`` (xarray's ``group=``): a path, URL or store one level deeper."""
    if group is None:
        return store
    import zarr.abc.store
    import zarr.storage

    parts = _group_parts(group)
    if not parts:
        return store
    sub = "/".join(parts)
    if isinstance(store, os.PathLike):
        store = os.fspath(store)
    if isinstance(store, str):
        return store.rstrip("/") + "/" + sub
    if isinstance(store, zarr.storage.LocalStore):
        return zarr.storage.LocalStore(os.path.join(str(store.root), *parts), read_only=store.read_only)
    if isinstance(store, zarr.storage.FsspecStore):
        return zarr.storage.FsspecStore(store.fs, path=f"{store.path.rstrip('/')}/{sub}", read_only=store.read_only)
    if isinstance(store, dict):
        store = zarr.storage.MemoryStore(store_dict=store)
    if isinstance(store, zarr.abc.store.Store):
        # Any other store (memory, zip, wrappers): a view whose keys all lie under the group's path.
        from parallelzarr.store.substore import SubStore

        return SubStore(store, sub)
    raise NotImplementedError(
        f"group= is supported for paths, URLs and zarr stores, not {type(store).__name__}; "
        "write to a store rooted at the group instead"
    )


def make_parent_groups(root_store: Any, group: str, storage_options: Mapping[str, Any] | None) -> None:
    """Create the groups of ``root_store`` above ``group`` that do not exist, so readers can walk down to it."""
    import zarr

    from parallelzarr.store.resolve import resolve_store

    parts = _group_parts(group)
    root = resolve_store(root_store, storage_options if isinstance(root_store, str) else None)
    for depth in range(len(parts)):
        path = "/".join(parts[:depth])
        try:
            zarr.open_group(root.store, path=path, mode="r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError):
            zarr.open_group(root.store, path=path, mode="a")


def consolidate_root(root_store: Any, group: str | None, storage_options: Mapping[str, Any] | None,
                     consolidated: bool | None) -> None:
    """After a write into ``group``, consolidate the root's metadata too (xarray consolidates from the
    root), so readers opening the root with its consolidated metadata find the group."""
    if group is None or not _group_parts(group) or consolidated is False:
        return
    import zarr

    from parallelzarr.store.resolve import resolve_consolidated, resolve_store

    root = resolve_store(root_store, storage_options if isinstance(root_store, str) else None)
    if resolve_consolidated(root.store, consolidated, root.description):
        zarr.consolidate_metadata(root.store)


def _group_parts(group: str) -> list[str]:
    """The components of a group path (``"a/b"`` -> ``["a", "b"]``), each a valid node name."""
    from parallelzarr.inputs.validate import check_name

    if not isinstance(group, str):
        raise TypeError(f"group must be a string path like 'era5' or 'a/b', got {type(group).__name__}")
    parts = [p for p in group.strip("/").split("/") if p]
    for part in parts:
        check_name(part, "group")
    return parts


@quietly
def plan_write(
    data: Any,
    store: Any,
    mode: str | None = None,
    group: str | None = None,
    encoding: Mapping[str, Any] | None = None,
    *,
    region: Any = None,
    append_dim: str | None = None,
    strategy: str = "auto",
    max_mem: int | str | None = "256MiB",
    storage_options: Mapping[str, Any] | None = None,
    zarr_format: int | None = None,
    lock: str | None = None,
    align_chunks: bool = False,
    parts: int | None = None,
) -> WritePlan:
    """Plan a write and return the :class:`~parallelzarr.plan.write.WritePlan`; write nothing.

    Takes the same arguments as :func:`to_zarr`. ``print(plan)`` shows a table per variable;
    ``plan.to_dict()`` gives the same as JSON-able data. Only metadata of an existing store is read.
    ``parts=N``: also split the write into ``N`` job-array parts (``plan.parts``: tasks and bytes of
    each; see :mod:`parallelzarr.entry.parts`).
    """
    plan = prepare(
        sources_as_data(data),
        in_group(store, group, storage_options),
        mode=default_mode(mode, append_dim, region),
        region=region,
        append_dim=append_dim,
        encoding=encoding,
        strategy="rechunk" if check_bool("align_chunks", align_chunks) and strategy == "auto" else strategy,
        max_mem=max_mem,
        storage_options=storage_options,
        zarr_format=default_zarr_format(zarr_format),
        lock=lock,
    ).plan
    if parts is not None:  # job arrays (parallelzarr.entry.parts)
        from parallelzarr.run.parts import check_parts, split_plan

        plan.parts = split_plan(plan, check_parts(parts))[1]
    return plan


@overload
def to_zarr(data: Any, store: Any, mode: str | None = ..., group: str | None = ...,
            encoding: Mapping[str, Any] | None = ..., *, compute: Literal[False], **kwargs: Any) -> Delayed: ...
@overload
def to_zarr(data: Any, store: Any, mode: str | None = ..., group: str | None = ...,
            encoding: Mapping[str, Any] | None = ..., *, compute: Literal[True] = ...,
            **kwargs: Any) -> WritePlan | AppendResult: ...
@quietly
def to_zarr(
    data: Any,
    store: Any,
    mode: str | None = None,
    group: str | None = None,
    encoding: Mapping[str, Any] | None = None,
    *,
    region: Any = None,
    append_dim: str | None = None,
    strategy: str = "auto",
    consolidated: bool | None = None,
    compute: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    zarr_format: int | None = None,
    max_mem: int | str | None = "256MiB",
    lock: str | None = None,
    safe_chunks: bool = True,
    align_chunks: bool = False,
    write_empty_chunks: bool | None = None,
    chunkmanager_store_kwargs: Mapping[str, Any] | None = None,
    progress: bool = False,
    part: Any = None,
    **compute_kwargs: Any,
) -> WritePlan | AppendResult | Delayed:
    """Write ``data`` to a zarr store in parallel, safely for any dask chunking.

    Parameters
    ----------
    data
        An ``xarray.Dataset``, ``xarray.DataArray``, dask array or numpy array.
    store
        A path, fsspec URL (``s3://...``), zarr store, or (for arrays) a ``zarr.Array`` to write into.
    mode
        ``"w-"`` create (fail if data exists), ``"w"`` overwrite, ``"a"`` append along
        ``append_dim``, or without it add variables and overwrite stored ones whole (staged and
        committed under the store's lease: readers see the old or the new data per chunk, see
        :mod:`parallelzarr.commit.overwrite`); with ``append_dim``, ``"a"`` also overwrites the variables
        without it and ``"a-"`` leaves them (both add new ones), as in xarray. ``"r+"`` overwrites
        stored variables (no new ones) or writes a ``region``. ``None`` (xarray's default): ``"a"``
        with ``append_dim``, ``"r+"`` with ``region``, else ``"w-"``.
    group
        Path of the group inside ``store`` to write the Dataset to (xarray's ``group``); parent
        groups are created. Paths and URLs, ``LocalStore`` and ``FsspecStore`` only.
    region
        Dict of slices by dimension (or a tuple of slices for arrays), or ``"auto"`` to find the
        region of a Dataset from its coordinate labels.
    append_dim
        Dimension to append along (with ``mode="a"``); see :func:`parallelzarr.append`.
    encoding
        For Datasets a dict per variable (xarray's keys: ``chunks``, ``shards``, ``compressors``,
        ``dtype``, ``_FillValue``, ``units``...); for arrays one dict (``chunks``, ``shards``,
        ``compressors``, ``fill_value``, ``dimension_names``...).
    strategy
        ``"auto"`` (default), ``"direct"``, ``"gather-edges"``, ``"rechunk"`` or ``"lock"``.
    consolidated
        Write consolidated metadata (Datasets), where the store supports it (as xarray; a store
        without support is written unconsolidated).
    compute
        If ``False``, lay down metadata of new arrays and return a ``dask.delayed.Delayed``;
        nothing is written to existing arrays until it is computed.
    storage_options
        fsspec options for URL stores (credentials, endpoint).
    zarr_format
        Zarr format of new stores (2 or 3); ``None``: zarr's configured default (3 unless changed).
    max_mem
        Memory budget per task; a plan that cannot keep it is refused before writing.
    lock
        Lock backend for ``strategy="lock"``: ``"file"``, ``"distributed"`` or ``"threading"``
        (default: the first that works here, in that order).
    safe_chunks
        Accepted for xarray compatibility. parallelzarr never writes a grid cell from two tasks
        without gathering or a lock, so ``False`` (xarray: write misaligned chunks unchecked) gives
        the same, safe result.
    align_chunks
        xarray's ``align_chunks=True`` (rechunk the dask array to the zarr grid first) selects
        ``strategy="rechunk"`` when ``strategy`` is ``"auto"``.
    write_empty_chunks
        Write chunks that hold only the fill value (zarr's array option); ``None``: zarr's default.
    chunkmanager_store_kwargs
        Extra keywords for the computation, as in xarray (here: ``dask.compute`` keywords).
    progress
        Draw a progress bar while computing (threads or distributed; a widget in Jupyter with
        ipywidgets): :func:`parallelzarr.reports.progress.compute_progress`.
    part
        ``(i, N)`` or ``"i/N"``: write only part ``i`` of the ``N`` parts of a job array initialised
        with :func:`parallelzarr.entry.parts.init` (publish with :func:`parallelzarr.entry.parts.finalize`).
    **compute_kwargs
        Passed to ``dask.compute`` (``scheduler=``, ``num_workers=``...); any other keyword raises
        ``TypeError`` naming it (a typo must not vanish silently).

    Notes
    -----
    Long because it spells out xarray's signature (twenty keywords); the body only dispatches.

    Returns
    -------
    WritePlan or AppendResult or Delayed
        The plan that was carried out (an :class:`~parallelzarr.run.append.AppendResult` for an
        append, ``append_dim`` with ``mode="a"``/``"a-"``), or the lazy write when ``compute=False``.

    Raises
    ------
    ParallelZarrError
        Bad input, before any byte is written.
    StoreWriteError
        An I/O error during the run. A new Dataset publishes its root metadata after the last
        chunk, so readers see no dataset (rerun with ``mode="w"``); after a region write each value
        in the region is its old or its new value and metadata is unchanged (rerun the same write).
    """
    check_compute_kwargs("to_zarr", compute_kwargs)
    data = sources_as_data(data)  # a glob or a list of files opens as parallelzarr.open_sources does
    if chunkmanager_store_kwargs:
        check_compute_kwargs("to_zarr(chunkmanager_store_kwargs=...)", chunkmanager_store_kwargs)
        compute_kwargs = {**chunkmanager_store_kwargs, **compute_kwargs}
    if part is not None:  # one part of a job array (parallelzarr.entry.parts)
        from parallelzarr.run.parts import run_part

        if not compute:
            raise ModeError("part= runs the part now (it is marked done when it finished); drop compute=False")
        return run_part(data, in_group(store, group, storage_options), part, mode, region=region,
                        append_dim=append_dim, encoding=encoding, strategy=strategy, max_mem=max_mem,
                        storage_options=storage_options, zarr_format=zarr_format, consolidated=consolidated,
                        lock=lock, **compute_kwargs)
    mode = default_mode(mode, append_dim, region)
    strategy = "rechunk" if align_chunks and strategy == "auto" else strategy
    check_bool("safe_chunks", safe_chunks)
    check_bool("align_chunks", align_chunks)
    target = in_group(store, group, storage_options)
    if append_dim is not None and mode in ("a", "a-"):
        if region is not None:
            _refuse_append_region(data, target, region, append_dim, storage_options)
        if lock is not None:
            raise ModeError("lock is not taken by appends: they write cells no other writer touches, under a lease")
        appended = _append_like_xarray(
            data, target, append_dim, mode, strategy=strategy, consolidated=consolidated, compute=compute,
            storage_options=storage_options, max_mem=max_mem, encoding=encoding, zarr_format=zarr_format,
            write_empty_chunks=write_empty_chunks, progress=progress, compute_kwargs=compute_kwargs,
        )
        if compute:
            consolidate_root(store, group, storage_options, consolidated)
        return appended
    job = prepare(
        data, target, mode=mode, region=region, append_dim=append_dim, encoding=encoding, strategy=strategy,
        max_mem=max_mem, storage_options=storage_options, zarr_format=default_zarr_format(zarr_format),
        consolidated=consolidated, lock=lock, write_empty_chunks=write_empty_chunks,
    )
    array_config = {"write_empty_chunks": check_bool("write_empty_chunks", write_empty_chunks)} \
        if write_empty_chunks is not None else None
    after_setup = (lambda: make_parent_groups(store, group, storage_options)) if group is not None else None
    if not compute:
        return execute(job, compute=False, array_config=array_config, after_setup=after_setup)
    plan = execute(job, array_config=array_config, progress=progress, compute_kwargs=compute_kwargs,
                   after_setup=after_setup)
    consolidate_root(store, group, storage_options, consolidated)
    return plan


def _refuse_append_region(data: Any, store: Any, region: Any, append_dim: str,
                          storage_options: Mapping[str, Any] | None) -> None:
    """``append_dim`` with ``region``: xarray's refusals for the region first, then ours (always)."""
    if is_xarray(data):
        from parallelzarr.inputs.datasets import as_dataset
        from parallelzarr.inputs.xarray_checks import check_region
        from parallelzarr.run.prepare_dataset import check_auto_region

        check_region(as_dataset(data), region, append_dim)
        check_auto_region(data, store, region, storage_options)
    raise ModeError(
        f"append_dim and region cannot be combined here (append_dim={append_dim!r}, region over "
        f"{sorted(region) if isinstance(region, Mapping) else region!r}): appends always write after the "
        "stored data. Append first, then write the region with mode='r+'"
    )


def _append_like_xarray(data: Any, store: Any, append_dim: str, mode: str, *, compute: bool,
                        compute_kwargs: dict[str, Any], **options: Any) -> Any:
    """``to_zarr(mode="a" | "a-", append_dim=...)`` with xarray's meaning, on the append machinery.

    ``options``: the append's keywords (``strategy``, ``consolidated``, ``storage_options``,
    ``max_mem``, ``encoding``, ``zarr_format``, ``write_empty_chunks``, ``progress``).
    """
    from parallelzarr.entry.notices import quiet_zarr_notices
    from parallelzarr.inputs.xarray_checks import check_append, nothing_for_xarray_to_check
    from parallelzarr.run.append import append_data

    checked = nothing_for_xarray_to_check(data, store, append_dim, options["encoding"], options["storage_options"])
    if checked is not None:
        statics = _checked_statics(data, store, append_dim, options["storage_options"], mode, checked)
    else:
        stored = check_append(data, store, append_dim, options["encoding"], options["storage_options"])
        statics = _statics(data, store, append_dim, options["storage_options"], mode, stored) if is_xarray(data) else None
    then = None
    if statics is not None and statics[1] is not None:
        # The variables without append_dim commit in the append's journal (one commit: readers see the
        # old dataset or the new one); planned and checked now, before any byte is written.
        then = prepare(statics[1], store, mode="a", strategy=options["strategy"], max_mem=options["max_mem"],
                       storage_options=options["storage_options"], zarr_format=default_zarr_format(None),
                       consolidated=options["consolidated"], write_empty_chunks=options["write_empty_chunks"])
    try:
        appended = append_data(
            data if statics is None else statics[0], store, append_dim, compute=compute,
            compute_kwargs=compute_kwargs,
            # xarray's meaning: "a-" leaves variables without append_dim as stored; under "a" the
            # changed ones were taken out above and are overwritten next.
            static="ignore",
            # xarray appends rows at labels already stored again (duplicate labels); skipping them
            # silently would leave out rows the caller asked for, so they are refused here
            # (pz.append(..., repeat="skip") is the idempotent form).
            repeat="error",
            quiet=quiet_zarr_notices,
            then=then,
            **options,
        )
    except RepeatedLabelsError as exc:
        # Looked at again: the append rolled an interrupted commit forward before it refused.
        statics = _statics(data, store, append_dim, options["storage_options"], mode) if is_xarray(data) else None
        if statics is None or statics[1] is None:
            raise
        # The rows may be stored by an earlier compute=False run of this very call that stopped between
        # its two commits: say how to finish it (the variables without append_dim) instead of leaving it stuck.
        names = sorted(map(str, statics[1].variables))
        raise RepeatedLabelsError(
            f"{exc}. If an earlier to_zarr(..., mode={mode!r}, append_dim={append_dim!r}) of these rows stopped after "
            f"its append was committed, its variables without {append_dim!r} ({', '.join(names)}) and attributes "
            f"are still the old ones: finish it with to_zarr(ds[{names}], store, mode='a')"
        ) from exc
    return appended


def _checked_statics(data: Any, store: Any, append_dim: str, storage_options: Mapping[str, Any] | None, mode: str,
                     checked: Any) -> tuple[Any, Any] | None:
    """:func:`_statics` of an append whose xarray checks the consolidated metadata has shown to pass
    (``checked``: what ``nothing_for_xarray_to_check`` read).

    Only the variables without ``append_dim`` are read: plainly when no CF decoding acts on them,
    else opened as xarray opens them. They are left out of the data to append, which ignores them
    (``static="ignore"``) and then needs no stored dataset either (``run/append._lean_append``).
    """
    from parallelzarr.inputs import stored_schema
    from parallelzarr.inputs.datasets import open_stored

    fixed = [str(n) for n, v in data.variables.items() if append_dim not in v.dims]
    if not fixed:
        return None
    if stored_schema.statics_as_stored(data, checked.arrays, checked.resolved.store, checked.zarr_format, append_dim):
        return data.drop_vars(fixed), None  # the stored values, read plainly: nothing changes
    statics = _statics(data, store, append_dim, storage_options, mode, open_stored(
        checked.resolved, checked.zarr_format, indexes=False,  # the root document from the cache
        drop=[str(n) for n in data.variables if str(n) not in fixed]))
    return statics[0].drop_vars([n for n in fixed if n in statics[0].variables]), statics[1]


def _statics(data: Any, store: Any, append_dim: str, storage_options: Mapping[str, Any] | None,
             mode: str, stored: Any = None) -> tuple[Any, Any]:
    """For an append (``mode`` ``"a"`` or ``"a-"``): (the data to append, the Dataset of variables
    without ``append_dim`` to write afterwards, or ``None`` when nothing there changes).

    ``stored``: the stored dataset just opened by the caller (saves opening it again).

    As in xarray, both modes add new variables and replace the root attributes; only ``"a"``
    overwrites stored variables without ``append_dim``.
    """
    from parallelzarr.inputs.datasets import as_dataset
    from parallelzarr.run.overwrite import static_changes
    from parallelzarr.store.resolve import resolve_store

    ds = as_dataset(data)
    if append_dim not in ds.dims:
        return data, None  # parallelzarr.append names the problem
    resolved = resolve_store(store, storage_options)
    new, changed, attrs = static_changes(ds, resolved, append_dim, stored)
    _check_grid(ds, changed, append_dim, mode, stored, resolved)
    # "a-" writes only the variables with append_dim (and new ones): the changed ones are neither
    # overwritten nor handed to the append (which would refuse a changed coordinate off append_dim).
    ignored = changed if mode != "a" else []
    if mode != "a":
        changed = []
    if not (new or changed or attrs):
        return (ds.drop_vars(ignored), None) if ignored else (data, None)
    import xarray as xr

    names = [*new, *changed]
    statics = xr.Dataset({n: ds.variables[n] for n in names if n in ds.data_vars},
                         coords={n: ds.variables[n] for n in names if n in ds.coords}, attrs=ds.attrs)
    # The append gets neither: it would refuse new variables, and a changed coordinate off
    # append_dim (xarray's "a" overwrites it; here in the append's commit, or after it with compute=False).
    return ds.drop_vars([*names, *ignored]), statics


def _check_grid(ds: Any, changed: list[str], append_dim: str, mode: str, stored: Any, resolved: Any) -> None:
    """Refuse an append whose index coordinates off ``append_dim`` are the stored labels in another order;
    under ``"a-"``, warn when they are other labels.

    xarray stores the rows as given under the labels it keeps (``"a-"``: the stored ones) or writes
    (``"a"``: the new ones, relabelling every row already stored), so a flipped latitude puts rows
    upside down. Reordered labels are refused (the data fits the store once reordered); other labels
    go ahead as in xarray, whose tests keep them under ``"a-"``, with a warning (``"a"``: the
    overwrite warns, ``datasets.relabelling``).
    """
    def rows_on(name: str) -> list[str]:
        return sorted(str(v) for v, var in ds.data_vars.items()
                      if append_dim in var.dims and set(ds.variables[name].dims) & set(var.dims))

    grid = [n for n in changed if n in ds.dims and n in ds.indexes and rows_on(n)]
    curvilinear = [n for n in changed if n in ds.coords and n not in ds.indexes and rows_on(n)]
    if not (grid or curvilinear):
        return
    from parallelzarr.errors import SchemaMismatchError
    from parallelzarr.inputs.datasets import open_stored
    from parallelzarr.inputs.ingest import grid_mismatch, label_difference, reordered

    stored = stored if stored is not None else open_stored(resolved)
    for name in grid:
        new, old = np.asarray(ds.indexes[name]), np.asarray(stored.variables[name].values)
        if reordered(new, old):
            raise SchemaMismatchError(f"{grid_mismatch(name, new, old)}. Nothing was written (xarray would store the "
                                      "rows in the given order under other labels)")
        if mode != "a" and new.shape == old.shape:
            warnings.warn(
                f"mode={mode!r} keeps the stored {name!r} labels, as xarray does: the appended rows of {rows_on(name)} "
                f"are stored under them although the data has other labels ({label_difference(new, old)}). "
                f"Align the data first (ds.reindex({name}=stored[{name!r}].values), or ds.assign_coords({name}=...) "
                "if only the spelling differs); parallelzarr.append refuses it", UserWarning, stacklevel=4)
    for name in curvilinear:  # a 2-D latitude: its rows cannot be told reordered from changed, so warn
        new, old = np.asarray(ds.variables[name].values), np.asarray(stored.variables[name].values)
        what = (f"overwrites the coordinate {name!r} with other values, as xarray does: the rows already stored in "
                f"{rows_on(name)} stay as they are, under the new values" if mode == "a" else
                f"keeps the stored coordinate {name!r}, as xarray does: the appended rows of {rows_on(name)} are "
                f"stored under it although the data comes with other values")
        warnings.warn(
            f"mode={mode!r} {what} ({label_difference(new, old)}). If the data lies on the stored grid in another "
            f"order (a flipped y), put it in the stored order first; parallelzarr.append refuses another grid",
            UserWarning, stacklevel=4)
