"""The append run: checks against the store, the plan as a :class:`~parallelzarr.run.job.WriteJob`, the
lease, the graph (or a small append written inline), the commit (journal, roll forward).

Readers only ever see whole appends: new chunks are written beyond the stored shape (invisible while
the metadata keeps the old shape), then the commit publishes the new shapes (:mod:`parallelzarr.commit`).
:func:`parallelzarr.append` (the entry point) creates a new store for a first append itself and hands
appends to an existing store to :func:`run_append`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph
from dask.local import get_sync
from zarr.core.array_spec import ArrayConfigParams

from parallelzarr.commit.appendlog import is_recorded, write_record
from parallelzarr.commit.journal import pending_journal, published_view, stored_zarr_format, write_journal
from parallelzarr.commit.lease import Lease, acquire_lease, clear_dead_lease, parse_wait, read_lease
from parallelzarr.commit.rollforward import roll_forward
from parallelzarr.errors import (
    AlreadyAppliedError,
    AppendError,
    EncodingError,
    ModeError,
    RepeatedLabelsError,
    SchemaMismatchError,
)
from parallelzarr.hooks import chunk_written, fault_point
from parallelzarr.inputs.datasets import CF_KEYS, as_dataset, encoded_as_stored, open_stored
from parallelzarr.inputs.ingest import (
    STATIC_POLICIES,
    STATIC_VERIFY_IN_MEMORY,
    check_index_coordinates,
    check_steps,
    combine_digests,
    parse_step,
    row_checksums,
)
from parallelzarr.inputs.stored_range import StoredRangeError
from parallelzarr.inputs.stored_schema import (
    StoredArray,
    dimensions_agree,
    statics_as_stored,
    stored_arrays,
    stored_as_given,
)
from parallelzarr.inputs.stored_times import (
    NUMPY_CALENDARS,
    decode_labels,
    encode_labels,
    open_with_dim_from_ends,
    plain_cf_datetime,
    read_positions,
)
from parallelzarr.inputs.stored_units import units_conflict
from parallelzarr.plan.write import WritePlan
from parallelzarr.reports.progress import compute_progress, finish_running_tasks
from parallelzarr.run.failures import append_failure, store_write_failures
from parallelzarr.run.job import AppendRows, ArrayJob, GivenArray, WriteJob, plan_job
from parallelzarr.run.prepare import default_zarr_format, prepare
from parallelzarr.run.resume import with_resume
from parallelzarr.run.runner import build_graph, write_now
from parallelzarr.store.chunk_io import write_region
from parallelzarr.store.dims import describe_conflict, dimension_conflicts
from parallelzarr.store.holders import describe_holder, held_by_this_process, holder_alive
from parallelzarr.store.keys import LEASE_KEY, zarr_format_of
from parallelzarr.store.read_cache import ReadCache
from parallelzarr.store.rectilinear import append_job
from parallelzarr.store.resolve import (
    ResolvedStore,
    has_root_node,
    resolve_consolidated,
    resolve_store,
    store_has_data,
)
from parallelzarr.store.staging import unpublished_array, unpublished_write, write_running
from parallelzarr.store.writer_threads import run_shared
from parallelzarr.store.zarr_compat import array_from_document, group_member, open_group_for
from parallelzarr.units import parse_bytes

__all__ = ["AppendResult", "INLINE_APPEND_BYTES", "append_data", "prepare_append", "run_append"]


@dataclass
class AppendResult:
    """What an append did.

    Attributes
    ----------
    append_id
        Identity of the append (given, or derived from the appended coordinate labels).
    applied
        ``False`` when the same append had already been committed and nothing was written.
    plan
        The write plan carried out (``None`` when nothing was written).
    offset, length
        Position and length of the appended rows along the append dimension.
    repaired
        What was rolled forward or cleared before this append could start.
    skipped, overwritten
        Rows at already stored labels that were identical (skipped) or rewritten (``repeat="overwrite"``).
    """

    append_id: str
    applied: bool
    message: str
    plan: WritePlan | None = None
    offset: int = 0
    length: int = 0
    repaired: list[str] = field(default_factory=list)
    skipped: int = 0
    overwritten: int = 0

    def __str__(self) -> str:
        lines = [self.message]
        lines += [f"  repaired first: {r}" for r in self.repaired]
        if self.plan is not None:
            lines.append(str(self.plan))
        return "\n".join(lines)


def _label(value: Any) -> str:
    arr = np.asarray(value)
    if arr.dtype.kind in "mM":
        return str(np.datetime_as_string(arr) if arr.dtype.kind == "M" else arr)
    return str(arr.item() if arr.ndim == 0 else value)


def _appended_array(arr: zarr.Array, new_shape: tuple[int, ...]) -> zarr.Array:
    """The stored array seen with a bigger shape, without saving that shape (readers keep the old)."""
    aa = arr._async_array
    return unpublished_array(aa.metadata.update_shape(new_shape), aa.store_path, config=aa.config)


def _undecoded_hint(var: xr.Variable) -> str:
    """How to fix labels that are CF numbers still (a file opened with ``decode_times=False``), else ``""``."""
    units = var.attrs.get("units")
    if var.dtype.kind in "iuf" and isinstance(units, str) and " since " in units:
        return (f" (these are numbers in {units!r}: opened with decode_times=False or decode_cf=False? "
                "decode them first with xr.decode_cf(ds), or open the file without that option)")
    return ""


def _check_coordinate(ds: xr.Dataset, stored: xr.Dataset | None, dim: str,
                      old: pd.Index | None = None) -> tuple[str, str] | None:
    """Check the appended labels continue the stored ones; return (first, last) labels.

    ``old``: the stored labels to check against (default: the stored index; the fast path passes
    only the last two stored labels, see :func:`_stored_ends`).
    """
    if dim not in ds.indexes:
        return None
    new = ds.indexes[dim]
    if len(new) == 0:
        raise AppendError(f"nothing to append: the data has length 0 along {dim!r}")
    ends_only = old is not None
    if old is None and stored is not None:
        old = stored.indexes.get(dim)
    values = np.asarray(new)
    if old is not None and len(old) and not _comparable(np.asarray(old).dtype, values.dtype):
        raise AppendError(
            f"the appended {dim!r} labels have dtype {values.dtype} but the stored ones have {np.asarray(old).dtype}; "
            f"append labels of the stored kind{_undecoded_hint(ds.variables[dim]) or _calendar_hint(old, values, dim)}"
        )
    if old is not None and len(old) and _calendar(old[-1]) != _calendar(values[0]):
        raise AppendError(
            f"the appended {dim!r} labels are dates of the {_calendar(values[0])!r} calendar but the stored ones are "
            f"of the {_calendar(old[-1])!r} calendar: they cannot be ordered against each other or stored in it as "
            f"they are{_calendar_hint(old, values, dim)}"
        )
    if old is not None and len(old):
        increasing = bool(old[-1] >= old[0]) if len(old) > 1 else bool(len(values) < 2 or values[-1] >= values[0])
    else:
        increasing = bool(len(values) < 2 or values[-1] >= values[0])
    # Neighbours compared directly: differences of cftime labels are timedelta objects, not numbers.
    ordered = values[1:] > values[:-1] if increasing else values[1:] < values[:-1]
    missing = pd.isna(values)
    if missing.any():
        raise AppendError(
            f"the appended {dim!r} labels include missing values (NaT or NaN) at position(s) "
            f"{np.flatnonzero(missing)[:5].tolist()}: a label must name its row. Drop those rows first "
            f"(ds = ds.sel({dim}=ds[{dim!r}].notnull())) or give them their labels"
        )
    if len(values) > 1 and not np.asarray(ordered, dtype=bool).all():
        order = "increasing" if increasing else "decreasing"
        raise AppendError(f"the appended {dim!r} labels must be strictly {order}, like the stored ones")
    if old is not None and len(old):
        # Beyond the last of the two stored ends (the fast path), no appended label can be stored.
        beyond_ends = ends_only and bool(values[0] > old[-1] if increasing else values[0] < old[-1])
        overlap = old[:0] if beyond_ends else old.intersection(new)
        if len(overlap):
            raise RepeatedLabelsError(
                f"the appended {dim!r} labels overlap the stored ones: {len(overlap)} label(s) from "
                f"{_label(overlap[0])} to {_label(overlap[-1])} are already stored; append only new labels "
                "(or write them with region=...)"
            )
        beyond = values[0] > np.asarray(old)[-1] if increasing else values[0] < np.asarray(old)[-1]
        if not beyond:
            raise AppendError(
                f"the appended {dim!r} labels start at {_label(values[0])}, which is not after the last stored "
                f"label {_label(old[-1])}; appends must continue the stored order"
            )
    return _label(values[0]), _label(values[-1])


def _calendar(label: Any) -> str | None:
    """The calendar of a cftime date (``None`` for any other label)."""
    return getattr(label, "calendar", None) if type(label).__module__.startswith("cftime") else None


def _calendar_hint(old: Any, values: np.ndarray, dim: str) -> str:
    """How to convert appended dates to the calendar of the stored cftime dates (``""``: they are not cftime dates)."""
    calendar = _calendar(old[-1])
    if calendar is None:
        return ""
    align = ", align_on='date'" if "360_day" in (calendar, _calendar(values[0])) else ""
    return (f" (the stored labels are cftime dates of the {calendar!r} calendar): convert them first, "
            f"ds = ds.convert_calendar({calendar!r}, dim={dim!r}, use_cftime=True{align}), which drops dates the "
            f"{calendar!r} calendar does not have")


def _comparable(a: np.dtype, b: np.dtype) -> bool:
    """Whether coordinate labels of dtypes ``a`` and ``b`` can be ordered against each other."""
    kinds = {a.kind, b.kind}
    return kinds <= set("biuf") or len(kinds) == 1


def _check_dimension_agreement(ds: xr.Dataset, stored: xr.Dataset, dim: str) -> None:
    """Refuse an append after which the stored variables would disagree on the length of a dimension.

    Only variables with ``dim`` grow; so each stored variable with ``dim`` must be appended with it,
    and an appended variable with ``dim`` must be stored with it. ``xr.open_mfdataset`` (default
    ``data_vars='all'``) broadcasts static variables such as a land-sea mask along the concatenated
    dimension, so one file opened alone and the concatenation of several disagree there.
    """
    for name, old in stored.variables.items():
        if name not in ds.variables:
            continue
        new = ds.variables[name]
        old_dims, new_dims = tuple(map(str, old.dims)), tuple(map(str, new.dims))
        if dim in old_dims and dim not in new_dims:
            expand = f"ds[{str(name)!r}] = ds[{str(name)!r}].expand_dims({dim}=ds[{dim!r}])"
            if old_dims[0] != dim:
                expand += f".transpose{old_dims!r}"
            raise SchemaMismatchError(
                f"{str(name)!r} is stored with dimension {dim!r} {old_dims} but the appended {str(name)!r} has dims "
                f"{new_dims} without it: it would not grow, leaving {str(name)!r} shorter than {dim!r} and the store "
                f"unreadable. The stored one was probably broadcast along {dim!r} by xr.open_mfdataset. Broadcast the "
                f"appended one the same way ({expand}), or rewrite the store with {str(name)!r} off the {dim!r} "
                f"dimension (open the files with xr.open_mfdataset(..., data_vars='minimal'))"
            )
        if dim in new_dims and dim not in old_dims:
            raise SchemaMismatchError(
                f"the appended {str(name)!r} has dimension {dim!r} {new_dims} but the stored one has {old_dims}: it "
                f"cannot grow along {dim!r}. It was probably broadcast along {dim!r} by xr.open_mfdataset; open the "
                f"files with xr.open_mfdataset(..., data_vars='minimal'), or take one copy with "
                f"ds[{str(name)!r}] = ds[{str(name)!r}].isel({dim}=0, drop=True) (static='verify' checks it is unchanged)"
            )
        if dim not in new_dims and new_dims != old_dims:
            raise SchemaMismatchError(
                f"{str(name)!r} has dims {new_dims} but the stored variable has {old_dims}; variables without "
                f"{dim!r} are not appended and must match the store (or be dropped)"
            )
        for d in new_dims if dim not in new_dims else ():
            if new.sizes[d] != old.sizes[d]:
                raise SchemaMismatchError(
                    f"{str(name)!r} has size {new.sizes[d]} along {d!r} but the store has {old.sizes[d]}; only "
                    f"{dim!r} may change in an append (variables without it must match the store, or be dropped)"
                )


def _verify_static(name: str, new: xr.Variable, old: xr.Variable, dim: str) -> None:
    """Refuse a variable without ``dim`` whose values differ from the stored ones (``static="verify"``).

    Up to :data:`~parallelzarr.inputs.ingest.STATIC_VERIFY_IN_MEMORY` bytes both are loaded and compared;
    larger ones are compared block by block with dask (each read once, never whole in memory).
    """
    small = max(new.nbytes, old.nbytes) <= STATIC_VERIFY_IN_MEMORY
    a, b = (new.load(), old.load()) if small else (new.chunk(), old.chunk())
    if a.dims == b.dims and a.shape == b.shape and a.equals(b):
        return
    detail = ""
    if small and a.shape == b.shape and a.dtype.kind not in "SUO" and b.dtype.kind not in "SUO":
        differ = ~((np.asarray(a) == np.asarray(b)) | (pd.isna(np.asarray(a)) & pd.isna(np.asarray(b))))
        if differ.any():
            detail = f" at {int(differ.sum())} of {differ.size} values"
    elif small and a.ndim == 0:
        detail = f": {a.values!r} where the store has {b.values!r}"
    raise AppendError(
        f"{name!r} has no {dim!r} dimension and differs from the stored values{detail}; an append cannot change "
        f"it (it is stored once, not per {dim!r}). Drop it from the appended data if the stored values stand "
        f"(or pass static='ignore', CLI --static ignore, to keep the stored ones), or write it into a new store"
    )


def _full_index(stored: xr.Dataset, dim: str) -> xr.Dataset:
    """``stored`` with its index along ``dim`` (reading every stored label)."""
    if dim in stored.indexes or dim not in stored.coords or stored[dim].dims != (dim,):
        return stored
    return stored.set_xindex(dim)


def _stored_ends(ds: xr.Dataset, stored: xr.Dataset, dim: str, last_two: np.ndarray | None = None) -> pd.Index | None:
    """The last two stored labels when every appended label lies beyond the last one, else ``None``.

    Reads two labels (the last index chunk, or two), not the whole index. Appends keep the
    stored labels strictly monotonic, so then no appended label can be stored already: the
    repeat comparison has nothing to do and the continuity checks need only these two. ``None``
    (the caller reads the whole index): labels that may overlap, another kind of labels, fewer
    than two stored labels, or an index already built. ``last_two``: those labels, already read.
    """
    if dim in stored.indexes or dim not in ds.indexes or dim not in stored.coords or stored[dim].dims != (dim,):
        return None
    if stored.sizes[dim] < 2 or ds.sizes[dim] == 0:
        return None
    # The last two labels (mostly one index chunk) give the stored order and the last label.
    return _ends_if_beyond(np.asarray(stored[dim].variable[[-2, -1]].values if last_two is None else last_two),
                           np.asarray(ds.indexes[dim]))


def _ends_if_beyond(last_two: np.ndarray, new: np.ndarray) -> pd.Index | None:
    """The two last stored labels as an index when every label of ``new`` lies beyond them, else ``None``."""
    ends = pd.Index(last_two)
    if not _comparable(np.asarray(ends).dtype, new.dtype) or pd.isna(ends).any() or ends[0] == ends[1]:
        return None
    try:
        beyond = new.min() > ends[1] if ends[1] > ends[0] else new.max() < ends[1]
    except TypeError:
        return None
    return ends if bool(beyond) else None


def _derive_id(ds: xr.Dataset, dim: str, labels: tuple[str, str] | None) -> str:
    h = hashlib.sha1()
    h.update(dim.encode())
    h.update(",".join(sorted(map(str, ds.data_vars))).encode())
    h.update(str(ds.sizes[dim]).encode())
    if labels is not None:
        h.update(repr(labels).encode())
    else:
        h.update(dask.base.tokenize(ds).encode())
    return h.hexdigest()[:16]


def _open_consistent(resolved: ResolvedStore, zarr_format: int | None = None, no_index: str | None = None,
                     **decoding: Any) -> xr.Dataset:
    """The stored dataset, refusing a store whose arrays disagree on a dimension's length.

    ``zarr_format``: the stored format when known (every open then skips zarr's format probing).
    ``no_index``: a dimension whose index is not built (its labels are not all read; the other
    dimensions' indexes are); :func:`_full_index` builds it when needed. ``decoding``: ``xr.open_zarr``
    decoding keywords per variable (with ``no_index``; see
    :func:`parallelzarr.inputs.stored_times.undecoded_open_kwargs`). With a known format the
    lengths are those readers see: from the consolidated metadata where there is one (which the
    commit keeps equal to each array's own, one read instead of one per array). The arrays are
    listed for a disagreement only when xarray cannot open the store (one open, not two).
    """
    with warnings.catch_warnings():
        # Our bookkeeping prefix (.parallelzarr/) is not a zarr node; zarr says so when xarray lists the group.
        warnings.filterwarnings("ignore", message=r"Object at \.parallelzarr\S* is not recognized")
        if zarr_format is None:
            _refuse_conflicts(resolved, zarr_format)
            return open_stored(resolved)
        try:
            if no_index is None:
                return xr.open_zarr(resolved.store, chunks=None, decode_cf=True, mask_and_scale=True, zarr_format=zarr_format)
            stored = xr.open_zarr(resolved.store, chunks=None, decode_cf=True, zarr_format=zarr_format,
                                  create_default_indexes=False, **{"mask_and_scale": True, **decoding})
            for name in stored.dims:
                if name != no_index and name in stored.coords and stored[name].dims == (name,):
                    stored = stored.set_xindex(str(name))
            return stored
        except Exception as exc:  # as open_stored reports it
            # Arrays that disagree on a dimension are one reason; only then are they listed, to name them.
            _refuse_conflicts(resolved, zarr_format)
            raise ModeError(f"cannot open {resolved.description} as an xarray dataset: {exc}") from exc


def _refuse_conflicts(resolved: ResolvedStore, zarr_format: int | None) -> None:
    """Refuse a store whose arrays disagree on a dimension's length, naming them."""
    conflicts = dimension_conflicts(resolved.store, zarr_format, None if zarr_format else False)
    if conflicts:
        raise AppendError(
            f"{resolved.description} is inconsistent: its arrays disagree on the length of "
            + "; and ".join(describe_conflict(d, sizes) for d, sizes in conflicts.items())
            + ", so readers cannot open it. Run parallelzarr.repair(store) to see how to recover, then append again"
        )


def prepare_append(
    ds: xr.Dataset,
    resolved: ResolvedStore,
    append_dim: str,
    *,
    strategy: str,
    max_mem: int | None,
    encoding: Mapping[str, Any] | None,
    static: str,
    append_step: Any = None,
    gaps: str = "refuse",
    stored: xr.Dataset | None = None,
    zarr_format: int | None = None,
    stored_ends: pd.Index | None = None,
) -> WriteJob:
    """Validate an append against the store and plan it; read only metadata and the static variables.

    ``stored``: the store opened by the caller just before (saves opening it again);
    ``zarr_format``: the stored format, when known; ``stored_ends``: the last two stored
    labels when ``stored`` has no index along ``append_dim`` (see :func:`_stored_ends`).
    """
    stored = _open_consistent(resolved, zarr_format) if stored is None else stored
    ds = _in_stored_order(ds, stored)
    _check_append_schema(ds, stored, append_dim, static, encoding)
    _check_dimension_agreement(ds, stored, append_dim)
    check_index_coordinates(ds, stored, append_dim)
    labels = _check_coordinate(ds, stored, append_dim, stored_ends)
    if append_step is not None and append_dim in ds.indexes:
        _check_append_steps(ds, stored, append_dim, append_step, gaps, stored_ends)

    plans = {}
    jobs = []
    digest_inputs: dict[str, tuple[da.Array, np.dtype, int]] = {}  # made into row checksums by the run
    axes: dict[str, int] = {}
    group = open_group_for(resolved.store, mode="r+", zarr_format=zarr_format_of(zarr_format)) if zarr_format else None
    offset = int(stored.sizes[append_dim])
    length = int(ds.sizes[append_dim])
    planner = _AppendPlanner(resolved, stored, group, zarr_format, append_dim, offset, length, strategy, max_mem)
    for name, var in ds.variables.items():
        name = str(name)
        if append_dim not in var.dims:
            if static == "verify" and name in stored.variables:
                _verify_static(name, var, stored.variables[name], append_dim)
            continue
        job, axis, values, dst = planner.job(name, var)
        plans[name] = job.plan
        jobs.append(job)
        axes[name] = axis
        if name != append_dim:  # the digest of each appended label (the labels themselves are the key)
            digest_inputs[name] = (values, dst, axis)
    rows = AppendRows(
        labels=labels,
        offset=offset,
        length=length,
        shapes={j.plan.name: list(j.plan.shape) for j in jobs},
        old_shapes={n: [int(s) for s in stored.variables[n].shape] for n in plans},
        digest_inputs=digest_inputs,
        axes=axes,
    )
    plan = WritePlan(target=resolved.description, mode="a", variables=plans, append_dim=append_dim, max_mem=max_mem)
    return WriteJob(plan=plan, jobs=tuple(jobs), rows=rows)


def _check_append_schema(ds: xr.Dataset, stored: xr.Dataset, append_dim: str, static: str,
                         encoding: Mapping[str, Any] | None) -> None:
    """Refuse an append whose dimension, ``static``, encoding or variables do not fit the store."""
    if append_dim not in ds.dims:
        raise AppendError(f"append_dim {append_dim!r} is not a dimension of the data; its dimensions are {sorted(map(str, ds.dims))}")
    if append_dim not in stored.dims:
        raise AppendError(f"append_dim {append_dim!r} is not a dimension of the store; stored dimensions are {sorted(map(str, stored.dims))}")
    if static not in STATIC_POLICIES:
        raise AppendError(f"static must be one of {STATIC_POLICIES}, got {static!r}")
    if encoding is not None and not isinstance(encoding, Mapping):
        raise EncodingError(f"encoding must be a dict of variable name -> encoding, got {type(encoding).__name__}")
    for name in encoding or {}:
        if name in stored.variables:
            raise EncodingError(f"encoding given for {name!r}, which is already stored; appends reuse the stored encoding, drop it")
    new_vars = sorted(str(n) for n in ds.data_vars if n not in stored.data_vars)
    if new_vars:
        raise AppendError(f"variable(s) {new_vars} are not in the store; write them first or drop them from the appended data")
    missing = sorted(str(n) for n, v in stored.variables.items() if append_dim in v.dims and n not in ds.variables)
    if missing:
        raise AppendError(
            f"variable(s) or coordinate(s) {missing} of the store have {append_dim!r} but are missing from the "
            "appended data; include them (e.g. the new coordinate labels)"
        )


def _check_append_steps(ds: xr.Dataset, stored: xr.Dataset | None, append_dim: str, append_step: Any, gaps: str,
                        stored_ends: pd.Index | None) -> None:
    """Refuse appended labels that do not continue the stored ones at ``append_step`` (gaps as ``gaps`` says)."""
    old_index = stored.indexes.get(append_dim) if stored_ends is None and stored is not None else stored_ends
    last = np.asarray(old_index)[-1] if old_index is not None and len(old_index) else None
    values = np.asarray(ds.indexes[append_dim])
    check_steps(values, last, parse_step(append_step, values), gaps, append_dim)


def _check_appended_variable(name: str, var: xr.Variable, old: xr.Variable, append_dim: str) -> None:
    """Refuse an appended variable whose dims, sizes off ``append_dim`` or dtype kind differ from the stored one."""
    if tuple(map(str, var.dims)) != tuple(map(str, old.dims)):
        raise SchemaMismatchError(f"{name!r} has dims {var.dims} but the stored variable has {old.dims}")
    for d in var.dims:
        if d != append_dim and var.sizes[d] != old.sizes[d]:
            raise SchemaMismatchError(
                f"{name!r} has size {var.sizes[d]} along {d!r} but the store has {old.sizes[d]}; only "
                f"{append_dim!r} may change in an append"
            )
    new_kind, old_dtype = np.dtype(var.dtype), np.dtype(old.dtype)
    if new_kind.kind in "biufc" and old_dtype.kind in "biufc" and not np.can_cast(new_kind, old_dtype, "same_kind"):
        raise SchemaMismatchError(f"{name!r}: appended dtype {new_kind} cannot be stored as the stored dtype {old_dtype}")
    if (new_kind.kind == "M") != (old_dtype.kind == "M"):
        raise SchemaMismatchError(f"{name!r}: appended dtype {new_kind} cannot be stored as the stored dtype {old_dtype}")


def _in_stored_order(ds: xr.Dataset, stored: xr.Dataset) -> xr.Dataset:
    """``ds`` with each variable whose dims are the stored ones in another order transposed to the stored order.

    As xarray's append: its rows are written in the stored dimension order.
    """
    swapped = {name: var.transpose(*stored.variables[name].dims) for name, var in ds.variables.items()
               if name in stored.variables and var.dims != stored.variables[name].dims
               and set(var.dims) == set(stored.variables[name].dims)}
    if not swapped:
        return ds
    coords = {name: var for name, var in swapped.items() if name in ds.coords}
    data = {name: var for name, var in swapped.items() if name not in ds.coords}
    return ds.assign_coords(coords).assign(data)


def _stored_dtype(name: str, var: xr.Variable, enc_var: xr.Variable, arr: zarr.Array) -> np.dtype:
    """The stored dtype of ``arr``, refusing encoded values it cannot hold (strings that would be cut, other kinds)."""
    src, dst = np.dtype(enc_var.dtype), np.dtype(arr.dtype)
    if np.dtype(var.dtype).kind in "SU":
        src = np.dtype(var.dtype)  # the stored dtype in the encoding would silently cut the strings
    if src.kind in "SU" and dst.kind in "SU":
        width = src.itemsize // (4 if src.kind == "U" else 1)
        room = dst.itemsize // (4 if dst.kind == "U" else 1)
        if width > room:
            raise SchemaMismatchError(
                f"{name!r}: appended strings need {width} characters but the stored dtype {dst} holds {room}; "
                "values would be cut. Rewrite the store with a wider dtype"
            )
    elif not np.can_cast(src, dst, casting="same_kind"):
        fix = ("the store holds native datetime64 values (written with encoding dtype datetime64), which xarray "
               "appends as CF numbers (xarray's own append then stores 1970-01-01, pydata/xarray#10639); rewrite the store with CF units (encoding={'units': ..., 'dtype': 'int64'})"
               if dst.kind in "Mm" else f"cast the data to {dst}, or rewrite the store with a dtype that holds both")
        raise SchemaMismatchError(f"{name!r}: appended dtype {src} cannot be stored as the stored dtype {dst}. "
                                  f"Nothing was written; {fix}")
    return dst


#: Why an append refuses ``strategy="lock"``.
_LOCK_PROBLEM = "appends write cells no other writer touches; use 'auto' or 'gather-edges'"


@dataclass(frozen=True, eq=False)
class _AppendPlanner:
    """What planning each appended variable shares: the store, what it holds, where the new rows go."""

    resolved: ResolvedStore
    stored: xr.Dataset
    group: zarr.Group | None
    zarr_format: int | None
    append_dim: str
    offset: int
    length: int
    strategy: str
    max_mem: int | None

    def job(self, name: str, var: xr.Variable) -> tuple[ArrayJob, int, da.Array, np.dtype]:
        """Check ``var`` against its stored array and plan its rows; return the job, axis, values and stored dtype."""
        append_dim, offset, length = self.append_dim, self.offset, self.length
        if name not in self.stored.variables:
            raise AppendError(f"coordinate {name!r} is not in the store; appended data must match the stored variables")
        _check_appended_variable(name, var, self.stored.variables[name], append_dim)
        # r+: the appended view writes through it. From the group's consolidated metadata (what
        # the stored dataset above was read from) when the format is known: no read per array.
        member = group_member(self.group, name) if self.group is not None else None
        fmt = None if self.zarr_format is None else zarr_format_of(self.zarr_format)
        arr = member if isinstance(member, zarr.Array) else zarr.open_array(self.resolved.store, path=name, mode="r+",
                                                                            zarr_format=fmt)
        enc_var = encoded_as_stored(name, var, self.stored, arr.metadata.zarr_format)
        dst = _stored_dtype(name, var, enc_var, arr)
        values = enc_var.data
        if not isinstance(values, da.Array):
            values = da.from_array(np.asarray(values), chunks=arr.shards or arr.chunks)
        axis = list(map(str, var.dims)).index(append_dim)
        if arr.shape[axis] != offset:
            raise SchemaMismatchError(
                f"{name!r} has length {arr.shape[axis]} along {append_dim!r} but the store's dimension has {offset}; "
                "run parallelzarr.repair(store) first"
            )
        new_shape = tuple(s + length if i == axis else s for i, s in enumerate(arr.shape))
        target = _appended_array(arr, new_shape)
        job = append_job(  # onto a rectilinear grid (zarr >= 3.2) the rows are one new chunk
            plan_job, arr, axis, name, values, shape=new_shape, dims=tuple(map(str, var.dims)), dtype=dst,
            shards=arr.shards, start=tuple(offset if i == axis else 0 for i in range(arr.ndim)), strategy=self.strategy,
            max_mem=self.max_mem, lock_problem=_LOCK_PROBLEM,
            target=GivenArray(target),
        )
        return job, axis, values, dst


@dataclass
class _AppendRun:
    """What the tasks of one append's graph need: the first takes the lease, the last commits.

    Picklable (a store, ids, shapes), so the tasks may run on dask workers. The lease's id is fixed
    when the graph is built, so whoever computes it can release the lease, whichever process took it.
    """

    store: Any
    description: str
    lease_id: str
    operation: str
    old_shapes: dict[str, list[int]]
    journal: dict[str, Any]
    consolidated: bool
    result: AppendResult
    wait: Any = None  # how long the lease task waits for a lease held by another process
    zarr_format: int | None = None  # the stored format (opens skip zarr's probing)
    #: The commit step (an ``OverwriteRun``, run/overwrite.py) of a ``mode="a"`` write of the variables
    #: without the append dimension that commits in this append's journal, staged under this lease.
    then: Any = None
    #: The lease when the append took it before reading the store (released through it).
    lease: Lease | None = None

    def check(self) -> None:
        """Refuse to write if the store moved on since the append was planned."""
        aid = self.journal["entry"]["id"]
        # The lease is held: no commit is under way, so the consolidated shapes (one read) are current.
        published, root_attrs = published_view(self.store, self.zarr_format) if self.consolidated else ({}, None)
        if is_recorded(self.store, aid, self.zarr_format, root_attrs):
            raise AlreadyAppliedError(f"append {aid} was already applied to {self.description} (computed twice?); nothing written")
        if pending_journal(self.store) is not None:
            raise AppendError(
                f"{self.description} has an interrupted commit that appeared after this append was planned; "
                "rerun the append (it rolls the commit forward first)"
            )
        for name, shape in self.old_shapes.items():
            fmt = None if self.zarr_format is None else zarr_format_of(self.zarr_format)
            now = published.get(name) or zarr.open_array(self.store, path=name, mode="r", zarr_format=fmt).shape
            if list(now) != shape:
                raise AppendError(f"{name!r} changed from {tuple(shape)} to {tuple(now)} while this append was planned; retry")

    def take_lease(self) -> bool:
        """The graph's first task: take the lease (unless this run already holds it) and check the store."""
        current = read_lease(self.store)
        if current is not None and current.get("id") == self.lease_id:
            return True  # taken by append(compute=True) before computing, or by an earlier try of this task
        lease = acquire_lease(self.store, self.description, self.operation, lease_id=self.lease_id, wait=self.wait)
        fault_point("append:leased")
        try:
            self.check()
        except BaseException:
            lease.release()
            raise
        return True

    def stopped(self, exc: BaseException) -> None:
        """The run stopped on ``exc`` before it finished: drop staged variables, release the lease.

        Running tasks go on after an interrupt (the commit among them): the lease is released only
        once they are done, so no other append can start while this one still writes.
        """
        if isinstance(exc, KeyboardInterrupt):
            finish_running_tasks()
        if self.then is not None:
            self.then.drop_staging()
        self.release()

    def release(self) -> None:
        """Release the lease if this run holds it (a no-op otherwise)."""
        (self.lease or Lease(self.store, {"id": self.lease_id})).release()

    def finish(self, written: int, checksums: Mapping[str, np.ndarray] | None = None,
               staged: Any = None) -> AppendResult:
        """The graph's last task, after every chunk is written: journal, commit, release.

        ``checksums`` (per variable, one per appended label) become the record's content digests;
        ``staged`` is only a dependency (the staged writes of :attr:`then`).
        """
        try:
            if checksums:
                self.journal["entry"]["digests"] = combine_digests(checksums)
            fault_point("append:data-written")
            journal = self.journal
            if self.then is not None:  # one commit for the rows and the variables without the dim
                journal = {**self.then.journal, "append": self.journal}
            write_journal(self.store, journal)
            fault_point("append:journaled")
            # Fresh: the lease is held since the check (check(), or reads under a lease taken first) found no record.
            roll_forward(self.store, journal, self.consolidated, fresh=True)
        except BaseException:
            self.release()  # a written journal stays: the next append or repair rolls it forward
            raise
        self.release()
        fault_point("append:released")
        return self.result


def _after_lease(block: Any, leased: Any) -> Any:
    """Pass ``block`` on once the lease task has run (it is a dependency of every written block)."""
    return block


def _waiting_for(data: da.Array, token: da.Array) -> da.Array:
    """``data`` whose every block waits for the lease task (``token``)."""
    ind = tuple(range(data.ndim))
    return da.blockwise(_after_lease, ind, data, ind, token, (), dtype=data.dtype, meta=data._meta,
                        name=f"pz-leased-{data.name}")


class AppendDelayed(Delayed):
    """The ``Delayed`` of ``append(compute=False)``: its ``compute()`` releases the lease on failure.

    The lease is taken when its ``compute()`` starts (under ``dask.compute``/``client.compute``, by
    the graph's first task) and released by the graph's last task (the commit). When another task
    fails, ``compute()`` of this object releases it too; a failure under
    ``dask.compute(...)`` or ``client.compute(...)`` leaves it held by the computing process, which
    the next append names (``repair(store, force=True)`` clears it).
    """

    __slots__ = ("_run",)

    def __init__(self, key: Any, dsk: Any, run: _AppendRun) -> None:
        super().__init__(key, dsk)
        self._run = run

    def compute(self, **kwargs: Any) -> Any:
        try:
            # Take the lease before any task runs: source blocks do not wait for the lease task, so a
            # failing one could end compute() while that task is still about to take the lease,
            # leaving it held after the release below. (The graph's lease task then finds it held.)
            self._run.take_lease()
            return super().compute(**kwargs)
        except BaseException:
            self._run.release()
            raise


def _lazy_graph(prepared: WriteJob, run: _AppendRun, array_config: Mapping[str, Any] | None = None,
                staged: Delayed | None = None) -> AppendDelayed:
    """One graph: lease task -> every written block -> commit task (returns the AppendResult).

    ``staged``: the writes of :attr:`_AppendRun.then`'s staged variables, which the commit waits for.
    """
    leased = dask.delayed(run.take_lease, pure=False)(dask_key_name=f"pz-append-lease-{run.lease_id}")
    token = da.from_delayed(leased, shape=(), dtype=bool)
    # No chunk is written before the lease is held: every block waits for the lease task.
    leased_jobs = tuple(dataclasses.replace(job, data=_waiting_for(job.data, token)) for job in prepared.jobs)
    written = build_graph(prepared.replace(jobs=leased_jobs), array_config)
    assert prepared.rows is not None
    checksums = {n: row_checksums(v.astype(d), a) for n, (v, d, a) in prepared.rows.digest_inputs.items()}
    final = dask.delayed(run.finish, pure=False)(written, checksums or None, staged,
                                                 dask_key_name=f"pz-append-commit-{run.lease_id}")
    return AppendDelayed(final.key, final.dask, run)


def _wait_until_free(store: Any, wait: Any) -> float:
    """Poll (growing interval) until no other live process holds the lease, at most ``wait``; return the time left.

    Nothing is taken here: the append takes the lease as usual, with the time left, after planning.
    """
    deadline = time.monotonic() + parse_wait(wait)
    delay = 0.05
    while True:
        holder = read_lease(store)
        left = deadline - time.monotonic()
        if holder is None or holder_alive(holder) is False or held_by_this_process(holder) or left <= 0:
            return max(0.0, left)
        time.sleep(min(delay, left))
        delay = min(delay * 1.5, 2.0)


def _check_stored_format(resolved: ResolvedStore, zarr_format: int, stored: int) -> None:
    """Refuse ``zarr_format`` that differs from the ``stored`` one (xarray would silently keep the stored one)."""
    if stored != zarr_format:
        raise ModeError(
            f"zarr_format={zarr_format} but {resolved.description} is stored in zarr format {stored}; an append keeps "
            f"the stored format: drop zarr_format or pass zarr_format={stored}"
        )


#: Appends of at most this many new bytes (and within ``max_mem``) are written from the calling
#: thread without a dask graph: for a few small chunks, building and scheduling a graph costs
#: more than the writes.
INLINE_APPEND_BYTES = 64 * 2**20


_LOCAL_SCHEDULERS = frozenset({"threads", "threading", "sync", "synchronous", "single-threaded", "processes", "multiprocessing"})


def _runs_inline(prepared: WriteJob, budget: int | None, compute_kwargs: Mapping[str, Any], progress: bool) -> bool:
    """Whether an append is small enough to write from the calling thread (see :data:`INLINE_APPEND_BYTES`).

    Only with a local scheduler (a distributed client's data is read through its cluster) and no
    progress bar; ``num_workers`` is then moot (one thread writes).
    """
    return _local_compute(compute_kwargs, progress) and _small_enough(sum(int(j.data.nbytes) for j in prepared.jobs), budget)


def _small_enough(nbytes: int, budget: int | None) -> bool:
    """Whether ``nbytes`` of new data may be written from the calling thread (at most half the budget)."""
    return nbytes <= INLINE_APPEND_BYTES and (budget is None or 2 * nbytes <= budget)


def _local_compute(compute_kwargs: Mapping[str, Any], progress: bool) -> bool:
    """Whether ``compute_kwargs`` name a local scheduler (or none, and the default is local) and no progress bar."""
    if progress or set(compute_kwargs) - {"scheduler", "num_workers"}:
        return False
    if "scheduler" in compute_kwargs:
        if compute_kwargs["scheduler"] not in _LOCAL_SCHEDULERS:
            return False
    else:
        default = dask.base.get_scheduler()
        if default is not None and not str(getattr(default, "__module__", "")).startswith("dask."):
            return False
    return True


def _append_inline(prepared: WriteJob, run: _AppendRun, array_config: Mapping[str, Any] | None) -> None:
    """Write a small append without a graph, then commit it like the graph's last task.

    The input is computed, then each array is written in slabs cut at its stored object boundaries
    along the append axis: every object is encoded and stored once, and each slab counts as one
    write (the crash tests' points). The arrays are written by this thread and the process's writer
    threads together (:func:`parallelzarr.store.writer_threads.run_shared`): each is a few
    milliseconds of encoding and file writes, which release the GIL.

    Its record carries no content digests: summing them took about as long as writing the chunks
    (3 ms of a 20 ms append), while they only save a read in the rare rerun of the same labels,
    which then digests the stored rows instead (:func:`parallelzarr.run.repeats.stored_digests`).
    """
    assert prepared.rows is not None
    rows = prepared.rows
    arrays = [job.data for job in prepared.jobs]
    computed = _compute_here(arrays)

    def write(job: ArrayJob, data: Any) -> int:
        target = job.open_target()
        if array_config:
            target = target.with_config(cast(ArrayConfigParams, dict(array_config)))
        return _write_slabs(target, job.plan, rows.axes[job.plan.name], np.asarray(data))

    written = sum(run_shared([partial(write, job, data) for job, data in zip(prepared.jobs, computed, strict=True)]))
    run.finish(written)


def _compute_here(arrays: list[Any]) -> list[Any]:
    """The values of ``arrays`` (dask arrays or array-likes), computed in this thread.

    One graph for all (shared inputs are computed once), unoptimised (for a few blocks of data,
    fusing costs more than it saves), run by dask's synchronous scheduler directly: 0.2 ms for
    two one-block arrays, where ``dask.compute`` (collection handling around the same scheduler)
    took 1.0 ms on the development machine.
    """
    lazy = [a for a in arrays if dask.is_dask_collection(a)]
    if not lazy:
        return [np.asarray(a) for a in arrays]
    graph = HighLevelGraph.merge(*(a.__dask_graph__() for a in lazy))
    results = iter(get_sync(graph, [a.__dask_keys__() for a in lazy]))
    out = []
    for a in arrays:
        if dask.is_dask_collection(a):
            finalize, extra = a.__dask_postcompute__()
            out.append(finalize(next(results), *extra))
        else:
            out.append(np.asarray(a))
    return out


def _write_slabs(target: zarr.Array, plan: Any, axis: int, data: np.ndarray) -> int:
    """Write ``data`` into ``plan.region`` of ``target``, one slab per stored object along ``axis``."""
    region = [slice(int(lo), int(hi)) for lo, hi in plan.region]
    lo, hi = region[axis].start, region[axis].stop
    step = int((plan.shards or plan.chunks)[axis]) if plan.chunks else 0
    edges = [lo, *range((lo // step + 1) * step, hi, step), hi] if step > 0 else [lo, hi]
    for a, b in zip(edges, edges[1:], strict=False):
        box = tuple(slice(a, b) if i == axis else s for i, s in enumerate(region))
        local = tuple(slice(a - lo, b - lo) if i == axis else slice(None) for i in range(data.ndim))
        write_region(target, box, data[local])
        chunk_written()
    return int(data.nbytes)


def _no_repeats(repeat: str) -> Any:
    """No rows repeat (``None``, as :func:`_split_repeats` says), after refusing an unknown ``repeat``."""
    from parallelzarr.inputs.ingest import REPEAT_POLICIES

    if repeat not in REPEAT_POLICIES:
        raise AppendError(f"repeat must be one of {REPEAT_POLICIES}, got {repeat!r}")
    return None


def _split_repeats(ds: xr.Dataset, stored: xr.Dataset, dim: str, repeat: str) -> Any:
    """The rows of ``ds`` at stored labels (``repeats.Repeats``), or ``None``; ``repeat="error"`` refuses them."""
    from parallelzarr.inputs.ingest import REPEAT_POLICIES
    from parallelzarr.run.repeats import split_repeats

    if repeat not in REPEAT_POLICIES:
        raise AppendError(f"repeat must be one of {REPEAT_POLICIES}, got {repeat!r}")
    if dim not in ds.indexes or dim not in stored.indexes:
        return None
    old, new = stored.indexes[dim], np.asarray(ds.indexes[dim])
    if not _comparable(np.asarray(old).dtype, new.dtype) or (len(old) and len(new) and _calendar(old[-1]) != _calendar(new[0])):
        return None  # labels of another kind or calendar: refused by the plan's coordinate check
    found = split_repeats(ds, stored, dim)
    if found is not None:
        # Repeated rows are compared by content, but only on the stored grid and schema.
        _check_dimension_agreement(ds, stored, dim)
        check_index_coordinates(ds, stored, dim)
    if found is not None and repeat == "error":
        labels = found.repeated.indexes[dim]
        raise RepeatedLabelsError(
            f"the appended {dim!r} labels overlap the stored ones: {len(labels)} label(s) from {_label(labels[0])} to "
            f"{_label(labels[-1])} are already stored (repeat='error'); append only new labels, or append with "
            "parallelzarr.append(..., repeat='skip') (identical rows are skipped) or repeat='overwrite'"
        )
    return found


def _labels_only(ds: xr.Dataset, dim: str) -> tuple[str, str] | None:
    if dim not in ds.indexes or ds.sizes.get(dim, 0) == 0:
        return None
    values = np.asarray(ds.indexes[dim])
    return _label(values[0]), _label(values[-1])


def _entry(aid: str, dim: str, offset: int, length: int, labels: tuple[str, str] | None) -> dict[str, Any]:
    return {
        "id": aid,
        "dim": dim,
        "offset": offset,
        "length": length,
        "first": labels[0] if labels else None,
        "last": labels[1] if labels else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "time_ns": time.time_ns(),  # orders records (digests of rewritten rows: the latest counts)
    }


def run_append(
    ds: xr.Dataset,
    resolved: ResolvedStore,
    append_dim: str,
    *,
    consolidated: bool,
    compute: bool,
    strategy: str = "auto",
    append_id: str | None = None,
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
    compute_kwargs: Mapping[str, Any],
    then: WriteJob | None = None,
) -> AppendResult | Delayed:
    """Append ``ds`` to the existing store ``resolved``: see :func:`parallelzarr.append` for the keywords.

    ``consolidated``: decided for this store already. ``then``: a prepared ``mode="a"`` write of
    variables without ``append_dim`` that commits in this append's journal (run alone when no row
    is appended).

    A small append computed here (see :func:`_leased_first`) takes the lease before it reads the
    store, then reads through a :class:`~parallelzarr.store.read_cache.ReadCache`: with no other
    writer, every document and index chunk it needs is read once. Any other append plans first, then
    takes the lease to write and checks that the store has not moved on (:meth:`_AppendRun.check`).
    """
    compute_kwargs = dict(compute_kwargs)
    budget = parse_bytes(max_mem) if max_mem is not None else None
    options = _AppendOptions(consolidated, compute, strategy, append_id, budget, max_mem, encoding, static, zarr_format,
                             write_empty_chunks, append_step, gaps, repeat, wait, progress, compute_kwargs, then)
    if not _leased_first(ds, options):
        return _append_with(ds, resolved, append_dim, options)
    lease = acquire_lease(resolved.store, resolved.description, "append", wait=wait)
    cached = dataclasses.replace(resolved, store=ReadCache(resolved.store, uncached=(LEASE_KEY,)))
    try:
        return _append_with(ds, cached, append_dim, options, lease)
    finally:
        if not lease.released:  # an append that wrote nothing, or failed (the commit releases its own)
            lease.release()


@dataclass(frozen=True)
class _AppendOptions:
    """The keywords of one :func:`run_append` (``budget``: ``max_mem`` in bytes)."""

    consolidated: bool
    compute: bool
    strategy: str
    append_id: str | None
    budget: int | None
    max_mem: int | str | None
    encoding: Mapping[str, Any] | None
    static: str
    zarr_format: int | None
    write_empty_chunks: bool | None
    append_step: Any
    gaps: str
    repeat: str
    wait: Any
    progress: bool
    compute_kwargs: dict[str, Any]
    then: WriteJob | None


def _leased_first(ds: xr.Dataset, options: _AppendOptions) -> bool:
    """Whether an append takes the lease before reading the store: one written inline from here.

    Computed now, no ``then``, not ``repeat="overwrite"`` (its rewrite of stored rows takes the lease
    itself), and small enough (all of ``ds``, statics included) to write from this thread
    (:func:`_runs_inline`); it is then written inline whatever its encoded size.
    """
    return (options.compute and options.then is None and options.repeat != "overwrite"
            and _local_compute(options.compute_kwargs, options.progress) and _small_enough(int(ds.nbytes), options.budget))


def _append_with(ds: xr.Dataset, resolved: ResolvedStore, append_dim: str, options: _AppendOptions,
                 leased: Lease | None = None) -> AppendResult | Delayed:
    """:func:`run_append` with its keywords in ``options``; ``leased``: the lease, when taken first."""
    o = options
    stored_format, wait, repaired = _check_and_repair_store(resolved, o.zarr_format, o.consolidated, o.wait, o.compute,
                                                            leased)
    skipped = overwritten = 0
    stored, ends = None, None
    # Taken first, the lease keeps the store as read: a plain small append is checked from the metadata.
    lean = _lean_append(ds, resolved, append_dim, o, stored_format) if leased is not None and not repaired else None
    if lean is None:
        stored, ends = _open_for_append(ds, resolved, stored_format, append_dim)
        ds = _in_stored_order(ds, stored)
        repeated = _split_repeats(ds, stored, append_dim, o.repeat) if ends is None else _no_repeats(o.repeat)
        if repeated is not None:
            # Rows at stored labels: identical ones are skipped, changed ones refused or rewritten.
            skipped, overwritten = _handle_repeats(repeated, stored, resolved, append_dim, o.repeat, compute=o.compute,
                                                   compute_kwargs=o.compute_kwargs, progress=o.progress, wait=wait,
                                                   max_mem=o.max_mem)
            ds = repeated.new
            if not ds.sizes[append_dim]:
                done = _nothing_new(repeated, stored, resolved, append_dim, o.static, o.append_id, skipped,
                                    overwritten, repaired)
                return _done_then(done, o.then) if o.compute else dask.delayed(_done_then, pure=False)(done, o.then)

    aid = o.append_id or _derive_id(ds, append_dim, _labels_only(ds, append_dim))
    # Labels all beyond the last stored one (ends; all of a lean append's) cannot have been recorded
    # under an id derived from them.
    beyond = lean is not None or ends is not None
    if (o.append_id is not None or not beyond) and is_recorded(resolved.store, aid, stored_format):
        done = _already_recorded(ds, resolved, append_dim, aid, repaired)
        return _done_then(done, o.then) if o.compute else dask.delayed(_done_then, pure=False)(done, o.then)
    prepared = lean or prepare_append(ds, resolved, append_dim, strategy=o.strategy, max_mem=o.budget,
                                      encoding=o.encoding, static=o.static, append_step=o.append_step, gaps=o.gaps,
                                      stored=stored, zarr_format=stored_format, stored_ends=ends)
    inline = leased is not None or (o.compute and _runs_inline(prepared, o.budget, o.compute_kwargs, o.progress))
    prepared, markers = (prepared, None) if inline else _with_append_resume(prepared, resolved.store)
    run = _append_run(prepared, resolved, aid, append_dim, compute=o.compute, consolidated=o.consolidated,
                      markers=markers, zarr_format=stored_format, wait=wait, repaired=repaired, skipped=skipped,
                      overwritten=overwritten, then=o.then, lease=leased)
    array_config = {"write_empty_chunks": o.write_empty_chunks} if o.write_empty_chunks is not None else None
    if not o.compute:
        return _lazy_graph(prepared, run, array_config, _stage_now(run, o.then, array_config))
    graph = None if inline else _lazy_graph(prepared, run, array_config)
    _lease_and_write(prepared, run, graph, array_config, repaired, o.progress, o.compute_kwargs, o.then)
    return run.result


def _lean_append(ds: xr.Dataset, resolved: ResolvedStore, append_dim: str, o: _AppendOptions,
                 stored_format: int) -> WriteJob | None:
    """The plan of a plain small append, checked against the consolidated metadata; ``None``: the full path.

    Plain: every variable without ``append_dim`` is stored as given (its dims and sizes, and under
    ``static="verify"`` or as an index coordinate its values, read plainly:
    :func:`~parallelzarr.inputs.stored_schema.statics_as_stored`), every other one is stored
    under its name with the same dims and sizes, as floats of its dtype that xarray would store
    unchanged (:func:`~parallelzarr.inputs.stored_schema.stored_as_given`) or as numbers xarray's
    encoder packs with the stored encoding (:func:`_lean_encoded`), and the labels are
    ``datetime64`` on a CF time coordinate of a numpy calendar (or integers of the stored dtype),
    all beyond the last stored one. Then every check of the full path (:func:`prepare_append`)
    is decided by these facts and the first and last two stored labels, so the store is not opened
    as a dataset (3 ms of a 16 ms append); anything else, refusals included, takes the full path,
    which says what is wrong. ``tests/test_append_lean.py`` checks both paths give the same store.
    """
    if (o.encoding is not None or o.static not in STATIC_POLICIES or _no_repeats(o.repeat) is not None
            or append_dim not in ds.indexes or not ds.sizes[append_dim]):
        return None
    arrays = stored_arrays(resolved.store, stored_format)
    lengths = dimensions_agree(arrays) if arrays is not None else None
    if arrays is None or lengths is None:
        return None
    given = ds
    ds = ds.drop_vars([n for n, v in ds.variables.items() if append_dim not in v.dims])  # verified below, or ignored
    if {str(n) for n in ds.variables} != {n for n, a in arrays.items() if append_dim in a.dims}:
        return None
    packed = []
    for name, var in ds.variables.items():
        arr = arrays[str(name)]
        if tuple(map(str, var.dims)) != arr.dims or any(var.sizes[d] != n for d, n in zip(arr.dims, arr.shape, strict=True)
                                                         if d != append_dim):
            return None
        if units_conflict(var.attrs, arr.attrs) is not None:
            return None  # refused by the full path, which says why
        if name != append_dim and not stored_as_given(var, arr, stored_format):
            if var.dtype.kind not in "biuf" or arr.dtype.kind not in "biuf":
                return None
            packed.append(str(name))
    encoded = _lean_encoded(ds, resolved, stored_format, arrays, packed, append_dim) if packed else {}
    # Values compared under static="verify", and an index coordinate under either policy (another grid is
    # refused whatever static says: check_index_coordinates).
    if encoded is None or not statics_as_stored(given, arrays, resolved.store, stored_format, append_dim,
                                                lambda name: o.static == "verify" or name in given.indexes):
        return None
    labels = _lean_labels(ds, resolved.store, stored_format, arrays[append_dim], append_dim)
    if labels is None:
        return None
    ends, stored_labels = labels
    first_last = _check_coordinate(ds, None, append_dim, ends)
    if o.append_step is not None:
        _check_append_steps(ds, None, append_dim, o.append_step, o.gaps, ends)
    return _lean_job(ds, resolved, append_dim, o, stored_format, arrays, lengths[append_dim], stored_labels, first_last,
                     encoded)


def _lean_encoded(ds: xr.Dataset, resolved: ResolvedStore, stored_format: int, arrays: Mapping[str, StoredArray],
                  names: list[str], append_dim: str) -> dict[str, Any] | None:
    """The values of variables ``names`` as the full path stores them (xarray's encoder given the stored
    encoding: packed ``scale_factor`` fields, integers with a fill value), those variables alone opened as
    xarray opens them; ``None`` when any is refused there (the full path then says why)."""
    try:
        opened = open_stored(resolved, stored_format, indexes=False, drop=[n for n in arrays if n not in names])
    except ModeError:
        return None
    out = {}
    for name in names:
        # Computed first (a lean append is computed in this thread anyway): xarray's encoder then works
        # on numpy, where on dask it builds a graph of a dozen element-wise steps (4 ms a variable).
        var = ds.variables[name].compute(scheduler="synchronous")
        try:
            _check_appended_variable(name, var, opened.variables[name], append_dim)
            enc = encoded_as_stored(name, var, opened, stored_format)
        except StoredRangeError:
            raise  # the values, computed here, are refused whichever path plans them
        except (SchemaMismatchError, EncodingError):
            return None
        if not np.can_cast(np.dtype(enc.dtype), arrays[name].dtype, casting="same_kind"):
            return None
        out[name] = enc.data
    return out


def _lean_labels(ds: xr.Dataset, store: Any, stored_format: int, coord: StoredArray,
                 dim: str) -> tuple[pd.Index, np.ndarray] | None:
    """The last two stored labels and the appended labels as stored, when all lie beyond them; else ``None``."""
    var = ds.variables[dim]
    if coord.dims != (dim,) or coord.shape[0] < 2 or any(k in var.attrs for k in CF_KEYS):
        return None
    new = np.asarray(ds.indexes[dim])
    attrs, n = coord.attrs, coord.shape[0]
    arr = array_from_document(store, dim, coord.doc, stored_format, {**attrs, "_ARRAY_DIMENSIONS": [dim]})
    if new.dtype.kind == "M":
        if (coord.dtype.kind not in "iu" or not plain_cf_datetime(attrs) or attrs.get("calendar") not in NUMPY_CALENDARS
                or (stored_format == 2 and coord.fill is not None)):
            return None
        decoded = decode_labels(read_positions(arr, sorted({0, n - 2, n - 1})), attrs, dim)  # the first decides the kind
        as_stored = encode_labels(new, attrs, coord.dtype, dim)
        if decoded.dtype.kind != "M" or as_stored is None:
            return None
        last_two = decoded[-2:]
    elif new.dtype.kind in "iu" and new.dtype == coord.dtype and not any(k in attrs for k in CF_KEYS):
        if stored_format == 2 and coord.fill is not None:  # xarray masks zarr v2's fill value
            return None
        last_two, as_stored = read_positions(arr, [n - 2, n - 1]), new
    else:
        return None
    ends = _ends_if_beyond(last_two, new)
    return None if ends is None else (ends, as_stored)


def _lean_job(ds: xr.Dataset, resolved: ResolvedStore, append_dim: str, o: _AppendOptions, stored_format: int,
              arrays: Mapping[str, StoredArray], offset: int, stored_labels: np.ndarray,
              labels: tuple[str, str] | None, encoded: Mapping[str, Any]) -> WriteJob:
    """The :class:`WriteJob` of a lean append (as :func:`prepare_append` plans it), arrays from their documents;
    ``encoded``: the values to store of the variables xarray's encoder changes (the others are stored as given)."""
    length = int(ds.sizes[append_dim])
    plans, jobs, axes = {}, [], {}
    digest_inputs: dict[str, tuple[da.Array, np.dtype, int]] = {}
    for name, var in ds.variables.items():
        name = str(name)
        meta = arrays[name]
        axis = meta.dims.index(append_dim)
        new_shape = tuple(s + length if i == axis else s for i, s in enumerate(meta.shape))
        # The stored array seen with its grown shape (what _appended_array makes), parsed once.
        target = array_from_document(resolved.store, name, {**meta.doc, "shape": list(new_shape)}, stored_format,
                                     {**meta.attrs, "_ARRAY_DIMENSIONS": list(meta.dims)})
        values = stored_labels if name == append_dim else encoded.get(name, var.data)
        if not isinstance(values, da.Array):  # a random name: tokenizing the values costs more than writing them
            values = da.from_array(np.asarray(values), chunks=target.shards or target.chunks, name=False)
        job = append_job(
            plan_job, target, axis, name, values, shape=new_shape, dims=meta.dims, dtype=meta.dtype,
            shards=target.shards, start=tuple(offset if i == axis else 0 for i in range(target.ndim)),
            strategy=o.strategy, max_mem=o.budget, lock_problem=_LOCK_PROBLEM, target=GivenArray(target),
        )
        plans[name] = job.plan
        jobs.append(job)
        axes[name] = axis
        if name != append_dim:
            digest_inputs[name] = (values, meta.dtype, axis)
    rows = AppendRows(labels=labels, offset=offset, length=length, shapes={j.plan.name: list(j.plan.shape) for j in jobs},
                      old_shapes={n: list(arrays[n].shape) for n in plans}, digest_inputs=digest_inputs, axes=axes)
    plan = WritePlan(target=resolved.description, mode="a", variables=plans, append_dim=append_dim, max_mem=o.budget)
    return WriteJob(plan=plan, jobs=tuple(jobs), rows=rows)


def _done_then(done: AppendResult, then: WriteJob | None) -> AppendResult:
    """Run ``then`` on its own (lease, staging, commit; no rows to commit it with), then return ``done``."""
    if then is not None:
        from parallelzarr.run.runner import execute

        execute(then)
    return done


def _check_and_repair_store(resolved: ResolvedStore, zarr_format: int | None, consolidated: bool, wait: Any,
                            compute: bool, leased: Lease | None = None) -> tuple[int, Any, list[str]]:
    """Check the stored format, wait for a held lease, repair; return (stored format, wait left, what was repaired).

    ``leased``: the lease this append took before reading (it broke a dead holder's lease already).
    """
    stored_format = stored_zarr_format(resolved.store)
    if zarr_format is not None:
        _check_stored_format(resolved, zarr_format, stored_format)
    if leased is not None:
        return stored_format, wait, _repair_under_lease(resolved, consolidated, leased)
    if wait is not None and compute:
        # Before reading the store: the checks must see what the holder commits (its rows, its shape).
        wait = _wait_until_free(resolved.store, wait)
    return stored_format, wait, _repair_before_append(resolved, consolidated, wait)


def _open_for_append(ds: xr.Dataset, resolved: ResolvedStore, stored_format: int,
                     append_dim: str) -> tuple[xr.Dataset, pd.Index | None]:
    """The stored dataset (its ``append_dim`` index built only when needed) and its last two labels (:func:`_stored_ends`).

    The ``append_dim`` coordinate is opened undecoded and decoded as xarray decodes it, from its
    first and last two labels when it holds CF datetimes (:mod:`parallelzarr.inputs.stored_times`).
    """
    opened = open_with_dim_from_ends(partial(_open_consistent, resolved, stored_format, append_dim), resolved.store,
                                     stored_format, append_dim)
    stored, last_two = opened if opened is not None else (_open_consistent(resolved, stored_format, append_dim), None)
    ends = _stored_ends(ds, stored, append_dim, last_two)
    if ends is None:  # labels that may be stored already (or of another kind): compare with every stored label
        stored = _full_index(stored, append_dim)
    return stored, ends


def _with_append_resume(prepared: WriteJob, store: Any) -> tuple[WriteJob, str]:
    """``prepared`` with its resume state (markers the commit clears); return it and the markers' prefix."""
    prepared = with_resume(prepared, store)  # a rerun after a crash skips the blocks already written
    assert prepared.resume is not None
    prepared.resume.clear_at_end = False  # the commit (roll_forward) clears them, after the new shapes are published
    return prepared, prepared.resume.markers.prefix


def _repair_before_append(resolved: ResolvedStore, consolidated: bool, wait: Any) -> list[str]:
    """Clear a dead process's lease and roll an interrupted commit forward; return what was repaired."""
    repaired: list[str] = []
    dead = clear_dead_lease(resolved.store)
    if dead is not None:
        repaired.append(f"cleared the lease of a dead process ({describe_holder(dead)})")
    journal = pending_journal(resolved.store)
    if journal is not None:
        lease = acquire_lease(resolved.store, resolved.description, "roll-forward", wait=wait)
        try:
            steps = roll_forward(resolved.store, journal, journal.get("consolidated", consolidated))
            repaired.append(f"rolled forward interrupted append {journal['entry']['id']}: {'; '.join(steps) or 'already applied'}")
        finally:
            lease.release()
    return repaired


def _repair_under_lease(resolved: ResolvedStore, consolidated: bool, lease: Lease) -> list[str]:
    """With the lease held: roll an interrupted commit forward; return what was repaired."""
    repaired = [f"broke the lease of a dead process ({describe_holder(lease.broke_stale)})"] if lease.broke_stale else []
    journal = pending_journal(resolved.store)
    if journal is not None:
        steps = roll_forward(resolved.store, journal, journal.get("consolidated", consolidated))
        repaired.append(f"rolled forward interrupted append {journal['entry']['id']}: {'; '.join(steps) or 'already applied'}")
    return repaired


def _handle_repeats(repeated: Any, stored: xr.Dataset, resolved: ResolvedStore, append_dim: str, repeat: str, *,
                    compute: bool, compute_kwargs: dict[str, Any], progress: bool, wait: Any,
                    max_mem: int | str | None) -> tuple[int, int]:
    """Compare the rows at stored labels with the stored ones: refuse or rewrite changed ones; return (skipped, overwritten)."""
    from parallelzarr.run.repeats import changed_rows, overwrite_rows, refuse_changed

    overwritten = 0
    if repeat == "overwrite" and not compute:
        raise AppendError("repeat='overwrite' rewrites stored rows at once; it needs compute=True")
    changed, digests = changed_rows(resolved.store, repeated, stored, append_dim, repeat, compute_kwargs)
    if changed.any() and repeat != "overwrite":
        raise refuse_changed(repeated, changed, append_dim, resolved.description)
    if changed.any():
        with compute_progress(progress, compute_kwargs) as kw:
            overwritten = overwrite_rows(resolved.store, resolved.description, repeated, changed, digests, append_dim,
                                         wait=wait, compute_kwargs=kw, max_mem=max_mem)
    return int((~changed).sum()), overwritten


def _nothing_new(repeated: Any, stored: xr.Dataset, resolved: ResolvedStore, append_dim: str, static: str,
                 append_id: str | None, skipped: int, overwritten: int, repaired: list[str]) -> AppendResult:
    """The result of an append whose every label is stored (static variables verified, as no plan follows)."""
    if static == "verify":  # no plan follows (it verifies them when new rows remain)
        for name, var in repeated.repeated.variables.items():
            if append_dim not in var.dims and name in stored.variables:
                _verify_static(str(name), var, stored.variables[name], append_dim)
    aid = append_id or _derive_id(repeated.repeated, append_dim, _labels_only(repeated.repeated, append_dim))
    what = f"rewrote {overwritten} changed row(s)" if overwritten else "nothing written"
    note = f" ({skipped} {append_dim!r} label(s) already stored with identical content)" if skipped else ""
    head = f"append {aid} was already applied to {resolved.description}" if not overwritten else \
        f"all {skipped + overwritten} {append_dim!r} label(s) are stored in {resolved.description}"
    return AppendResult(aid, bool(overwritten), f"{head}; {what}{note}", repaired=repaired,
                        skipped=skipped, overwritten=overwritten)


def _already_recorded(ds: xr.Dataset, resolved: ResolvedStore, append_dim: str, aid: str,
                      repaired: list[str]) -> AppendResult:
    """The result of an append whose id is recorded already; refused when its labels are not stored."""
    if append_dim in ds.indexes:
        # Its labels are not stored (those were handled above): reusing an id would drop these rows.
        raise AppendError(
            f"append id {aid!r} is already recorded in {resolved.description}, but the data's {append_dim!r} labels "
            f"{_labels_only(ds, append_dim)} are not stored; give this append a new append_id"
        )
    return AppendResult(aid, False, f"append {aid} was already applied to {resolved.description}; nothing written",
                        repaired=repaired)


def _append_run(prepared: WriteJob, resolved: ResolvedStore, aid: str, append_dim: str, *, compute: bool,
                consolidated: bool, markers: str | None, zarr_format: int, wait: Any, repaired: list[str],
                skipped: int, overwritten: int, then: WriteJob | None = None, lease: Lease | None = None) -> _AppendRun:
    """The lease, journal and result of this append (what its graph's first and last tasks need).

    ``then``: a ``mode="a"`` write whose commit step joins this append's journal (see :func:`run_append`);
    ``lease``: the lease when the append took it before reading the store.
    """
    info = prepared.rows
    assert info is not None
    entry = _entry(aid, append_dim, info.offset, info.length, info.labels)
    extra = "".join([f"; skipped {skipped} already stored identical row(s)" if skipped else "",
                     f"; rewrote {overwritten} changed stored row(s)" if overwritten else ""])
    result = AppendResult(
        aid, True,
        f"appended {info.length} {append_dim!r} row(s) at {info.offset} to {resolved.description} (id {aid}){extra}",
        prepared.plan, info.offset, info.length, repaired, skipped, overwritten,
    )
    run = _AppendRun(
        resolved.store, resolved.description, lease.holder["id"] if lease is not None else uuid.uuid4().hex, "append" if compute else "append(compute=False)",
        dict(info.old_shapes), {"shapes": dict(info.shapes), "entry": entry, "consolidated": consolidated,
                             "markers": markers, "zarr_format": zarr_format}, consolidated, result,
    )
    run.wait = wait
    run.zarr_format = zarr_format
    run.then = then.lay_down if then is not None else None
    run.lease = lease
    return run


def _stage_now(run: _AppendRun, then: WriteJob | None, array_config: Mapping[str, Any] | None) -> Delayed | None:
    """``append(compute=False)`` with ``then``: take the lease and lay down its staging now; return its writes.

    As a ``mode="a"`` write with ``compute=False`` does, the lease is then held until the Delayed is
    computed (its lease task finds the lease its own): the staged arrays must exist when their write
    graph is built.
    """
    if then is None:
        return None
    lease = acquire_lease(run.store, run.description, run.operation, lease_id=run.lease_id, wait=run.wait)
    try:
        run.check()
        then.lay_down.stage(then.resume)  # type: ignore[union-attr]  # an OverwriteRun (run/overwrite.py)
    except BaseException:
        lease.release()
        raise
    return build_graph(then.replace(commit=None), array_config)


def _stage_then(then: WriteJob | None, array_config: Mapping[str, Any] | None,
                compute_kwargs: Mapping[str, Any]) -> None:
    """With the append's lease held: stage the variables of ``then`` (they commit in its journal)."""
    if then is None:
        return
    then.lay_down.stage(then.resume)  # type: ignore[union-attr]  # an OverwriteRun (run/overwrite.py)
    dask.compute(build_graph(then.replace(commit=None), array_config), **compute_kwargs)
    fault_point("append:then-staged")


def _lease_and_write(prepared: WriteJob, run: _AppendRun, graph: AppendDelayed | None,
                     array_config: Mapping[str, Any] | None, repaired: list[str], progress: bool,
                     compute_kwargs: dict[str, Any], then: WriteJob | None = None) -> None:
    """Take the lease, check the store, then write (inline, or by computing ``graph``) and commit."""
    # Eagerly here: a held lease is reported before any input is read. The lease task then finds
    # its own id and does nothing. (An append that took it before reading holds it already.)
    if run.lease is None:
        lease = acquire_lease(run.store, run.description, run.operation, lease_id=run.lease_id, wait=run.wait)
        if lease.broke_stale:
            repaired.append(f"broke the lease of a dead process ({describe_holder(lease.broke_stale)})")
    with store_write_failures(append_failure(run.store, run.description), cleanup=run.stopped):
        fault_point("append:leased")
        if run.lease is None:  # a lease taken before reading needs no check: what was read is current
            run.check()
        _stage_then(then, array_config, compute_kwargs)
        if graph is None:
            _append_inline(prepared, run, array_config)
        else:
            with compute_progress(progress, compute_kwargs) as kw:
                dask.compute(graph, **kw)


@dataclass
class _FirstAppend:
    """A first append (into an empty store) run as one task: :func:`to_zarr` computes inside it."""

    ds: xr.Dataset
    resolved: ResolvedStore
    append_dim: str
    restart: bool
    append_id: str
    labels: tuple[str, str] | None
    options: dict[str, Any]
    quiet: Callable[[], AbstractContextManager[Any]]

    def __call__(self, compute_kwargs: Mapping[str, Any] | None = None) -> AppendResult:
        if compute_kwargs is None:
            try:  # on a distributed worker: compute through the cluster without blocking a thread
                from distributed import get_worker, worker_client

                get_worker()
            except (ImportError, ValueError):
                return self({})
            with worker_client() as client:
                return self({"scheduler": client})
        n = int(self.ds.sizes[self.append_dim])
        with self.quiet():  # as in the public entry points (this may run later, in a Delayed)
            plan = write_now(self.ds, self.resolved.store, mode="w" if self.restart else "w-", **self.options,
                             compute_kwargs=compute_kwargs)
        # After the publish, as for any append: a record never names data readers cannot see.
        write_record(self.resolved.store, _entry(self.append_id, self.append_dim, 0, n, self.labels))
        return AppendResult(self.append_id, True, f"created {self.resolved.description} with {n} {self.append_dim!r} rows", plan, 0, n)


def append_data(
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
    compute_kwargs: Mapping[str, Any],
    quiet: Callable[[], AbstractContextManager[Any]],
    then: WriteJob | None = None,
) -> AppendResult | Delayed:
    """Append ``data``: see :func:`parallelzarr.append` for the keywords (``then``: see :func:`run_append`).

    A first append (into an empty store, or again after one interrupted before it published) is a
    new-store write; an append to an existing store is :func:`run_append`. ``quiet``: the context
    a deferred first append runs in (the entry points' filter of zarr's notices).
    """
    ds = as_dataset(data)
    if append_dim not in ds.dims:
        raise AppendError(f"append_dim {append_dim!r} is not a dimension of the data; its dimensions are {sorted(map(str, ds.dims))}")
    resolved = resolve_store(store, storage_options)
    consolidated = resolve_consolidated(resolved.store, consolidated, resolved.description)
    # A first append that was interrupted before it published its new store left nothing readers
    # see: start it again (mode "w" replaces the unpublished leftovers). A root node means published:
    # a marker beside it was left by a kill between publishing the root and dropping the marker.
    published = has_root_node(resolved.store)
    unpublished = None if published else unpublished_write(resolved.store)
    restart = unpublished is not None and not write_running(unpublished)
    if restart or not (published or store_has_data(resolved.store)):
        labels = _check_coordinate(ds, ds.isel({append_dim: slice(0, 0)}), append_dim)
        options = {"encoding": encoding, "strategy": strategy, "consolidated": consolidated, "max_mem": max_mem,
                   "zarr_format": default_zarr_format(zarr_format), "write_empty_chunks": write_empty_chunks}
        first = _FirstAppend(ds, resolved, append_dim, restart, append_id or _derive_id(ds, append_dim, labels), labels,
                             options, quiet)
        if compute:
            return first(compute_kwargs)
        # Validate now (metadata only); the store is created when the Delayed runs.
        prepare(ds, resolved.store, mode="w" if restart else "w-", encoding=encoding, strategy=strategy, max_mem=max_mem,
                zarr_format=default_zarr_format(zarr_format))
        return dask.delayed(first, pure=False, traverse=False)(dask_key_name=f"pz-first-append-{uuid.uuid4().hex}")

    return run_append(
        ds, resolved, append_dim, consolidated=consolidated, compute=compute, strategy=strategy, append_id=append_id,
        max_mem=max_mem, encoding=encoding, static=static, zarr_format=zarr_format,
        write_empty_chunks=write_empty_chunks, append_step=append_step, gaps=gaps, repeat=repeat, wait=wait,
        progress=progress, compute_kwargs=compute_kwargs, then=then,
    )
