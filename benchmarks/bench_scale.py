"""Scale benchmark: plans and graphs on paper, task count x workers, and 20 GB on this machine.

Three sections, each printing a table and writing JSON to ``benchmarks/results/scale-<section>.json``:

``paper``
    Plans and graphs for ERA5-scale data that could never be written here: one 200 TB array
    (350640 x 137 x 721 x 1440 float32), a Dataset of eight such arrays (1.6 PB), and an array of 10
    million chunks, for writes (aligned and misaligned) and rechunks. Reports the seconds to plan and
    to build the dask graph, the task count, and how many graph keys exist before submission (the
    layers are lazy: only a handful of keys are materialised, whatever the task count). The aim is a
    plan in under 2 s. Only metadata is written (to a temporary directory).
``workers``
    The same writes and rechunks run on a ``LocalCluster`` of 1 and of 4 worker processes (one thread
    each) at several task counts: wall time, time per task, client+scheduler RSS growth, worker RSS,
    and a SHA-256 over every stored chunk so 1 and 4 workers are shown to store identical bytes.
``machine``
    A ``--size`` (default 20 GB) misaligned write and a rechunk of the result to pixel time series,
    each in a fresh process under a ``--budget`` (default 1 GB: ``max_mem`` is budget / threads),
    with the peak RSS of the whole process tree sampled from outside, and every block verified by
    CRC32 against a fresh recomputation of the synthetic source.

Run ``python benchmarks/bench_scale.py {paper,workers,machine,all}`` (``--help`` for sizes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import PeakRSS, environment, format_size, format_table, parse_size, synthetic_dask, write_json  # noqa: E402

warnings.filterwarnings("ignore", message="Consolidated metadata")
RESULTS = Path(__file__).parent / "results"
PLAN_AIM_SECONDS = 2.0

ERA5 = (350640, 137, 721, 1440)
ERA5_DIMS = ("time", "level", "latitude", "longitude")
ERA5_VARS = ("t", "u", "v", "w", "q", "z", "vo", "d")
TEN_M = (100_000, 1000, 1000)  # with chunks (10, 100, 10): 10,000,000 chunks


# --- paper ----------------------------------------------------------------------------------------


def _materialised_keys(graph: Any) -> int:
    """Keys that exist as objects before submission (lazy layers hold none)."""
    return sum(len(layer) for layer in graph.layers.values() if layer.is_materialized())


def _timed(fn: Any, reset: Any = None) -> tuple[Any, float, int]:
    """``fn()``'s result, its seconds, and its peak Python allocations (a second, traced run).

    tracemalloc slows allocation-heavy code several times, so time and memory come from two runs;
    ``reset()`` runs before each.
    """
    if reset is not None:
        reset()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    if reset is not None:
        reset()
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, seconds, peak


def _write_case(label: str, data: Any, encoding: dict[str, Any], root: Path, max_mem: str) -> dict[str, Any]:
    import parallelzarr as pz
    from parallelzarr.entry.write import build_graph, prepare

    target = root / f"{label}.zarr"
    plan, plan_s, plan_mem = _timed(lambda: pz.plan_write(data, str(target), encoding=encoding, max_mem=max_mem))

    def build() -> Any:
        prepared = prepare(data, str(target), encoding=encoding, max_mem=max_mem)
        prepared.setup()  # metadata only
        return build_graph(prepared)

    delayed, build_s, build_mem = _timed(build, reset=lambda: shutil.rmtree(target, ignore_errors=True))
    graph = delayed.__dask_graph__()
    nbytes = sum(v.bytes_total for v in plan.variables.values())
    chunks = sum(math.prod(math.ceil(n / c) for n, c in zip(v.shape, v.chunks, strict=True)) for v in plan.variables.values())
    strategies = sorted({v.strategy for v in plan.variables.values()})
    shutil.rmtree(target, ignore_errors=True)
    return {
        "case": label, "kind": "write", "bytes": nbytes, "chunks": chunks, "tasks": plan.tasks,
        "strategy": ",".join(strategies), "plan_s": plan_s, "build_s": build_s,
        "client_mem": max(plan_mem, build_mem), "graph_layers": len(graph.layers),
        "materialised_keys": _materialised_keys(graph), "aim": "PASS" if plan_s < PLAN_AIM_SECONDS else "MISS",
    }


def _rechunk_case(label: str, source: Any, target_chunks: Any, root: Path, max_mem: str) -> dict[str, Any]:
    import zarr

    import parallelzarr as pz
    from parallelzarr.graph.rechunk import StageIO, build_graph

    plan, plan_s, plan_mem = _timed(lambda: pz.plan_rechunk(source, target_chunks, max_mem))

    def build() -> Any:
        # The executor's own graph builder over the metadata-only arrays (nothing is read or written).
        arrays = [source] if isinstance(source, zarr.Array) else [source[a.name] for a in plan.arrays]
        chains = [
            [StageIO(src=arr, dst=arr, stage=stage, shape=ap.shape, marker_store=arr.store, marker_prefix="x")
             for stage in ap.stages]
            for arr, ap in zip(arrays, plan.arrays, strict=True)
        ]
        return build_graph(chains, plan.fingerprint())

    delayed, build_s, build_mem = _timed(build)
    graph = delayed.__dask_graph__()
    chunks = sum(math.prod(math.ceil(n / c) for n, c in zip(a.shape, a.target_chunks, strict=True)) for a in plan.arrays)
    return {
        "case": label, "kind": "rechunk", "bytes": sum(math.prod(a.shape) * a.itemsize for a in plan.arrays),
        "chunks": chunks, "tasks": plan.n_tasks, "strategy": f"{plan.passes} pass(es)", "plan_s": plan_s,
        "build_s": build_s, "client_mem": max(plan_mem, build_mem), "graph_layers": len(graph.layers),
        "materialised_keys": _materialised_keys(graph), "aim": "PASS" if plan_s < PLAN_AIM_SECONDS else "MISS",
    }


def paper_cases(root: Path) -> list[dict[str, Any]]:
    """Every paper case; metadata goes under ``root``."""
    import dask.array as da
    import xarray as xr
    import zarr

    import parallelzarr as pz

    pz.plan_write(da.zeros((4, 4), chunks=2), str(root / "warm.zarr"))  # imports out of the timings
    rows = []
    era5 = da.zeros(ERA5, chunks=(24, 1, 721, 1440), dtype="f4")
    rows.append(_write_case("era5-200TB-aligned", era5, {"chunks": (24, 1, 721, 1440)}, root, "1GB"))
    rows.append(_write_case("era5-200TB-misaligned", era5, {"chunks": (50, 1, 721, 1440)}, root, "1GB"))
    group = xr.Dataset({v: (ERA5_DIMS, era5) for v in ERA5_VARS})
    rows.append(_write_case("era5-8x200TB-dataset", group, {v: {"chunks": (50, 1, 721, 1440)} for v in ERA5_VARS},
                            root, "1GB"))
    ten_m = da.zeros(TEN_M, chunks=(25, 500, 500), dtype="f4")
    rows.append(_write_case("10M-chunks-misaligned", ten_m, {"chunks": (10, 100, 10)}, root, "1GB"))

    src = zarr.open_group(str(root / "src.zarr"), mode="w")
    for v in ERA5_VARS:
        src.create_array(v, shape=ERA5, chunks=(1, 137, 721, 1440), dtype="f4", dimension_names=ERA5_DIMS)
    src.create_array("tenm", shape=TEN_M, chunks=(10, 100, 10), dtype="f4")
    rows.append(_rechunk_case("era5-200TB-to-timeseries", src["t"], (8760, 1, 30, 30), root, "2GB"))
    rows.append(_rechunk_case("era5-8x200TB-group", zarr.open_group(str(root / "src.zarr"), mode="r"),
                              {v: (8760, 1, 30, 30) for v in ERA5_VARS} | {"tenm": (10, 100, 10)}, root, "2GB"))
    rows.append(_rechunk_case("10M-chunks-to-timeseries", src["tenm"], (100_000, 10, 10), root, "2GB"))
    return rows


def run_paper() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pz-scale-paper-") as tmp:
        rows = paper_cases(Path(tmp))
    print("Scale on paper: plan and graph of data that is never written (metadata only)")
    shown = [dict(r, bytes=format_size(r["bytes"]), plan_s=f"{r['plan_s']:.3f}", build_s=f"{r['build_s']:.3f}",
                  client_mem=format_size(r["client_mem"]), chunks=f"{r['chunks']:,}", tasks=f"{r['tasks']:,}")
             for r in rows]
    print(format_table(shown, [("case", "case"), ("kind", "op"), ("bytes", "size"), ("chunks", "target chunks"),
                               ("tasks", "tasks"), ("strategy", "strategy"), ("plan_s", "plan s"),
                               ("build_s", "graph s"), ("client_mem", "py mem"), ("graph_layers", "layers"),
                               ("materialised_keys", "keys built"), ("aim", f"plan<{PLAN_AIM_SECONDS:g}s")]))
    return {"section": "paper", "rows": rows}


# --- workers --------------------------------------------------------------------------------------


def store_digest(path: Path) -> str:
    """SHA-256 over every chunk file of a store (paths and bytes; metadata documents excluded)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if f.name in ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata") or rel.startswith(".parallelzarr"):
            continue
        h.update(rel.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def workers_run(n_workers: int, blocks: int, root: Path) -> list[dict[str, Any]]:
    """Write (gather-edges), region-write, then rechunk an array of ``blocks`` dask blocks on ``n_workers``."""
    from distributed import Client, LocalCluster

    import parallelzarr as pz

    # Small blocks (4 x 20 x 20, 16 per time row) so the run measures per-task overhead, not codecs;
    # zarr chunks of 6 x 20 x 20 make every other cell a gathered one.
    shape = (max(8, 4 * blocks // 16), 80, 80)
    data = synthetic_dask(shape, (4, 20, 20))
    rows = []
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", worker_dashboard_address=None) as cluster, Client(cluster) as client:
        worker_pids = [p for p in client.run(os.getpid).values()]
        # A region write over the middle, starting and ending mid-cell, from another source.
        lo, hi = 3, shape[0] - 5
        patch = synthetic_dask((hi - lo, *shape[1:]), (4, 20, 20), seed=1)

        def run_delayed(delayed: Any) -> int:
            tasks = len(delayed.__dask_graph__())  # every task the scheduler receives (lazy len: arithmetic)
            delayed.compute()
            return tasks

        ops = {
            "write": lambda: run_delayed(pz.to_zarr(data, str(root / "w.zarr"), encoding={"chunks": (6, 20, 20)},
                                                    mode="w", compute=False)),
            "region": lambda: run_delayed(pz.to_zarr(patch, str(root / "w.zarr"), compute=False,
                                                     region=(slice(lo, hi), slice(None), slice(None)))),
        }

        def rechunk() -> Any:
            import zarr

            shutil.rmtree(root / "r.zarr", ignore_errors=True)
            r = pz.rechunk(zarr.open_array(str(root / "w.zarr"), mode="r"), (shape[0], 10, 10), "64MB",
                           str(root / "r.zarr"), max_tasks=blocks)
            r.execute()
            return r.plan.n_tasks

        ops["rechunk"] = rechunk
        for op, fn in ops.items():
            client_rss = PeakRSS(interval=0.05)
            client_rss.root.children = lambda recursive=False: []  # this process only: client + scheduler
            with client_rss, PeakRSS(interval=0.05) as tree:
                t0 = time.perf_counter()
                tasks = fn()
                seconds = time.perf_counter() - t0
            worker_rss = max(client.run(lambda: __import__("psutil").Process().memory_info().rss).values())
            rows.append({
                "op": op, "workers": n_workers, "blocks": data.npartitions, "tasks": tasks, "seconds": seconds,
                "ms_per_task": 1000 * seconds / max(tasks, 1),
                "client_rss_growth": max(0, client_rss.peak - client_rss.baseline),
                "tree_peak_rss": tree.peak, "worker_rss": worker_rss,
                "digest": store_digest(root / ("r.zarr" if op == "rechunk" else "w.zarr")),
                "worker_pids": len(set(worker_pids)),
            })
    return rows


def run_workers(block_counts: list[int]) -> dict[str, Any]:
    rows = []
    for blocks in block_counts:
        for n in (1, 4):
            with tempfile.TemporaryDirectory(prefix="pz-scale-workers-") as tmp:
                rows.extend(workers_run(n, blocks, Path(tmp)))
    for r in rows:
        peers = [p for p in rows if p["op"] == r["op"] and p["blocks"] == r["blocks"]]
        r["identical"] = len({p["digest"] for p in peers}) == 1
    print("Task count x workers (LocalCluster, 1 thread per worker process; this machine has "
          f"{os.cpu_count()} cores, so 4 workers share them)")
    shown = [dict(r, seconds=f"{r['seconds']:.2f}", ms_per_task=f"{r['ms_per_task']:.2f}",
                  client_rss_growth=format_size(r["client_rss_growth"]), tree_peak_rss=format_size(r["tree_peak_rss"]),
                  worker_rss=format_size(r["worker_rss"]), digest=r["digest"][:12]) for r in rows]
    print(format_table(shown, [("op", "op"), ("blocks", "dask blocks"), ("tasks", "tasks"), ("workers", "workers"),
                               ("seconds", "seconds"), ("ms_per_task", "ms/task"),
                               ("client_rss_growth", "client+sched RSS +"), ("worker_rss", "worker RSS"),
                               ("tree_peak_rss", "tree peak RSS"), ("digest", "sha256(chunks)"),
                               ("identical", "1 == 4 workers")]))
    return {"section": "workers", "rows": rows}


# --- machine --------------------------------------------------------------------------------------

PLANE = (721, 1440)
WRITE_DASK = (45, 361, 720)
WRITE_ZARR = (24, 240, 480)
PIXEL = (30, 30)


def machine_shape(size: int) -> tuple[int, int, int]:
    return (max(WRITE_ZARR[0], round(size / (math.prod(PLANE) * 4))), *PLANE)


def _block_crc(block: np.ndarray) -> np.ndarray:
    data = np.ascontiguousarray(block)
    return np.array([zlib.crc32(data.view(np.uint8)), data.nbytes], dtype=np.int64).reshape((1,) * (block.ndim - 1) + (2,))


def block_crcs(arr: Any) -> np.ndarray:
    """CRC32 and byte count of every block of a dask array, computed block by block."""
    nb = arr.numblocks
    out = arr.map_blocks(_block_crc, chunks=tuple((1,) * n for n in nb[:-1]) + ((2,) * nb[-1],), dtype=np.int64)
    return np.asarray(out.compute()).reshape(*nb, 2)


def machine_child(op: str, root: Path, size: int, budget: int, threads: int) -> dict[str, Any]:
    """One measured operation, run in its own process (the parent samples this process's RSS)."""
    import dask.array as da
    import zarr

    import parallelzarr as pz

    shape = machine_shape(size)
    max_mem = budget // threads
    if op == "write":
        data = synthetic_dask(shape, WRITE_DASK)
        t0 = time.perf_counter()
        plan = pz.to_zarr(data, str(root / "write.zarr"), encoding={"chunks": WRITE_ZARR}, max_mem=max_mem,
                          scheduler="threads", num_workers=threads)
        v = next(iter(plan.variables.values()))
        return {"seconds": time.perf_counter() - t0, "tasks": plan.tasks, "strategy": v.strategy,
                "plan_peak_task": v.peak_memory_per_task, "max_mem": max_mem,
                "stored": zarr.open_array(str(root / "write.zarr"), mode="r").nbytes_stored()}
    if op == "rechunk":
        src = zarr.open_array(str(root / "write.zarr"), mode="r")
        t0 = time.perf_counter()
        r = pz.rechunk(src, (shape[0], *PIXEL), max_mem, str(root / "rechunk.zarr"), temp_store=str(root / "temp.zarr"),
                       threads_per_worker=threads)
        r.execute(scheduler="threads", num_workers=threads)
        return {"seconds": time.perf_counter() - t0, "tasks": r.plan.n_tasks, "strategy": f"{r.plan.passes} pass(es)",
                "plan_peak_task": r.plan.task_memory, "max_mem": max_mem,
                "stored": zarr.open_array(str(root / "rechunk.zarr"), mode="r").nbytes_stored()}
    if op.startswith("verify-"):
        name = op.split("-", 1)[1]
        stored = da.from_zarr(str(root / f"{name}.zarr"))
        expected = synthetic_dask(shape, stored.chunks, name=f"expected-{time.time_ns()}")
        t0 = time.perf_counter()
        with __import__("dask").config.set(scheduler="threads", num_workers=threads):
            want, got = block_crcs(expected), block_crcs(stored)
        same = want[..., 0] == got[..., 0]
        return {"seconds": time.perf_counter() - t0, "blocks": int(same.size), "blocks_equal": int(same.sum()),
                "bytes_checked": int(got[..., 1].sum()), "bytes_expected": math.prod(shape) * 4,
                "checksum": f"{zlib.crc32(want[..., 0].tobytes()):08x}"}
    raise ValueError(op)


def _measured_child(op: str, root: Path, size: int, budget: int, threads: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "_child", op, str(root), str(size), str(budget), str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    with PeakRSS(pid=proc.pid, interval=0.05) as rss:
        out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{op} failed with exit code {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    return dict(result, op=op, peak_rss=rss.peak)


def run_machine(size: int, budget: int, threads: int, root: Path | None) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="pz-scale-machine-", dir=root))
    shape = machine_shape(size)
    rows = []
    try:
        # An idle interpreter with the same imports: what the process costs before any data.
        rows.append(_measured_child("idle", base, size, budget, threads))
        for op in ("write", "verify-write", "rechunk", "verify-rechunk"):
            rows.append(_measured_child(op, base, size, budget, threads))
            print(f"  {op}: {rows[-1]['seconds']:.1f} s, peak RSS {format_size(rows[-1]['peak_rss'])}", flush=True)
            if op == "rechunk":
                shutil.rmtree(base / "write.zarr")  # the source is verified; free the disk for the rest
    finally:
        shutil.rmtree(base, ignore_errors=True)
    idle = rows[0]["peak_rss"]
    for r in rows[1:]:
        r["within_budget"] = r["peak_rss"] <= budget + idle if r["op"] in ("write", "rechunk") else None
        if "blocks" in r:
            r["verified"] = r["blocks"] == r["blocks_equal"] and r["bytes_checked"] == r["bytes_expected"]
    nbytes = math.prod(shape) * 4
    print(f"Scale on this machine: {shape[0]} x {shape[1]} x {shape[2]} float32 = {format_size(nbytes)}; "
          f"budget {format_size(budget)} ({threads} threads x max_mem {format_size(budget // threads)}); "
          f"idle interpreter {format_size(idle)}")
    shown = [dict(r, seconds=f"{r['seconds']:.1f}", peak_rss=format_size(r["peak_rss"]),
                  gbps=f"{nbytes / r['seconds'] / 1e9:.2f}" if r["op"] in ("write", "rechunk") else None,
                  plan_peak_task=format_size(r["plan_peak_task"]) if "plan_peak_task" in r else None)
             for r in rows[1:]]
    print(format_table(shown, [("op", "op"), ("strategy", "strategy"), ("tasks", "tasks"), ("seconds", "seconds"),
                               ("gbps", "GB/s"), ("plan_peak_task", "plan mem/task"), ("peak_rss", "tree peak RSS"),
                               ("within_budget", "<= budget+idle"), ("checksum", "crc of crcs"),
                               ("verified", "verified")]))
    return {"section": "machine", "shape": shape, "bytes": nbytes, "budget": budget, "threads": threads,
            "idle_rss": idle, "rows": rows}


# --- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        op, root, size, budget, threads = argv[1:]
        if op == "idle":
            import dask.array  # noqa: F401
            import zarr  # noqa: F401

            import parallelzarr  # noqa: F401

            time.sleep(0.5)
            print(json.dumps({"seconds": 0.0}))
            return 0
        print(json.dumps(machine_child(op, Path(root), int(size), int(budget), int(threads)), default=int))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("section", choices=("paper", "workers", "machine", "all"))
    parser.add_argument("--size", default="20GB", help="machine: data size (default 20GB)")
    parser.add_argument("--budget", default="1GB", help="machine: memory budget of the whole job (default 1GB)")
    parser.add_argument("--threads", type=int, default=2, help="machine: threads (default 2)")
    parser.add_argument("--dir", default=None, help="machine: directory for the stores (default: system temp)")
    parser.add_argument("--blocks", default="1024,4096,16384", help="workers: dask block counts (default 1024,4096,16384)")
    parser.add_argument("--out", default=str(RESULTS), help="directory for the JSON results")
    args = parser.parse_args(argv)
    sections = ("paper", "workers", "machine") if args.section == "all" else (args.section,)
    for section in sections:
        if section == "paper":
            result = run_paper()
        elif section == "workers":
            result = run_workers([int(b) for b in args.blocks.split(",")])
        else:
            result = run_machine(parse_size(args.size), parse_size(args.budget), args.threads,
                                 Path(args.dir) if args.dir else None)
        result["environment"] = environment()
        path = write_json(Path(args.out) / f"scale-{section}.json", result)
        print(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
