"""The Python API: validate, plan, build, run, commit.

Every function validates all of its input and plans the whole write before it writes any byte.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dask
from dask._task_spec import Task, TaskRef
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from . import commit as cm
from .errors import DataTypeError, ModeError, PlanningError, StoreWriteError
from .graph.write import build_write_graph, total
from .io.validate import check_mode
from .kwargs import check_compute_kwargs
from .planning.write import WritePlan
from .prepared import PreparedWrite
from .units import parse_bytes

__all__ = ["to_zarr", "plan_write", "build_graph", "prepare"]


def check_data(data: Any) -> None:
    """Refuse a file name given as data: it would otherwise be stored as a 0-d string array."""
    if isinstance(data, str | bytes | os.PathLike):
        raise DataTypeError(
            f"data is a {type(data).__name__} ({os.fsdecode(data)[:200]!r}), not an array or Dataset; to convert "
            "files open them first: xr.open_dataset(path) for one file, xr.open_mfdataset(paths, "
            "data_vars='minimal', coords='minimal', compat='override') for several (or use the CLI: "
            "parallelzarr write 'files/*.nc' out.zarr)"
        )


def _is_xarray(data: Any) -> bool:
    try:
        import xarray as xr
    except ImportError:  # pragma: no cover - xarray is a dependency
        return False
    return isinstance(data, xr.Dataset | xr.DataArray)


def prepare(
    data: Any,
    store: Any,
    *,
    mode: str = "w-",
    region: Any = None,
    append_dim: str | None = None,
    encoding: Mapping[str, Any] | None = None,
    strategy: str = "auto",
    max_mem: int | str | None = "256MiB",
    storage_options: Mapping[str, Any] | None = None,
    zarr_format: int = 3,
    consolidated: bool = True,
    lock: str | None = None,
) -> PreparedWrite:
    """Validate and plan a write without writing anything (the shared first half of the API)."""
    check_data(data)
    check_mode(mode)
    if region is not None and mode == "w-":
        mode = "r+"  # as in xarray: a region always writes into existing arrays
    budget = parse_bytes(max_mem) if max_mem is not None else None
    if zarr_format not in (2, 3):
        raise PlanningError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    if append_dim is not None:
        if mode not in ("a", "w-", "w"):
            raise ModeError(f"append_dim={append_dim!r} needs mode='a', got mode={mode!r}")
        if region is not None:
            raise ModeError("append_dim and region cannot be combined; appends always write after the stored data")
    if _is_xarray(data):
        from .io.datasets import prepare_dataset_write

        return prepare_dataset_write(
            data,
            store,
            mode=mode,
            region=region,
            append_dim=append_dim,
            encoding=encoding,
            strategy=strategy,
            max_mem=budget,
            storage_options=storage_options,
            zarr_format=zarr_format,
            consolidated=consolidated,
            lock=lock,
        )
    if append_dim is not None:
        raise PlanningError("append_dim needs an xarray Dataset or DataArray (it names a dimension)")
    from .io.arrays import prepare_array_write

    return prepare_array_write(
        data,
        store,
        mode=mode,
        region=region,
        encoding=encoding,
        strategy=strategy,
        max_mem=budget,
        storage_options=storage_options,
        zarr_format=zarr_format,
        lock=lock,
    )


def plan_write(
    data: Any,
    store: Any,
    *,
    mode: str = "w-",
    region: Any = None,
    append_dim: str | None = None,
    encoding: Mapping[str, Any] | None = None,
    strategy: str = "auto",
    max_mem: int | str | None = "256MiB",
    storage_options: Mapping[str, Any] | None = None,
    zarr_format: int = 3,
    lock: str | None = None,
) -> WritePlan:
    """Plan a write and return the :class:`~parallelzarr.planning.write.WritePlan`; write nothing.

    Takes the same arguments as :func:`to_zarr`. ``print(plan)`` shows a table per variable;
    ``plan.to_dict()`` gives the same as JSON-able data. Only metadata of an existing store is read.
    """
    return prepare(
        data,
        store,
        mode=mode,
        region=region,
        append_dim=append_dim,
        encoding=encoding,
        strategy=strategy,
        max_mem=max_mem,
        storage_options=storage_options,
        zarr_format=zarr_format,
        lock=lock,
    ).plan


def build_graph(prepared: PreparedWrite) -> Delayed:
    """Build one dask graph writing every array of a prepared write, then its commit."""
    parts: list[Delayed] = []
    for job in prepared.jobs:
        graph, final = build_write_graph(job.plan, job.data, job.open_target(), prepared.locks)
        parts.append(Delayed(final, graph))
    name = "pz-write-all-" + tokenize(*(p.key for p in parts))
    refs = [TaskRef(p.key) for p in parts]
    if prepared.commit is not None:
        task = Task(name, _commit_after, prepared.commit, *refs)
    else:
        task = Task(name, total, *refs)
    graph = HighLevelGraph.from_collections(name, {name: task}, dependencies=parts)
    return Delayed(name, graph)


def _commit_after(commit: Any, *counts: int) -> int:
    commit()
    return int(sum(counts))


def to_zarr(
    data: Any,
    store: Any,
    *,
    mode: str = "w-",
    region: Any = None,
    append_dim: str | None = None,
    encoding: Mapping[str, Any] | None = None,
    strategy: str = "auto",
    consolidated: bool = True,
    compute: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    zarr_format: int = 3,
    max_mem: int | str | None = "256MiB",
    lock: str | None = None,
    **compute_kwargs: Any,
) -> WritePlan | Delayed:
    """Write ``data`` to a zarr store in parallel, safely for any dask chunking.

    Parameters
    ----------
    data
        An ``xarray.Dataset``, ``xarray.DataArray``, dask array or numpy array.
    store
        A path, fsspec URL (``s3://...``), zarr store, or (for arrays) a ``zarr.Array`` to write into.
    mode
        ``"w-"`` create (fail if data exists), ``"w"`` overwrite, ``"a"`` append along
        ``append_dim`` (or add variables), ``"r+"`` write a ``region`` of existing arrays.
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
        Write consolidated metadata (Datasets).
    compute
        If ``False``, lay down metadata of new arrays and return a ``dask.delayed.Delayed``;
        nothing is written to existing arrays until it is computed.
    storage_options
        fsspec options for URL stores (credentials, endpoint).
    zarr_format
        Zarr format of new stores (2 or 3).
    max_mem
        Memory budget per task; a plan that cannot keep it is refused before writing.
    lock
        Lock backend for ``strategy="lock"``: ``"file"``, ``"distributed"`` or ``"threading"``
        (default: the first that works here, in that order).
    **compute_kwargs
        Passed to ``dask.compute`` (``scheduler=``, ``num_workers=``...); any other keyword raises
        ``TypeError`` naming it (a typo must not vanish silently).

    Returns
    -------
    WritePlan or Delayed
        The plan that was carried out, or the lazy write when ``compute=False``.

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
    if append_dim is not None and mode == "a":
        from .append import append

        return append(
            data,
            store,
            append_dim,
            strategy=strategy,
            consolidated=consolidated,
            compute=compute,
            storage_options=storage_options,
            max_mem=max_mem,
            **compute_kwargs,
        )
    prepared = prepare(
        data,
        store,
        mode=mode,
        region=region,
        append_dim=append_dim,
        encoding=encoding,
        strategy=strategy,
        max_mem=max_mem,
        storage_options=storage_options,
        zarr_format=zarr_format,
        consolidated=consolidated,
        lock=lock,
    )
    publish_last = prepared.commit is not None
    try:
        prepared.setup()
        if not compute and prepared.commit is not None:
            # xarray's convention: compute=False lays down readable metadata now (a template that
            # region writes, possibly from other processes, then fill), so publish it at once.
            prepared.commit()
            prepared.commit = None
        delayed = build_graph(prepared)
        if not compute:
            return delayed
        dask.compute(delayed, **compute_kwargs)
    except OSError as exc:
        cm.write_ended(prepared.info.get("store"), prepared.info.get("write_id"), exc)
        raise write_failed(prepared.plan, exc, publish_last) from exc
    except BaseException as exc:
        cm.write_ended(prepared.info.get("store"), prepared.info.get("write_id"), exc)
        raise
    cm.write_ended(prepared.info.get("store"), prepared.info.get("write_id"))
    return prepared.plan


def describe_cause(exc: BaseException) -> str:
    """An ``OSError`` (or other cause) as one line: its type and message (with the file, if any)."""
    return f"{type(exc).__name__}: {exc}"


def write_failed(plan: WritePlan, exc: BaseException, publish_last: bool) -> StoreWriteError:
    """The error for an I/O failure during a write: what readers see now and how to recover.

    ``publish_last``: the write holds back the root metadata until its last chunk (new Datasets).
    """
    cause = describe_cause(exc)
    if plan.mode == "r+":
        return StoreWriteError(
            f"region write into {plan.target} failed: {cause}. The metadata is unchanged; inside the region "
            "each value is either its old or its new value (a region write is not atomic). Fix the cause, "
            "then rerun the same region write."
        )
    if publish_last:
        seen = "Nothing was published: readers see no dataset there (its root metadata is written after the last chunk)."
    else:
        seen = "Chunks not yet written read as fill values."
    return StoreWriteError(
        f"writing {plan.target} failed: {cause}. {seen} Fix the cause, then rerun the write with mode='w' "
        "to replace the unfinished store."
    )
