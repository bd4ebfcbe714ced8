"""Benchmark parallelzarr writes against xarray, dask and a no-framework floor.

Run as a script (not a test)::

    python benchmarks/bench_write.py --quick               # 200 MB, 1 repetition, 3 cases
    python benchmarks/bench_write.py --size 1GB --reps 3   # interleaved repetitions, medians
    python benchmarks/bench_write.py                       # 2 GB, the reference size, 3 repetitions

The source is a float32 (time, y, x) field (smooth plus noise, see ``_common.synthetic_values``),
generated once into memory so every contender times the write itself, not the generation.
Every contender reads the same in-memory array through ``dask.array.from_array`` views with its
case's dask chunks, uses zarr v3 default codecs, and runs on the same threads (dask's threaded
scheduler with ``--threads`` workers; zarr's codec pool capped at the same number). Each written
store is read back and compared to the source, then removed.

Cases
-----
floor
    Per zarr chunk shape used below: ``floor-threads``, the real floor (the numpy source encoded
    chunk by chunk with numcodecs, exactly the codecs zarr's defaults wrote into ``zarr.json``, on
    ``--threads`` threads, each chunk stored once as a plain file: no framework, no event loop), and
    ``zarr arr[:]=numpy`` (``zarr.create_array(...)[:] = x``, which runs the codecs on zarr's one
    event-loop thread, so it is a reference, not a floor). Ratios "x floor" are against
    ``floor-threads``; an aim needing a time below it is reported ``BOUNDED``.
aligned
    dask chunks == zarr chunks: parallelzarr (array and Dataset) vs ``xarray.Dataset.to_zarr``
    vs ``dask.array.to_zarr``.
misaligned-1d
    dask chunk 75 vs zarr chunk 50 on time: parallelzarr auto/gather-edges/rechunk/lock vs
    xarray ``align_chunks=True`` and dask ``rechunk().to_zarr``.
misaligned-2d
    dask (75, 300, X) vs zarr (50, 200, X), same contenders.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr

import parallelzarr

# The helpers sit next to this script, which is run as a file, not as a package module.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    environment,
    format_size,
    format_table,
    measure,
    parse_size,
    synthetic_dask,
    time_length_for,
    verify_zarr,
    write_json,
)

VAR = "t2m"
DIMS = ("time", "y", "x")
#: Plane of one time step: 600 x 300 float32 = 720 kB, so a 50-step chunk is 36 MB.
PLANE = (600, 300)
#: Every chunking below tiles a time axis that is a multiple of this.
TIME_MULTIPLE = 150
PEERS = ("xarray", "dask")

#: The issue's aims, checked at the end of every run.
AIM_ALIGNED_VS_PEER = 0.95
AIM_MISALIGNED_VS_XARRAY = 1.1
AIM_MISALIGNED_VS_ALIGNED = 0.95


@dataclass
class Case:
    """A benchmark case: the chunking of the source and of the target."""

    name: str
    dask_chunks: tuple[int, ...]
    zarr_chunks: tuple[int, ...]


@dataclass
class Contender:
    """One way of writing the case's data; ``kind`` is ``floor``, ``parallelzarr`` or a peer."""

    name: str
    kind: str
    # write(source dask array, target path) -> optional plan dict
    write: Callable[[da.Array | None, str], Any]
    # array path inside the store (Dataset variables live under their name)
    path: str | None = None


def _dataset(darr: da.Array) -> xr.Dataset:
    return xr.Dataset({VAR: (DIMS, darr)})


def contenders_for(case: Case, source: np.ndarray, threads: int) -> list[Contender]:
    """The contenders of one case."""
    zchunks = case.zarr_chunks
    xr_encoding = {VAR: {"chunks": zchunks}}

    def pz_array(strategy: str) -> Callable[[da.Array, str], Any]:
        def write(d: da.Array, target: str) -> Any:
            plan = parallelzarr.to_zarr(d, target, mode="w-", encoding={"chunks": zchunks}, strategy=strategy)
            return plan.to_dict()

        return write

    def pz_dataset(strategy: str) -> Callable[[da.Array, str], Any]:
        def write(d: da.Array, target: str) -> Any:
            plan = parallelzarr.to_zarr(_dataset(d), target, mode="w-", encoding=xr_encoding, strategy=strategy)
            return plan.to_dict()

        return write

    def xarray_write(d: da.Array, target: str) -> None:
        aligned = d.chunks == da.core.normalize_chunks(zchunks, d.shape)
        _dataset(d).to_zarr(
            target, mode="w-", encoding=xr_encoding, zarr_format=3, consolidated=True, align_chunks=not aligned
        )

    def dask_write(d: da.Array, target: str) -> None:
        # dask.array.to_zarr creates zarr chunks equal to the dask chunks; misaligned data must be
        # rechunked first (dask's advice in its own error message).
        if d.chunksize != zchunks:
            d = d.rechunk(zchunks)
        da.to_zarr(d, target, zarr_format=3)

    out: list[Contender] = []
    if case.name == "aligned":
        out += [
            Contender("parallelzarr array", "parallelzarr", pz_array("auto")),
            Contender("parallelzarr Dataset", "parallelzarr", pz_dataset("auto"), VAR),
            Contender("xarray to_zarr", "xarray", xarray_write, VAR),
            Contender("dask.array.to_zarr", "dask", dask_write),
        ]
    else:
        out += [
            Contender("parallelzarr array auto", "parallelzarr", pz_array("auto")),
            Contender("parallelzarr Dataset auto", "parallelzarr", pz_dataset("auto"), VAR),
            Contender("parallelzarr array gather-edges", "parallelzarr", pz_array("gather-edges")),
            Contender("parallelzarr array rechunk", "parallelzarr", pz_array("rechunk")),
            Contender("parallelzarr array lock", "parallelzarr", pz_array("lock")),
            Contender("xarray align_chunks=True", "xarray", xarray_write, VAR),
            Contender("dask rechunk+to_zarr", "dask", dask_write),
        ]
    return out


def floor_write(source: np.ndarray, zchunks: tuple[int, ...]) -> Callable[[da.Array, str], Any]:
    """The floor: numpy already in memory, one ``arr[:] = x`` through zarr's own concurrency."""

    def write(_: da.Array | None, target: str) -> None:
        arr = zarr.create_array(target, shape=source.shape, chunks=zchunks, dtype=source.dtype, zarr_format=3)
        arr[:] = source

    return write


def _chunk_encoder(arr: zarr.Array) -> Callable[[np.ndarray], bytes]:
    """numcodecs doing what ``arr``'s zarr v3 codecs (as in its ``zarr.json``) do to one chunk."""
    import numcodecs

    codecs = arr.metadata.to_dict()["codecs"]
    first, rest = codecs[0], codecs[1:]
    if first["name"] != "bytes" or any(c["name"] not in ("zstd", "gzip") for c in rest):
        # Only codecs numcodecs configures exactly as zarr v3 does; anything else would not be the same bytes.
        raise NotImplementedError(f"floor-threads cannot reproduce the codecs {codecs}")
    order = "<" if first.get("configuration", {}).get("endian", "little") == "little" else ">"
    compressors = [numcodecs.get_codec({"id": c["name"], **c.get("configuration", {})}) for c in rest]

    def encode(block: np.ndarray) -> bytes:
        out: Any = np.ascontiguousarray(block, dtype=block.dtype.newbyteorder(order))
        for codec in compressors:
            out = codec.encode(out)
        return bytes(out)

    return encode


def floor_threads_write(source: np.ndarray, zchunks: tuple[int, ...], threads: int) -> Callable[[da.Array | None, str], Any]:
    """The real floor: every zarr chunk encoded once and stored once as a file, ``threads`` threads.

    The source is already in memory, the codecs are the ones ``zarr.create_array`` chose (read back
    from the array's metadata), and the files land at the chunks' keys, so the result is the same
    zarr array every contender writes. Any writer of these chunks does at least this work.
    """

    def write(_: da.Array | None, target: str) -> None:
        arr = zarr.create_array(target, shape=source.shape, chunks=zchunks, dtype=source.dtype, zarr_format=3)
        encode = _chunk_encoder(arr)
        keys = arr.metadata.chunk_key_encoding
        fill = arr.fill_value

        def one(idx: tuple[int, ...]) -> None:
            block = source[tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, zchunks, strict=True))]
            if block.shape != zchunks:  # an edge chunk is stored full size, padded with the fill value
                full = np.full(zchunks, fill, dtype=source.dtype)
                full[tuple(slice(0, n) for n in block.shape)] = block
                block = full
            path = Path(target, keys.encode_chunk_key(idx))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode(block))

        grid = itertools.product(*(range(-(-n // c)) for n, c in zip(source.shape, zchunks, strict=True)))
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, grid))

    return write


def warm_up(source: np.ndarray, workdir: Path) -> None:
    """Untimed small writes so zarr's event loop, thread pools and imports exist before case one."""
    small = source[: min(len(source), 50)]
    floor_write(small, small.shape)(None, str(workdir / "warmup-floor.zarr"))
    floor_threads_write(small, small.shape, 1)(None, str(workdir / "warmup-floor-threads.zarr"))
    parallelzarr.to_zarr(da.from_array(small, chunks=small.shape), str(workdir / "warmup-pz.zarr"))
    _dataset(da.from_array(small, chunks=small.shape)).to_zarr(str(workdir / "warmup-xr.zarr"), zarr_format=3)
    for name in ("warmup-floor.zarr", "warmup-floor-threads.zarr", "warmup-pz.zarr", "warmup-xr.zarr"):
        shutil.rmtree(workdir / name, ignore_errors=True)


def _zarr_loop_cpu() -> float:
    """CPU seconds used so far by zarr's event-loop thread (Linux per-thread /proc stats; 0 elsewhere)."""
    from zarr.core import sync as zsync

    thread = zsync.iothread[0]
    if thread is None or thread.native_id is None:
        return 0.0
    try:
        with open(f"/proc/self/task/{thread.native_id}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_one(
    case: str,
    contender: Contender,
    darr: da.Array | None,
    nbytes: int,
    workdir: Path,
    source: np.ndarray,
    rep: int,
    zchunks: tuple[int, ...],
) -> dict[str, Any]:
    """Time one run of one contender, verify its store, remove it; return a result row."""
    verified = "ok"
    plan = None
    compressors = None
    error = None
    target = workdir / f"{case}-{contender.name.replace(' ', '_').replace('=', '')}-{rep}.zarr"
    # Start every contender with no dirty pages of the previous one still being flushed.
    os.sync()
    gc.collect()
    m = None
    loop0 = _zarr_loop_cpu()
    try:
        m = measure(lambda t=str(target): contender.write(darr, t))
    except Exception as exc:  # a failing contender is a result too; keep benchmarking the rest
        error = f"{type(exc).__name__}: {exc}"
        verified = "ERROR"
    loop = _zarr_loop_cpu() - loop0
    if m is not None:
        if isinstance(m.result, dict):
            plan = m.result
        ok = verify_zarr(target, source, path=contender.path)
        arr = zarr.open_array(store=str(target), path=contender.path or "", mode="r")
        compressors = str(arr.compressors)
        if not ok:
            verified = "MISMATCH"
        if tuple(arr.chunks) != tuple(zchunks):
            verified = f"MISMATCH (chunks {tuple(arr.chunks)})"
    shutil.rmtree(target, ignore_errors=True)
    row: dict[str, Any] = {
        "case": case,
        "contender": contender.name,
        "kind": contender.kind,
        "rep": rep,
        "dask_chunks": list(darr.chunksize) if darr is not None else None,
        "zarr_chunks": list(zchunks),
        "verified": verified,
        "compressors": compressors,
        "error": error,
    }
    if m is not None:
        row.update(
            seconds=m.seconds,
            gbps=nbytes / m.seconds / 1e9,
            peak_rss=m.peak_rss,
            rss_increase=m.rss_increase,
            cpu_seconds=m.cpu_seconds,
            load_average=m.load_average,
            loop_cpu_seconds=loop,
            loop_share=loop / m.cpu_seconds if m.cpu_seconds else None,
        )
    if plan is not None:
        var = next(iter(plan["variables"].values()))
        row["strategy"] = var["strategy"]
        row["tasks"] = plan["tasks"]
        row["plan"] = plan
    status = (f"{row.get('seconds', float('nan')):7.2f} s  {row.get('cpu_seconds', float('nan')):6.2f} CPU s  "
              f"loop {row.get('loop_share') or 0:5.1%}  load {row.get('load_average', 0):.1f}  {verified}")
    print(f"  rep {rep} {case:14s} {contender.name:34s} {status}", flush=True)
    if error:
        print(f"    error: {error}", flush=True)
    return row


def medians(runs: list[dict[str, Any]], nbytes: int) -> list[dict[str, Any]]:
    """One row per (case, contender): medians of its runs (a contender that failed once reports that)."""
    import statistics

    keyed: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        keyed.setdefault((r["case"], r["contender"]), []).append(r)
    out = []
    for group in keyed.values():
        row = {k: v for k, v in group[0].items() if k != "rep"}
        row["runs"] = len(group)
        bad = [r["verified"] for r in group if r["verified"] != "ok"]
        row["verified"] = bad[0] if bad else "ok"
        timed = [r for r in group if "seconds" in r]
        for key in ("seconds", "peak_rss", "rss_increase", "cpu_seconds", "load_average", "loop_cpu_seconds",
                    "loop_share"):
            vals = [r[key] for r in timed if r.get(key) is not None]
            if vals:
                row[key] = statistics.median(vals)
        if "seconds" in row:
            row["gbps"] = nbytes / row["seconds"] / 1e9
        out.append(row)
    return out


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Fill the ratios of every row, all within this run.

    ``vs_peer``/``vs_floor``: throughput over the best peer of the case / the floor with the same
    zarr chunks (``floor-threads``; zarr's ``arr[:]`` in runs saved before it existed; ``floor``
    names it). ``cpu_vs_peer``/``cpu_vs_floor``: the same with throughput per CPU-second, which
    stays meaningful when other jobs share the cores (wall-clock ratios then measure the load).
    """
    for r in rows:
        if "gbps" in r:
            r["gb_per_cpu_s"] = r["gbps"] * r["seconds"] / r["cpu_seconds"] if r.get("cpu_seconds") else None
    floors: dict[tuple[int, ...], dict[str, Any]] = {}
    for kind in ("floor", "floor-threads"):  # the real floor, where it ran, replaces zarr's arr[:]
        floors.update({tuple(r["zarr_chunks"]): r for r in rows if r["kind"] == kind and "gbps" in r
                       and r["verified"] == "ok"})
    for case in {r["case"] for r in rows}:
        in_case = [r for r in rows if r["case"] == case and "gbps" in r]
        peers = [r for r in in_case if r["kind"] in PEERS and r["verified"] == "ok"]
        best_peer = max((r["gbps"] for r in peers), default=None)
        best_peer_cpu = max((r["gb_per_cpu_s"] or 0 for r in peers), default=None)
        for r in in_case:
            floor = floors.get(tuple(r["zarr_chunks"]))
            r["vs_peer"] = r["gbps"] / best_peer if best_peer else None
            r["floor"] = floor["contender"] if floor else None
            r["vs_floor"] = r["gbps"] / floor["gbps"] if floor else None
            eff = r["gb_per_cpu_s"]
            r["cpu_vs_peer"] = eff / best_peer_cpu if eff and best_peer_cpu else None
            r["cpu_vs_floor"] = eff / floor["gb_per_cpu_s"] if eff and floor and floor.get("gb_per_cpu_s") else None


def check_aims(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evaluate the issue's aims on this run's rows: PASS, BOUNDED, MISS or n/a, by wall clock and CPU time.

    The wall-clock verdict is the aim as stated; the CPU verdict compares GB per CPU-second and is
    the one to trust when the load average shows other work on the machine. An aim missed is
    ``BOUNDED`` when meeting it would need less time (or CPU time) than ``floor-threads`` with the
    same zarr chunks took in this run, and than every other write of those chunks took: every
    contender stores exactly those chunks, each encoded once, so none can beat that floor
    (``*_bound`` holds the figures).
    """

    def row(case: str, contender: str) -> dict[str, Any] | None:
        for r in rows:
            if r["case"] == case and r["contender"] == contender and r.get("verified") == "ok":
                return r
        return None

    def best_peer(case: str, key: str) -> dict[str, Any] | None:
        peers = [r for r in rows if r["case"] == case and r["kind"] in PEERS and r.get("verified") == "ok" and r.get(key)]
        return max(peers, key=lambda r: r[key], default=None)

    floors = {tuple(r["zarr_chunks"]): r for r in rows
              if r["kind"] == "floor-threads" and r.get("verified") == "ok" and "seconds" in r}
    aims = []

    def aim(text: str, num: tuple[str, str], den: tuple[str, str] | str, target: float) -> None:
        entry: dict[str, Any] = {"aim": text, "target": target}
        n_row = row(*num)
        floor = floors.get(tuple(n_row["zarr_chunks"])) if n_row else None
        for label, key, seconds in (("wall", "gbps", "seconds"), ("cpu", "gb_per_cpu_s", "cpu_seconds")):
            d_row = best_peer(den, key) if isinstance(den, str) else row(*den)
            n, d = (n_row or {}).get(key), (d_row or {}).get(key)
            ratio = n / d if n and d else None
            status = "n/a" if ratio is None else ("PASS" if ratio >= target else "MISS")
            bound = None
            if status == "MISS" and floor and floor.get(seconds) and d_row.get(seconds):
                # Same bytes for every row, so target x the reference's rate means its time / target.
                needed = d_row[seconds] / target
                # A write of the same chunks that beat the floor shows the floor's figure ran slow (noise):
                # the least time measured for these chunks is then the bound, never more.
                fastest = min((r for r in rows if tuple(r["zarr_chunks"]) == tuple(n_row["zarr_chunks"])
                               and r.get("verified") == "ok" and r.get(seconds)), key=lambda r: r[seconds])
                least = min(floor[seconds], fastest[seconds])
                if needed < least:
                    status = "BOUNDED"
                    bound = {"needed_seconds": needed, "floor_seconds": floor[seconds], "floor": floor["contender"],
                             "reference": d_row["contender"], "bound_seconds": least,
                             "fastest": None if fastest is floor else f"{fastest['case']}: {fastest['contender']}",
                             "fastest_seconds": fastest[seconds]}
            entry[f"{label}_ratio"] = ratio
            entry[f"{label}_status"] = status
            entry[f"{label}_bound"] = bound
        aims.append(entry)

    for flavour in ("array", "Dataset"):
        aim(
            f"aligned: parallelzarr {flavour} >= {AIM_ALIGNED_VS_PEER}x best peer",
            ("aligned", f"parallelzarr {flavour}"),
            "aligned",
            AIM_ALIGNED_VS_PEER,
        )
    for case in ("misaligned-1d", "misaligned-2d"):
        for flavour in ("array", "Dataset"):
            auto = (case, f"parallelzarr {flavour} auto")
            aim(
                f"{case}: parallelzarr {flavour} auto >= {AIM_MISALIGNED_VS_XARRAY}x xarray align_chunks=True",
                auto,
                (case, "xarray align_chunks=True"),
                AIM_MISALIGNED_VS_XARRAY,
            )
            aim(
                f"{case}: parallelzarr {flavour} auto >= {AIM_MISALIGNED_VS_ALIGNED}x parallelzarr {flavour} aligned",
                auto,
                ("aligned", f"parallelzarr {flavour}"),
                AIM_MISALIGNED_VS_ALIGNED,
            )
    return aims


def _fmt(value: Any, spec: str) -> str | None:
    return None if value is None else format(value, spec)


def print_report(rows: list[dict[str, Any]], aims: list[dict[str, Any]], nbytes: int, threads: int) -> None:
    """Print the results table and the aims."""
    shown = [
        {
            "case": r["case"],
            "contender": r["contender"],
            "strategy": r.get("strategy"),
            "seconds": _fmt(r.get("seconds"), ".2f"),
            "gbps": _fmt(r.get("gbps"), ".3f"),
            "peak": format_size(r["peak_rss"]) if "peak_rss" in r else None,
            "added": format_size(r["rss_increase"]) if "rss_increase" in r else None,
            "cpu": _fmt(r.get("cpu_seconds"), ".2f"),
            "load": _fmt(r.get("load_average"), ".1f"),
            "loop": _fmt(r.get("loop_share"), ".1%"),
            "runs": r.get("runs"),
            "vs_peer": _fmt(r.get("vs_peer"), ".2f"),
            "vs_floor": _fmt(r.get("vs_floor"), ".2f"),
            "cpu_vs_peer": _fmt(r.get("cpu_vs_peer"), ".2f"),
            "cpu_vs_floor": _fmt(r.get("cpu_vs_floor"), ".2f"),
            "verified": r["verified"],
        }
        for r in rows
    ]
    print()
    print(f"write benchmark: {format_size(nbytes)} float32, {threads} thread(s)")
    print(
        format_table(
            shown,
            [
                ("case", "case"),
                ("contender", "contender"),
                ("strategy", "strategy"),
                ("seconds", "s"),
                ("gbps", "GB/s"),
                ("peak", "peak RSS"),
                ("added", "RSS added"),
                ("vs_peer", "x best peer"),
                ("vs_floor", "x floor"),
                ("cpu", "CPU s"),
                ("cpu_vs_peer", "CPU-eff x peer"),
                ("cpu_vs_floor", "CPU-eff x floor"),
                ("loop", "zarr loop"),
                ("runs", "runs"),
                ("load", "load"),
                ("verified", "verified"),
            ],
        )
    )
    floors = sorted({r["floor"] for r in rows if r.get("floor")})
    print(f"(x floor: vs {', '.join(floors) or 'no floor'} of the same zarr chunks; "
          "x best peer / x floor: throughput ratios within this run; RSS of the whole process tree, "
          "which includes the in-memory source; CPU s: this process; CPU-eff: GB per CPU-second, same ratios; "
          "zarr loop: CPU of zarr's event-loop thread / this process's CPU; medians of 'runs' interleaved runs; "
          "load: 1-min load average after the write)")
    print()
    print("aims (wall clock | CPU efficiency):")
    for a in aims:
        wall = "   n/a" if a["wall_ratio"] is None else f"{a['wall_ratio']:6.2f}"
        cpu = "   n/a" if a["cpu_ratio"] is None else f"{a['cpu_ratio']:6.2f}"
        print(f"  {a['wall_status']:7s} {wall} | {a['cpu_status']:7s} {cpu}  {a['aim']}")
        for label, unit in (("wall", "s"), ("cpu", "CPU s")):
            bound = a.get(f"{label}_bound")
            if bound:
                # The proof, from this run's figures: what the aim needs vs what the floor took.
                beaten = ""
                if bound["fastest_seconds"] < bound["floor_seconds"]:
                    beaten = (f", but {bound['fastest']} took {bound['fastest_seconds']:.2f} {unit}, the least "
                              "of any write of these chunks here, so that is the bound")
                print(f"    BOUNDED ({label}): {a['target']}x {bound['reference']} needs <= "
                      f"{bound['needed_seconds']:.2f} {unit}; the floor (encode+store every chunk once, "
                      f"{threads} threads: {bound['floor']}) took {bound['floor_seconds']:.2f} {unit}{beaten}")


def report_from(path: Path) -> int:
    """Recompute ratios and aims of a saved run (e.g. one from an older version of this script)."""
    import json

    saved = json.loads(path.read_text())
    rows = saved["rows"]
    add_ratios(rows)
    aims = check_aims(rows)
    print_report(rows, aims, saved["size"], saved["threads"])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="2GB", help="source size, e.g. 200MB or 2GB (default 2GB)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads (default: all cores)")
    parser.add_argument("--out", default="benchmarks/results/write.json", help="JSON output path")
    parser.add_argument("--workdir", default=None, help="directory for targets (default: a temp dir, removed)")
    parser.add_argument("--reps", "--repeat", dest="repeat", type=int, default=3,
                        help="interleaved repetitions; medians are reported (default 3)")
    parser.add_argument("--quick", action="store_true", help="200MB, 1 repetition, floor/aligned/misaligned-1d")
    parser.add_argument("--report", default=None, help="re-print the table and aims of an earlier JSON and exit")
    parser.add_argument("--cases", default="floor,aligned,misaligned-1d,misaligned-2d", help="comma-separated cases")
    args = parser.parse_args(argv)
    if args.report:
        return report_from(Path(args.report))
    if args.quick:
        args.size, args.repeat, args.cases = "200MB", 1, "floor,aligned,misaligned-1d"

    nbytes_wanted = parse_size(args.size)
    threads = max(1, args.threads)
    wanted = set(args.cases.split(","))
    ny, nx = PLANE
    nt = time_length_for(nbytes_wanted, PLANE, TIME_MULTIPLE, TIME_MULTIPLE)
    shape = (nt, ny, nx)
    cases = [
        Case("aligned", (50, ny, nx), (50, ny, nx)),
        Case("misaligned-1d", (75, ny, nx), (50, ny, nx)),
        Case("misaligned-2d", (75, 300, nx), (50, 200, nx)),
    ]
    cases = [c for c in cases if c.name in wanted]

    # Same threads for everybody: dask's pool and zarr's codec pool (set before zarr's first I/O).
    zarr.config.set({"threading.max_workers": threads})
    dask.config.set(scheduler="threads", num_workers=threads)

    own_workdir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="pz-bench-write-")) if own_workdir else Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"shape {shape} float32 = {format_size(np.prod(shape) * 4)}; threads {threads}; workdir {workdir}", flush=True)

    # Persist the source once (generated in parallel straight into one buffer) so only writes are timed.
    source = np.empty(shape, dtype=np.float32)
    gen = measure(lambda: da.store(synthetic_dask(shape, (50, ny, nx)), source, lock=False))
    nbytes = source.nbytes
    print(f"generated source in {gen.seconds:.1f} s", flush=True)

    # zarr warns on every consolidated v3 write; the benchmark output should stay readable.
    warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
    warm_up(source, workdir)

    # Every repetition runs every contender once, in an order rotated per repetition (interleaved:
    # a slow minute of the machine hits every contender alike); medians are reported.
    schedule: list[tuple[str, Contender, da.Array | None, tuple[int, ...]]] = []
    if "floor" in wanted:
        for zchunks in sorted({c.zarr_chunks for c in cases} or {(50, ny, nx)}, reverse=True):
            schedule.append(("floor", Contender(f"floor-threads {zchunks[1]}x{zchunks[2]}", "floor-threads",
                                                floor_threads_write(source, zchunks, threads)), None, zchunks))
            schedule.append(("floor", Contender(f"zarr arr[:]=numpy {zchunks[1]}x{zchunks[2]}", "floor",
                                                floor_write(source, zchunks)), None, zchunks))
    for case in cases:
        # A named from_array skips hashing 2 GB. dask 2026.8 copies the numpy array here (untimed),
        # and every block is then a view of that copy: reading the source costs no contender anything.
        darr = da.from_array(source, chunks=case.dask_chunks, name=f"src-{case.name}")
        for contender in contenders_for(case, source, threads):
            schedule.append((case.name, contender, darr, case.zarr_chunks))
    print(f"load average before the runs: {os.getloadavg()}", flush=True)
    runs: list[dict[str, Any]] = []
    try:
        for rep in range(max(1, args.repeat)):
            shift = rep % len(schedule)
            for case_name, contender, darr, zchunks in schedule[shift:] + schedule[:shift]:
                runs.append(run_one(case_name, contender, darr, nbytes, workdir, source, rep, zchunks))
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    rows = medians(runs, nbytes)
    print(f"load average after the runs: {os.getloadavg()}", flush=True)

    add_ratios(rows)
    aims = check_aims(rows)
    print_report(rows, aims, nbytes, threads)
    out = write_json(
        args.out,
        {
            "benchmark": "write",
            "size": nbytes,
            "shape": list(shape),
            "dtype": "float32",
            "threads": threads,
            "repeat": args.repeat,
            "generation_seconds": gen.seconds,
            "environment": environment(),
            "rows": rows,
            "runs": runs,
            "aims": aims,
        },
    )
    print(f"\nwrote {out}")
    bad = [r for r in rows if r["verified"] != "ok"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
