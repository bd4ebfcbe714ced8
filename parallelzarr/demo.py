"""A two-minute demo: a misaligned write on a local dask cluster, planned, written and verified.

Run with ``python -m parallelzarr.demo`` (or ``make demo``). It generates a synthetic float32
temperature-like field on the workers with dask chunks of 75 time steps, writes it to zarr chunks
of 50 (so dask blocks share zarr chunks: the case where plain zarr loses updates), prints the plan,
the dashboard link and the throughput, then reads the store back and compares every block with a
fresh recomputation of the source.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
import warnings
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from parallelzarr.units import format_bytes, parse_bytes

#: One time step is 360 x 720 float32 (a 0.5 degree global grid): about 1 MB.
PLANE = (360, 720)
DASK_TIME_CHUNK = 75
ZARR_TIME_CHUNK = 50


def field_block(block_info: Mapping[Any, Any] | None = None) -> np.ndarray:
    """One block of the synthetic field, from its global position only (so any chunking agrees).

    A smooth temperature-like pattern (latitude gradient, seasonal cycle, a travelling wave) plus
    hash-based noise, so the codecs have real work and every element is reproducible.
    """
    info = block_info[None]  # type: ignore[index]  # dask passes a dict keyed by None for the output block
    (t0, t1), (y0, y1), (x0, x1) = info["array-location"]
    _, ny, nx = info["shape"]
    t = np.arange(t0, t1, dtype=np.int64)[:, None, None]
    y = np.arange(y0, y1, dtype=np.int64)[None, :, None]
    x = np.arange(x0, x1, dtype=np.int64)[None, None, :]
    lat = (y.astype(np.float32) / max(ny - 1, 1) - np.float32(0.5)) * np.float32(np.pi)
    lon = x.astype(np.float32) / np.float32(nx) * np.float32(2 * np.pi)
    tf = t.astype(np.float32)
    out = np.float32(288.0) - np.float32(30.0) * np.sin(lat) ** 2
    out = out + np.float32(10.0) * np.sin(tf * np.float32(2 * np.pi / 365.25)) * np.sin(lat)
    out = out + np.float32(3.0) * np.cos(lon * 3 + tf * np.float32(0.05)) * np.cos(lat)
    # splitmix64 of the global linear index: deterministic noise, different for every element.
    h = ((t * ny + y) * nx + x).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    noise = (h >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / (1 << 24)) - np.float32(0.5)
    return np.ascontiguousarray(out + np.float32(0.5) * noise, dtype=np.float32)


def source_array(shape: Sequence[int], time_chunk: int, name: str) -> da.Array:
    """The synthetic field as a lazy dask array, generated block by block where it is computed."""
    from dask.array.core import normalize_chunks

    chunks = normalize_chunks((time_chunk, *shape[1:]), tuple(shape), dtype=np.float32)
    return da.map_blocks(field_block, chunks=chunks, dtype=np.float32, name=name, meta=np.empty((0, 0, 0), np.float32))


def _block_digest(block: np.ndarray) -> np.ndarray:
    """CRC32 and byte count of one block, shaped to stand in for the block in a reduction grid."""
    data = np.ascontiguousarray(block)
    return np.array([[[zlib.crc32(data.view(np.uint8).data), data.nbytes]]], dtype=np.int64)


def digests(arr: da.Array) -> da.Array:
    """Per-block CRC32 and byte count, computed where the blocks live (no data comes to the client)."""
    # da.map_blocks(f, arr), the same call as arr.map_blocks(f): typed (the method's functools.wraps is not)
    return da.map_blocks(
        _block_digest, arr, chunks=((1,) * arr.numblocks[0], (1,) * arr.numblocks[1], (2,) * arr.numblocks[2]), dtype=np.int64
    )


def shape_for(nbytes: int) -> tuple[int, int, int]:
    """Array shape for about ``nbytes``; tiny sizes shrink the plane so the demo still has many blocks."""
    ny, nx = PLANE
    while ny > 12 and nbytes < 300 * ny * nx * 4:
        ny, nx = ny // 2, nx // 2
    per_step = ny * nx * 4
    step = math.lcm(DASK_TIME_CHUNK, ZARR_TIME_CHUNK)
    return (max(step, round(nbytes / per_step / step) * step), ny, nx)


def run(size: int, workers: int, threads_per_worker: int | None, out: Path) -> int:
    """Run the demo; return the process exit code (0 when the store verifies)."""
    import zarr
    from distributed import Client, LocalCluster, wait

    import parallelzarr

    shape = shape_for(size)
    nbytes = math.prod(shape) * 4
    print(f"parallelzarr demo: {shape[0]} x {shape[1]} x {shape[2]} float32 = {format_bytes(nbytes)}")
    print(f"  dask chunks ({DASK_TIME_CHUNK}, {shape[1]}, {shape[2]}) -> zarr chunks ({ZARR_TIME_CHUNK}, {shape[1]}, {shape[2]})")
    print("  (one zarr chunk in three is shared by two dask blocks: written naively, one update is lost)")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    target = out / "demo.zarr"

    # Workers in their own processes, as on a real cluster: the demo shows the write is safe there too.
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=threads_per_worker,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
    )
    with cluster, Client(cluster) as client:
        print(f"  cluster: {workers} worker process(es) x {client.nthreads()[next(iter(client.nthreads()))]} thread(s)")
        print(f"  dashboard: {client.dashboard_link}")

        source = source_array(shape, DASK_TIME_CHUNK, name=f"demo-source-{shape[0]}-{shape[1]}")
        plan = parallelzarr.plan_write(source, str(target), encoding={"chunks": (ZARR_TIME_CHUNK, *shape[1:])})
        print()
        print(plan)
        print()

        # Generate on the workers and keep the blocks there, so the timed part is the write itself.
        t0 = time.perf_counter()
        source = client.persist(source)
        wait(source)
        print(f"generated {format_bytes(nbytes)} on the workers in {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        parallelzarr.to_zarr(source, str(target), encoding={"chunks": (ZARR_TIME_CHUNK, *shape[1:])})
        seconds = time.perf_counter() - t0
        stored = zarr.open_array(str(target), mode="r")
        ratio = stored.nbytes_stored() / nbytes
        print(f"wrote {format_bytes(nbytes)} in {seconds:.2f} s: {nbytes / seconds / 1e9:.2f} GB/s "
              f"(stored {format_bytes(stored.nbytes_stored())}, {ratio:.0%} of raw)")
        del source

        return verify(client, shape, target, nbytes)


def verify(client: Any, shape: tuple[int, int, int], target: Path, nbytes: int) -> int:
    """Compare the stored array with a fresh recomputation of the source, block by block (CRC32).

    The fresh source has a new layer name, so no persisted block is reused. Returns the exit code.
    """
    t0 = time.perf_counter()
    fresh = source_array(shape, DASK_TIME_CHUNK, name=f"demo-verify-{time.time_ns()}")
    readback = da.from_zarr(str(target), chunks=fresh.chunks)
    want, got = client.compute([digests(fresh), digests(readback)], sync=True)
    want, got = np.asarray(want), np.asarray(got)
    same = want[..., 0] == got[..., 0]
    checked = int(got[..., 1].sum())
    print(f"verification took {time.perf_counter() - t0:.1f} s ({same.size} blocks, CRC32 each)")
    if same.all() and checked == nbytes:
        print(f"verified: {checked} bytes identical")
        return 0
    print(f"MISMATCH: {int((~same).sum())} of {same.size} blocks differ ({checked} of {nbytes} bytes read)")
    return 1


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point of ``python -m parallelzarr.demo``."""
    parser = argparse.ArgumentParser(prog="python -m parallelzarr.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1GB", help="data size, e.g. 1GB or 200MB (default 1GB)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--threads-per-worker", type=int, default=None, help="threads per worker (default: cores / workers)")
    parser.add_argument("--out", default="demo-output", help="output directory, overwritten (default demo-output/)")
    args = parser.parse_args(argv)
    # zarr warns on every consolidated v3 write; the demo output should stay readable.
    warnings.filterwarnings("ignore", message="Consolidated metadata")
    return run(parse_bytes(args.size), max(1, args.workers), args.threads_per_worker, Path(args.out))


if __name__ == "__main__":
    sys.exit(main())
