"""``mode="a"``/``"r+"`` without ``append_dim``: add variables to a stored dataset, overwrite stored ones.

xarray's semantics: every variable of the Dataset is written whole; variables new to the store are
created (``mode="a"`` only), stored ones are overwritten with their stored encoding and metadata
(shape, chunks, attributes stay), and ``mode="a"`` replaces the root attributes. Variables of the store
absent from the Dataset are left alone.

Crash safety, with the append machinery of :mod:`parallelzarr.commit` (one lease, one journal, one
repair); :mod:`parallelzarr.run.overwrite` plans the write and runs steps 1-3, this module step 4:

1. take the store's lease; roll forward a pending journal and drop staging left by a dead writer;
2. write every variable into a *staging* array under ``.parallelzarr/staging/<id>/<name>`` (same
   metadata as the target; readers never look there): the stored data is untouched;
3. write the journal (the commit point: before it, a crash leaves the store as it was and the staging
   is garbage; after it, :func:`roll_forward_overwrite` finishes the job without the caller's data);
4. roll forward: delete chunks of overwritten arrays that the new data leaves empty, move every staged
   chunk to its final key (a rename on a local filesystem, a copy then delete elsewhere), write the
   metadata of new arrays after their chunks, replace the root attributes, consolidate, drop the
   staging and the journal; release the lease.

What readers see: before step 4, the old dataset; after it, the new one. During step 4 itself (renames
or copies only, no computation), a reader opening the store sees each chunk of an overwritten variable
either old or new, and each new variable either absent or whole (consolidated readers see new
variables only after the consolidation). A crash during step 4 is rolled forward by
:func:`parallelzarr.repair` or by the next write or append to the store.

A ``mode="a"`` write with ``append_dim`` that also rewrites variables without it commits both in this
one journal (its ``"append"`` entry): the rows go beyond the stored shape under the same lease, and
step 4 also grows those arrays (before the consolidation) and records the append (after it), so
consolidated readers see the old dataset or the new one, never the new rows beside old variables.
"""

from __future__ import annotations

import os
from typing import Any

import zarr
import zarr.storage
from zarr.core.sync import sync

from parallelzarr.commit.appendlog import migrate_legacy_log
from parallelzarr.commit.grow import grow_arrays, record_append
from parallelzarr.commit.journal import pending_journal, stored_zarr_format, write_journal
from parallelzarr.hooks import fault_point
from parallelzarr.store.keys import (
    JOURNAL_KEY,
    METADATA_NAMES,
    PREFIX,
    list_keys,
    write_documents,
    zarr_format_of,
)
from parallelzarr.store.keys import delete as delete_key
from parallelzarr.store.keys import get as get_key
from parallelzarr.store.keys import put as put_key

__all__ = ["roll_forward_overwrite", "discard_staging", "STAGING_PREFIX"]

STAGING_PREFIX = f"{PREFIX}/staging/"
#: Names of zarr metadata documents inside an array's prefix (never moved as chunks).
META_DOCS = METADATA_NAMES


def _list(store: Any, prefix: str) -> list[str]:
    try:
        return list_keys(store, prefix)
    except OSError:  # a prefix never written (some fsspec stores raise): no keys
        return []


def chunk_keys(store: Any, prefix: str) -> list[str]:
    """Keys under ``prefix`` (``"name/"``) that are chunks, relative to it (metadata docs left out)."""
    rel = [k[len(prefix):] for k in _list(store, prefix)]
    return [r for r in rel if r.rsplit("/", 1)[-1] not in META_DOCS]


def _move(store: Any, src: str, dst: str) -> None:
    """Move one key; a rename on a local filesystem (atomic per chunk), else copy then delete."""
    inner = store
    if isinstance(inner, zarr.storage.LocalStore):
        root = str(inner.root)
        target = os.path.join(root, dst)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            os.replace(os.path.join(root, src), target)
        except FileNotFoundError:
            pass  # moved by an earlier, interrupted roll-forward
        return
    data = get_key(store, src)
    if data is None:
        return  # moved already
    put_key(store, dst, data)
    delete_key(store, src)


def roll_forward_overwrite(store: Any, journal: dict[str, Any]) -> list[str]:
    """Apply an overwrite journal; idempotent, so safe to rerun after a crash inside it.

    Chunks of overwritten arrays that have no staged counterpart (the new values are all fill) are
    deleted first, while the staging is complete; then staged chunks are moved. The phase recorded in
    the journal tells a rerun whether the staging is still complete.
    """
    done: list[str] = []
    staging = journal["staging"]
    if journal.get("phase") == "staged":
        for name in journal["overwrite"]:
            staged = set(chunk_keys(store, f"{staging}/{name}/"))
            stale = [r for r in chunk_keys(store, f"{name}/") if r not in staged]
            for rel in stale:
                delete_key(store, f"{name}/{rel}")
            if stale:
                done.append(f"dropped {len(stale)} chunk(s) of {name} that the new data leaves empty")
        journal = {**journal, "phase": "moving"}
        write_journal(store, journal)
        fault_point("overwrite:stale-dropped")
    for name in [*journal["overwrite"], *journal["new"]]:
        moved = chunk_keys(store, f"{staging}/{name}/")
        for rel in moved:
            _move(store, f"{staging}/{name}/{rel}", f"{name}/{rel}")
        fault_point(f"overwrite:moved:{name}")
        if name in journal["new"]:
            # v2: attributes before the array document, so a reader finding the array finds its dims too.
            write_documents(store, {f"{name}/{d}": text.encode() for d, text in journal["new"][name].items()})
            done.append(f"added {name}")
        elif moved:
            done.append(f"overwrote {name} ({len(moved)} chunk(s))")
    consolidated = bool(journal.get("consolidated"))
    appended = journal.get("append")  # the rows of a mode="a" write with append_dim, in this commit
    if appended is not None:
        grow_arrays(store, appended["shapes"], zarr_format_of(appended.get("zarr_format") or stored_zarr_format(store)),
                    done)
    if journal.get("root_attrs") is not None:
        migrate_legacy_log(store, consolidated)
        # Written without the consolidated metadata: in zarr 3 both share the root document, and
        # new attributes beside the old member list would show readers a mix. Until the
        # consolidation below, readers list the group and find the whole new state.
        group = zarr.open_group(store, mode="r+", use_consolidated=False)
        group.attrs.put(journal["root_attrs"])
        fault_point("overwrite:attrs")
    if consolidated:
        zarr.consolidate_metadata(store)
        done.append("consolidated metadata")
    fault_point("overwrite:consolidated")
    if appended is not None:
        record_append(store, appended, done)
    sync(store.delete_dir(staging))
    delete_key(store, JOURNAL_KEY)
    tidy_bookkeeping(store)
    fault_point("overwrite:journal-removed")
    return done


def discard_staging(store: Any) -> list[str]:
    """Delete staging left by writes that died before their commit point (no journal names it).

    Only call with the lease held or known free: a running write's staging is not garbage.
    """
    journal = pending_journal(store)
    keep = journal.get("staging") if journal and journal.get("kind") == "overwrite" else None
    ids = {k[len(STAGING_PREFIX):].split("/", 1)[0] for k in _list(store, STAGING_PREFIX)}
    gone = []
    for wid in sorted(ids):
        prefix = f"{STAGING_PREFIX}{wid}"
        if prefix != keep:
            sync(store.delete_dir(prefix))
            gone.append(f"dropped the staging of an unfinished write {wid} (readers never saw it)")
    tidy_bookkeeping(store)
    return gone


def tidy_bookkeeping(store: Any) -> None:
    """Remove empty bookkeeping directories (zarr warns about foreign objects in a group)."""
    from parallelzarr.store.resolve import unwrap_store

    store = unwrap_store(store)
    if isinstance(store, zarr.storage.LocalStore):
        root = os.path.join(str(store.root), PREFIX)
        for sub in (os.path.join(root, "staging"), root):
            try:
                os.rmdir(sub)
            except OSError:
                pass


