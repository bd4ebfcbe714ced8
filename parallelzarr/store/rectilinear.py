"""Rectilinear (variable-sized) chunk grids: irregular dask chunks stored as they are (zarr >= 3.2).

Asked for with ``strategy="rectilinear"`` (every dask variable keeps its dask chunks as its zarr
grid) or per variable with ``encoding={"v": {"chunks": ((24, 31, 17), (6,))}}`` (the data is
rechunked to those edges first). ``auto`` never picks it: readers older than zarr-python 3.2, zarr
v2 readers and other implementations without the extension cannot open such arrays, and the plan
says so. Neither xarray nor zarr's ``create_array`` path used by the writers lays such metadata
down, so the arrays are laid down with a regular grid and their metadata documents (and the
consolidated copy) get the rectilinear ``chunk_grid`` before any chunk is written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from zarr.core.buffer import cpu, default_buffer_prototype
from zarr.core.sync import sync

from parallelzarr.errors import PlanningError
from parallelzarr.store.zarr_compat import RECTILINEAR_SUPPORTED, ZARR_VERSION, enable_rectilinear

__all__ = ["RectilinearUnsupportedError", "take_requests", "finish", "READERS"]

#: Who can read what these writes produce (quoted in the plan).
READERS = (
    "readable by zarr-python >= 3.2 with zarr.config.set({'array.rectilinear_chunks': True}) (or "
    "ZARR_ARRAY__RECTILINEAR_CHUNKS=True) and by xarray >= 2026.9 on such a zarr; NOT by zarr-python < 3.2, "
    "zarr v2 readers or other zarr implementations without the rectilinear chunk grid extension"
)


class RectilinearUnsupportedError(PlanningError, NotImplementedError):
    """A rectilinear grid was asked for where it cannot be stored (zarr < 3.2, zarr format 2)."""


def _is_edges(spec: Any) -> bool:
    """Whether a ``chunks`` encoding is rectilinear: a sequence with a sequence for some axis."""
    return isinstance(spec, tuple | list) and any(isinstance(c, tuple | list) for c in spec)


def _check_supported(what: str, zarr_format: int) -> None:
    version = ".".join(map(str, ZARR_VERSION))
    if not RECTILINEAR_SUPPORTED:
        raise RectilinearUnsupportedError(
            f"{what} asks for a rectilinear (variable-sized) chunk grid, which needs zarr-python >= 3.2 (zarr format "
            f"3); this is zarr {version}. Upgrade zarr (it needs Python >= 3.12), or store a regular grid: "
            "strategy='auto' with regular chunks, e.g. encoding={'chunks': (24, ...)}"
        )
    if zarr_format != 3:
        raise RectilinearUnsupportedError(
            f"{what} asks for a rectilinear chunk grid, which only zarr format 3 has; pass zarr_format=3"
        )


def take_requests(data: Any, encoding: Mapping[str, Any] | None, strategy: str, *, zarr_format: int,
                  new_store: bool) -> tuple[Any, Mapping[str, Any] | None, frozenset[str]]:
    """Find rectilinear requests in a write's arguments and check they can be stored.

    Returns the data (variables with rectilinear ``chunks`` rechunked to those edges), the
    encoding without those ``chunks`` (the regular placeholder grid is chosen as usual), and the
    names of the variables to plan as rectilinear (``strategy="rectilinear"`` covers all).
    """
    names: set[str] = set()
    if strategy == "rectilinear":
        _check_supported("strategy='rectilinear'", zarr_format)
        if not new_store:
            raise RectilinearUnsupportedError(
                "strategy='rectilinear' lays down a new array's grid; region writes and appends write into the "
                "stored grid (an append onto a rectilinear axis adds a chunk of its own length by itself)"
            )
    if not encoding or not isinstance(encoding, Mapping):
        return data, encoding, frozenset()  # nothing asked (a malformed encoding is refused by the write's checks)
    import xarray as xr

    if isinstance(data, xr.Dataset | xr.DataArray):
        ds = data.to_dataset(name=data.name or "__xarray_dataarray_variable__") if isinstance(data, xr.DataArray) else data
        out = dict(encoding)
        for name, enc in encoding.items():
            if not isinstance(enc, Mapping) or not _is_edges(enc.get("chunks")) or name not in ds.variables:
                continue
            _check_supported(f"encoding[{name!r}]['chunks']", zarr_format)
            var = ds.variables[name]
            edges = _edges(str(name), enc["chunks"], var.shape, var.dims)
            ds = ds.copy(deep=False)
            ds[name] = ds[name].chunk(dict(zip(var.dims, edges, strict=True)))
            out[name] = {k: v for k, v in enc.items() if k != "chunks"}
            names.add(str(name))
        if isinstance(data, xr.DataArray) and names:
            return ds[next(iter(names))], out, frozenset(names)
        return ds, out, frozenset(names)
    if _is_edges(encoding.get("chunks")):
        import dask.array as da
        import numpy as np

        _check_supported("encoding['chunks']", zarr_format)
        shape = np.shape(data)
        edges = _edges("array", encoding["chunks"], shape, [f"dim_{i}" for i in range(len(shape))])
        data = data.rechunk(edges) if isinstance(data, da.Array) else da.from_array(np.asarray(data), chunks=edges)
        return data, {k: v for k, v in encoding.items() if k != "chunks"}, frozenset({"array"})
    return data, encoding, frozenset()


def _edges(name: str, spec: Any, shape: Any, dims: Any) -> tuple[tuple[int, ...], ...]:
    """Per-axis edges from a spec mixing edge lists and ints (an int: regular cells of that size)."""
    from parallelzarr.errors import ChunkSpecError

    if len(spec) != len(shape):
        raise ChunkSpecError(f"{name!r}: chunks {spec!r} has {len(spec)} entries for {len(shape)} dimensions {tuple(dims)}")
    out = []
    for d, n, c in zip(dims, shape, spec, strict=True):
        if isinstance(c, tuple | list):
            sizes = tuple(int(x) for x in c)
            if any(x <= 0 for x in sizes) or sum(sizes) != n:
                raise ChunkSpecError(
                    f"{name!r}: the chunk sizes along {d!r} must be positive and add up to its length {n}; "
                    f"{sizes[:6]}{'...' if len(sizes) > 6 else ''} add up to {sum(sizes)}"
                )
            out.append(sizes)
        else:
            size = n if c in (None, -1) else int(c)
            if size <= 0:
                raise ChunkSpecError(f"{name!r}: chunk size {c!r} along {d!r} must be positive")
            full, rest = divmod(int(n), size)
            out.append((size,) * full + ((rest,) if rest else ()))
    return tuple(out)


def _grid_doc(edges: Any) -> dict[str, Any]:
    return {"name": "rectilinear", "configuration": {"kind": "inline", "chunk_shapes": [list(e) for e in edges]}}


def _patch(store: Any, grids: Mapping[str, Any], prefix: str = "") -> None:
    """Give each array's metadata document (and the root's consolidated copy) its rectilinear grid."""
    def get(key: str) -> dict[str, Any] | None:
        buf = sync(store.get(key, prototype=default_buffer_prototype()))
        return None if buf is None else json.loads(buf.to_bytes())

    def put(key: str, doc: dict[str, Any]) -> None:
        sync(store.set(key, cpu.Buffer.from_bytes(json.dumps(doc, indent=2).encode())))

    for path, edges in grids.items():
        key = f"{prefix}{path}/zarr.json" if path else f"{prefix}zarr.json"
        doc = get(key)
        if doc is not None and doc.get("node_type") == "array":
            doc["chunk_grid"] = _grid_doc(edges)
            put(key, doc)
    root = get(f"{prefix}zarr.json")
    consolidated = (root or {}).get("consolidated_metadata") or {}
    meta = consolidated.get("metadata") or {}
    changed = False
    for path, edges in grids.items():
        if path in meta:
            meta[path]["chunk_grid"] = _grid_doc(edges)
            changed = True
    if changed and root is not None:
        put(f"{prefix}zarr.json", root)


def finish(prepared: Any, store: Any, storage_options: Mapping[str, Any] | None) -> None:
    """After planning: note the readers, and lay the rectilinear grids down with the metadata."""
    grids = {name: job.plan.grid_edges for name, job in ((j.plan.name, j) for j in prepared.jobs)
             if job.plan.strategy == "rectilinear"}
    if not grids:
        return
    enable_rectilinear()
    shown = ", ".join(sorted(grids))
    prepared.plan.notes.append(f"rectilinear chunk grid ({shown}): {READERS}")
    from parallelzarr.store.staging import STAGING_HOOK

    setup = prepared.setup
    bare = list(grids) == ["array"] and prepared.info.get("write_id") is None and "store" not in prepared.info

    def setup_rectilinear() -> None:
        token = STAGING_HOOK.set(lambda staging: _patch(staging, grids))
        try:
            setup()
        finally:
            STAGING_HOOK.reset(token)
        if bare:  # a bare array is created in place, not staged: patch it there, reopen it
            import zarr

            from parallelzarr.store.markers import resolve_marker_store

            root, base = resolve_marker_store(store, storage_options)
            _patch(root, {"": grids["array"]}, base)
            for job in prepared.jobs:
                job.open_target = lambda: zarr.open_array(root, path=base.rstrip("/"), mode="r+")

    prepared.setup = setup_rectilinear


def append_job(plan_job: Any, arr: Any, axis: int, name: str, values: Any, **kwargs: Any) -> Any:
    """``plan_job`` for the appended rows of one stored array.

    Onto a rectilinear array the rows become one new chunk of their own length along the append
    axis (what zarr's resize adds), keeping the stored edges on the other axes: the stored last
    chunk is never rewritten, however short it is. A regular array is planned as before.
    """
    from parallelzarr.plan.write import RECTILINEAR_NAMES
    from parallelzarr.store.zarr_compat import chunk_edges, is_rectilinear

    if not is_rectilinear(arr):
        return plan_job(name, values, chunks=arr.chunks, **kwargs)
    edges = chunk_edges(arr)
    values = values.rechunk(tuple((values.shape[axis],) if i == axis else edges[i] for i in range(arr.ndim)))
    token = RECTILINEAR_NAMES.set(frozenset({name}))
    try:
        return plan_job(name, values, chunks=tuple(max(e, default=1) for e in edges), **kwargs)
    finally:
        RECTILINEAR_NAMES.reset(token)


enable_rectilinear()  # parallelzarr reads and writes rectilinear stores (zarr >= 3.2; a no-op before)


def refuse_region_into(data: Any, store: Any, storage_options: Mapping[str, Any] | None) -> None:
    """Refuse a region write into arrays stored with a rectilinear grid (not planned yet), before any byte.

    Without this the write would fail inside zarr (``chunks`` is undefined for such arrays).
    """
    if not RECTILINEAR_SUPPORTED:
        return
    import zarr

    from parallelzarr.store.markers import resolve_marker_store
    from parallelzarr.store.zarr_compat import is_rectilinear

    try:
        import xarray as xr

        is_xr = isinstance(data, xr.Dataset | xr.DataArray)
    except ImportError:  # pragma: no cover
        is_xr = False
    if is_xr:
        ds = data.to_dataset(name=data.name or "__xarray_dataarray_variable__") if isinstance(data, xr.DataArray) else data
        names = [str(n) for n in ds.variables]
    else:
        names = [""]
    try:
        root, base = resolve_marker_store(store, storage_options)
    except Exception:
        return  # the write's own checks report a bad store
    for name in names:
        path = (base + name).strip("/")
        try:
            arr = zarr.open_array(root, path=path, mode="r")
        except Exception:
            continue
        if is_rectilinear(arr):
            raise RectilinearUnsupportedError(
                f"{name or 'the array'!r} is stored with a rectilinear (variable-sized) chunk grid; region writes "
                "into it are not supported (new writes and appends are). Rechunk it to a regular grid first "
                "(parallelzarr.rechunk), or rewrite it"
            )
