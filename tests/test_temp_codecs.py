"""Intermediate codecs: lz4 by default, both spellings of temp_options, stated in the plan."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from numcodecs import Blosc, Zstd

from parallelzarr.plan.rechunk import ArraySpec, plan_rechunk
from parallelzarr.plan.temp_codecs import describe_compressors, temp_compressors


@pytest.mark.parametrize("fmt", [2, 3])
def test_default_is_lz4_and_zarr_accepts_it(fmt: int) -> None:
    comp = temp_compressors(None, fmt)
    assert "lz4" in describe_compressors(comp)
    arr = zarr.create_array(zarr.storage.MemoryStore(), shape=(100,), chunks=(10,), dtype="f4",
                            zarr_format=fmt, compressors=comp)
    arr[...] = np.arange(100, dtype="f4")
    np.testing.assert_array_equal(arr[...], np.arange(100, dtype="f4"))


def test_both_spellings_and_none() -> None:
    z = Zstd(level=1)
    assert temp_compressors({"compressor": z}, 2) is z
    assert temp_compressors({"compressors": z}, 2) is z
    assert temp_compressors({"compressor": None}, 3) is None
    assert describe_compressors(None) == "uncompressed"
    assert describe_compressors(Blosc("lz4", 5, Blosc.SHUFFLE)) == "Blosc lz4 level 5"


def test_plan_states_the_intermediate_codec() -> None:
    spec = ArraySpec("a", (1000, 500, 500), "float32", 4, (10, 500, 500), (1000, 25, 25))
    text = str(plan_rechunk([spec], "256MB", intermediate_codec=describe_compressors(temp_compressors(None, 2))))
    assert "intermediates encoded with Blosc lz4 level 5" in text
    assert "intermediates encoded" not in str(plan_rechunk([spec], "256MB"))
