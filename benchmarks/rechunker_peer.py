"""Run rechunker 0.5.4 as a benchmark contender (executed by benchmarks/.venv-rechunker's python).

Usage: python rechunker_peer.py SOURCE TARGET TEMP CHUNKS_JSON MAX_MEM_BYTES [MODE]

rechunker needs ``zarr<3``, so it lives in its own virtual environment and reads the zarr format 2
source the other contenders read too. MODE ``parity`` gives target and temp the benchmark's common
codec (Blosc lz4, clevel 5, byte shuffle); ``defaults`` (the default) leaves rechunker's own choice
(zarr 2.18's default compressor, Blosc lz4). Prints one JSON line with what it wrote.
"""

from __future__ import annotations

import json
import os
import sys
import time

import dask
import zarr
from numcodecs import Blosc
from rechunker import rechunk


def main() -> None:
    source, target, temp, chunks, max_mem = sys.argv[1:6]
    mode = sys.argv[6] if len(sys.argv) > 6 else "defaults"
    src = zarr.open_array(source, mode="r")
    kw = {}
    if mode == "parity":
        lz4 = Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE)
        kw = {"target_options": {"compressor": lz4}, "temp_options": {"compressor": lz4}}
    t0, c0 = time.perf_counter(), sum(os.times()[:2])
    plan = rechunk(src, tuple(json.loads(chunks)), int(max_mem), target, temp_store=temp, **kw)
    with dask.config.set(scheduler="threads", num_workers=2):
        plan.execute()
    run_s, run_cpu_s = time.perf_counter() - t0, sum(os.times()[:2]) - c0
    out = zarr.open_array(target, mode="r")
    print(json.dumps({"run_s": round(run_s, 3), "run_cpu_s": round(run_cpu_s, 3), "chunks": list(out.chunks), "compressor": str(out.compressor), "zarr_version": zarr.__version__}))


if __name__ == "__main__":
    main()
