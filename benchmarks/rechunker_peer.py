"""Run rechunker 0.5.4 as a benchmark peer (executed by benchmarks/.venv-rechunker's python).

Usage: python rechunker_peer.py SOURCE TARGET TEMP CHUNKS_JSON MAX_MEM_BYTES

rechunker needs ``zarr<3``, so it lives in its own virtual environment and reads the
zarr format 2 source the other peers read too.  Prints one JSON line with its plan.
"""

from __future__ import annotations

import json
import sys

import dask
import zarr
from numcodecs import Zstd
from rechunker import rechunk


def main() -> None:
    source, target, temp, chunks, max_mem = sys.argv[1:6]
    src = zarr.open_array(source, mode="r")
    # Same codec as the zarr 3 default (Zstd level 0) for the target; intermediates
    # uncompressed, as parallelzarr writes them on local disks.
    plan = rechunk(src, tuple(json.loads(chunks)), int(max_mem), target, temp_store=temp,
                   target_options={"compressor": Zstd(level=0)}, temp_options={"compressor": None})
    with dask.config.set(scheduler="threads"):
        plan.execute()
    out = zarr.open_array(target, mode="r")
    print(json.dumps({"chunks": list(out.chunks), "zarr_version": zarr.__version__}))


if __name__ == "__main__":
    main()
