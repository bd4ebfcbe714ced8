"""Codecs of the intermediate arrays: a fast lz4 Blosc by default, ``temp_options`` overrides.

An intermediate is written once and read once. Uncompressed it doubles the bytes on disk (1.0 GB
for 1 GB of data); Zstd costs 8-10 CPU s/GB to encode this kind of data; Blosc lz4 (clevel 5, byte
shuffle) costs 0.6-0.8 CPU s/GB and wrote 600 MB for 1 GB in the issue-15 measurements, which is
what rechunker writes for its temp arrays too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_TEMP_CODEC", "temp_compressors", "describe_compressors"]

#: What :func:`temp_compressors` uses when ``temp_options`` names no compressor.
DEFAULT_TEMP_CODEC = "Blosc lz4 clevel 5 shuffle"


def temp_compressors(temp_options: Mapping[str, Any] | None, zarr_format: int) -> Any:
    """The ``compressors`` argument of :func:`zarr.create_array` for an intermediate.

    Parameters
    ----------
    temp_options
        Validated temp options (``rechunk/api.py`` checks them): ``{"compressors": ...}`` or rechunker's
        ``{"compressor": ...}`` (``None`` = uncompressed); neither: lz4.
    zarr_format
        Format of the intermediate (numcodecs codecs for 2, zarr codecs for 3).
    """
    opts = dict(temp_options or {})
    if "compressors" in opts:
        return opts["compressors"]
    if "compressor" in opts:
        return opts["compressor"]
    if zarr_format == 2:
        from numcodecs import Blosc

        return Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE)
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")


def describe_compressors(compressors: Any) -> str:
    """A short description of a ``compressors`` argument for the printed plan."""
    if compressors is None or compressors == () or compressors == []:
        return "uncompressed"
    items = compressors if isinstance(compressors, list | tuple) else [compressors]
    out = []
    for c in items:
        cname = getattr(c, "cname", None)
        cname = getattr(cname, "value", cname)
        level = getattr(c, "clevel", getattr(c, "level", None))
        name = type(c).__name__.replace("Codec", "")
        out.append(" ".join(str(x) for x in (name, cname, f"level {level}" if level is not None else None) if x))
    return ", ".join(out)
