"""The fault matrix: {write, region write, append, rechunk} x {worker kill, coordinator kill, store error, disk full}.

Shared by ``tests/test_fault_matrix.py`` and ``benchmarks/fault_matrix.py`` (which imports this file by
path). Every cell builds real stores on disk, injects one fault into a real run, checks what readers
see, recovers the way a user would, and checks the data against a numpy oracle.

Outcomes
--------
``correct``
    The operation completed despite the fault, with the oracle's data (a killed worker: distributed
    re-runs its tasks, which are idempotent).
``clean error + recoverable``
    The operation failed (a ``StoreWriteError`` naming the store, the key or cause and the recovery
    step; or the process died), the store still gives readers what it gave before (see the per-operation
    guarantee below), and the recovery step completes it with the oracle's data.
``SKIPPED``
    Only for the disk-full cells, when no tmpfs can be mounted here (the reason is given).
``FAIL``
    Anything else.

What "as before" means per operation
------------------------------------
write (fresh store, mode ``"w-"``)
    Before, there was no dataset; after a failure, readers still find none (the root metadata is
    published last). ``mode="w-"`` then refuses with a ``ModeError`` telling to rerun with ``mode="w"``.
region write (``region=``, mode ``"r+"``)
    Not transactional: every metadata document is byte-identical; every value outside the region is
    the old one; every value inside is the old or the new one (never fill or garbage). A rerun of the
    same region write gives the oracle.
append
    Readers (consolidated or not) see exactly the old dataset; rerunning the same append completes it.
rechunk
    The source is byte-identical and the target is not readable yet (its metadata is written last);
    rerunning the same rechunk resumes from its task markers.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
import zarr
import zarr.storage

import parallelzarr as pz
from parallelzarr import testing as faults
from parallelzarr.errors import ModeError, StoreWriteError

OPS = ("write", "region", "append", "rechunk")
FAULTS = ("worker-kill", "coordinator-kill", "store-error", "disk-full")
OP_TITLES = {"write": "write", "region": "region write", "append": "append", "rechunk": "rechunk"}
FAULT_TITLES = {
    "worker-kill": "(a) worker SIGKILL",
    "coordinator-kill": "(b) coordinator SIGKILL",
    "store-error": "(c) store OSError on Nth chunk",
    "disk-full": "(d) full filesystem (tmpfs)",
}
CORRECT = "correct"
RECOVERABLE = "clean error + recoverable"
SKIPPED = "SKIPPED"
FAIL = "FAIL"

NT, NY, NX = 24, 32, 32
CHUNKS = (4, 16, 16)  # zarr chunks; dask chunks of 3 along time make the writes misaligned
DASK_T = 3
ENCODING = {"temp": {"chunks": CHUNKS}, "wind": {"chunks": CHUNKS}}
REGION = slice(5, 19)  # starts and ends mid-cell: its edge cells are read-modify-written
APPEND_BASE = 10  # a partial last cell that the append rewrites whole
RECHUNK_TO = {"time": -1, "y": 8, "x": 8}
RECHUNK_MEM = "1.05MiB"  # one pass for temp, two passes (through an intermediate) for wind
KILL_AFTER = 3  # chunk writes before the fault fires
TIMES = np.datetime64("2020-01-01T00", "h") + np.arange(1000).astype("timedelta64[h]")
_META = ("zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata")


class CellSkip(Exception):
    """The cell cannot run on this machine (only a tmpfs that cannot be mounted)."""


# --- data and oracle -----------------------------------------------------------------------------


def _rows(var: int, t0: int, nt: int, kind: str) -> np.ndarray:
    """Rows ``t0:t0+nt``; ``random`` rows depend only on (var, row) so appends concatenate."""
    if kind == "flat":  # compresses to almost nothing: a region write of random rows needs more room
        return np.repeat((np.arange(t0, t0 + nt) % 5 - 10.0)[:, None, None], NY * NX, axis=1).reshape(nt, NY, NX)
    return np.stack([np.random.default_rng([var, t]).standard_normal((NY, NX)) for t in range(t0, t0 + nt)])


def make_ds(t0: int, nt: int, kind: str = "random", chunk: int = DASK_T) -> xr.Dataset:
    """A two-variable dataset of rows ``t0:t0+nt`` (dask-chunked by ``chunk`` along time)."""
    temp = _rows(1, t0, nt, kind).astype("f4")
    wind = _rows(2, t0, nt, kind).astype("f8")
    return xr.Dataset(
        {
            "temp": (("time", "y", "x"), da.from_array(temp, chunks=(chunk, NY, NX)), {"units": "K"}),
            "wind": (("time", "y", "x"), da.from_array(wind, chunks=(chunk, NY, NX)), {"units": "m/s"}),
        },
        coords={"time": TIMES[t0 : t0 + nt], "y": np.arange(NY), "x": np.arange(NX)},
        attrs={"title": "fault matrix"},
    )


def _data_only(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy()
    ds.attrs = {k: v for k, v in ds.attrs.items() if k != "parallelzarr_appends"}
    return ds


def _assert_reads(path: Path, expected: xr.Dataset, what: str) -> None:
    """Consolidated and plain readers both see exactly ``expected``."""
    for consolidated in (True, False):
        with xr.open_zarr(path, consolidated=consolidated) as got:
            got = _data_only(got.load())
        if not got.identical(expected):
            raise AssertionError(
                f"{what}: readers (consolidated={consolidated}) do not see the expected dataset:\n{_diff(got, expected)}"
            )


def _diff(got: xr.Dataset, expected: xr.Dataset) -> str:
    try:
        xr.testing.assert_identical(got, expected)
    except AssertionError as exc:
        return str(exc)[:1500]
    return "(identical)"


def _assert_unreadable(path: Path, what: str) -> None:
    """Readers find no dataset at ``path`` (as before the operation, when there was none)."""
    try:
        with xr.open_zarr(path) as ds:
            names = sorted(map(str, ds.variables))
    except Exception:
        return
    raise AssertionError(f"{what}: readers see a dataset with {names} at {path}; before the operation there was none")


def _digest(root: Path, only_metadata: bool = False) -> dict[str, str]:
    """sha256 of every file under ``root`` (or of its metadata documents only)."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and (not only_metadata or p.name in _META)
    }


# --- the operations ------------------------------------------------------------------------------


class Operation:
    """One operation of the matrix, bound to a working directory.

    ``root`` holds stores that no fault touches (the rechunk source); ``store_dir`` holds the store
    under fault (a tmpfs for the disk-full cells).
    """

    name = ""
    fail_at = 8  # the chunk write the faulty store refuses: past the coordinates, into the data

    def __init__(self, root: Path, store_dir: Path | None = None) -> None:
        self.root = Path(root)
        self.store_dir = Path(store_dir) if store_dir is not None else self.root
        self.path = self.store_dir / f"{self.name}.zarr"

    def setup(self) -> None:
        """Create the state before the operation."""

    def run(self, store: Any, **compute: Any) -> Any:
        """Run the operation on ``store`` (the path, or a store wrapping it)."""
        raise NotImplementedError

    def check_as_before(self) -> None:
        """After a failure: readers get what they got before (the per-operation guarantee)."""
        raise NotImplementedError

    def recover(self) -> str:
        """Do what a user does after the failure; return its name for the table."""
        self.run(str(self.path), scheduler="threads", num_workers=2)
        return "rerun"

    def check_correct(self) -> None:
        """The operation's result equals the oracle."""
        raise NotImplementedError


class WriteOp(Operation):
    """A fresh write (mode ``"w-"``) of a misaligned dataset."""

    name = "write"

    def run(self, store: Any, mode: str = "w-", **compute: Any) -> Any:
        return pz.to_zarr(make_ds(0, NT), store, mode=mode, encoding=ENCODING, **compute)

    def check_as_before(self) -> None:
        _assert_unreadable(self.path, "after a failed fresh write")

    def recover(self) -> str:
        try:
            self.run(str(self.path), scheduler="threads", num_workers=2)
        except ModeError as exc:
            if "mode='w'" not in str(exc):
                raise AssertionError(f"mode='w-' over an interrupted write must say to use mode='w': {exc}") from exc
        else:
            raise AssertionError("mode='w-' over an interrupted write must refuse (a ModeError saying to use mode='w')")
        self.run(str(self.path), mode="w", scheduler="threads", num_workers=2)
        return "rerun with mode='w'"

    def check_correct(self) -> None:
        _assert_reads(self.path, make_ds(0, NT).load(), "fresh write")


class RegionOp(Operation):
    """A region write of random rows 5:19 into a store of flat rows (edge cells shared)."""

    name = "region"

    def setup(self) -> None:
        pz.to_zarr(make_ds(0, NT, "flat"), str(self.path), encoding=ENCODING, scheduler="threads")
        self.meta_before = _digest(self.path, only_metadata=True)

    def _part(self) -> xr.Dataset:
        return make_ds(REGION.start, REGION.stop - REGION.start)

    def run(self, store: Any, **compute: Any) -> Any:
        return pz.to_zarr(self._part(), store, region={"time": REGION}, **compute)

    def check_as_before(self) -> None:
        after = _digest(self.path, only_metadata=True)
        if after != self.meta_before:
            changed = sorted(k for k in set(after) | set(self.meta_before) if after.get(k) != self.meta_before.get(k))
            raise AssertionError(f"a failed region write changed metadata documents {changed}")
        old = make_ds(0, NT, "flat").load()
        new = self._part().load()
        with xr.open_zarr(self.path) as ds:
            got = ds.load()
        if not got.time.equals(old.time) or dict(got.sizes) != dict(old.sizes):
            raise AssertionError(f"a failed region write changed the coordinates or sizes: {dict(got.sizes)}")
        for var in ("temp", "wind"):
            g, o, n = got[var].values, old[var].values, new[var].values
            outside = np.r_[0 : REGION.start, REGION.stop : NT]
            if not np.array_equal(g[outside], o[outside]):
                raise AssertionError(f"{var}: values outside the region changed after a failed region write")
            inside = g[REGION]
            ok = (inside == o[REGION]) | (inside == n)
            if not ok.all():
                bad = np.argwhere(~ok)[0]
                raise AssertionError(
                    f"{var}: value at region index {tuple(bad)} is neither old nor new ({inside[tuple(bad)]!r}) "
                    "after a failed region write"
                )

    def check_correct(self) -> None:
        expected = xr.concat(
            [make_ds(0, REGION.start, "flat"), self._part(), make_ds(REGION.stop, NT - REGION.stop, "flat")], "time"
        ).load()
        _assert_reads(self.path, expected, "region write")


class AppendOp(Operation):
    """An append of 26 rows to a store of 10 (its partial last cell is rewritten whole)."""

    name = "append"

    def setup(self) -> None:
        pz.append(make_ds(0, APPEND_BASE), str(self.path), "time", encoding=ENCODING, scheduler="threads")

    def run(self, store: Any, **compute: Any) -> Any:
        return pz.append(make_ds(APPEND_BASE, NT + 12 - APPEND_BASE), store, "time", **compute)

    def check_as_before(self) -> None:
        _assert_reads(self.path, make_ds(0, APPEND_BASE).load(), "after a failed append")

    def recover(self) -> str:
        result = self.run(str(self.path), scheduler="threads", num_workers=2)
        if not result.applied:
            raise AssertionError(f"the rerun of a failed append did not apply it: {result.message}")
        report = pz.repair(str(self.path))
        if not report.ok:
            raise AssertionError(f"repair after the rerun append found problems: {report}")
        return "rerun"

    def check_correct(self) -> None:
        _assert_reads(self.path, make_ds(0, NT + 12).load(), "append")


class RechunkOp(Operation):
    """A time-slice to pixel rechunk of a dataset (one pass for temp, two passes for wind)."""

    name = "rechunk"
    fail_at = 24  # tasks write several chunks each: let some tasks finish before the store breaks

    @property
    def source(self) -> Path:
        return self.root / "rechunk-source.zarr"

    def setup(self) -> None:
        enc = {"temp": {"chunks": (1, 16, 16)}, "wind": {"chunks": (1, 16, 16)}}
        pz.to_zarr(make_ds(0, NT), str(self.source), encoding=enc, scheduler="threads")
        self.source_before = _digest(self.source)

    def run(self, store: Any, **compute: Any) -> Any:
        with xr.open_zarr(self.source) as src:
            r = pz.rechunk(src, RECHUNK_TO, RECHUNK_MEM, store, threads_per_worker=2, target_task_bytes=1, min_tasks=1)
            r.execute(**compute)
            return r.result

    def check_as_before(self) -> None:
        if _digest(self.source) != self.source_before:
            raise AssertionError("a failed rechunk changed its source")
        _assert_unreadable(self.path, "after a failed rechunk")

    def recover(self) -> str:
        result = self.run(str(self.path), scheduler="threads", num_workers=2)
        if not result.resumed:
            raise AssertionError("the rerun did not resume the failed rechunk (its plan record was lost)")
        return f"resume ({result.tasks_skipped} of {result.tasks_run + result.tasks_skipped} tasks skipped)"

    def check_correct(self) -> None:
        _assert_reads(self.path, make_ds(0, NT).load(), "rechunk")
        with xr.open_zarr(self.path) as got:
            chunks = got["wind"].encoding["chunks"]
        if tuple(chunks) != (NT, 8, 8):
            raise AssertionError(f"rechunked wind has chunks {chunks}, not {(NT, 8, 8)}")
        if (self.path / ".parallelzarr-rechunk").exists():
            raise AssertionError("the rechunk left its markers behind")


OPERATIONS: dict[str, type[Operation]] = {c.name: c for c in (WriteOp, RegionOp, AppendOp, RechunkOp)}


# --- the faults ----------------------------------------------------------------------------------


@dataclass
class CellResult:
    """One cell of the matrix."""

    op: str
    fault: str
    outcome: str
    recovery: str = "none"
    seconds: float = 0.0
    recovery_seconds: float = 0.0
    error: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip()}"


def _check_clean_error(exc: BaseException, op: str, cause: str | list[str]) -> None:
    """The error a user sees is documented and says what happened and what to do.

    ``cause``: text the message must contain, or a list of which it must contain one (with several
    threads, more than one write can fail and whichever fails first is reported).
    """
    if not isinstance(exc, StoreWriteError):
        raise AssertionError(f"{op}: expected a StoreWriteError, got {_first_line(exc)}") from exc
    msg = str(exc)
    causes = [cause] if isinstance(cause, str) else cause
    if not any(c in msg for c in causes):
        raise AssertionError(f"{op}: the error names none of the causes {causes!r}: {msg}") from exc
    if not any(step in msg for step in ("rerun", "repair", "resume")):
        raise AssertionError(f"{op}: the error names no recovery step: {msg}") from exc


def _recover(op: Operation, result: CellResult) -> None:
    t = time.perf_counter()
    result.recovery = op.recover()
    result.recovery_seconds = time.perf_counter() - t
    op.check_correct()


def worker_kill(op: Operation, client: Any) -> CellResult:
    """SIGKILL one worker process of ``client``'s LocalCluster after its K-th chunk write."""
    result = CellResult(op.name, "worker-kill", FAIL)
    op.setup()
    # The cluster's own size, not the scheduler's current count: a replacement from an earlier cell may not
    # have registered yet (the count read 0 once on Python 3.13 under load, and the wait below refused it).
    cluster = getattr(client, "cluster", None)
    n_workers = max(1, len(cluster.workers) if cluster is not None else len(client.scheduler_info()["workers"]))
    client.wait_for_workers(n_workers, timeout=60)
    once = op.root / "worker-killed"
    client.run(faults.arm, f"write:{KILL_AFTER}", str(once))
    try:
        op.run(str(op.path), scheduler=client)
    finally:
        client.run(faults.disarm)
    if not once.exists():
        raise AssertionError("no worker was killed: the fault did not fire")
    client.wait_for_workers(n_workers, timeout=60)  # the nanny's replacement, for the next cell
    result.detail = f"a worker died after its chunk write #{KILL_AFTER}; distributed re-ran its tasks"
    op.check_correct()
    result.outcome = CORRECT
    return result


_CHILD = Path(__file__).resolve()


def coordinator_kill(op: Operation) -> CellResult:
    """Run the operation in a subprocess that SIGKILLs itself after its K-th chunk write."""
    result = CellResult(op.name, "coordinator-kill", FAIL)
    op.setup()
    env = {**os.environ, "PARALLELZARR_FAULT": f"write:{KILL_AFTER}"}
    env.pop("PARALLELZARR_FAULT_ONCE", None)
    proc = subprocess.run(
        [sys.executable, str(_CHILD), op.name, str(op.root), str(op.store_dir)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    if proc.returncode != -9:
        raise AssertionError(f"the coordinating process was not killed mid-run (exit {proc.returncode}): {proc.stderr[-2000:]}")
    result.error = f"process SIGKILLed after chunk write #{KILL_AFTER}"
    op.check_as_before()
    _recover(op, result)
    result.outcome = RECOVERABLE
    return result


def store_error(op: Operation, fail_at: int | None = None) -> CellResult:
    """Run the operation on a store that raises ``OSError`` on its ``fail_at``-th chunk write (and after)."""
    fail_at = fail_at or op.fail_at
    result = CellResult(op.name, "store-error", FAIL)
    op.setup()
    store = faults.FaultyStore(zarr.storage.LocalStore(op.path), fail_at=fail_at)
    try:
        op.run(store, scheduler="threads", num_workers=2)
    except Exception as exc:
        result.error = _first_line(exc)
        if not store.failed_keys:
            raise AssertionError(f"the operation failed before the fault: {result.error}") from exc
        _check_clean_error(exc, op.name, list(store.failed_keys))
    else:
        raise AssertionError(f"the operation succeeded although the store refused chunk write #{fail_at}")
    op.check_as_before()
    _recover(op, result)
    result.outcome = RECOVERABLE
    return result


@contextlib.contextmanager
def tmpfs(mountpoint: Path, size: int) -> Iterator[Callable[[int], None]]:
    """Mount a tmpfs of ``size`` bytes at ``mountpoint``; yield a function that resizes it.

    Raises :class:`CellSkip` (with the reason) when it cannot be mounted here.
    """
    if sys.platform != "linux":
        raise CellSkip(f"tmpfs needs Linux, this is {sys.platform}")
    if shutil.which("mount") is None:
        raise CellSkip("no mount command on this machine")
    mountpoint.mkdir(parents=True, exist_ok=True)

    def _mount(args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)

    def _kib(nbytes: int) -> str:
        return f"size={max(4, -(-nbytes // 4096) * 4)}k"

    proc = _mount(["-t", "tmpfs", "-o", _kib(size), "tmpfs", str(mountpoint)])
    if proc.returncode != 0:
        who = "" if os.geteuid() == 0 else " (not running as root)"
        raise CellSkip(f"cannot mount a tmpfs at {mountpoint}{who}: {proc.stderr.strip() or proc.returncode}")

    def resize(nbytes: int) -> None:
        p = _mount(["-o", f"remount,{_kib(nbytes)}", str(mountpoint)])
        if p.returncode != 0:
            raise RuntimeError(f"cannot resize the tmpfs at {mountpoint}: {p.stderr.strip()}")

    try:
        yield resize
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=30)


def _used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def disk_full(op_cls: type[Operation], root: Path) -> CellResult:
    """Run the operation on a tmpfs with room for about half of what it writes.

    A dry run on a roomy tmpfs measures what the operation adds; the real run then gets the
    before-state plus half of that. Recovery: grow the filesystem (the fault removed), then recover.
    """
    result = CellResult(op_cls.name, "disk-full", FAIL)
    mnt = root / "tmpfs"
    roomy = 256 * 2**20
    with tmpfs(mnt, roomy) as resize:
        dry = op_cls(root / "dry", mnt / "dry")
        dry.root.mkdir(parents=True, exist_ok=True)
        dry.store_dir.mkdir(parents=True, exist_ok=True)
        dry.setup()
        before = _used(mnt)
        dry.run(str(dry.path), scheduler="threads", num_workers=2)
        grows = _used(mnt) - before
        shutil.rmtree(dry.root)
        shutil.rmtree(dry.store_dir)

        op = op_cls(root, mnt / "real")
        op.store_dir.mkdir(parents=True, exist_ok=True)
        op.setup()
        size = _used(mnt) + grows // 2
        resize(size)
        result.detail = f"tmpfs of {size // 1024} KiB; the operation needs {grows // 1024} KiB more than the store before"
        try:
            op.run(str(op.path), scheduler="threads", num_workers=2)
        except Exception as exc:
            result.error = _first_line(exc)
            _check_clean_error(exc, op.name, "No space left on device")
        else:
            raise AssertionError(f"the operation succeeded on a full filesystem ({result.detail})")
        op.check_as_before()
        resize(roomy)
        _recover(op, result)
    result.outcome = RECOVERABLE
    return result


def run_cell(op_name: str, fault: str, root: Path, client: Any = None, *, strict: bool = True) -> CellResult:
    """Run one cell in the empty directory ``root``; time it.

    With ``strict`` a failed check raises (for pytest); otherwise it is reported as ``FAIL`` with
    the reason in ``detail`` (for the benchmark table). :class:`CellSkip` always propagates.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cls = OPERATIONS[op_name]
    start = time.perf_counter()
    try:
        if fault == "worker-kill":
            if client is None:
                raise ValueError("the worker-kill cells need a distributed Client")
            result = worker_kill(cls(root), client)
        elif fault == "coordinator-kill":
            result = coordinator_kill(cls(root))
        elif fault == "store-error":
            result = store_error(cls(root))
        elif fault == "disk-full":
            result = disk_full(cls, root)
        else:
            raise ValueError(f"unknown fault {fault!r}; faults are {FAULTS}")
    except CellSkip:
        raise
    except Exception as exc:
        if strict:
            raise
        result = CellResult(op_name, fault, FAIL, detail="".join(traceback.format_exception_only(exc)).strip()[-2000:])
    result.seconds = time.perf_counter() - start
    return result


def _child(op_name: str, root: str, store_dir: str) -> None:
    """Subprocess body of the coordinator-kill cells: run the operation with threads."""
    op = OPERATIONS[op_name](Path(root), Path(store_dir))
    op.run(str(op.path), scheduler="threads", num_workers=2)
    print("finished (the fault never fired)")


if __name__ == "__main__":
    _child(*sys.argv[1:4])
