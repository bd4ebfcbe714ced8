"""Lock backends for the ``lock`` write strategy.

A :class:`LockSpec` is small and picklable; tasks call :meth:`LockSpec.hold` where they run.

* ``threading``: one process, threaded scheduler (locks live in this process's memory).
* ``distributed``: ``distributed.Lock`` through the active Client's scheduler (any cluster).
* ``file``: ``flock`` on files in a shared filesystem directory; works across threads, worker
  processes and independent batch jobs that see the same filesystem.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from parallelzarr.store import keys

_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()

BACKENDS = ("threading", "distributed", "file")
PREFIX_DIR = ".parallelzarr"


@dataclass(frozen=True)
class LockSpec:
    """Where and how to take the lock of a shared grid cell.

    Attributes
    ----------
    backend
        ``threading``, ``distributed`` or ``file``.
    namespace
        Prefix making lock names unique per store and array (no credentials: a path or URL only).
    directory
        Directory holding lock files, for the ``file`` backend.
    """

    backend: str
    namespace: str
    directory: str | None = None

    def full_name(self, name: str) -> str:
        return f"parallelzarr:{self.namespace}:{name}"

    @contextlib.contextmanager
    def hold_all(self, names: list[str]) -> Iterator[None]:
        """Hold several locks, taken in sorted order so that concurrent writers cannot deadlock."""
        with contextlib.ExitStack() as stack:
            for name in sorted(set(names)):
                stack.enter_context(self.hold(name))
            yield

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[None]:
        """Hold the lock called ``name`` for the duration of the ``with`` block."""
        full = self.full_name(name)
        if self.backend == "threading":
            with _THREAD_LOCKS_GUARD:
                lock = _THREAD_LOCKS.setdefault(full, threading.Lock())
            with lock:
                yield
        elif self.backend == "distributed":
            import distributed

            shared = distributed.Lock(full)
            shared.acquire()
            try:
                yield
            finally:
                shared.release()
        elif self.backend == "file":
            assert self.directory is not None
            digest = hashlib.sha1(full.encode()).hexdigest()[:24]
            fd = _open_lock_file(self.directory, f"{digest}.lock")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        else:
            raise ValueError(f"unknown lock backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")


def _open_lock_file(directory: str, name: str) -> int:
    """Open (create) one lock file. flock locks belong to the open file description, so separate
    opens exclude each other across threads of one process as well as across processes."""
    path = os.path.join(directory, name)

    def _open() -> int:
        keys.make_parent(path)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    return keys.beside_vanishing_dirs(_open)


def active_client() -> object | None:
    """The default ``distributed.Client`` if one is active, else ``None``."""
    try:
        import distributed

        return distributed.default_client()
    except (ImportError, ValueError):
        return None


def _threaded_scheduler() -> bool:
    import dask
    import dask.base

    sched = dask.base.get_scheduler()
    name = getattr(sched, "__module__", "") + "." + getattr(sched, "__name__", "")
    return sched is None or "threaded" in name or "get_sync" in name or "local" in name


def choose_lock_backend(
    local_path: str | None,
    requested: str | None = None,
    *,
    cross_process: bool = False,
    in_memory: bool = False,
) -> tuple[str | None, str | None]:
    """Pick the lock backend that works here; return ``(backend, None)`` or ``(None, why_not)``.

    A filesystem store prefers file locks, which also exclude independent processes and batch jobs
    writing the same store; otherwise a distributed Client's locks; otherwise in-process locks when
    the scheduler runs tasks as threads of this process.

    Parameters
    ----------
    local_path
        The store's directory on a filesystem, or ``None``.
    requested
        A backend the user asked for, or ``None`` to choose.
    cross_process
        The lock must also exclude writers outside this process (region writes: another job may
        write the rest of a cell). In-process locks then only qualify for an in-memory store,
        which no other process can reach.
    in_memory
        The store lives in this process's memory.
    """
    client = active_client()
    threaded = client is None and _threaded_scheduler()
    feasible = {
        "file": local_path is not None,
        "distributed": client is not None,
        "threading": threaded and (in_memory or not cross_process),
    }
    why = {
        "file": "file locks need a store on a (shared) filesystem",
        "distributed": "distributed locks need an active distributed Client",
        "threading": (
            "threading locks only exclude writers in this process, and other processes can write this store"
            if threaded else "threading locks only work with the threaded or synchronous scheduler in this process"
        ),
    }
    if requested is not None:
        if requested not in feasible:
            return None, f"unknown lock backend {requested!r}; choose one of {', '.join(BACKENDS)}"
        return (requested, None) if feasible[requested] else (None, why[requested])
    for backend in ("file", "distributed", "threading"):
        if feasible[backend]:
            return backend, None
    if cross_process and threaded:
        return None, "the store is not on a filesystem and no distributed Client is active"
    return None, "the store is not on a filesystem, no distributed Client is active, and the scheduler is not threaded"


def lock_spec(backend: str | None, namespace: str, local_path: str | None) -> LockSpec | None:
    """The :class:`LockSpec` for a planned backend (``None`` when the plan takes no locks).

    File locks live under the store's ``.parallelzarr/locks`` so every writer of the store finds them.
    """
    if backend is None:
        return None
    directory = os.path.join(local_path or ".", PREFIX_DIR, "locks") if backend == "file" else None
    return LockSpec(backend, namespace, directory)
