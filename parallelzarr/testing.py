"""Test-only fault injection: kill a process at a named point, or make a store fail a write.

Like ``zarr.testing``, this module is for tests; production code never imports it. Production code
calls the no-op hooks in :mod:`parallelzarr.hooks` (``fault_point``, ``chunk_written``), which hand
over to :func:`fault_point` and :func:`count_write` here only while one of the variables below is
set. All fault state (the ``write:K`` counter) lives in this module.

Set ``PARALLELZARR_FAULT`` to a point name (``append:leased``, ``commit:logged``...) or to
``write:K`` to die after the K-th chunk-writing task of this process. With
``PARALLELZARR_FAULT_ONCE`` naming a file, only the first process to reach the point dies (the file
records it), so a restarted worker carries on. ``PARALLELZARR_PAUSE=point:seconds`` sleeps at a
point instead (to hold a lease open in tests). Unset, the hooks cost a dictionary lookup per call.

:func:`arm` sets the same variables inside a running process (a dask worker, via ``client.run``).
:class:`FaultyStore` wraps a zarr store and raises ``OSError`` on the N-th write of a chunk key,
like a storage backend that breaks mid-run.
"""

from __future__ import annotations

import errno
import itertools
import os
import signal
import threading
import time
from collections.abc import Iterable
from typing import Any

from zarr.abc.store import Store
from zarr.core.buffer import Buffer
from zarr.storage import WrapperStore

__all__ = ["fault_point", "count_write", "arm", "disarm", "FaultyStore", "is_chunk_key"]

_ENV = "PARALLELZARR_FAULT"
_ONCE = "PARALLELZARR_FAULT_ONCE"
_writes = itertools.count(1)


def _die() -> None:
    once = os.environ.get(_ONCE)
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)


def fault_point(name: str) -> None:
    """Kill this process if ``PARALLELZARR_FAULT`` names this point (or pause if asked to)."""
    if os.environ.get(_ENV) == name:
        _die()
    pause = os.environ.get("PARALLELZARR_PAUSE")
    if pause and pause.rsplit(":", 1)[0] == name:
        time.sleep(float(pause.rsplit(":", 1)[1]))


def count_write() -> None:
    """Count a finished chunk write; kill the process after the K-th if ``write:K`` is set."""
    want = os.environ.get(_ENV)
    if want and want.startswith("write:") and next(_writes) >= int(want.split(":", 1)[1]):
        _die()


def arm(point: str, once_file: str | None = None) -> int:
    """Arm a fault in this process (restarting the ``write:K`` count); return the pid.

    Meant for ``client.run(arm, "write:3", once_file)``: every worker process is armed, the first
    to reach the point dies (``once_file`` records it), and the worker its nanny starts in its place
    is not armed, since it starts from the nanny's environment.
    """
    global _writes
    _writes = itertools.count(1)
    os.environ[_ENV] = point
    if once_file is not None:
        os.environ[_ONCE] = once_file
    return os.getpid()


def disarm() -> int:
    """Undo :func:`arm` in this process; return the pid."""
    os.environ.pop(_ENV, None)
    os.environ.pop(_ONCE, None)
    return os.getpid()


_METADATA = frozenset({"zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata"})


def is_chunk_key(key: str) -> bool:
    """Whether ``key`` holds array data: not a metadata document, not parallelzarr bookkeeping.

    Bookkeeping (leases, journals, rechunk plan records and task markers) lives under
    ``.parallelzarr*`` prefixes; rechunk intermediates under ``.parallelzarr-rechunk/temp/`` are data.
    """
    parts = key.split("/")
    if parts[-1] in _METADATA:
        return False
    if parts[0].startswith(".parallelzarr"):
        return len(parts) > 1 and parts[1] == "temp"
    return True


class _Counter:
    """Chunk writes seen by every copy of one :class:`FaultyStore` in this process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen = 0
        self.failed: list[str] = []

    def __getstate__(self) -> dict[str, Any]:
        return {"seen": self.seen, "failed": list(self.failed)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.lock = threading.Lock()  # locks do not pickle: each copy has its own
        self.seen, self.failed = state["seen"], state["failed"]


class FaultyStore(WrapperStore[Store]):
    """A store that delegates to ``store`` and raises ``OSError`` on the ``fail_at``-th chunk write.

    Parameters
    ----------
    store
        The store to wrap (e.g. a ``zarr.storage.LocalStore``).
    fail_at
        1-based number of the chunk write (``set`` of a key for which :func:`is_chunk_key` holds)
        that fails.
    persistent
        Fail every chunk write from the ``fail_at``-th on (a backend that broke), not only that one.

    Notes
    -----
    The count is shared by copies made with ``with_read_only`` (zarr makes them); a copy pickled to
    another process counts on its own. Use it with an in-process scheduler (threads) for an exact N.
    """

    def __init__(self, store: Store, *, fail_at: int = 1, persistent: bool = True,
                 _counter: _Counter | None = None) -> None:
        super().__init__(store)
        self.fail_at = int(fail_at)
        self.persistent = persistent
        self._counter = _counter or _Counter()

    def _with_store(self, store: Store) -> FaultyStore:
        return type(self)(store, fail_at=self.fail_at, persistent=self.persistent, _counter=self._counter)

    @property
    def chunk_writes(self) -> int:
        """Chunk writes attempted so far (failed ones included)."""
        return self._counter.seen

    @property
    def failed_keys(self) -> list[str]:
        """Keys whose write this store refused."""
        return list(self._counter.failed)

    def _check(self, key: str) -> None:
        if not is_chunk_key(key):
            return
        c = self._counter
        with c.lock:
            c.seen += 1
            n = c.seen
            fail = n == self.fail_at or (self.persistent and n > self.fail_at)
            if fail:
                c.failed.append(key)
        if fail:
            raise OSError(errno.EIO, f"injected store fault: chunk write #{n} refused for key {key!r}")

    async def set(self, key: str, value: Buffer) -> None:
        self._check(key)
        await self._store.set(key, value)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        self._check(key)
        await self._store.set_if_not_exists(key, value)

    async def _set_many(self, values: Iterable[tuple[str, Buffer]]) -> None:
        for key, value in values:
            await self.set(key, value)

    def __repr__(self) -> str:
        return f"FaultyStore({self._store!r}, fail_at={self.fail_at})"

    def __str__(self) -> str:
        return f"faulty+{self._store}"
