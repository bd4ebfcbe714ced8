"""Per-object cost of chunk I/O on a local store: files directly against the LocalStore's coroutines.

Chunk I/O (``parallelzarr.store.chunk_io.StoreOps``) writes and reads a plain ``LocalStore``'s objects
as files (``parallelzarr.store.local_files``: temporary file, then a rename). The other contender
is the same ``StoreOps`` driven through the store's own coroutines, run inline in the calling
thread (what every other store gets, and what a plain LocalStore got before). Each repetition writes
``--objects`` new objects of each ``--sizes`` into an emptied store (as a rechunk writes its target
and intermediates), then reads them back; contenders alternate, the order flipped per repetition.
Reported: medians of wall and CPU microseconds per object, and the ratio of the two contenders.

Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
import zarr.storage
from zarr.core.buffer import default_buffer_prototype

sys.path.insert(0, str(Path(__file__).parent))
from _common import environment, format_table, parse_size, write_json  # noqa: E402

from parallelzarr.store.chunk_io import StoreOps  # noqa: E402

CONTENDERS = ("files", "store coroutines")


def one_run(root: Path, contender: str, payload: bytes, objects: int) -> dict[str, float]:
    """Write then read ``objects`` new objects through ``StoreOps``; wall and CPU seconds of each half."""
    shutil.rmtree(root, ignore_errors=True)
    arr = zarr.create_array(str(root), shape=(objects,), chunks=(1,), dtype="B")
    store = arr.store  # opened by the create, as the stores chunk I/O gets
    ops = StoreOps(store, 1)
    if contender == "store coroutines":
        ops.root = None  # the generic path: the store's own coroutines, run inline
    buf = default_buffer_prototype().buffer.from_bytes(payload)
    keys = [f"c/{i % 64}/{i}" for i in range(objects)]  # 64 directories, as a chunk grid has
    os.sync()  # start every run with no dirty pages of the last one
    t0, c0 = time.perf_counter(), time.process_time()
    for key in keys:
        ops.set(key, buf)
    ops.flush()
    t1, c1 = time.perf_counter(), time.process_time()
    n = sum(1 for b in ops.get_many(keys) if b is not None and len(b) == len(payload))
    t2, c2 = time.perf_counter(), time.process_time()
    if n != objects:
        raise SystemExit(f"{contender}: read back {n} of {objects} objects")
    return {"write_s": t1 - t0, "write_cpu_s": c1 - c0, "read_s": t2 - t1, "read_cpu_s": c2 - c1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="4KB,160KB,1MB", help="object sizes, comma separated")
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/store_ops.json")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="pz-bench-ops-") as tmp:
        for size_text in args.sizes.split(","):
            size = parse_size(size_text)
            payload = np.random.default_rng(0).integers(0, 256, size, dtype="u1").tobytes()
            runs: dict[str, list[dict[str, float]]] = {c: [] for c in CONTENDERS}
            for rep in range(args.reps):
                for contender in CONTENDERS if rep % 2 == 0 else CONTENDERS[::-1]:
                    runs[contender].append(one_run(Path(tmp) / "s.zarr", contender, payload, args.objects))
            med = {c: {k: statistics.median(r[k] for r in rs) / args.objects * 1e6 for k in rs[0]} for c, rs in runs.items()}
            for c in CONTENDERS:
                rows.append({
                    "size": size_text, "contender": c, "objects": args.objects, "reps": args.reps,
                    "write_us": round(med[c]["write_s"], 1), "write_cpu_us": round(med[c]["write_cpu_s"], 1),
                    "read_us": round(med[c]["read_s"], 1), "read_cpu_us": round(med[c]["read_cpu_s"], 1),
                    "write_cpu_vs_coroutines": round(med[c]["write_cpu_s"] / med["store coroutines"]["write_cpu_s"], 3),
                    "read_cpu_vs_coroutines": round(med[c]["read_cpu_s"] / med["store coroutines"]["read_cpu_s"], 3),
                })
    cols = [("size", "object"), ("contender", "contender"), ("write_us", "write us"), ("write_cpu_us", "write CPU us"),
            ("read_us", "read us"), ("read_cpu_us", "read CPU us"), ("write_cpu_vs_coroutines", "write CPU ratio"),
            ("read_cpu_vs_coroutines", "read CPU ratio")]
    print(f"per object, medians of {args.reps} interleaved repetitions of {args.objects} new objects; zarr {zarr.__version__}")
    print(format_table(rows, cols))
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    write_json(args.out, {"environment": environment(), "rows": rows, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
