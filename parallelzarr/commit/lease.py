"""The store's lease: one writer at a time for appends, overwrites, job arrays and repairs.

The lease is one JSON key created exclusively (``.parallelzarr/lease.json``). A lease whose holder
provably died on this host is broken; one held from another host only by ``repair(force=True)``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from parallelzarr.errors import LeaseError
from parallelzarr.hooks import fault_point
from parallelzarr.store.holders import describe_holder, held_by_this_process, holder_alive, this_holder
from parallelzarr.store.keys import DRAFT_TAG, LEASE_KEY, PREFIX, create_exclusive, list_keys, read_json
from parallelzarr.store.keys import delete as delete_key

#: Prefix of the marker one breaker of a dead lease creates exclusively (``lease-break-<id>.json``).
BREAK_PREFIX = f"{PREFIX}/lease-break-"


@dataclass
class Lease:
    """The store's append lease, held by this process while an append runs."""

    store: Any
    holder: dict[str, Any]
    broke_stale: dict[str, Any] | None = None
    released: bool = False

    def release(self) -> None:
        """Delete the lease if it is still this holder's (read first: a broken lease may be another's now)."""
        current = read_lease(self.store)
        if current is not None and current.get("id") == self.holder["id"]:
            delete_key(self.store, LEASE_KEY)
        self.released = True


def parse_wait(wait: Any) -> float:
    """``"30s"``, ``"2min"``, ``45`` (seconds) or ``None`` (do not wait) as seconds."""
    if wait is None or wait is False:
        return 0.0
    if isinstance(wait, int | float) and not isinstance(wait, bool):
        seconds = float(wait)
    else:
        import pandas as pd

        try:
            seconds = pd.Timedelta(str(wait).strip()).total_seconds()
        except (TypeError, ValueError) as exc:
            raise LeaseError(f"wait={wait!r} is not a duration (e.g. '30s', '5min', or seconds as a number)") from exc
    if not seconds >= 0:
        raise LeaseError(f"wait must not be negative, got {wait!r}")
    return seconds


def acquire_lease(store: Any, description: str, operation: str = "append", lease_id: str | None = None,
                  wait: Any = None) -> Lease:
    """Take the append lease or raise :class:`LeaseError` naming the holder.

    A lease whose holder provably died (same host, process gone) is broken and reported; a lease
    held from another host is never broken here (``repair(force=True)`` does that). ``lease_id``
    fixes the holder's id in advance, so the caller can release the lease even when another
    process (a dask worker) took it. ``wait`` (``"30s"``, seconds) polls a lease held by another
    process with a growing interval (0.05 s up to 2 s) until it is free or the time is up, then
    raises as without it; a lease held by this very process is reported at once (waiting for it
    could never end).
    """
    deadline = time.monotonic() + parse_wait(wait)
    delay = 0.05
    while True:
        try:
            return _acquire_once(store, description, operation, lease_id)
        except LeaseError:
            current = read_lease(store) or {}
            left = deadline - time.monotonic()
            if left <= 0 or held_by_this_process(current):
                raise
            time.sleep(min(delay, left))
            delay = min(delay * 1.5, 2.0)


def _acquire_once(store: Any, description: str, operation: str, lease_id: str | None) -> Lease:
    holder = {"id": lease_id or uuid.uuid4().hex, **this_holder(operation)}
    broke = None
    for _ in range(2):
        if create_exclusive(store, LEASE_KEY, holder):
            return Lease(store, holder, broke)
        current = read_lease(store) or {}
        if current.get("unreadable"):
            raise LeaseError(
                f"{description} has an unreadable lease ({LEASE_KEY} is not whole: a process killed while "
                "taking it, where the filesystem has no hard links?); if nothing else is writing the store, "
                "clear it with parallelzarr.repair(store, force=True)"
            )
        if holder_alive(current) is False:
            if break_dead_lease(store, current, description):
                broke = current
            continue
        if held_by_this_process(current):
            # Not another process at all: most often a lazy append whose graph never finished.
            raise LeaseError(
                f"{description} is leased by this process (pid {current.get('pid')}; "
                f"{describe_holder(current)}), probably an append(compute=False) whose Delayed was never "
                "computed or whose computation failed or is still running. Compute it (or let it finish), "
                "or clear the lease with parallelzarr.repair(store, force=True) if nothing is running"
            )
        state = "stale? run parallelzarr.repair(store, force=True) if it is gone" if holder_alive(current) is None else "still running"
        raise LeaseError(
            f"{description} is being written by another process ({describe_holder(current)}; {state}); "
            "wait for it to finish and retry"
        )
    raise LeaseError(f"could not take the lease of {description}; another process keeps taking it")


#: What :func:`read_lease` gives for a lease document that does not parse.
UNREADABLE_LEASE: Mapping[str, Any] = MappingProxyType({"id": None, "operation": "unreadable lease", "unreadable": True})


def read_lease(store: Any) -> dict[str, Any] | None:
    """The stored lease, ``None`` if there is none, a copy of :data:`UNREADABLE_LEASE` if it does not parse.

    Only the ``O_EXCL`` fallback of :func:`~parallelzarr.store.keys.create_exclusive` (no hard
    links) can leave one: its creator killed between creating the file and writing it.
    """
    try:
        return read_json(store, LEASE_KEY)
    except ValueError:
        return dict(UNREADABLE_LEASE)


def break_dead_lease(store: Any, dead: dict[str, Any], description: str = "the store") -> bool:
    """Delete the lease ``dead`` (read earlier, its holder gone) if it is still the stored one.

    Two processes that read the same dead lease must not both break it: the slower one would delete
    the lease the faster one has taken since, and both would write. So a breaker first creates
    ``lease-break-<id>.json`` exclusively; only its creator re-reads the lease and deletes it if it
    is still ``dead``, then removes the marker. The re-read makes a late breaker (one that wins the
    marker after the first has removed it) harmless. Returns whether this call deleted the lease.
    """
    marker = f"{BREAK_PREFIX}{dead.get('id', 'unknown')}.json"
    fault_point("lease:breaking")
    breaker = {"id": uuid.uuid4().hex, **this_holder("lease break"), "breaks": dead.get("id")}
    if not create_exclusive(store, marker, breaker):
        other = read_json(store, marker) or {}
        if holder_alive(other) is False and read_lease(store) == dead:
            raise LeaseError(
                f"the dead lease of {description} ({describe_holder(dead)}) is stuck: the process breaking it "
                f"died too ({describe_holder(other)}); run parallelzarr.repair(store, force=True)"
            )
        return False  # another process is breaking it right now
    try:
        if read_lease(store) != dead:
            return False  # broken (and perhaps taken) by someone else already
        delete_key(store, LEASE_KEY)
        return True
    finally:
        delete_key(store, marker)


def clear_dead_lease(store: Any) -> dict[str, Any] | None:
    """Remove a lease whose holder provably died (same host, process gone); return it if removed."""
    lease = read_lease(store)
    if lease is not None and holder_alive(lease) is False and break_dead_lease(store, lease):
        return lease
    return None


def clear_break_markers(store: Any) -> list[str]:
    """Delete lease-break markers left by breakers that died (``repair(force=True)``); return their keys."""
    stale = []
    for key in list_keys(store, PREFIX):
        if not key.startswith(BREAK_PREFIX) or DRAFT_TAG in key:  # drafts: clear_stale_drafts
            continue
        marker = read_json(store, key)
        if marker is None or holder_alive(marker) is not True:
            delete_key(store, key)
            stale.append(key)
    return stale

