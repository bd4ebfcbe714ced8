"""Inspect a zarr store: its tree, arrays, chunking, codecs, sizes, append log and bookkeeping
(held lease, pending journal, unpublished write) for ``parallelzarr info``."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any

import zarr

from parallelzarr.commit.appendlog import LEGACY_LOG_ATTR, append_log
from parallelzarr.commit.lease import read_lease
from parallelzarr.errors import StoreError
from parallelzarr.redact import redact, url_credentials
from parallelzarr.store import zarr_compat
from parallelzarr.store.holders import describe_holder, held_by_this_process, holder_alive
from parallelzarr.store.keys import JOURNAL_KEY, LEASE_KEY, WRITE_KEY, read_json
from parallelzarr.store.staging import write_running
from parallelzarr.units import format_bytes

__all__ = ["inspect_store", "format_info", "APPEND_LOG_ATTR"]

#: Root group attribute where earlier versions kept the append log (now one record per append under
#: ``.parallelzarr/appends/``); still read, and moved out by the next append.
APPEND_LOG_ATTR = LEGACY_LOG_ATTR


def _codec_text(codec: Any) -> str:
    """Short ``name(key=value, ...)`` text for a zarr v3 codec or a numcodecs codec."""
    if hasattr(codec, "to_dict"):
        d = codec.to_dict()
        name, config = d.get("name", type(codec).__name__), dict(d.get("configuration") or {})
    elif hasattr(codec, "get_config"):
        config = dict(codec.get_config())
        name = config.pop("id", type(codec).__name__)
    else:
        return repr(codec)
    if name == "sharding_indexed":  # its inner codecs are listed separately
        return "sharding"
    args = ", ".join(f"{k}={v}" for k, v in config.items() if v is not None)
    return f"{name}({args})" if args else str(name)


def _codecs(arr: zarr.Array) -> list[str]:
    out = [_codec_text(c) for c in arr.filters]
    if arr.serializer is not None:
        out.append(_codec_text(arr.serializer))
    out += [_codec_text(c) for c in arr.compressors]
    return out


def _dims(arr: zarr.Array) -> list[str] | None:
    names = getattr(arr.metadata, "dimension_names", None)
    if names:
        return [str(n) for n in names]
    v2 = arr.attrs.get("_ARRAY_DIMENSIONS")
    return [str(n) for n in v2] if isinstance(v2, list | tuple) and v2 else None


def _jsonable(value: Any) -> Any:
    """Make attribute values JSON-safe (numpy scalars, NaN fill values, bytes)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, TypeError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _array_info(path: str, arr: zarr.Array) -> dict[str, Any]:
    try:
        stored = int(arr.nbytes_stored())
    except Exception:  # some stores cannot list; sizes are informative only
        stored = None
    nbytes = int(arr.nbytes)
    return {
        "path": path,
        "kind": "array",
        "shape": list(arr.shape),
        "dims": _dims(arr),
        "dtype": str(arr.dtype),
        # a rectilinear grid has no single chunk shape: list each axis's chunk sizes instead
        "chunks": ([list(e) for e in zarr_compat.chunk_edges(arr)] if zarr_compat.is_rectilinear(arr)
                   else list(arr.chunks)),
        "shards": list(arr.shards) if arr.shards else None,
        "codecs": _codecs(arr),
        "fill_value": _jsonable(arr.fill_value),
        "nchunks": (math.prod(len(e) for e in zarr_compat.chunk_edges(arr)) if zarr_compat.is_rectilinear(arr)
                    else int(arr.nchunks)),
        "bytes_raw": nbytes,
        "bytes_stored": stored,
        "ratio": round(nbytes / stored, 2) if stored else None,
        "attrs": _jsonable(dict(arr.attrs)),
    }


def _holder_info(holder: dict[str, Any]) -> dict[str, Any]:
    """Who holds a lease or runs a write, how long ago it started, and whether it still runs."""
    if holder.get("unreadable"):  # see commit.lease.read_lease
        return {"operation": None, "host": None, "pid": None, "age_s": None,
                "state": "unreadable: if nothing is writing the store, repair(force=True) clears it",
                "description": f"{LEASE_KEY} is not written whole"}
    alive = holder_alive(holder)
    state = {True: "running", False: "holder gone (stale)", None: "unknown (another host)"}[alive]
    if held_by_this_process(holder):
        state = "this process"
    return {
        "operation": holder.get("operation"),
        "host": holder.get("host"),
        "pid": holder.get("pid"),
        "age_s": round(time.time() - float(holder.get("time", time.time())), 1),
        "state": state,
        "description": describe_holder(holder),
    }


def bookkeeping(store: Any) -> dict[str, Any]:
    """The lease, the journal of an interrupted commit and the marker of an unpublished write (or ``None`` each)."""

    def read(key: str) -> dict[str, Any] | None:
        try:
            return read_json(store, key)
        except (OSError, ValueError):
            return None

    try:
        lease = read_lease(store)
    except OSError:
        lease = None
    journal, write = read(JOURNAL_KEY), read(WRITE_KEY)
    out: dict[str, Any] = {"lease": _holder_info(lease) if lease else None, "journal": None, "unpublished_write": None}
    if journal:
        entry = journal.get("entry", {})
        out["journal"] = {
            "append_id": entry.get("id"),
            "dim": entry.get("dim"),
            "offset": entry.get("offset"),
            "length": entry.get("length"),
            "shapes": journal.get("shapes"),
            "hint": "an interrupted commit: parallelzarr.repair(store) or the next append rolls it forward",
        }
    if write:
        out["unpublished_write"] = {
            **_holder_info(write),
            "failed": write.get("failed"),
            "running": write_running(write),
            "hint": "readers see no dataset until it is published; rerun the write with mode='w' if it is gone",
        }
    return out


def inspect_store(store: Any, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Describe every group and array of a zarr store (metadata only, plus a listing for sizes).

    Parameters
    ----------
    store
        Path, fsspec URL or zarr store.
    storage_options
        fsspec options for URL stores.

    Returns
    -------
    dict
        JSON-able: ``store``, ``zarr_format``, ``consolidated``, ``groups`` (path -> attrs),
        ``arrays`` (list of per-array dicts: shape, dims, dtype, chunks, shards, codecs,
        ``bytes_raw``, ``bytes_stored``...), totals, ``appends`` (the append log), and the
        bookkeeping: ``lease`` (holder, ``age_s``, state), ``journal`` (an interrupted commit) and
        ``unpublished_write`` (a new store's write not yet published), each ``None`` when absent.

    Raises
    ------
    StoreError
        If nothing zarr can open is found at ``store``.
    """
    from parallelzarr.store.resolve import resolve_store

    resolved = resolve_store(store, storage_options, read_only=True)
    where = resolved.description
    secrets = url_credentials(str(store)) if isinstance(store, str) else []
    problem = None
    try:
        node = zarr.open(resolved.store, mode="r")
    except (FileNotFoundError, KeyError, zarr.errors.NodeNotFoundError, ValueError) as exc:
        problem = f"no zarr array or group at {where}: {type(exc).__name__}: {exc}"
    except Exception as exc:  # unreachable endpoints, permissions, corrupt metadata
        problem = f"cannot read {where}: {type(exc).__name__}: {exc}"
    extra = bookkeeping(resolved.store)
    if problem is not None and extra["unpublished_write"] is not None:
        # A new store whose write has not published its root metadata: say so instead of "nothing here".
        return {"store": where, "zarr_format": None, "kind": "unpublished", "consolidated": False, "groups": {},
                "arrays": [], "bytes_raw": 0, "bytes_stored": None, "appends": [], **extra}
    if problem is not None:  # raised outside the handler: the chained error could hold credentials
        raise StoreError(redact(problem, storage_options, secrets))
    info: dict[str, Any] = {"store": where, "zarr_format": node.metadata.zarr_format}
    arrays: list[dict[str, Any]] = []
    groups: dict[str, Any] = {}
    if isinstance(node, zarr.Array):
        info["kind"] = "array"
        info["consolidated"] = False
        arrays.append(_array_info("", node))
        appends: list[Any] = []
    else:
        info["kind"] = "group"
        info["consolidated"] = node.metadata.consolidated_metadata is not None
        groups[""] = _jsonable(dict(node.attrs))
        for path, member in sorted(node.members(max_depth=None), key=lambda m: m[0]):
            if isinstance(member, zarr.Array):
                arrays.append(_array_info(path, member))
            else:
                groups[path] = _jsonable(dict(member.attrs))
        appends = append_log(resolved.store)
        groups[""].pop(APPEND_LOG_ATTR, None)  # a legacy log: shown with the records
    stored = [a["bytes_stored"] for a in arrays]
    info.update(
        groups=groups,
        arrays=arrays,
        bytes_raw=sum(a["bytes_raw"] for a in arrays),
        bytes_stored=sum(stored) if all(s is not None for s in stored) else None,
        appends=_jsonable(appends),
        **_jsonable(extra),
    )
    return info


def _x(values: Any) -> str:
    return "x".join(str(v) for v in values) if values else "()"


def format_info(info: Mapping[str, Any], *, attrs: bool = False) -> str:
    """Render :func:`inspect_store` output as an indented tree with one line per array.

    Parameters
    ----------
    info
        The output of :func:`inspect_store`.
    attrs
        Also list each node's attributes.
    """
    lines = [_summary_line(info)]
    if attrs and info["groups"].get(""):
        lines += _attr_lines(info["groups"][""], "  ")
    groups = sorted(set(info["groups"]) - {""})
    nodes = sorted([(g, None) for g in groups] + [(a["path"], a) for a in info["arrays"]], key=lambda n: n[0])
    for path, arr in nodes:
        indent = "  " * (path.count("/") + 1)
        name = path.rsplit("/", 1)[-1] or "(root array)"
        if arr is None:
            lines.append(f"{indent}{name}/")
        else:
            lines.append(indent + _array_line(name, arr))
        if attrs:
            lines += _attr_lines(info["groups"][path] if arr is None else arr["attrs"], indent + "  ")
    lines += _append_lines(info.get("appends") or [])
    lines += _bookkeeping_lines(info)
    return "\n".join(lines)


def _summary_line(info: Mapping[str, Any]) -> str:
    raw, stored = info["bytes_raw"], info["bytes_stored"]
    size = f"{format_bytes(raw)} raw"
    if stored is not None:
        size += f", {format_bytes(stored)} stored"
        if stored:
            size += f" ({raw / stored:.2f}x)"
    cons = ", consolidated" if info.get("consolidated") else ""
    if info["kind"] == "unpublished":
        return f"{info['store']}: no dataset published yet (readers see nothing here)"
    return f"{info['store']} (zarr v{info['zarr_format']} {info['kind']}{cons}): {len(info['arrays'])} array(s), {size}"


def _attr_lines(attrs: Mapping[str, Any], indent: str) -> list[str]:
    return [f"{indent}@{k}: {json.dumps(v)[:100]}" for k, v in attrs.items()]


def _array_line(name: str, arr: Mapping[str, Any]) -> str:
    dims = f"({', '.join(arr['dims'])})" if arr["dims"] else ""
    sizes = format_bytes(arr["bytes_raw"])
    if arr["bytes_stored"] is not None:
        sizes += f" raw / {format_bytes(arr['bytes_stored'])} stored"
    shards = f" shards {_x(arr['shards'])}" if arr["shards"] else ""
    head = f"{name} {dims}" if dims else name
    return (f"{head} {arr['dtype']} shape {_x(arr['shape'])} chunks {_x(arr['chunks'])}"
            f"{shards} [{', '.join(arr['codecs'])}] {sizes}")


def _append_lines(appends: list[Any]) -> list[str]:
    if not appends:
        return []
    lines = [f"appends ({len(appends)}):"]
    for entry in appends:
        if isinstance(entry, Mapping):
            head = entry.get("id", "?")
            # Per-label digests (and an overwrite's positions) are for the checks, not for reading.
            rest = ", ".join(f"{k}={v}" for k, v in entry.items()
                             if k not in ("id", "digests", "positions", "time_ns") and v is not None)
            if isinstance(entry.get("digests"), list):
                rest += f", {len(entry['digests'])} content digest(s)"
            lines.append(f"  {head}: {rest}")
        else:
            lines.append(f"  {entry}")
    return lines


def _bookkeeping_lines(info: Mapping[str, Any]) -> list[str]:
    lines = []
    lease = info.get("lease")
    if lease:
        lines.append(f"lease: held ({lease['description']}; {lease['state']})")
    journal = info.get("journal")
    if journal:
        lines.append(
            f"journal: interrupted commit of append {journal['append_id']} ({journal['length']} {journal['dim']!r} "
            f"row(s) at {journal['offset']}); {journal['hint']}"
        )
    write = info.get("unpublished_write")
    if write:
        state = "running" if write["running"] else "not running" + (f", failed: {write['failed']}" if write.get("failed") else "")
        lines.append(f"unpublished write: {write['description']} ({state}); {write['hint']}")
    return lines
