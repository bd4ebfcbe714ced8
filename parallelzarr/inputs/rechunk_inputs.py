"""Rechunk sources that are not zarr arrays: dask arrays and xarray Datasets of any origin.

Their values are computed block by block while the plan runs: :func:`dask_source` presents a dask
array as a read-only zarr array whose chunks are computed when read (:class:`DaskChunkStore`). A Dataset is encoded the way ``Dataset.to_zarr`` encodes it, with
``target_options`` as per-variable xarray encodings (as rechunker does), and its target metadata is
what xarray would write, staged in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dask.array as da
import numpy as np
import zarr
import zarr.storage
from zarr.core.buffer import default_buffer_prototype

from parallelzarr.errors import ChunkSpecError, EncodingError, StoreWriteError
from parallelzarr.inputs.arrays import check_known_chunks
from parallelzarr.inputs.datasets import encoded_variable
from parallelzarr.inputs.stored_range import StoredRangeError
from parallelzarr.inputs.validate import DATASET_ENCODING_KEYS, check_name
from parallelzarr.plan.rechunk import ArraySpec, normalize_chunks

__all__ = ["SourceBlockError", "SourceBlockWriteError", "DaskChunkStore", "DATASET_ONLY_OPTIONS", "dask_source", "dask_job_parts", "dataset_parts"]

#: rechunker's zarr options that only steer how the target is created, not how values are encoded.
DATASET_ONLY_OPTIONS = frozenset({"overwrite", "cache_metadata", "cache_attrs"})
#: A variable's own encoding keys that carry over (netCDF-only keys such as ``zlib`` do not).
_CARRIED = DATASET_ENCODING_KEYS | {"compressor", "preferred_chunks"}


class SourceBlockError(ChunkSpecError):
    """A dask block computed another shape than its array's chunks declare (a ``ValueError``).

    ``problem`` and ``fix``: the message's halves, for the run that catches it to say what it has done
    (:class:`SourceBlockWriteError`). Instance attributes survive pickling (a distributed worker raises it).
    """

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(f"{problem}; {fix}" if fix else problem)
        self.problem = problem
        self.fix = fix


class SourceBlockWriteError(SourceBlockError, StoreWriteError):
    """A :class:`SourceBlockError` raised while a rechunk ran: its message says what readers see."""

    def __init__(self, message: str, problem: str | None = None, fix: str = "") -> None:
        # One positional argument, as pickle rebuilds an exception from ``args`` (a worker raises it).
        ValueError.__init__(self, message)
        self.problem = message if problem is None else problem
        self.fix = fix


class DaskChunkStore(zarr.storage.MemoryStore):
    """A read-only zarr store whose chunk objects are computed from a dask array when read.

    The array's metadata (raw little-endian bytes, no compression) lives in memory; reading chunk
    ``c/i/j`` computes dask block ``(i, j)`` with the synchronous scheduler inside the task that
    asked (it already holds a worker thread; a nested threaded scheduler would oversubscribe it).
    So the rechunk engine reads a dask array exactly as it reads a zarr array.
    """

    def __init__(self, data: da.Array, docs: Mapping[str, Any], name: str = "") -> None:
        super().__init__(store_dict=dict(docs), read_only=True)
        self._is_open = True  # nothing to open; tasks in several threads must not race to open it
        self._data = data
        self._name = name
        self._chunks = tuple(int(c[0]) if c else 0 for c in data.chunks)

    def __getstate__(self) -> dict[str, Any]:
        return {"data": self._data, "docs": dict(self._store_dict), "name": self._name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # rebuilt exactly as constructed
        self.__init__(state["data"], state["docs"], state.get("name", ""))  # type: ignore[misc]

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def _coords(self, key: str) -> tuple[int, ...] | None:
        parts = key.split("/")
        if parts[0] != "c" or len(parts) != max(self._data.ndim, 0) + (1 if self._data.ndim else 1):
            return None
        try:
            coords = tuple(int(p) for p in parts[1:])
        except ValueError:
            return None
        blocks = self._data.numblocks
        return coords if all(0 <= c < n for c, n in zip(coords, blocks, strict=True)) else None

    def _block(self, coords: tuple[int, ...]) -> bytes:
        region = tuple(slice(c * n, (c + 1) * n) for c, n in zip(coords, self._chunks, strict=True))
        value = _as_declared(np.asarray(self._data[region].compute(scheduler="sync")), self._data.dtype, self._name)
        want = tuple(len(range(*r.indices(n))) for r, n in zip(region, self._data.shape, strict=True))
        if value.shape != want:  # a block shorter than declared would be padded with zeros below
            raise SourceBlockError(f"{_named(self._name)}: block "
                                   f"{coords} computed shape {value.shape} where its chunks declare {want}",
                                   "fix the function that makes it (map_blocks chunks=...)")
        dtype = value.dtype.newbyteorder("<") if value.dtype.byteorder == ">" else value.dtype
        if value.shape != self._chunks:  # zarr stores edge chunks padded to the full chunk shape
            padded = np.zeros(self._chunks, dtype=dtype)
            padded[tuple(slice(0, n) for n in value.shape)] = value
            value = padded
        return np.ascontiguousarray(value, dtype=dtype).tobytes()

    async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
        if key in self._store_dict:
            return await super().get(key, prototype, byte_range)
        coords = self._coords(key) if self._data.ndim else (() if key == "c" else None)
        if coords is None:
            return None
        prototype = prototype or default_buffer_prototype()
        raw = self._block(coords)
        if byte_range is not None:
            start = getattr(byte_range, "start", getattr(byte_range, "offset", 0)) or 0
            stop = getattr(byte_range, "end", None)
            raw = raw[start:stop] if stop is not None else raw[start:]
        return prototype.buffer.from_bytes(raw)

    async def exists(self, key: str) -> bool:
        if key in self._store_dict:
            return True
        return (self._coords(key) if self._data.ndim else (() if key == "c" else None)) is not None


def _named(name: str) -> str:
    return f"variable {name!r}" if name else "a dask array"


def _as_declared(value: np.ndarray, declared: Any, name: str) -> np.ndarray:
    """A computed block in the dtype its dask array declares, refused where the cast changes values.

    Blocks need not have the declared dtype: xarray's lazy CF time encoding declares the encoding's
    ``int32`` (ERA5's netCDF time) and computes ``int64``. Their raw bytes read as the declared dtype
    would be garbage, so the block is cast, and only where every value survives the cast.
    """
    want = np.dtype(declared)
    if value.dtype == want:
        return value
    cast = value.astype(want)
    if want.kind in "biufc" and value.dtype.kind in "biufc" and not np.array_equal(
            cast, value, equal_nan=want.kind in "fc" and value.dtype.kind in "fc"):
        bad = np.flatnonzero(cast.ravel() != value.ravel())
        at = np.unravel_index(int(bad[0]), value.shape) if bad.size and value.ndim else ()
        problem = (f"{_named(name)} is declared {want} but computed "
                   f"{value.dtype} values it cannot hold (e.g. {value[at].item()!r} at {tuple(int(i) for i in at)})")
        fix = (f"declare a dtype that holds them: encoding {{'dtype': '{value.dtype}'}} for a Dataset variable, "
               f"dtype='{value.dtype}' where the dask array is made")
        raise StoredRangeError(f"{problem}; {fix}", problem, fix, while_writing=True)
    return cast


def dask_source(data: da.Array, name: str = "") -> zarr.Array:
    """A read-only zarr array (v3, raw bytes) whose chunks are computed from ``data``.

    Irregular dask chunks are first made regular (zarr grids are regular). Strings and objects
    have no raw-bytes encoding: they are computed once into memory (they are small coordinates
    in practice).
    """
    dtype = np.dtype(data.dtype)
    if data.ndim and any(len(set(c[:-1])) > 1 or (len(c) > 1 and c[-1] > c[0]) for c in data.chunks):
        data = data.rechunk(tuple(max(c) for c in data.chunks))
    chunks = tuple(max(1, int(c[0])) if c else 1 for c in data.chunks) if data.ndim else ()
    if dtype.kind not in "biufcmM":
        arr = zarr.create_array(zarr.storage.MemoryStore(), shape=data.shape, chunks=chunks, dtype=dtype,
                                zarr_format=3)
        arr[...] = np.asarray(data.compute(scheduler="sync"))
        return arr
    staging = zarr.storage.MemoryStore()
    zarr.create_array(staging, shape=data.shape, chunks=chunks, dtype=dtype.newbyteorder("<") if
                      dtype.byteorder == ">" else dtype, compressors=None, filters=None, fill_value=0, zarr_format=3)
    store = DaskChunkStore(data, staging._store_dict, name)
    return zarr.open_array(store, mode="r")


def _itemsize(dtype: np.dtype) -> int:
    return dtype.itemsize if dtype.kind != "O" and dtype.itemsize > 0 else 64


def dask_job_parts(
    data: da.Array, path: str, request: Any, dims: tuple[str, ...] | None, zarr_format: int,
    opts: Mapping[str, Any], attrs: Mapping[str, Any] | None = None,
) -> tuple[zarr.Array, ArraySpec, dict[str, Any]]:
    """Source adapter, planner spec and ``zarr.create_array`` keywords for one dask array.

    ``request`` None keeps the dask chunk size (rechunker's "copy with the same chunks").
    """
    check_known_chunks(data, path or "array")
    shape = tuple(int(n) for n in data.shape)
    source_chunks = tuple(max(1, int(c)) for c in data.chunksize) if data.ndim else ()
    chunks = normalize_chunks(request, shape, dims, default=source_chunks, name=path)
    dtype = np.dtype(data.dtype)
    spec = ArraySpec(name=path, shape=shape, dtype=str(dtype), itemsize=_itemsize(dtype),
                     source_chunks=source_chunks, target_chunks=chunks)
    attributes = dict(attrs or {})
    kw: dict[str, Any] = {"name": path or None, "shape": shape, "dtype": dtype, "chunks": chunks,
                          "zarr_format": zarr_format, "overwrite": True}
    if dims is not None:
        if zarr_format == 3:
            kw["dimension_names"] = dims
        else:
            attributes["_ARRAY_DIMENSIONS"] = list(dims)
    kw["attributes"] = attributes
    return dask_source(data, path), spec, kw


def _lazy(var: Any, chunks: tuple[int, ...]) -> Any:
    """``var`` backed by dask: in-memory and lazily loaded (netCDF) data are read block by block.

    Non-dask data is split like the target, so the plan copies it in one pass and a netCDF variable
    is never loaded whole.
    """
    import xarray as xr

    base = var.to_base_variable() if isinstance(var, xr.IndexVariable) else var
    if isinstance(base.data, da.Array):
        return base
    return base.chunk(dict(zip(base.dims, chunks, strict=True)) if base.ndim else {})


def _dim_chunks(ds: Any, var: Any, request: Mapping[str, Any]) -> tuple[int, ...]:
    """rechunker's per-dimension rule: given sizes (clipped, -1 = whole), else dask chunks or whole."""
    out = []
    dask_sizes = dict(zip(var.dims, var.data.chunksize, strict=True)) if isinstance(var.data, da.Array) else {}
    for dim, n in zip(var.dims, var.shape, strict=True):
        want = request.get(dim)
        if dim in request and want is not None and 0 <= want <= n:
            out.append(max(1, int(want)))
        elif dim in request:
            out.append(max(1, int(n)))
        else:
            out.append(max(1, int(dask_sizes.get(dim, n))))
    return tuple(out)


def _default_chunks(var: Any) -> tuple[int, ...]:
    enc = var.encoding.get("chunks")
    if isinstance(enc, tuple | list) and len(enc) == var.ndim:
        return tuple(int(c) for c in enc)
    if isinstance(var.data, da.Array):
        return tuple(max(1, int(c)) for c in var.data.chunksize)
    return tuple(max(1, int(n)) for n in var.shape)


def dataset_parts(
    ds: Any, target_chunks: Any, target_options: Mapping[str, Any], zarr_format: int,
) -> tuple[list[tuple[str, zarr.Array, ArraySpec, dict[str, Any]]], dict[str, Any], dict[str, bool]]:
    """Encode a Dataset as ``to_zarr`` would and describe each variable as a rechunk job.

    Returns
    -------
    jobs
        ``(name, source, spec, create_kwargs)`` per variable, the kwargs taken from the metadata xarray
        writes for it (codecs, fill value, CF attributes, dimension names).
    root_attrs
        The Dataset's attributes as xarray stores them.
    overwrite
        Per variable, whether ``target_options`` asked to overwrite an existing target.

    Raises
    ------
    ChunkSpecError, EncodingError
        On chunk requests or encodings xarray or zarr refuse (nothing has been written).
    """
    from parallelzarr.inputs.datasets import metadata_template
    from parallelzarr.store.staging import lay_down_in_memory

    names = [str(n) for n in ds.variables]
    options = _checked_request(ds, names, target_chunks, target_options)
    by_dim = bool(target_chunks) and all(k in ds.dims for k in target_chunks)
    chunked, encoding, overwrite = {}, {}, {}
    for name, var in ds.variables.items():
        name = str(name)
        user = options.get(name, {})
        overwrite[name] = bool(user.get("overwrite", False))
        encoding[name] = _variable_encoding(ds, name, var, target_chunks, by_dim, user)
        chunked[name] = _lazy(var, encoding[name]["chunks"])
    lazy = ds.copy(deep=False)
    for name, var in chunked.items():
        if name not in lazy.dims:  # index coordinates stay pandas indexes; their values are small
            lazy[name] = var
    staging = lay_down_in_memory(metadata_template(lazy), "xarray refused the Dataset or target_options as zarr "
                                 "encodings", encoding=encoding, zarr_format=zarr_format, consolidated=False,
                                 safe_chunks=False)
    group = zarr.open_group(staging, mode="r")
    jobs = [_variable_job(name, chunked[name], _array(group, name), encoding[name], zarr_format) for name in names]
    return jobs, dict(group.attrs), overwrite


def _checked_request(ds: Any, names: list[str], target_chunks: Any,
                     target_options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Refuse chunk requests and options a Dataset rechunk cannot take; return the options per variable."""
    if not isinstance(target_chunks, Mapping):
        raise ChunkSpecError("You must specify ``target-chunks`` as a dict when rechunking a dataset "
                             f"(got {type(target_chunks).__name__}): variable name -> chunks, or dimension -> size")
    for name in names:
        check_name(name, "variable", "rename it in the Dataset before rechunking")
    options = {str(k): dict(v) for k, v in (target_options or {}).items()}
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise EncodingError(f"target_options name variables {unknown} that the Dataset does not have "
                            f"(it has {sorted(names)})")
    for name, opts in options.items():
        if "chunks" in opts:
            raise EncodingError(f"Chunks must be provided in 'target_chunks' rather than options (variable={name})")
    by_dim = bool(target_chunks) and all(k in ds.dims for k in target_chunks)
    if not by_dim:
        extra = sorted(str(k) for k in target_chunks if str(k) not in names)
        if extra:
            raise ChunkSpecError(f"target_chunks name {extra}, which are neither variables nor dimensions of the "
                                 f"Dataset (variables {sorted(names)}, dimensions {sorted(map(str, ds.dims))})")
    return options


def _variable_encoding(ds: Any, name: str, var: Any, target_chunks: Mapping[Any, Any], by_dim: bool,
                       user: Mapping[str, Any]) -> dict[str, Any]:
    """The encoding a variable is rechunked with: its own CF/codec encoding, the user's options, the new chunks."""
    dims = tuple(str(d) for d in var.dims)
    if by_dim:
        chunks = _dim_chunks(ds, var, target_chunks)
    else:
        chunks = normalize_chunks(target_chunks.get(name), var.shape, dims, default=_default_chunks(var), name=name)
    enc = {k: v for k, v in var.encoding.items() if k in _CARRIED and k != "chunks"}
    enc.update({k: v for k, v in user.items() if k not in DATASET_ONLY_OPTIONS})
    if "compressor" in enc:  # rechunker's (zarr 2) spelling; xarray on zarr 3 takes ``compressors``
        one = enc.pop("compressor")
        enc["compressors"] = None if one is None else [one]
    enc.pop("preferred_chunks", None)
    enc["chunks"] = chunks
    return enc


def _variable_job(name: str, var: Any, stored: zarr.Array, encoding: dict[str, Any],
                  zarr_format: int) -> tuple[str, zarr.Array, ArraySpec, dict[str, Any]]:
    """One variable's rechunk job: its encoded values as a source, the spec, the target's create keywords."""
    if var.dtype.kind in "mM":
        # Lazy times cannot have their units inferred; encode with those xarray chose for the metadata.
        attrs = stored.attrs
        encoding.update({k: attrs[k] for k in ("units", "calendar") if k in attrs})
        encoding.setdefault("dtype", np.dtype(stored.dtype))
    # The packing of the first of many files: values it cannot hold are refused there, not wrapped.
    enc_var = encoded_variable(name, var, encoding, zarr_format)
    data = enc_var.data if isinstance(enc_var.data, da.Array) else da.asarray(np.asarray(enc_var.data))
    source_chunks = tuple(max(1, int(c)) for c in data.chunksize) if data.ndim else ()
    dtype = np.dtype(stored.dtype)
    spec = ArraySpec(name=name, shape=tuple(stored.shape), dtype=str(dtype), itemsize=_itemsize(dtype),
                     source_chunks=source_chunks, target_chunks=tuple(stored.chunks))
    return name, dask_source(data.astype(dtype, copy=False), name), spec, _staged_kwargs(stored, name)


def _array(group: zarr.Group, name: str) -> zarr.Array:
    """Member ``name`` of ``group``, which xarray wrote as an array."""
    node = group[name]
    if not isinstance(node, zarr.Array):
        raise TypeError(f"{name!r} was laid down as a group, not an array")  # xarray writes variables as arrays
    return node


def _staged_kwargs(arr: zarr.Array, name: str) -> dict[str, Any]:
    """``zarr.create_array`` keywords recreating a staged (xarray-written) array exactly."""
    meta = arr.metadata
    kw: dict[str, Any] = {
        "name": name, "shape": tuple(arr.shape), "chunks": tuple(arr.chunks), "zarr_format": meta.zarr_format,
        "fill_value": meta.fill_value, "attributes": dict(arr.attrs), "overwrite": True,
        "compressors": arr.compressors or None, "filters": arr.filters or None,
    }
    if meta.zarr_format == 3:
        kw["dtype"] = meta.data_type
        kw["serializer"] = arr.serializer
        kw["dimension_names"] = meta.dimension_names
        if arr.shards is not None:
            kw["shards"] = tuple(arr.shards)
    else:
        kw["dtype"] = meta.dtype
        kw["order"] = meta.order
    return kw
