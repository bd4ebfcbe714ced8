"""A new store's metadata laid down unpublished, and published after the last chunk.

The root documents are held back in the marker ``.parallelzarr/write.json`` until :func:`publish`:
readers find no group at the root while the write runs, so a failed or killed write is never seen
half-written. Also the in-memory lay-down xarray uses to judge a dataset's encoding before anything
is written, and views of arrays whose metadata is not (yet) stored.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import socket
import uuid
from typing import Any

import zarr
import zarr.storage
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from parallelzarr.errors import encoding_error
from parallelzarr.hooks import fault_point
from parallelzarr.store.holders import describe_holder, holder_alive, this_holder
from parallelzarr.store.keys import PREFIX, ROOT_DOCS, WRITE_KEY, read_json, write_documents, write_json
from parallelzarr.store.keys import delete as delete_key
from parallelzarr.store.resolve import has_root_node

#: The fingerprint of the write whose metadata :func:`lay_down_unpublished` is laying down (set by
#: ``to_zarr`` and job-array ``init``): an unfinished write of the same fingerprint is resumed, its chunks kept.
RESUME: contextvars.ContextVar[str | None] = contextvars.ContextVar("parallelzarr_resume", default=None)


#: Called with the staging store after the metadata is laid down there, before it is copied.
STAGING_HOOK: contextvars.ContextVar[Any] = contextvars.ContextVar("parallelzarr_staging_hook", default=None)


#: Ids of the unpublished writes this process is running; a marker of this process that is not
#: listed belongs to a write that failed here.
_RUNNING: set[str] = set()


def lay_down_unpublished(store: Any, mode: str, lay_down: Any) -> str:
    """Lay down a new store's metadata with its root documents held back until :func:`publish`.

    ``lay_down(staging)`` writes the metadata (and small in-memory values) into an in-memory store;
    everything but the root documents is copied to ``store``, and the root documents go into the
    marker ``.parallelzarr/write.json``. Until :func:`publish` runs after the last chunk, readers find
    no group at the root, as before the write: a failed or killed write is never seen half-written.
    With ``mode="w"`` the old contents are deleted first (what xarray's ``mode="w"`` does).
    Returns the write's id, for :func:`write_ended`.
    """
    staging = zarr.storage.MemoryStore()
    lay_down(staging)
    hook = STAGING_HOOK.get()
    if hook is not None:  # metadata the writers cannot lay down themselves (parallelzarr.store.rectilinear)
        hook(staging)
    resume = RESUME.get()
    if resume is not None:  # resume only onto the very same metadata (codecs, fill values, format...)
        resume = f"{resume}:{_digest(staging)}"
    if mode == "w" and not resumes(store, resume):
        sync(store.delete_dir(""))
    marker = {**this_holder("write"), "id": uuid.uuid4().hex, "docs": {}}
    if resume is not None:
        marker["fingerprint"] = resume
    _RUNNING.add(marker["id"])

    async def _keys() -> list[str]:
        return [k async for k in staging.list()]

    try:
        write_json(store, WRITE_KEY, marker)  # first: any later crash leaves the marker behind
        for key in sorted(sync(_keys())):
            buf = sync(staging.get(key, prototype=default_buffer_prototype()))
            if buf is None:
                continue
            if key in ROOT_DOCS:
                marker["docs"][key] = buf.to_bytes().decode()
            else:
                sync(store.set(key, buf))
        write_json(store, WRITE_KEY, marker)
    except BaseException as exc:
        write_ended(store, marker["id"], exc)
        raise
    return marker["id"]


def _digest(staging: Any) -> str:
    """A digest of every key and value laid down in ``staging`` (the new store's metadata)."""
    async def _items() -> list[tuple[str, bytes]]:
        out = []
        async for key in staging.list():
            buf = await staging.get(key, prototype=default_buffer_prototype())
            out.append((key, b"" if buf is None else buf.to_bytes()))
        return sorted(out)

    h = hashlib.sha256()
    for key, value in sync(_items()):
        h.update(key.encode() + b"\0" + value + b"\0")
    return h.hexdigest()[:16]


def resumes(store: Any, fingerprint: str | None) -> bool:
    """Whether ``store`` holds an unfinished, no longer running write of ``fingerprint`` (keep its chunks)."""
    if fingerprint is None:
        return False
    marker = unpublished_write(store)
    return marker is not None and marker.get("fingerprint") == fingerprint and not write_running(marker)


def write_ended(store: Any, write_id: str | None, failure: BaseException | None = None) -> None:
    """This process no longer runs the write ``write_id``; after a ``failure``, record it in the marker."""
    if write_id is None:
        return
    _RUNNING.discard(write_id)
    if failure is None:
        return
    try:
        marker = read_json(store, WRITE_KEY)
        if marker is not None and marker.get("id") == write_id:
            write_json(store, WRITE_KEY, {**marker, "failed": f"{type(failure).__name__}: {failure}"})
    except OSError:
        pass  # best effort (a full disk): in this process _RUNNING already tells, elsewhere the pid


def publish(store: Any) -> None:
    """Publish a new store: write its root metadata documents (the commit point), drop the marker."""
    marker = read_json(store, WRITE_KEY)
    if marker is None:
        return  # already published
    fault_point("publish:data-written")
    docs = marker.get("docs", {})
    write_documents(store, {key: docs[key].encode() for key in ROOT_DOCS if key in docs})
    fault_point("publish:root-written")
    delete_key(store, WRITE_KEY)
    if isinstance(store, zarr.storage.LocalStore):
        try:  # an empty bookkeeping directory would make zarr warn about a foreign object
            os.rmdir(os.path.join(str(store.root), PREFIX))
        except OSError:
            pass  # not empty (a lease of a concurrent append), or already gone


def unpublished_write(store: Any) -> dict[str, Any] | None:
    """The marker of a new store's write that has not been published (running or interrupted).

    A marker beside a root node was left by a kill between :func:`publish`'s two steps: the store
    is published, so the publish is finished here (idempotent) and ``None`` returned.
    """
    try:
        marker = read_json(store, WRITE_KEY)
    except (OSError, ValueError):
        return None
    if marker is not None and marker.get("docs") and has_root_node(store):
        try:
            publish(store)
        except (OSError, ValueError):  # a read-only view: the store is published all the same
            pass
        return None
    return marker


def write_running(marker: dict[str, Any]) -> bool:
    """Whether the unpublished write of ``marker`` may still be running."""
    if marker.get("failed"):
        return False
    if marker.get("host") == socket.gethostname() and marker.get("pid") == os.getpid():
        return marker.get("id") in _RUNNING
    return holder_alive(marker) is not False


def describe_unpublished(marker: dict[str, Any], description: str) -> str:
    """Say what an unpublished write is and what to do about it."""
    who = describe_holder(marker)
    if marker.get("failed"):
        who += f"; it failed: {marker['failed']}"
    if write_running(marker):
        return f"{description} is being written by another process ({who}); wait for it to finish"
    return (
        f"{description} holds a write that never finished ({who}; readers see no dataset there); "
        "rerun the write with mode='w': the same write resumes (its finished tasks are skipped), any other replaces it"
    )



def lay_down_in_memory(template: Any, refused: str, **to_zarr_kwargs: Any) -> zarr.storage.MemoryStore:
    """Let xarray lay down ``template``'s metadata in a scratch in-memory store, before the target is touched.

    xarray judges codecs, encodings and fill values there; what it refuses is raised as the
    matching :class:`~parallelzarr.errors.EncodingError` subclass, its message prefixed by ``refused``.
    Returns the scratch store (its documents are what xarray would write).
    """
    scratch = zarr.storage.MemoryStore()
    try:
        template.to_zarr(scratch, mode="w", compute=False, **to_zarr_kwargs)
    except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
        raise encoding_error(f"{refused}: {exc}", exc) from exc
    return scratch


def unpublished_array(metadata: Any, store_path: Any, config: Any = None) -> zarr.Array:
    """A ``zarr.Array`` over ``store_path`` described by ``metadata`` that is not (or not yet) stored.

    Writers use it to write chunks of an array whose stored metadata readers must not see changed
    yet: an append's grown shape, a new store's or a rechunk's target before it is published.
    """
    return zarr.Array(zarr.AsyncArray(metadata=metadata, store_path=store_path, config=config))
