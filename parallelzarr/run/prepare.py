"""Validate and plan a write into a :class:`~parallelzarr.run.job.WriteJob`; nothing is written here.

The shared first half of :func:`parallelzarr.to_zarr`, :func:`parallelzarr.plan_write`, first
appends and job-array parts: the defaults xarray applies (mode, zarr format), the checks of the
data, then the Dataset or bare-array planner, and what the store holds of an interrupted run of
the same write (:mod:`parallelzarr.run.resume`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from parallelzarr.errors import DataTypeError, ModeError, PlanningError
from parallelzarr.inputs.validate import check_mode
from parallelzarr.run.job import WriteJob
from parallelzarr.run.resume import keep_unfinished_array, with_rectilinear_grids, with_resume
from parallelzarr.units import parse_bytes

__all__ = ["check_bool", "check_data", "default_mode", "default_zarr_format", "is_xarray", "prepare"]


def check_data(data: Any) -> None:
    """Refuse a file name given as data: it would otherwise be stored as a 0-d string array."""
    if isinstance(data, str | bytes | os.PathLike):
        raise DataTypeError(
            f"data is a {type(data).__name__} ({os.fsdecode(data)[:200]!r}), not an array or Dataset; to convert "
            "files open them first: xr.open_dataset(path) for one file, xr.open_mfdataset(paths, "
            "data_vars='minimal', coords='minimal', compat='override') for several (or use the CLI: "
            "parallelzarr write 'files/*.nc' out.zarr)"
        )


def default_mode(mode: str | None, append_dim: str | None, region: Any) -> str:
    """xarray's default ``mode``: ``"a"`` with ``append_dim``, ``"r+"`` with ``region``, else ``"w-"``.

    A region with ``mode="w"``/``"w-"`` is refused as xarray refuses it: it would otherwise be a
    silent region write where the caller asked to create or replace the store.
    """
    if mode is not None:
        if append_dim is not None and mode not in ("a", "a-"):
            raise ModeError(
                f"cannot set append_dim unless mode='a' or mode=None: append_dim={append_dim!r} needs mode='a' "
                f"(or leave mode unset), got mode={mode!r}: with mode={mode!r} the rows would replace the store "
                "instead of being appended"
            )
        if region is not None and mode in ("w", "w-"):
            raise ModeError(
                f"cannot set region unless mode='a', mode='a-', mode='r+' or mode=None, got mode={mode!r}: a "
                "region writes into existing arrays; use mode='r+' (or leave mode unset), or drop region to "
                "create the store"
            )
        return mode
    return "a" if append_dim is not None else "r+" if region is not None else "w-"


def default_zarr_format(zarr_format: int | None) -> int:
    """``zarr_format``, else zarr's configured default (``zarr.config``'s ``default_zarr_format``), as xarray does."""
    if zarr_format is not None:
        return zarr_format
    import zarr

    return int(zarr.config.get("default_zarr_format", 3))


def check_bool(name: str, value: Any) -> Any:
    """Refuse a non-boolean flag (``"false"`` would read as true)."""
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def is_xarray(data: Any) -> bool:
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
    consolidated: bool | None = None,
    lock: str | None = None,
    write_empty_chunks: bool | None = None,
) -> WriteJob:
    """Validate and plan a write without writing anything (the shared first half of the API)."""
    args = dict(locals())  # the arguments as given, for the rectilinear re-plan below
    check_data(data)
    check_mode(mode)
    rectilinear = _rectilinear_request(args)
    if rectilinear is not None:
        return rectilinear
    if region is not None and mode == "w-":
        mode = "r+"  # as in xarray: a region always writes into existing arrays
    budget = parse_bytes(max_mem) if max_mem is not None else None
    _check_format_and_append(mode, region, append_dim, zarr_format)
    if is_xarray(data):
        from parallelzarr.run.prepare_dataset import prepare_dataset_write

        job = prepare_dataset_write(data, store, mode=mode, region=region, append_dim=append_dim, encoding=encoding,
                                    strategy=strategy, max_mem=budget, storage_options=storage_options,
                                    zarr_format=zarr_format, consolidated=consolidated, lock=lock,
                                    write_empty_chunks=write_empty_chunks)
        return _resumable(job, store, storage_options)
    if append_dim is not None:
        raise PlanningError("append_dim needs an xarray Dataset or DataArray (it names a dimension)")
    from parallelzarr.run.prepare_array import prepare_array_write

    job = prepare_array_write(data, store, mode=mode, region=region, encoding=encoding, strategy=strategy,
                              max_mem=budget, storage_options=storage_options, zarr_format=zarr_format, lock=lock)
    # A bare array's metadata is not staged: a rerun resumes onto it only when its encoding and format match.
    return _resumable(job, store, storage_options, {"encoding": encoding, "zarr_format": zarr_format})


def _check_format_and_append(mode: str, region: Any, append_dim: str | None, zarr_format: int) -> None:
    """Refuse a ``zarr_format`` other than 2 or 3, and ``append_dim`` with another mode or with a region."""
    if zarr_format not in (2, 3):
        raise PlanningError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    if append_dim is not None:
        if mode not in ("a", "w-", "w"):
            raise ModeError(f"append_dim={append_dim!r} needs mode='a', got mode={mode!r}")
        if region is not None:
            raise ModeError("append_dim and region cannot be combined; appends always write after the stored data")


def _resumable(job: WriteJob, store: Any, storage_options: Mapping[str, Any] | None,
               facts: Mapping[str, Any] | None = None) -> WriteJob:
    """Attach the resume state (parallelzarr.store.markers): a rerun of an interrupted write skips its finished tasks.

    ``facts``: what else decides the stored bytes (a bare array's encoding and format: its metadata
    is not staged, so a rerun resumes onto it only when these match).
    """
    job = with_rectilinear_grids(job, store, storage_options)  # the readers note, the metadata
    job = with_resume(job, store, storage_options, extra=facts)
    if facts is not None:
        job = keep_unfinished_array(job, store, storage_options)
    return job


def _rectilinear_request(args: dict[str, Any]) -> WriteJob | None:
    """Plan again with rectilinear ``chunks`` taken out of the encoding and those variables named
    (parallelzarr.store.rectilinear), or ``None`` when the write asks for none."""
    from parallelzarr.plan.write import RECTILINEAR_NAMES
    from parallelzarr.store.rectilinear import take_requests

    new_store = args["region"] is None and args["append_dim"] is None and args["mode"] not in ("r+", "a", "a-")
    if args["region"] is not None or args["mode"] == "r+":
        from parallelzarr.store.rectilinear import refuse_region_into

        refuse_region_into(args["data"], args["store"], args["storage_options"])
    data, encoding, names = take_requests(args["data"], args["encoding"], args["strategy"],
                                          zarr_format=args["zarr_format"], new_store=new_store)
    if not names:
        return None
    token = RECTILINEAR_NAMES.set(names)
    try:
        return prepare(**{**args, "data": data, "encoding": encoding})
    finally:
        RECTILINEAR_NAMES.reset(token)
