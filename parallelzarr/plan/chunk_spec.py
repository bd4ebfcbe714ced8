"""The one parser of chunk and shard requests, shared by writes (encodings) and rechunks (targets).

A request is turned into one positive length per axis by these rules:

- ``None``: not given; every axis takes its default.
- An integer: that length on every axis.
- A sequence (tuple, list, any iterable but a string): one entry per axis; another count is refused.
- A dict: keys are dimension names or axis numbers (``0 <= axis < ndim``; others are refused).
  Axes it leaves out take their default. A name that is not a dimension of the array is refused
  (``unknown_dims="error"``, writes: an encoding belongs to one variable) or skipped
  (``unknown_dims="skip"``, rechunks: one dict serves every array of a group, each taking the
  dimensions it has).
- Entries: ``-1`` or ``None`` mean the whole axis (at least 1). Anything else must be an integer
  (Python or numpy, not a bool) from 1 to :data:`MAX_CHUNK_LENGTH`.
- A length beyond the axis is kept (``clip=False``, writes: the array may grow by appends), or cut to
  the axis length (``clip=True``, rechunks: the array's shape is final).
- The default of an axis is its whole length unless the caller gives ``default`` (rechunks: the
  source chunks).

Strings, bools, floats and other objects are refused with :class:`~parallelzarr.errors.ChunkSpecError`,
whose message names the array, the request (``chunks``, ``shards``, ``target chunks``) and the axis.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral
from typing import Any, Literal

from parallelzarr.errors import ChunkSpecError

__all__ = ["MAX_CHUNK_LENGTH", "parse_chunk_spec", "normalize_chunks"]

#: Longest chunk or shard length accepted (grid arithmetic stays exact in int64 well below this).
MAX_CHUNK_LENGTH = 2**53

#: Sentinel of an axis a request leaves to its default.
_DEFAULT = object()


def _is_integer(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def parse_chunk_spec(
    spec: Any,
    shape: Sequence[int],
    dims: Sequence[str] | None = None,
    *,
    default: Sequence[int] | None = None,
    unknown_dims: Literal["error", "skip"] = "error",
    clip: bool = False,
    label: str = "chunks",
    name: str = "",
) -> tuple[int, ...]:
    """Turn a chunk or shard request into one positive length per axis (rules: module docstring).

    Parameters
    ----------
    spec
        The request: ``None``, an integer, a sequence with one entry per axis, or a dict by
        dimension name or axis number.
    shape
        The array's shape.
    dims
        Its dimension names (dict keys that are names), if it has any.
    default
        Lengths of the axes the request leaves out; the whole axis when ``None``.
    unknown_dims
        What a dict key naming no dimension of the array does: ``"error"`` or ``"skip"``.
    clip
        Cut lengths beyond the axis to the axis length.
    label, name
        What the request is (``"chunks"``, ``"shards"``, ``"target chunks"``) and the array's name,
        for error messages.

    Raises
    ------
    ChunkSpecError
        For a request the rules refuse.
    """
    prefix = f"{name!r}: " if name else ""
    entries = _entries(spec, shape, dims, unknown_dims, label, prefix)
    defaults = list(default) if default is not None else [-1] * len(shape)
    out = []
    for axis, (c, n) in enumerate(zip(entries, shape, strict=True)):
        if c is _DEFAULT:
            c = defaults[axis]
        out.append(_length(c, int(n), clip, f"{prefix}{label} along {_axis_name(dims, axis)}"))
    return tuple(out)


def _axis_name(dims: Sequence[str] | None, axis: int) -> str:
    return repr(dims[axis]) if dims is not None and axis < len(dims) else f"axis {axis}"


def _entries(spec: Any, shape: Sequence[int], dims: Sequence[str] | None, unknown_dims: str, label: str,
             prefix: str) -> list[Any]:
    """The request's entry per axis (:data:`_DEFAULT` where it leaves the axis out)."""
    ndim = len(shape)
    if spec is None:
        return [_DEFAULT] * ndim
    if _is_integer(spec):
        return [spec] * ndim
    if isinstance(spec, Mapping):
        return _dict_entries(spec, ndim, dims, unknown_dims, label, prefix)
    if isinstance(spec, str | bytes) or isinstance(spec, bool) or not isinstance(spec, Iterable):
        raise ChunkSpecError(
            f"{prefix}{label} must be an int, a tuple with one length per dimension or a dict by dimension, "
            f"got {type(spec).__name__} {spec!r}"
        )
    entries = list(spec)
    if len(entries) != ndim:
        where = f"dimension(s) {tuple(dims)}" if dims is not None else f"axes (shape {tuple(shape)})"
        raise ChunkSpecError(
            f"{prefix}{label} {tuple(entries)} has {len(entries)} entries but the array has {ndim} {where}; "
            f"give one length per dimension"
        )
    return entries


def _dict_entries(spec: Mapping[Any, Any], ndim: int, dims: Sequence[str] | None, unknown_dims: str, label: str,
                  prefix: str) -> list[Any]:
    """Entries of a dict request keyed by dimension name or axis number."""
    names = list(dims) if dims is not None else []
    entries: list[Any] = [_DEFAULT] * ndim
    unknown = []
    for key, value in spec.items():
        if _is_integer(key):
            axis = int(key)
            if not 0 <= axis < ndim:
                raise ChunkSpecError(f"{prefix}{label}: axis {key!r} out of range for a {ndim}-d array")
        elif key in names:
            axis = names.index(key)
        else:
            unknown.append(key)  # a dimension this array does not have
            continue
        entries[axis] = value
    if unknown and unknown_dims == "error":
        raise ChunkSpecError(
            f"{prefix}{label} name unknown dimension(s) {unknown}; dimensions are {tuple(names)}"
        )
    return entries


def _length(c: Any, n: int, clip: bool, where: str) -> int:
    """One entry as a length along an axis of length ``n``."""
    if c is None or (_is_integer(c) and c == -1):
        return max(n, 1)
    if not _is_integer(c) or c <= 0:
        raise ChunkSpecError(f"{where} must be a positive integer (or -1/None for the whole axis), got {c!r}")
    c = int(c)
    if c > MAX_CHUNK_LENGTH:
        raise ChunkSpecError(
            f"{where} is {c}, beyond the largest length {MAX_CHUNK_LENGTH}; use at most the axis length {n} (or -1)"
        )
    return min(c, max(n, 1)) if clip else c


def normalize_chunks(
    target_chunks: Any,
    shape: Sequence[int],
    dims: Sequence[str] | None = None,
    *,
    default: Sequence[int] | None = None,
    name: str = "",
) -> tuple[int, ...]:
    """A rechunk's target chunks for one array: :func:`parse_chunk_spec` with the rechunk options.

    Dict keys naming no dimension of this array are skipped, lengths beyond an axis are cut to it,
    and axes left out keep ``default`` (the source chunks).

    Raises
    ------
    ChunkSpecError
        On a wrong number of entries, an axis number out of range, or lengths that are not
        positive integers up to :data:`MAX_CHUNK_LENGTH`.
    """
    return parse_chunk_spec(target_chunks, shape, dims, default=default, unknown_dims="skip", clip=True,
                            label="target chunks", name=name)
