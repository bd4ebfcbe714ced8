"""Benchmark parallelzarr.rechunk against rechunker 0.5.4, dask and a floor, interleaved.

Usage::

    python benchmarks/bench_rechunk.py --quick                 # ~1 min: 128 MB, one budget, 1 rep
    python benchmarks/bench_rechunk.py                         # 1 GB, budgets 64MB,256MB,1GB, 3 reps
    python benchmarks/bench_rechunk.py --before /tmp/pz-before # adds the old engine as a contender

Data: float32 smooth field plus noise, shape (T, 500, 500) (T from ``--size``), source chunks
(10, 500, 500) in zarr format 2 with zarr's default codec (Zstd level 0), so rechunker 0.5.4
(``zarr<3``, its own venv ``benchmarks/.venv-rechunker``) reads the same bytes. Target chunks
(T, 25, 25): the time-series rechunk that needs two passes.

Modes
-----
parity
    Every tool gets the same target and temp codec (Blosc lz4, clevel 5, byte shuffle) and writes
    zarr format 2.
defaults
    Every tool as it comes: parallelzarr keeps the source's codecs (intermediates as its default),
    rechunker writes zarr 2.18's default (Blosc lz4), dask ``to_zarr`` writes zarr 3 defaults. The
    floors then use Zstd level 0 (the source's codec, which parallelzarr's target keeps) throughout.

Contenders: ``parallelzarr`` (``max_mem`` = the budget), ``rechunker`` (``max_mem`` = the budget),
``dask`` (``rechunk().to_zarr``, threads, no budget), ``floor`` (read and decode every source chunk
once, encode and write every target chunk once, same codecs, the same 2 threads, numcodecs and
files directly: no intermediate, no framework), ``floor-2pass`` (the same through an
intermediate in the mode's codec: the least work of a bounded-memory rechunk), with ``--before DIR`` ``pz-before`` (the
parallelzarr package found in DIR), and on request (``--peers``) ``pz-lz4temp`` (parallelzarr with
lz4 intermediates in defaults mode: the proposed default). Runs are interleaved: each repetition runs every contender of
every mode and budget, in an order rotated per repetition. Each run is a child process; the parent
records wall seconds, CPU seconds (user + system of the child and its children, from ``wait4``),
peak RSS of the child's process tree, and the load average. parallelzarr children also report the
CPU of zarr's event-loop thread (per-thread ``/proc`` stats) as a share of their CPU.

Prints medians, ratios (vs the fastest peer, vs the floor) and the issue-15 aims as a table; writes
``benchmarks/results/rechunk.json`` (``--report FILE`` re-prints one). A time aim missed is
``BOUNDED`` when it needs less time than the two-pass floor and the budget cannot hold one pass.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
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
THREADS = 2
PLANE = (500, 500)
SOURCE_CHUNKS = (10, 500, 500)
FLOORS = ("floor", "floor-2pass")
LZ4 = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}


def parse_size(text: str) -> int:
    """Bytes from ``"1GB"``/``"200MB"``."""
    import dask.utils

    return int(dask.utils.parse_bytes(text))


def fmt_bytes(n: float) -> str:
    """``"624.0MiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1024
    return str(n)


# --------------------------------------------------------------------------- data


def make_source(path: Path, shape: tuple[int, int, int]) -> None:
    """Write the float32 smooth field plus noise, slab by slab, in zarr format 2 (Zstd level 0)."""
    import numpy as np
    import zarr

    arr = zarr.create_array(str(path), shape=shape, chunks=SOURCE_CHUNKS, dtype="f4", zarr_format=2, overwrite=True)
    rng = np.random.default_rng(42)
    y = np.linspace(0, 4 * np.pi, shape[1], dtype="f4")[:, None]
    x = np.linspace(0, 6 * np.pi, shape[2], dtype="f4")[None, :]
    step = SOURCE_CHUNKS[0]
    for t0 in range(0, shape[0], step):
        t = np.arange(t0, min(t0 + step, shape[0]), dtype="f4")[:, None, None]
        field = 280 + 15 * np.sin(y + t / 50) * np.cos(x - t / 30)
        arr[t0:t0 + len(t)] = (field + rng.normal(0, 0.5, field.shape)).astype("f4")


# --------------------------------------------------------------------------- child side


def _thread_cpu() -> dict[int, float]:
    """CPU seconds per thread of this process (Linux /proc)."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return out


def _loop_share(before: dict[int, float]) -> dict[str, Any]:
    """CPU of zarr's event-loop thread since ``before``, and its share of the process's CPU."""
    from zarr.core import sync as zsync

    after = _thread_cpu()
    thread = zsync.iothread[0]
    loop = 0.0
    if thread is not None and thread.native_id in after:
        loop = after[thread.native_id] - before.get(thread.native_id, 0.0)
    total = sum(after.values()) - sum(v for k, v in before.items() if k in after)
    return {"loop_cpu_s": round(loop, 3), "loop_share": round(loop / total, 4) if total > 0 else None}


def _numcodec(spec: dict[str, Any] | None) -> Any:
    import numcodecs

    return None if spec is None else numcodecs.get_codec(dict(spec))


def floor_run(src: str, tgt: str, chunks: tuple[int, ...], codec: dict[str, Any] | None) -> dict[str, Any]:
    """Read+decode every source chunk once into memory, then encode+write every target chunk once.

    Two threads, numcodecs and plain files: the least work any zarr v2 rechunk with these codecs
    can do (it skips the intermediate a bounded-memory rechunk needs).
    """
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import zarr

    s = zarr.open_array(src, mode="r")
    shape, schunks = s.shape, s.chunks
    dec = _numcodec(s.metadata.compressor.get_config()) if s.metadata.compressor else None
    data = np.empty(shape, dtype="f4")
    sep = s.metadata.dimension_separator

    def grid(sh: tuple[int, ...], ch: tuple[int, ...]) -> list[tuple[int, ...]]:
        import itertools

        return list(itertools.product(*(range(-(-n // c)) for n, c in zip(sh, ch, strict=True))))

    def read_one(idx: tuple[int, ...]) -> None:
        with open(os.path.join(src, sep.join(map(str, idx))), "rb") as f:
            raw = f.read()
        buf = np.frombuffer(dec.decode(raw) if dec else raw, dtype="f4").reshape(schunks)
        sel = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(idx, schunks, shape, strict=True))
        data[sel] = buf[tuple(slice(0, x.stop - x.start) for x in sel)]

    t = zarr.create_array(tgt, shape=shape, chunks=chunks, dtype="f4", zarr_format=2, overwrite=True,
                          compressors=_numcodec(codec))
    enc = _numcodec(codec)
    tsep = t.metadata.dimension_separator

    def write_one(idx: tuple[int, ...]) -> None:
        sel = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(idx, chunks, shape, strict=True))
        block = np.zeros(chunks, dtype="f4")
        block[tuple(slice(0, x.stop - x.start) for x in sel)] = data[sel]
        out = enc.encode(block) if enc else block.tobytes()
        with open(os.path.join(tgt, tsep.join(map(str, idx))), "wb") as f:
            f.write(out)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(read_one, grid(shape, schunks)))
        list(pool.map(write_one, grid(shape, chunks)))
    return {}


def floor_two_pass(src: str, tgt: str, temp: str, chunks: tuple[int, ...], codec: dict[str, Any] | None) -> dict[str, Any]:
    """The least work of a bounded-memory (two-pass) rechunk: decode+encode through an intermediate.

    Stage 1 decodes each source chunk and writes it as intermediate chunks (10, 125, 125) with the
    temp codec; stage 2 reads each (T, 125, 125) column of intermediates and writes its target
    chunks. Two threads, numcodecs and plain files, every chunk read and written once per pass.
    """
    import itertools
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import zarr

    s = zarr.open_array(src, mode="r")
    shape, schunks = s.shape, s.chunks
    dec = _numcodec(s.metadata.compressor.get_config()) if s.metadata.compressor else None
    enc = _numcodec(codec)
    mid = (SOURCE_CHUNKS[0], 125, 125)
    os.makedirs(temp, exist_ok=True)
    t = zarr.create_array(tgt, shape=shape, chunks=chunks, dtype="f4", zarr_format=2, overwrite=True,
                          compressors=_numcodec(codec))
    sep = "."

    def stage1(idx: tuple[int, ...]) -> None:
        with open(os.path.join(src, sep.join(map(str, idx))), "rb") as f:
            raw = f.read()
        buf = np.frombuffer(dec.decode(raw) if dec else raw, dtype="f4").reshape(schunks)
        t0 = idx[0] * schunks[0]
        for j, k in itertools.product(range(shape[1] // mid[1]), range(shape[2] // mid[2])):
            piece = np.ascontiguousarray(buf[:, j * mid[1]:(j + 1) * mid[1], k * mid[2]:(k + 1) * mid[2]])
            # intermediate object (t0 // 10, j, k): each source slab is its own temp object
            with open(os.path.join(temp, f"{t0 // schunks[0]}.{j}.{k}"), "wb") as f:
                f.write(enc.encode(piece) if enc else piece.tobytes())

    def stage2(jk: tuple[int, int]) -> None:
        j, k = jk
        col = np.empty((shape[0], mid[1], mid[2]), dtype="f4")
        for i in range(-(-shape[0] // schunks[0])):
            with open(os.path.join(temp, f"{i}.{j}.{k}"), "rb") as f:
                raw = f.read()
            n = min(schunks[0], shape[0] - i * schunks[0])
            col[i * schunks[0]:i * schunks[0] + n] = np.frombuffer(enc.decode(raw) if enc else raw, dtype="f4").reshape(
                (schunks[0], mid[1], mid[2]))[:n]
        for a, b in itertools.product(range(mid[1] // chunks[1]), range(mid[2] // chunks[2])):
            piece = np.ascontiguousarray(col[:, a * chunks[1]:(a + 1) * chunks[1], b * chunks[2]:(b + 1) * chunks[2]])
            key = f"0.{j * (mid[1] // chunks[1]) + a}.{k * (mid[2] // chunks[2]) + b}"
            with open(os.path.join(tgt, key), "wb") as f:
                f.write(enc.encode(piece) if enc else piece.tobytes())

    del t
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(stage1, list(itertools.product(*(range(-(-n // c)) for n, c in zip(shape, schunks, strict=True))))))
        list(pool.map(stage2, list(itertools.product(range(shape[1] // mid[1]), range(shape[2] // mid[2])))))
    return {}


def run_peer(name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Run one contender in this (child) process; return facts to report."""
    src, tgt, temp = cfg["source"], cfg["target"], cfg["temp"]
    chunks = tuple(cfg["target_chunks"])
    parity = cfg["mode"] == "parity"
    info: dict[str, Any] = {}
    if name == "idle":  # interpreter + libraries only: the RSS every contender starts from
        import dask.array  # noqa: F401
        import zarr  # noqa: F401

        import parallelzarr  # noqa: F401

        time.sleep(0.3)
    elif name in ("parallelzarr", "pz-before", "pz-lz4temp"):
        if name == "pz-before":
            sys.path.insert(0, cfg["before"])
        import numcodecs
        import zarr

        import parallelzarr
        from parallelzarr import rechunk

        info["package"] = os.path.dirname(parallelzarr.__file__)
        zarr.config.set({"threading.max_workers": THREADS})
        src_arr = zarr.open_array(src, mode="r")
        kw: dict[str, Any] = {}
        if parity:
            kw = {"target_options": {"compressor": numcodecs.get_codec(dict(LZ4))},
                  "temp_options": {"compressors": numcodecs.get_codec(dict(LZ4))}}
        elif name == "pz-lz4temp":  # defaults, but lz4 intermediates (the proposed default, temp_codecs.py)
            kw = {"temp_options": {"compressors": numcodecs.get_codec(dict(LZ4))}}
        before, t0, c0 = _thread_cpu(), time.perf_counter(), _cpu()
        r = rechunk(src_arr, chunks, cfg["budget"], tgt, temp_store=temp, threads_per_worker=THREADS, **kw)
        print(r.plan, file=sys.stderr)
        r.execute(scheduler="threads", num_workers=THREADS)  # returns the target; figures in r.result
        info.update({"run_s": round(time.perf_counter() - t0, 3), "run_cpu_s": round(_cpu() - c0, 3)})
        info.update(_loop_share(before))
        info.update({"passes": r.plan.passes, "tasks": r.plan.n_tasks, "plan_worker_memory": r.plan.worker_memory,
                     "tasks_run": r.result.tasks_run})
    elif name == "dask":
        import dask
        import dask.array as da
        import numcodecs
        import zarr

        zarr.config.set({"threading.max_workers": THREADS})
        before, t0, c0 = _thread_cpu(), time.perf_counter(), _cpu()
        x = da.from_zarr(src)
        with dask.config.set(scheduler="threads", num_workers=THREADS):
            if parity:
                out = zarr.create_array(tgt, shape=x.shape, chunks=chunks, dtype="f4", zarr_format=2,
                                        compressors=numcodecs.get_codec(dict(LZ4)), overwrite=True)
                x.rechunk(chunks).to_zarr(out)
            else:
                x.rechunk(chunks).to_zarr(tgt, overwrite=True)
        info.update({"run_s": round(time.perf_counter() - t0, 3), "run_cpu_s": round(_cpu() - c0, 3)})
        info.update(_loop_share(before))
    elif name in ("floor", "floor-2pass"):
        codec = dict(LZ4) if parity else {"id": "zstd", "level": 0}
        t0, c0 = time.perf_counter(), _cpu()
        info = floor_run(src, tgt, chunks, codec) if name == "floor" else floor_two_pass(src, tgt, temp, chunks, codec)
        info.update({"run_s": round(time.perf_counter() - t0, 3), "run_cpu_s": round(_cpu() - c0, 3)})
    else:
        raise SystemExit(f"unknown contender {name}")
    return info


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


# --------------------------------------------------------------------------- parent side


class TreeSampler(threading.Thread):
    """Sample RSS summed over a process tree."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = 0
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
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak_rss = max(self.peak_rss, rss)
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def run_child(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd``; wall, CPU (wait4 rusage: the child and its waited-for children), peak tree RSS."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        deadline = start + timeout
        status = None
        while status is None:
            pid, code, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status = code
                break
            if time.perf_counter() > deadline:
                for child in psutil.Process(proc.pid).children(recursive=True):
                    child.kill()
                proc.kill()
                pid, code, usage = os.wait4(proc.pid, 0)
                status = -1
                break
            time.sleep(0.02)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status) if status != -1 else -9
        sampler.stop()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    info: dict[str, Any] = {}
    for line in stdout.splitlines()[::-1]:
        if line.startswith("{"):
            info = json.loads(line)
            break
    ok = proc.returncode == 0
    res = {"status": "ok" if ok else f"failed (exit {proc.returncode})", "wall_s": round(wall, 3),
           "cpu_s": round(usage.ru_utime + usage.ru_stime, 3), "peak_rss": sampler.peak_rss,
           "load": round(os.getloadavg()[0], 2), **info}
    if not ok:
        res["error"] = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    return res


def verify(target: str, source: str, sample: int = 4) -> bool:
    """Spot-check a target against the source on a few slabs (any zarr format)."""
    import numpy as np
    import zarr

    s = zarr.open_array(source, mode="r")
    t = zarr.open_array(target, mode="r")
    if t.shape != s.shape:
        return False
    for i in np.linspace(0, s.shape[1] - 1, sample).astype(int):
        if not np.array_equal(s[:, i, :], t[:, i, :]):
            return False
    return True


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarise(rows: list[dict[str, Any]], budgets: list[int], modes: list[str]) -> list[dict[str, Any]]:
    """Medians per (mode, budget, contender), with ratios against the fastest peer and the floor."""
    out = []
    for mode in modes:
        for budget in budgets:
            def pick(peer: str, mode: str = mode, budget: int = budget) -> list[dict[str, Any]]:
                # dask and the floor have no budget: their runs count for every budget.
                return [r for r in rows if r["mode"] == mode and r["peer"] == peer and r["status"] == "ok"
                        and (r["budget"] == budget or r["budget"] is None)]

            med = {}
            for peer in sorted({r["peer"] for r in rows if r["mode"] == mode}):
                got = pick(peer)
                if got:
                    med[peer] = {k: _median(got, k) for k in ("run_s", "run_cpu_s", "wall_s", "cpu_s", "peak_rss",
                                                              "loop_share")}
                    med[peer]["runs"] = len(got)
                    med[peer]["correct"] = all(r.get("correct") for r in got)
            others = [p for p in med if p not in FLOORS + ("parallelzarr", "pz-before", "pz-lz4temp")]
            fastest = min(others, key=lambda p: med[p]["run_s"], default=None)
            floor = med.get("floor")
            floor2 = med.get("floor-2pass")
            for peer, m in med.items():
                row = {"mode": mode, "budget": budget, "peer": peer, **m}
                if fastest:
                    row["fastest_peer"] = fastest
                    row["time_vs_fastest"] = round(m["run_s"] / med[fastest]["run_s"], 2)
                    row["rss_vs_fastest"] = round(m["peak_rss"] / med[fastest]["peak_rss"], 2)
                if floor:
                    row["time_vs_floor"] = round(m["run_s"] / floor["run_s"], 2)
                    row["cpu_vs_floor"] = round(m["run_cpu_s"] / floor["run_cpu_s"], 2)
                if floor2:
                    row["time_vs_floor2"] = round(m["run_s"] / floor2["run_s"], 2)
                out.append(row)
    return out


#: Contenders run with ``max_mem`` = the budget: bounded-memory rechunks, as the two-pass floor.
BUDGETED = ("parallelzarr", "pz-before", "pz-lz4temp", "rechunker")


def _bound(needed: float, what: str, same: dict[str, dict[str, Any]], nbytes: int, idle_rss: int,
           budget: int, chunk_bytes: int = 0) -> str | None:
    """The figures proving a time aim impossible at ``budget``, or ``None`` when this run does not prove it.

    With source chunks spanning the plane and target chunks spanning time, every target chunk needs
    every source chunk, so a one-pass plan (each chunk decoded once) holds the whole array when it
    decodes the last source chunk, and that chunk's stored bytes (``chunk_bytes``, the largest) while
    it decodes them: the one-pass floor's peak RSS over an idle interpreter shows it. A budget below
    that leaves two passes, whose least work is the two-pass floor; an aim needing less time than it
    cannot be met. ``same`` maps contenders to their medians at this budget.
    """
    floor, floor2 = same.get("floor"), same.get("floor-2pass")
    added = floor["peak_rss"] - idle_rss if floor else 0
    if max(nbytes + chunk_bytes, added) <= budget or not floor2:
        return None
    # A budgeted contender faster than the two-pass floor shows that figure ran slow (noise): the
    # least time measured at this budget is then the bound, never more.
    fastest = min((p for p in BUDGETED if same.get(p, {}).get("correct")), key=lambda p: same[p]["run_s"], default=None)
    least = min(floor2["run_s"], same[fastest]["run_s"] if fastest else math.inf)
    if needed >= least:
        return None
    beaten = (f" (but {fastest} took {least:.2f} s within the budget's max_mem, so that is the bound)"
              if least < floor2["run_s"] else "")
    held = f"{fmt_bytes(nbytes)} + {fmt_bytes(chunk_bytes)} (the last source chunk's stored bytes)" if chunk_bytes else fmt_bytes(nbytes)
    one = (f"; the one-pass floor took {floor['run_s']:.2f} s holding the whole array: {held} "
           f"(its peak RSS rose {fmt_bytes(added)} over idle)") if floor else f"; one pass holds the array: {held}"
    return f"{what} needs <= {needed:.2f} s; the two-pass floor took {floor2['run_s']:.2f} s{beaten}{one} > budget {fmt_bytes(budget)}"


def aims(summary: list[dict[str, Any]], nbytes: int, idle_rss: int, chunk_bytes: int = 0) -> list[dict[str, Any]]:
    """The issue-15 rechunk aims per budget (codec parity): MET, NOT MET or BOUNDED (see :func:`_bound`)."""
    out = []
    for r in summary:
        if r["peer"] != "parallelzarr" or r["mode"] != "parity":
            continue
        same = {x["peer"]: x for x in summary if x["mode"] == r["mode"] and x["budget"] == r["budget"]}
        budget = r["budget"]
        checks: list[tuple[str, bool, str, str | None]] = []
        if "time_vs_fastest" in r:
            fastest = same[r["fastest_peer"]]
            what = f"0.75x {r['fastest_peer']} ({fastest['run_s']:.2f} s)"
            checks.append(("time <= 0.75x fastest peer", r["time_vs_fastest"] <= 0.75,
                           f"{r['time_vs_fastest']}x {r['fastest_peer']}",
                           _bound(0.75 * fastest["run_s"], what, same, nbytes, idle_rss, budget, chunk_bytes)))
            checks.append(("peak RSS <= 0.5x that peer", r["rss_vs_fastest"] <= 0.5, f"{r['rss_vs_fastest']}x", None))
        if "time_vs_floor" in r:
            floor = same["floor"]
            what = f"1.3x the one-pass floor ({floor['run_s']:.2f} s)"
            checks.append(("time <= 1.3x floor", r["time_vs_floor"] <= 1.3, f"{r['time_vs_floor']}x",
                           _bound(1.3 * floor["run_s"], what, same, nbytes, idle_rss, budget, chunk_bytes)))
        if "time_vs_floor2" in r:
            checks.append(("time <= 1.3x two-pass floor", r["time_vs_floor2"] <= 1.3, f"{r['time_vs_floor2']}x", None))
        if r.get("loop_share") is not None:
            checks.append(("zarr loop thread <= 10% of CPU", r["loop_share"] <= 0.10, f"{r['loop_share']:.1%}", None))
        for what, ok, got, bound in checks:
            status = "MET" if ok else ("BOUNDED" if bound else "NOT MET")
            out.append({"budget": budget, "aim": what, "status": status, "got": got, "bound": None if ok else bound})
    return out


def aim_lines(results: list[dict[str, Any]]) -> list[str]:
    """The aims as printed: one line each, plus the proving figures under a BOUNDED one."""
    lines = []
    for a in results:
        lines.append(f"  budget {fmt_bytes(a['budget']):>9}: {a['aim']:<32} {a['status']:<8} ({a['got']})")
        if a["bound"]:
            lines.append(f"      {a['bound']}")
    return lines


def print_report(summary: list[dict[str, Any]], results: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """The medians table, the aims and the errors of a run."""
    header = (f"{'mode':<8} {'budget':>9} {'contender':<12} {'runs':>4} {'run s':>7} {'CPU s':>7} {'proc s':>7} "
              f"{'peak RSS':>10} {'loop':>6} {'t/fastest':>9} {'rss/fastest':>11} {'t/floor':>7} {'cpu/floor':>9} "
              f"{'t/floor2':>8} {'ok':>3}")
    print(header)
    print("-" * len(header))
    for r in summary:
        loop = f"{r['loop_share']:.1%}" if r.get("loop_share") is not None else "-"
        print(f"{r['mode']:<8} {fmt_bytes(r['budget']):>9} {r['peer']:<12} {r['runs']:>4} {r['run_s']:>7.2f} "
              f"{r['run_cpu_s']:>7.2f} {r['wall_s']:>7.2f} {fmt_bytes(r['peak_rss']):>10} {loop:>6} "
              f"{str(r.get('time_vs_fastest', '-')):>9} {str(r.get('rss_vs_fastest', '-')):>11} "
              f"{str(r.get('time_vs_floor', '-')):>7} {str(r.get('cpu_vs_floor', '-')):>9} "
              f"{str(r.get('time_vs_floor2', '-')):>8} {'y' if r['correct'] else 'NO':>3}")
    print("\naims (issue 15, codec parity; BOUNDED: not met, and the floors of this run show it cannot be):")
    print("\n".join(aim_lines(results)) or "  (no parity runs)")
    for r in rows:
        if r.get("error"):
            print(f"  {r['mode']}/{r['peer']}/{r['budget']}: {r['error'][:300]}")


def largest_chunk_file(store: Path) -> int:
    """The stored size of the largest chunk of the zarr v2 array at ``store`` (its files but metadata)."""
    return max((f.stat().st_size for f in store.iterdir() if f.is_file() and not f.name.startswith(".")), default=0)


def report_from(path: Path) -> None:
    """Re-print a saved run, with medians, ratios and aims recomputed by this version of the script."""
    saved = json.loads(path.read_text())
    summary = summarise(saved["rows"], saved["budgets"], saved["modes"])
    print(f"rechunk {tuple(saved['shape'])} float32 = {fmt_bytes(saved['nbytes'])}, source chunks "
          f"{tuple(saved['source_chunks'])} -> {tuple(saved['target_chunks'])}, {saved['threads']} threads, "
          f"{saved['reps']} repetition(s) (medians); idle interpreter RSS {fmt_bytes(saved['idle_rss'])} (saved run {path})")
    print_report(summary, aims(summary, saved["nbytes"], saved["idle_rss"], saved.get("chunk_bytes", 0)), saved["rows"])


def run_reps(args: argparse.Namespace, plan: list[tuple[str, int | None, str]], work: Path, source: Path,
             chunks: list[int], me: list[str], rk_python: Path) -> list[dict[str, Any]]:
    """Run every contender of ``plan`` ``args.reps`` times, rotated, and verify each target."""
    rows: list[dict[str, Any]] = []
    for rep in range(args.reps):
        shift = rep % len(plan)
        for mode, budget, peer in plan[shift:] + plan[:shift]:  # rotated: no contender always goes first
            target, temp = work / f"{peer}-t.zarr", work / f"{peer}-tmp.zarr"
            for p in (target, temp):
                shutil.rmtree(p, ignore_errors=True)
            cfg = {"source": str(source), "target": str(target), "temp": str(temp), "target_chunks": chunks,
                   "budget": budget, "mode": mode, "before": args.before}
            if peer == "rechunker":
                if not rk_python.exists():
                    rows.append({"rep": rep, "mode": mode, "budget": budget, "peer": peer, "status": "skipped"})
                    continue
                cmd = [str(rk_python), str(HERE / "rechunker_peer.py"), str(source), str(target), str(temp),
                       json.dumps(chunks), str(budget), mode]
            else:
                cmd = [*me, "--peer", peer, "--config", json.dumps(cfg)]
            os.sync()  # the previous run's dirty pages must not slow this one
            time.sleep(0.5)
            res = run_child(cmd, args.timeout)
            if res["status"] == "ok":
                res["correct"] = verify(str(target), str(source))
            row = {"rep": rep, "mode": mode, "budget": budget, "peer": peer, **res}
            rows.append(row)
            share = f", loop {row['loop_share']:.1%}" if row.get("loop_share") is not None else ""
            print(f"  rep {rep} {mode:<8} {fmt_bytes(budget) if budget else '-':>9} {peer:<12} {row['status']}: "
                  f"{row.get('run_s')} s ({row.get('run_cpu_s')} s CPU) timed, {row.get('wall_s')} s process, {fmt_bytes(row.get('peak_rss', 0))} "
                  f"peak{share}, load {row['load']}", flush=True)
            for p in (target, temp):
                shutil.rmtree(p, ignore_errors=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1GB", help="array size, e.g. 1GB or 200MB")
    ap.add_argument("--budgets", default="64MB,256MB,1GB", help="max_mem values, comma separated")
    ap.add_argument("--modes", default="parity,defaults")
    ap.add_argument("--peers", default="parallelzarr,rechunker,dask,floor,floor-2pass")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (medians are reported)")
    ap.add_argument("--quick", action="store_true", help="128MB, budget 64MB, parity only, 1 repetition")
    ap.add_argument("--before", default=None, help="directory holding an older parallelzarr package: adds 'pz-before'")
    ap.add_argument("--workdir", default=None, help="scratch directory (default: a temp dir)")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--out", default=str(HERE / "results" / "rechunk.json"))
    ap.add_argument("--report", default=None, help="re-print the table and aims of an earlier JSON and exit")
    ap.add_argument("--peer", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.peer:  # child mode
        print(json.dumps(run_peer(args.peer, json.loads(args.config))))
        return
    if args.report:
        report_from(Path(args.report))
        return
    if args.quick:
        args.size, args.budgets, args.modes, args.reps = "128MB", "64MB", "parity", 1

    size = parse_size(args.size)
    nt = max(10, round(size / (4 * math.prod(PLANE)) / 10) * 10)
    shape = (nt, *PLANE)
    nbytes = math.prod(shape) * 4
    chunks = [nt, 25, 25]
    budgets = [parse_size(b) for b in args.budgets.split(",")]
    modes = args.modes.split(",")
    peers = args.peers.split(",") + (["pz-before"] if args.before else [])
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-rechunk-"))
    work.mkdir(parents=True, exist_ok=True)
    source = work / "source.zarr"
    print(f"load average at start: {os.getloadavg()}")
    print(f"writing source {shape} float32 ({fmt_bytes(nbytes)}), chunks {SOURCE_CHUNKS}, zarr format 2 ...", flush=True)
    make_source(source, shape)
    chunk_bytes = largest_chunk_file(source)
    rk_python = RECHUNKER_VENV / "bin" / "python"
    me = [sys.executable, str(Path(__file__).resolve())]
    idle = run_child([*me, "--peer", "idle", "--config", json.dumps({"source": "", "target": "", "temp": "",
                                                                      "target_chunks": [], "mode": ""})], 120)
    # One run list per repetition: every mode x budget x contender (budget-free contenders once per mode).
    plan: list[tuple[str, int | None, str]] = []
    for mode in modes:
        for peer in peers:
            for budget in (budgets if peer in BUDGETED else [None]):
                plan.append((mode, budget, peer))
    started = time.perf_counter()
    rows = run_reps(args, plan, work, source, chunks, me, rk_python)

    summary = summarise(rows, budgets, modes)
    results = aims(summary, nbytes, idle["peak_rss"], chunk_bytes)
    print()
    print(f"rechunk {shape} float32 = {fmt_bytes(nbytes)}, source chunks {SOURCE_CHUNKS} -> {tuple(chunks)}, "
          f"{THREADS} threads, {args.reps} repetition(s) (medians); idle interpreter RSS {fmt_bytes(idle['peak_rss'])}; "
          f"load average now {os.getloadavg()}; {time.perf_counter() - started:.0f} s of runs")
    print_report(summary, results, rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"shape": shape, "dtype": "float32", "nbytes": nbytes, "source_chunks": SOURCE_CHUNKS,
                               "target_chunks": chunks, "threads": THREADS, "reps": args.reps, "budgets": budgets,
                               "modes": modes, "idle_rss": idle["peak_rss"], "chunk_bytes": chunk_bytes, "load_average_end": os.getloadavg(),
                               "rows": rows, "summary": summary, "aims": aim_lines(results),
                               "aim_results": results}, indent=2))
    print(f"\nwrote {out}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
