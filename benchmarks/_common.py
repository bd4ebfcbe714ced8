"""Shared helpers for the benchmark scripts.

What lives here is independent of any one benchmark: sizes, deterministic synthetic data, a
peak-RSS sampler of the whole process tree, timing, verification of written stores, and
table/JSON output. Every benchmark follows the protocol of ``DESIGN.md`` ("Benchmark protocol"):
float32 data shaped like a temperature field, default zarr v3 codecs, ratios measured in one run.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

__all__ = [
    "parse_size",
    "format_size",
    "synthetic_values",
    "synthetic_block",
    "synthetic_dask",
    "synthetic_numpy",
    "time_length_for",
    "PeakRSS",
    "Measurement",
    "measure",
    "verify_zarr",
    "format_table",
    "write_json",
    "environment",
]

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_size(text: str | int | float) -> int:
    """Parse a size such as ``"2GB"``, ``"200MB"``, ``"1.5GiB"`` or ``12345`` into bytes.

    Parameters
    ----------
    text
        A number of bytes or a number with a decimal (``KB``, ``MB``, ``GB``) or binary
        (``KiB``, ``MiB``, ``GiB``) unit.

    Returns
    -------
    int
        The size in bytes.
    """
    if isinstance(text, int | float):
        return int(text)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS:
        raise ValueError(f"cannot parse size {text!r}; use e.g. 200MB, 2GB or 1GiB")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def format_size(nbytes: float) -> str:
    """Format a byte count with a decimal unit (``"1.94 GB"``)."""
    for unit, scale in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(nbytes) >= scale:
            return f"{nbytes / scale:.2f} {unit}"
    return f"{int(nbytes)} B"


# --- synthetic data ---------------------------------------------------------------------------


def _hash_uniform(index: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) float32 noise from a splitmix64 hash of integer indices (deterministic)."""
    h = index.astype(np.uint64, copy=False) * np.uint64(0x9E3779B97F4A7C15)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return (h >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def synthetic_values(
    location: Sequence[tuple[int, int]], shape: Sequence[int], seed: int = 0, noise: float = 0.5
) -> np.ndarray:
    """Values of the synthetic field in a box of the full array.

    The field looks like a near-surface temperature in kelvin: a latitude gradient, a seasonal
    cycle, a travelling wave, plus uniform noise. It depends only on the *global* index of each
    element, so any chunking of the same array yields identical values and the noise keeps the
    codecs busy (the data is not trivially compressible).

    Parameters
    ----------
    location
        ``(start, stop)`` per axis of the box, in global indices. The array has 1 to 3 axes;
        the first is time, the last two are ``(y, x)``.
    shape
        Shape of the full array (for the periodic terms and the global linear index).
    seed
        Changes the noise.
    noise
        Noise amplitude in kelvin.

    Returns
    -------
    numpy.ndarray
        float32 array of the box's shape.
    """
    ndim = len(shape)
    axes = []
    for i, (a, b) in enumerate(location):
        view = [1] * ndim
        view[i] = b - a
        axes.append(np.arange(a, b, dtype=np.int64).reshape(view))
    full = [int(n) for n in shape]
    t = axes[0]
    y = axes[-2] if ndim >= 2 else np.zeros((1,) * ndim, np.int64)
    x = axes[-1] if ndim >= 3 else np.zeros((1,) * ndim, np.int64)
    ny = full[-2] if ndim >= 2 else 1
    nx = full[-1] if ndim >= 3 else 1
    lat = (y.astype(np.float32) / max(ny - 1, 1) - np.float32(0.5)) * np.float32(np.pi)
    lon = x.astype(np.float32) / np.float32(max(nx, 1)) * np.float32(2 * np.pi)
    season = np.sin(t.astype(np.float32) * np.float32(2 * np.pi / 365.25))
    out = np.float32(288.0) - np.float32(30.0) * np.sin(lat) ** 2
    out = out + np.float32(10.0) * season * np.sin(lat)
    out = out + np.float32(3.0) * np.cos(lon * 3 + t.astype(np.float32) * np.float32(0.05)) * np.cos(lat)
    # Broadcasting the terms above gives the full box; the linear index gives each element its own noise.
    linear = (t * ny + y) * nx + x + np.int64(seed) * np.int64(1 << 40)
    out = out + np.float32(noise) * (_hash_uniform(linear) - np.float32(0.5))
    return np.ascontiguousarray(np.broadcast_to(out, tuple(b - a for a, b in location)), dtype=np.float32)


#: Elements generated at a time inside one block (bounds the generator's temporaries to ~40 MB).
_GENERATE_ELEMENTS = 1 << 20


def synthetic_block(block: np.ndarray | None = None, block_info: Mapping[Any, Any] | None = None, *,
                    seed: int = 0) -> np.ndarray:
    """``dask.array.map_blocks`` callback: the synthetic values of one block.

    Parameters
    ----------
    block
        Ignored (present so the function also works with an input array).
    block_info
        Filled in by dask; ``block_info[None]`` has the block's ``array-location`` and the full
        ``shape``.
    seed
        Noise seed.
    """
    info = block_info[None]  # type: ignore[index]
    location = [tuple(loc) for loc in info["array-location"]]
    (t0, t1), rest = location[0], location[1:]
    # Generated a few steps at a time: the hash needs ~40 bytes of temporaries per element, which for
    # a whole 50 MB block would dwarf the memory of the write being measured.
    per_step = max(1, math.prod(b - a for a, b in rest))
    step = max(1, _GENERATE_ELEMENTS // per_step)
    out = np.empty(tuple(b - a for a, b in location), dtype=np.float32)
    for a in range(t0, t1, step):
        b = min(a + step, t1)
        out[a - t0 : b - t0] = synthetic_values([(a, b), *rest], info["shape"], seed=seed)
    return out


def synthetic_dask(shape: Sequence[int], chunks: Any, seed: int = 0, name: str | None = None) -> Any:
    """A lazy dask array of the synthetic field; every block is generated where it is computed.

    Parameters
    ----------
    shape
        Full array shape.
    chunks
        Dask chunks (anything ``dask.array`` accepts).
    seed
        Noise seed.
    name
        Dask layer name; by default derived from the arguments, so equal arguments give equal keys.
        Pass a new name to force a recomputation on a cluster that still holds the old blocks.
    """
    import dask.array as da
    from dask.array.core import normalize_chunks
    from dask.base import tokenize

    shape = tuple(int(s) for s in shape)
    chunks = normalize_chunks(chunks, shape, dtype=np.float32)
    name = name or "synthetic-" + tokenize(shape, chunks, seed)
    return da.map_blocks(synthetic_block, chunks=chunks, dtype=np.float32, name=name, meta=np.empty((0,) * len(shape), np.float32), seed=seed)


def synthetic_numpy(shape: Sequence[int], seed: int = 0, slab: int = 64) -> np.ndarray:
    """The whole synthetic field in memory, generated slab by slab along the first axis."""
    out = np.empty(tuple(shape), dtype=np.float32)
    rest = [(0, int(n)) for n in shape[1:]]
    for a in range(0, shape[0], slab):
        b = min(a + slab, shape[0])
        out[a:b] = synthetic_values([(a, b), *rest], shape, seed=seed)
    return out


def time_length_for(nbytes: int, plane: Sequence[int], multiple: int = 1, minimum: int = 1) -> int:
    """Length of the leading axis so that ``(T, *plane)`` float32 data is about ``nbytes``.

    Rounded to a multiple of ``multiple`` (so chunkings tile it) and at least ``minimum``.
    """
    per_step = math.prod(plane) * 4
    steps = max(1, round(nbytes / per_step / multiple)) * multiple
    return max(steps, minimum)


# --- measuring ----------------------------------------------------------------------------------


class PeakRSS:
    """Sample the resident memory of a process and all its descendants in a background thread.

    Use as a context manager; ``peak`` is the largest total RSS seen (bytes), ``baseline`` the
    total when sampling started. Children (dask workers, nannies) are found anew at every sample,
    so processes started inside the block count.

    Parameters
    ----------
    pid
        Root process; this process by default.
    interval
        Seconds between samples.
    """

    def __init__(self, pid: int | None = None, interval: float = 0.02) -> None:
        self.root = psutil.Process(pid or os.getpid())
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def total(self) -> int:
        """Current RSS of the process tree in bytes."""
        procs = [self.root]
        try:
            procs += self.root.children(recursive=True)
        except psutil.Error:
            pass
        rss = 0
        for proc in procs:
            try:
                rss += proc.memory_info().rss
            except psutil.Error:  # a child may exit between listing and reading
                pass
        return rss

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.total())
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self.baseline = self.peak = self.total()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self.total())


@dataclass
class Measurement:
    """Wall-clock time and process-tree memory of one timed call."""

    seconds: float
    peak_rss: int
    baseline_rss: int
    result: Any = field(default=None, repr=False)
    #: CPU time (user + system) of this process only, over the call; above ``seconds`` means threads ran in parallel.
    cpu_seconds: float = 0.0
    #: 1-minute load average at the end: other work on the machine skews wall-clock numbers.
    load_average: float = 0.0

    @property
    def rss_increase(self) -> int:
        """Peak RSS above the RSS at the start (what the timed call itself added)."""
        return max(0, self.peak_rss - self.baseline_rss)


def measure(fn: Callable[[], Any], *, interval: float = 0.02, rss: bool = True) -> Measurement:
    """Run ``fn()`` once, timing it (wall clock) with peak RSS of the process tree sampled beside it.

    ``rss=False``: no sampling (peak and baseline 0), for calls of a few milliseconds, where one
    sample of the process tree (about 0.5 ms, holding the GIL) would be part of what is timed.
    """
    if not rss:
        proc = psutil.Process()
        cpu0 = proc.cpu_times()
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
        cpu1 = proc.cpu_times()
        return Measurement(seconds=seconds, peak_rss=0, baseline_rss=0, result=result,
                           cpu_seconds=(cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
                           load_average=os.getloadavg()[0])
    proc = psutil.Process()
    with PeakRSS(interval=interval) as sampler:
        cpu0 = proc.cpu_times()
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
        cpu1 = proc.cpu_times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return Measurement(
        seconds=seconds,
        peak_rss=sampler.peak,
        baseline_rss=sampler.baseline,
        result=result,
        cpu_seconds=cpu,
        load_average=os.getloadavg()[0],
    )


@contextmanager
def timer() -> Iterator[dict[str, float]]:
    """Context manager filling ``out["seconds"]`` with the wall-clock time of the block."""
    out: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = time.perf_counter() - start


# --- verification -------------------------------------------------------------------------------


def verify_zarr(store: str | os.PathLike[str], expected: np.ndarray, path: str | None = None, slab: int | None = None) -> bool:
    """Whether the zarr array at ``store``/``path`` equals ``expected`` exactly (read slab by slab).

    Parameters
    ----------
    store
        Directory of the zarr store.
    expected
        The source data.
    path
        Array path inside the store (a Dataset variable name), or ``None`` for an array at the root.
    slab
        Length along the first axis read at a time; by default about 256 MB per slab.
    """
    import zarr

    arr = zarr.open_array(store=str(store), path=path or "", mode="r")
    if tuple(arr.shape) != tuple(expected.shape) or np.dtype(arr.dtype) != expected.dtype:
        return False
    per_step = max(1, expected[:1].nbytes)
    slab = slab or max(1, (256 * 2**20) // per_step)
    # Reading whole zarr chunks at a time avoids decoding a chunk twice.
    slab = max(arr.chunks[0], slab // arr.chunks[0] * arr.chunks[0])
    for a in range(0, expected.shape[0], slab):
        b = min(a + slab, expected.shape[0])
        if not np.array_equal(arr[a:b], expected[a:b]):
            return False
    return True


# --- output -------------------------------------------------------------------------------------


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Render rows as a plain-text table.

    Parameters
    ----------
    rows
        One mapping per row.
    columns
        ``(key, header)`` pairs; values are shown with ``str`` (``None`` as ``-``).
    """
    cells = [[("-" if r.get(k) is None else str(r.get(k))) for k, _ in columns] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (_, h) in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for (_, h), w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)) for c in cells]
    return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as indented JSON, creating parent directories; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    return out


def environment() -> dict[str, Any]:
    """Versions and machine facts worth keeping next to benchmark numbers."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("parallelzarr", "zarr", "numcodecs", "dask", "distributed", "xarray", "numpy"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory": psutil.virtual_memory().total,
        "load_average": os.getloadavg(),
        "versions": versions,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
