"""Benchmark parallelzarr.rechunk against its peers on the same bytes.

Usage::

    python benchmarks/bench_rechunk.py            # 2GB array
    python benchmarks/bench_rechunk.py --size 200MB

Data: float32 smooth field plus noise, shape (T, 1000, 1000) (T from ``--size``),
source chunks (10, 500, 500) in zarr format 2 (so rechunker 0.5.4, which needs
``zarr<3``, reads the same bytes).  Targets are zarr format 3 with default codecs,
except rechunker's (zarr 2, its default codecs).

Cases: (a) time-to-pixel -> (T, 25, 25); (b) milder -> (100, 100, 100);
(c) out of core: (a) with a budget of 1/8 of the array.

Peers: parallelzarr, dask rechunk + to_zarr (threads), dask P2P rechunk on a
LocalCluster of 2 workers, rechunker 0.5.4 (own venv), and the floor (read all into
memory, write with the target chunks).  Every peer runs in its own child process; a
sampler thread records the peak RSS of the child's whole process tree and its I/O
(read/write syscall bytes).  Prints a table, writes benchmarks/results/rechunk.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
RECHUNKER_VENV = HERE / ".venv-rechunker"
THREADS = os.cpu_count() or 2
PEERS = ["parallelzarr", "dask-threads", "dask-p2p", "rechunker", "floor"]


def parse_size(text: str) -> int:
    """Bytes from ``"2GB"``/``"200MB"``."""
    import dask.utils

    return int(dask.utils.parse_bytes(text))


# --------------------------------------------------------------------------- data


def make_source(path: Path, shape: tuple[int, int, int], chunks: tuple[int, int, int]) -> None:
    """Write the float32 smooth field plus noise, slab by slab, in zarr format 2."""
    import numpy as np
    import zarr

    arr = zarr.create_array(str(path), shape=shape, chunks=chunks, dtype="f4", zarr_format=2,
                            overwrite=True)
    rng = np.random.default_rng(42)
    y = np.linspace(0, 4 * np.pi, shape[1], dtype="f4")[:, None]
    x = np.linspace(0, 6 * np.pi, shape[2], dtype="f4")[None, :]
    step = chunks[0]
    for t0 in range(0, shape[0], step):
        t = np.arange(t0, min(t0 + step, shape[0]), dtype="f4")[:, None, None]
        field = 280 + 15 * np.sin(y + t / 50) * np.cos(x - t / 30)
        arr[t0:t0 + len(t)] = (field + rng.normal(0, 0.5, field.shape)).astype("f4")


# --------------------------------------------------------------------------- peers (child side)


def run_peer(name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Run one peer in this (child) process; return facts to report."""
    src, tgt = cfg.get("source"), cfg.get("target")
    chunks = tuple(cfg.get("target_chunks", ()))
    info: dict[str, Any] = {}
    if name == "idle":  # interpreter + libraries only: the RSS every peer starts from
        import dask.array  # noqa: F401
        import distributed  # noqa: F401

        import parallelzarr  # noqa: F401

        time.sleep(0.3)  # long enough for the sampler to see it
    elif name == "parallelzarr":
        import zarr

        from parallelzarr import rechunk

        r = rechunk(zarr.open_array(src, mode="r"), chunks, cfg["task_mem"], tgt,
                    target_options={"zarr_format": 3}, threads_per_worker=THREADS)
        print(r.plan, file=sys.stderr)
        r.execute(scheduler="threads")
        res = r.result
        info = {"passes": r.plan.passes, "tasks": r.plan.n_tasks, "plan_task_memory": r.plan.task_memory,
                "plan_worker_memory": r.plan.worker_memory, "plan_bytes_read": r.plan.bytes_read,
                "plan_bytes_written": r.plan.bytes_written, "tasks_run": res.tasks_run}
    elif name in ("dask-threads", "dask-p2p"):
        import dask
        import dask.array as da

        x = da.from_zarr(src)
        if name == "dask-threads":
            with dask.config.set(scheduler="threads"):
                x.rechunk(chunks).to_zarr(tgt, overwrite=True, zarr_format=3)
        else:
            from distributed import Client, LocalCluster

            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                              dashboard_address=None) as cluster, Client(cluster):
                with dask.config.set({"array.rechunk.method": "p2p"}):
                    x.rechunk(chunks).to_zarr(tgt, overwrite=True, zarr_format=3)
    elif name == "floor":
        import zarr

        data = zarr.open_array(src, mode="r")[...]
        zarr.create_array(tgt, data=data, chunks=chunks, zarr_format=3, overwrite=True)
    else:
        raise SystemExit(f"unknown peer {name}")
    return info


# --------------------------------------------------------------------------- parent side


class TreeSampler(threading.Thread):
    """Sample RSS (summed over the process tree) and per-process I/O counters."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = 0
        self.io: dict[int, tuple[int, int]] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            rss = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                    io = p.io_counters()
                    self.io[p.pid] = (io.read_chars, io.write_chars)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak_rss = max(self.peak_rss, rss)
            time.sleep(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    @property
    def bytes_read(self) -> int:
        return sum(r for r, _ in self.io.values())

    @property
    def bytes_written(self) -> int:
        return sum(w for _, w in self.io.values())


def measure(cmd: list[str], timeout: float) -> dict[str, Any]:
    """Run ``cmd``; return wall time, peak tree RSS, I/O bytes, status and its JSON output."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
        status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        out, err = proc.communicate()
        status = f"failed (timeout {timeout:.0f}s)"
    wall = time.perf_counter() - start
    sampler.stop()
    info: dict[str, Any] = {}
    for line in out.splitlines()[::-1]:
        if line.startswith("{"):
            info = json.loads(line)
            break
    res = {"status": status, "wall_s": round(wall, 2), "peak_rss": sampler.peak_rss,
           "bytes_read": sampler.bytes_read, "bytes_written": sampler.bytes_written, **info}
    if status != "ok":
        res["error"] = err.strip().splitlines()[-1] if err.strip() else ""
    return res


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1024
    return str(n)


def verify(target: str, source: str, sample: int = 4) -> bool:
    """Spot-check a target against the source on a few slabs."""
    import numpy as np
    import zarr

    s = zarr.open_array(source, mode="r")
    t = zarr.open_array(target, mode="r")
    if t.shape != s.shape:
        return False
    n = s.shape[1]
    for i in np.linspace(0, n - 1, sample).astype(int):
        if not np.array_equal(s[:, i, :], t[:, i, :]):
            return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="2GB", help="array size, e.g. 2GB or 200MB")
    ap.add_argument("--cases", default="a,b,c")
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--workdir", default=None, help="scratch directory (default: a temp dir)")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--out", default=str(HERE / "results" / "rechunk.json"))
    ap.add_argument("--peer", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.peer:  # child mode
        info = run_peer(args.peer, json.loads(args.config))
        print(json.dumps(info))
        return

    size = parse_size(args.size)
    ny = nx = 1000
    nt = max(10, round(size / (4 * ny * nx) / 10) * 10)
    shape = (nt, ny, nx)
    nbytes = math.prod(shape) * 4
    src_chunks = (10, 500, 500)
    cases = {
        "a": {"title": "time-to-pixel", "target_chunks": [nt, 25, 25], "budget": nbytes // 2},
        "b": {"title": "milder", "target_chunks": [min(100, nt), 100, 100], "budget": nbytes // 2},
        "c": {"title": "out-of-core (budget = array/8)", "target_chunks": [nt, 25, 25], "budget": nbytes // 8},
    }
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-rechunk-"))
    work.mkdir(parents=True, exist_ok=True)
    source = work / "source.zarr"
    print(f"writing source {shape} float32 ({fmt_bytes(nbytes)}), chunks {src_chunks}, zarr format 2 ...")
    make_source(source, shape, src_chunks)

    rechunker_python = RECHUNKER_VENV / "bin" / "python"
    baseline = {"main venv": measure([sys.executable, str(Path(__file__).resolve()), "--peer", "idle",
                                      "--config", "{}"], 120)["peak_rss"]}
    if rechunker_python.exists():
        baseline["rechunker venv"] = measure(
            [str(rechunker_python), "-c", "import zarr, dask.array, rechunker, time; time.sleep(0.3)"], 120
        )["peak_rss"]
    rows: list[dict[str, Any]] = []
    for key in args.cases.split(","):
        case = cases[key]
        budget = case["budget"]
        for peer in args.peers.split(","):
            target, temp = work / f"{key}-{peer}.zarr", work / f"{key}-{peer}-tmp.zarr"
            for p in (target, temp):
                shutil.rmtree(p, ignore_errors=True)
            cfg = {"source": str(source), "target": str(target), "temp": str(temp),
                   "target_chunks": case["target_chunks"], "task_mem": budget // THREADS}
            if peer == "rechunker":
                if not rechunker_python.exists():
                    rows.append({"case": key, "peer": peer, "status": "skipped (no .venv-rechunker)"})
                    continue
                cmd = [str(rechunker_python), str(HERE / "rechunker_peer.py"), str(source), str(target),
                       str(temp), json.dumps(case["target_chunks"]), str(budget // THREADS)]
            else:
                cmd = [sys.executable, str(Path(__file__).resolve()), "--peer", peer, "--config",
                       json.dumps(cfg)]
            print(f"  case {key} ({case['title']}): {peer} ...", flush=True)
            # Flush the previous peer's dirty pages so it does not slow this one down.
            os.sync()
            time.sleep(1)
            res = measure(cmd, args.timeout)
            if res["status"] == "ok":
                res["correct"] = verify(str(target), str(source))
            row = {"case": key, "title": case["title"], "peer": peer, "budget": budget, **res}
            rows.append(row)
            print(f"    {row['status']} in {row.get('wall_s')}s, peak RSS {fmt_bytes(row.get('peak_rss', 0))}",
                  flush=True)
            for p in (target, temp):
                shutil.rmtree(p, ignore_errors=True)

    # Ratios within each case: against the fastest non-floor peer and against the floor.
    for key in args.cases.split(","):
        ok = [r for r in rows if r["case"] == key and r.get("status") == "ok"]
        peers = [r for r in ok if r["peer"] != "floor"]
        fastest = min((r["wall_s"] for r in peers), default=None)
        floor = next((r["wall_s"] for r in ok if r["peer"] == "floor"), None)
        for r in ok:
            r["vs_fastest"] = round(r["wall_s"] / fastest, 2) if fastest else None
            r["vs_floor"] = round(r["wall_s"] / floor, 2) if floor else None

    header = (f"{'case':<4} {'peer':<13} {'status':<22} {'wall s':>8} {'peak RSS':>10} {'budget':>10} "
              f"{'read':>10} {'written':>10} {'/fastest':>8} {'/floor':>7} {'ok':>3}")
    print()
    print(f"rechunk benchmark: {shape} float32 = {fmt_bytes(nbytes)}, source chunks {src_chunks}, "
          f"{THREADS} cores; budget = whole process tree (per task: budget/{THREADS} for parallelzarr and "
          f"rechunker); idle interpreter RSS: "
          + ", ".join(f"{k} {fmt_bytes(v)}" for k, v in baseline.items()))
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['case']:<4} {r['peer']:<13} {r['status'][:22]:<22} {r.get('wall_s', float('nan')):>8} "
              f"{fmt_bytes(r.get('peak_rss', 0)):>10} {fmt_bytes(r.get('budget', 0)):>10} "
              f"{fmt_bytes(r.get('bytes_read', 0)):>10} {fmt_bytes(r.get('bytes_written', 0)):>10} "
              f"{str(r.get('vs_fastest', '-')):>8} {str(r.get('vs_floor', '-')):>7} "
              f"{'y' if r.get('correct') else '-':>3}")
    for r in rows:
        if r.get("error"):
            print(f"  {r['case']}/{r['peer']}: {r['error'][:300]}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"shape": shape, "dtype": "float32", "nbytes": nbytes, "source_chunks": src_chunks,
                               "threads": THREADS, "cases": cases, "baseline_rss": baseline,
                               "rows": rows}, indent=2))
    print(f"\nwrote {out}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
