"""Key-level access to any zarr store: raw bytes, JSON documents, listings, exclusive creation.

Every operation that reads or writes one key of a store by name (bookkeeping under ``.parallelzarr*``,
metadata documents, task markers, staged copies) goes through this module, so writes, appends and
rechunks share one implementation of each. Each call runs the store's coroutine in the calling
thread for local and memory stores and with zarr's ``sync`` for the others, so it may be called from
any thread (a dask worker's included).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, TypeVar, cast

import zarr
import zarr.storage
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from parallelzarr.store.local_files import files_target, local_root, read_object
from parallelzarr.store.zarr_compat import run_for

__all__ = [
    "ROOT_DOCS",
    "METADATA_NAMES",
    "ARRAY_DOCS",
    "PREFIX",
    "LEASE_KEY",
    "JOURNAL_KEY",
    "WRITE_KEY",
    "APPENDS_PREFIX",
    "beside_vanishing_dirs",
    "make_parent",
    "get",
    "put",
    "exists",
    "delete",
    "delete_prefix",
    "list_keys",
    "read_json",
    "Consolidated",
    "consolidated_key",
    "read_consolidated",
    "write_json",
    "write_metadata_doc",
    "create_exclusive",
    "publish_order",
    "write_documents",
    "ZarrFormat",
    "zarr_format_of",
]

#: The metadata documents a group's root can hold (v2's, then v3's ``zarr.json``), in the order
#: they are published: ``zarr.json`` last, so a v3 reader sees the group only when the rest is in.
ROOT_DOCS = (".zattrs", ".zgroup", ".zmetadata", "zarr.json")
#: An array's own metadata documents (v3, then v2's array and attribute documents).
ARRAY_DOCS = ("zarr.json", ".zarray", ".zattrs")
#: Every zarr metadata document name (v2 and v3): the keys of a node that are not chunks, and the
#: names no variable may take.
METADATA_NAMES = frozenset(ROOT_DOCS) | frozenset(ARRAY_DOCS)

#: A zarr format number, as zarr's own functions type it.
ZarrFormat = Literal[2, 3]

T = TypeVar("T")


def zarr_format_of(value: Any) -> ZarrFormat:
    """``value`` (a format number from metadata, a journal or the user) as a :data:`ZarrFormat`.

    Raises
    ------
    ValueError
        When it is neither 2 nor 3 (zarr knows no other).
    """
    if value not in (2, 3):
        raise ValueError(f"zarr_format must be 2 or 3, got {value!r}")
    return cast(ZarrFormat, int(value))


#: parallelzarr's bookkeeping prefix, which zarr and xarray ignore.
PREFIX = ".parallelzarr"
#: The lease (parallelzarr.commit.lease): who is appending, overwriting or repairing.
LEASE_KEY = f"{PREFIX}/lease.json"
#: A commit under way (parallelzarr.commit.journal): what to roll forward after a crash.
JOURNAL_KEY = f"{PREFIX}/journal.json"
#: A new store's unpublished write (parallelzarr.store.staging): its held-back root documents.
WRITE_KEY = f"{PREFIX}/write.json"
#: One record per committed append (parallelzarr.commit.appendlog).
APPENDS_PREFIX = f"{PREFIX}/appends/"


def get(store: Any, key: str) -> bytes | None:
    """The bytes stored at ``key``, or ``None`` if it is absent."""
    root = local_root(store)
    buf = (read_object(root, key, default_buffer_prototype()) if root is not None
           else run_for(store, store.get(key, prototype=default_buffer_prototype())))
    return None if buf is None else buf.to_bytes()


def put(store: Any, key: str, value: bytes) -> None:
    """Write ``value`` at ``key`` (one object write; a plain local store's as a file, as it would)."""
    buf = default_buffer_prototype().buffer.from_bytes(value)
    files = files_target(store)
    if files is not None:
        files.write(key, buf)
    else:
        run_for(store, store.set(key, buf))


def exists(store: Any, key: str) -> bool:
    """Whether ``key`` exists in ``store``."""
    return bool(run_for(store, store.exists(key)))


def delete(store: Any, key: str) -> None:
    """Delete one key (an absent key is fine)."""
    files = files_target(store)
    if files is None or not files.delete(key):
        run_for(store, store.delete(key))


def delete_prefix(store: Any, prefix: str) -> None:
    """Delete every key under ``prefix`` (``""``: the whole store)."""
    run_for(store, store.delete_dir(prefix))


async def _collect(it: Any) -> list[str]:
    return [k async for k in it]


def list_keys(store: Any, prefix: str = "") -> list[str]:
    """Every key under ``prefix`` (one listing; its order is the store's)."""
    return run_for(store, _collect(store.list_prefix(prefix)))


def read_json(store: Any, key: str) -> dict[str, Any] | None:
    """The JSON document at ``key``, or ``None`` if it is absent.

    A document that does not parse is read again for a moment (up to about 0.2 s): a writer without
    an atomic create (a filesystem without hard links, another tool) may be part-way through it.
    One that still does not parse raises ``json.JSONDecodeError`` (a ``ValueError``).
    """
    for attempt in range(_PARTIAL_READS):
        data = get(store, key)
        if data is None:
            return None
        try:
            return cast(dict[str, Any], json.loads(data))
        except json.JSONDecodeError:
            if attempt == _PARTIAL_READS - 1:
                raise
            time.sleep(0.002 * 2 ** min(attempt, 5))
    raise AssertionError("unreachable")


#: How often :func:`read_json` reads a document that does not parse before it gives up.
_PARTIAL_READS = 8


class Consolidated(NamedTuple):
    """The document holding a store's consolidated metadata, as read (see :func:`read_consolidated`).

    ``metadata`` and ``attributes`` are parts of ``root`` (changed in place, ``root`` is written back).
    """

    root: dict[str, Any]
    metadata: dict[str, Any]
    attributes: dict[str, Any]


def consolidated_key(zarr_format: int) -> str:
    """The key of the document holding the consolidated metadata: v3 ``zarr.json``, v2 ``.zmetadata``."""
    return "zarr.json" if zarr_format == 3 else ".zmetadata"


def read_consolidated(store: Any, zarr_format: int) -> Consolidated | None:
    """The consolidated metadata (one read), or ``None`` without it.

    Its ``metadata`` maps v3 node paths (v2: document keys such as ``"t2m/.zarray"``) to documents;
    ``attributes`` are the root group's (v3: the root document's, v2: its ``.zattrs`` entry).
    """
    root = read_json(store, consolidated_key(zarr_format))
    if root is None:
        return None
    meta = (root.get("consolidated_metadata") or {}).get("metadata") if zarr_format == 3 else root.get("metadata")
    if not isinstance(meta, dict):
        return None
    attrs = root.get("attributes") if zarr_format == 3 else meta.get(".zattrs")
    return Consolidated(root, meta, attrs if isinstance(attrs, dict) else {})


def write_json(store: Any, key: str, value: dict[str, Any]) -> None:
    """Write a bookkeeping document (keys sorted: equal values give equal bytes)."""
    put(store, key, json.dumps(value, sort_keys=True).encode())


def write_metadata_doc(store: Any, key: str, doc: dict[str, Any]) -> None:
    """Write a zarr metadata document as zarr lays it out (its key order, its ``json_indent``)."""
    put(store, key, json.dumps(doc, indent=zarr.config.get("json_indent", 2), allow_nan=True).encode())


_T = TypeVar("_T")

# Finishing writes remove the empty directories under ``.parallelzarr`` (zarr warns about them; see
# ``markers.clear``), so a create beside them can find its directory gone between ``mkdir`` and
# ``open``. Losing that window is a matter of scheduling, so most retries are immediate; the last
# few back off with jitter (about 0.5 s in all) for a process that keeps being descheduled in it.
# An exclusive create (a lease: it must not fail for this) backs off for about 2.5 s in all.
_VANISHED_ATTEMPTS = 40
_IMMEDIATE_ATTEMPTS = 32
_CREATE_ATTEMPTS = 48


def beside_vanishing_dirs(create: Callable[[], _T], attempts: int = _VANISHED_ATTEMPTS) -> _T:
    """Run ``create`` (which makes its directories itself), retrying while another process's
    cleanup removes them under it; the last ``FileNotFoundError``/``FileExistsError`` is raised."""
    for attempt in range(attempts):
        try:
            return create()
        except (FileNotFoundError, FileExistsError):
            if attempt == attempts - 1:
                raise
            if attempt >= _IMMEDIATE_ATTEMPTS:
                time.sleep(0.002 * 2 ** min(attempt - _IMMEDIATE_ATTEMPTS, 7) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


def make_parent(path: str) -> None:
    """Make ``path``'s directory, keeping the time between its ``mkdir`` and the caller's
    ``open`` short (one system call when only the leaf is missing, as after a cleanup)."""
    parent = os.path.dirname(path)
    try:
        os.mkdir(parent)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(parent, exist_ok=True)


def create_exclusive(store: Any, key: str, value: dict[str, Any]) -> bool:
    """Create ``key`` only if absent; ``True`` if this call created it.

    On a local filesystem a hard link of the whole document makes this atomic between processes
    (see :func:`_create_local_exclusive`). Other stores use the store's conditional create and then
    read back the holder, so a lost race is noticed.
    """
    data = json.dumps(value, sort_keys=True).encode()
    if isinstance(store, zarr.storage.LocalStore):
        return _create_local_exclusive(os.path.join(str(store.root), key), data)
    if isinstance(store, zarr.storage.FsspecStore) and "s3" in _protocols(store.fs):
        # One conditional PUT (If-None-Match: *): the object store arbitrates between appenders.
        path = f"{store.path.rstrip('/')}/{key}"

        async def _create() -> bool:
            try:
                await store.fs._pipe_file(path, data, mode="create")
            except Exception as exc:  # botocore reports PreconditionFailed as one of several types
                if "Precondition" in str(exc) or "412" in str(exc) or isinstance(exc, FileExistsError):
                    return False
                raise
            return True

        if not sync(_create()):
            return False
    else:
        sync(store.set_if_not_exists(key, default_buffer_prototype().buffer.from_bytes(data)))
    held = read_json(store, key)
    return held is not None and held.get("id") == value.get("id")


def _create_local_exclusive(path: str, data: bytes) -> bool:
    """Create the file ``path`` holding ``data`` unless it exists; ``True`` if this call made it.

    The document is written whole to a file of its own and then hard-linked to ``path`` (``link``
    fails if ``path`` exists), so a reader never sees it half written, as it could see a file made
    with ``O_EXCL`` and written afterwards. Filesystems without hard links fall back to that
    ``O_EXCL`` create; :func:`read_json` waits out the empty moment there.
    """
    # No fsync: the lease guards against concurrent processes, not power loss (a lease lost with
    # the machine has no live holder and is cleared as stale).
    def _link() -> bool | None:
        draft = f"{path}{DRAFT_TAG}{os.getpid()}-{uuid.uuid4().hex}"
        make_parent(path)  # then at once the open: another process's cleanup may remove an empty directory
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            os.link(draft, path)
            return True
        except FileExistsError:
            return False  # held by someone else: not a vanished directory
        except FileNotFoundError:
            raise  # the directory vanished under us: beside_vanishing_dirs retries
        except OSError:
            # No hard links here (EPERM, ENOTSUP, ENOSYS on FUSE mounts and some network filesystems):
            # the O_EXCL create below works there or raises the real problem.
            return None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(draft)

    made = beside_vanishing_dirs(_link, _CREATE_ATTEMPTS)
    if made is not None:
        return made

    def _open() -> int:
        make_parent(path)
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return -1

    fd = beside_vanishing_dirs(_open, _CREATE_ATTEMPTS)
    if fd < 0:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return True


#: In the name of the file :func:`_create_local_exclusive` writes before linking it into place.
DRAFT_TAG = ".draft-"


def clear_stale_drafts(store: Any, older_than: float = 60.0) -> list[str]:
    """Delete the drafts of :func:`create_exclusive` in ``.parallelzarr/`` older than ``older_than`` seconds.

    A draft lives for a few system calls, so an old one was left by a process killed in between
    (harmless, but litter; half written if killed while writing it). Returns the deleted keys.
    Only a local store has drafts, and only beside the lease and the break markers: one directory
    is read, not the append records below it.
    """
    if not isinstance(store, zarr.storage.LocalStore):
        return []
    cleared = []
    try:
        entries = list(os.scandir(os.path.join(str(store.root), PREFIX)))
    except FileNotFoundError:
        return []
    for entry in entries:
        if DRAFT_TAG not in entry.name:
            continue
        try:
            if time.time() - entry.stat().st_mtime < older_than:
                continue
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        cleared.append(f"{PREFIX}/{entry.name}")
    return cleared


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


#: Within one node, the order its documents are written in: attributes first, and the document that
#: makes the node visible to readers (``.zarray``/``.zgroup``, v3 ``zarr.json``) after them, the
#: consolidated copy last of v2's; a reader that finds the node then finds its attributes too.
_DOC_ORDER = MappingProxyType({".zattrs": 0, ".zarray": 1, ".zgroup": 2, ".zmetadata": 3, "zarr.json": 4})


def publish_order(key: str) -> tuple[int, int, str]:
    """Sort key of a metadata document for publishing: deepest nodes first, a node's own documents by
    ``_DOC_ORDER``, so a node becomes visible only after everything below it and its attributes."""
    node, _, name = key.rpartition("/")
    depth = node.count("/") + 1 if node else 0
    return -depth, _DOC_ORDER.get(name, -1), key


def write_documents(store: Any, docs: Mapping[str, bytes]) -> None:
    """Write metadata documents in :func:`publish_order` (one write each; the last one publishes).

    Every metadata-last publish goes through here: a new store's root documents, the documents of
    arrays a ``mode="a"`` write adds, a rechunk's target.
    """
    for key in sorted(docs, key=publish_order):
        put(store, key, docs[key])
