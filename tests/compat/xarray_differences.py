"""Every known way xarray's own zarr tests differ when ``to_zarr`` goes through parallelzarr.

Each entry: a shell pattern over the test id (``Class::test_name[params]``), a regular expression
the failure through parallelzarr must match (a different failure of the same test is *not*
explained by the entry), the class of the difference and its reason. ``compare.py`` classifies
every test that passes on xarray and fails through parallelzarr with these; one that no entry
explains is reported as undocumented (and ``make compat`` fails). The README's table lists the
same classes.

Kinds: ``writes-safely`` (xarray refuses, parallelzarr writes the data exactly), ``refuses``
(xarray writes, parallelzarr refuses before any byte is written), ``measures-xarray`` (the test
measures xarray's internals, not the written data). None is a wrong-data result.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Difference:
    """One documented difference."""

    pattern: str
    failure: str
    label: str
    kind: str
    reason: str

    def explains(self, test_id: str, message: str) -> bool:
        return fnmatch.fnmatchcase(test_id, self.pattern) and re.search(self.failure, message) is not None


SAFE_CHUNKS = (
    "xarray refuses (safe_chunks=True) dask chunks that are irregular or that several would write into one "
    "zarr chunk or shard; parallelzarr writes them safely (edge cells gathered, or locked), so the "
    "test's pytest.raises(ValueError) sees no error. The data written is exact (tests/test_write_property.py)"
)

DIFFERENCES = [
    *(
        Difference(f"*::{name}*", r"DID NOT RAISE", "safe chunks", "writes-safely", SAFE_CHUNKS)
        for name in (
            "test_chunk_encoding_with_dask", "test_shard_encoding_with_dask", "test_zarr_append_chunk_partial",
            "test_zarr_region_chunk_partial", "test_zarr_region_chunk_partial_offset",
            "test_zarr_safe_chunk_append_dim", "test_zarr_safe_chunk_region",
        )
    ),
    Difference(
        "*::test_append_with_append_dim_no_overwrite*", r"already stored \(repeat='error'\)", "repeated labels",
        "refuses",
        "the test appends the same time labels twice; xarray stores them twice (duplicate labels), "
        "parallelzarr's to_zarr refuses labels already stored before any write (pz.append(repeat='skip') is "
        "the idempotent form): silently skipping them would leave out rows the caller asked for",
    ),
    Difference(
        "*TestInstrumentedZarrStore::*", r"AssertionError: \('(get|set|list_dir|list_prefix)'|ArrayNotFoundError",
        "store request counts", "measures-xarray",
        "the test counts xarray's exact store requests through a class-level mock of MemoryStore, which also "
        "redirects parallelzarr's own in-memory staging store; parallelzarr makes other requests (lease, "
        "journal, staging). A measurement of xarray's I/O, not of the data",
    ),
]


def explain(test_id: str, message: str) -> Difference | None:
    """The documented difference explaining this failure through parallelzarr, or ``None``."""
    for diff in DIFFERENCES:
        if diff.explains(test_id, message):
            return diff
    return None
