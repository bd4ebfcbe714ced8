"""Append benchmark: many small incremental appends, and one large append against the floor.

Small appends: ``--appends`` (default 50) appends of 2 float32 variables of (4, 200, 200), zarr
chunks (4, 100, 100), with parallelzarr (crash-safe protocol: lease, journal, consolidated commit; both as
``pz.append`` and as the drop-in ``pz.to_zarr(append_dim=...)``, which adds xarray's checks and the
comparison of the variables without the append dimension)
and with ``xarray.Dataset.to_zarr(append_dim="time")`` in the same run; three cases: those variables
alone, with static latitude/longitude coordinates and a 0-d grid mapping (as CF files carry them), and
the same with ``t2m`` stored packed (int16 with a scale factor, as ERA5 netCDF files store it); median and total time per
append, each contender timed on a store given as a path (as users give it). The store operations
per append are counted on a twin store behind a counting wrapper, in untimed runs of the same
appends. Large append: one append of about ``--large`` bytes onto a store with a partial last chunk,
against the floor (the same bytes written to fresh zarr arrays from memory).

Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr

sys.path.insert(0, str(Path(__file__).parent))
from _common import (  # noqa: E402
    environment,
    format_size,
    format_table,
    measure,
    parse_size,
    synthetic_numpy,
    write_json,
)
from _counting import counting_store  # noqa: E402

import parallelzarr as pz  # noqa: E402

PLANE = (200, 200)
STEP = 4


def small_step(i: int, plane: tuple[int, int] = PLANE, statics: bool = False) -> xr.Dataset:
    """The i-th append: 2 variables of (4, *plane) float32, one dask chunk each; with ``statics``, also
    what CF files carry besides (the same in every step): latitude and longitude coordinates and a 0-d
    grid mapping."""
    values = synthetic_numpy((STEP, *plane), seed=i)
    times = pd.date_range("2000-01-01", periods=STEP, freq="h") + pd.Timedelta(hours=STEP * i)
    ds = xr.Dataset(
        {
            "t2m": (("time", "y", "x"), da.from_array(values, chunks=(STEP, *plane))),
            "d2m": (("time", "y", "x"), da.from_array(values - 2.0, chunks=(STEP, *plane))),
        },
        coords={"time": times},
    )
    if not statics:
        return ds
    return ds.assign_coords(
        lat=("y", np.linspace(60.0, 30.0, plane[0]), {"units": "degrees_north"}),
        lon=("x", np.linspace(-10.0, 40.0, plane[1]), {"units": "degrees_east"}),
    ).assign(crs=((), np.int32(0), {"grid_mapping_name": "latitude_longitude"}))


#: ``t2m`` stored as ERA5 netCDF files store their fields: int16 with a scale factor, an offset and a fill value.
PACKED = {"dtype": "int16", "scale_factor": 0.001, "add_offset": 273.0, "_FillValue": -32767}


def encoding(packed: bool = False) -> dict:
    out: dict = {v: {"chunks": (STEP, 100, 100)} for v in ("t2m", "d2m")}
    if packed:
        out["t2m"].update(PACKED)
    return out


class FloorAppend:
    """The least a crash-safe append of these rows must do, with no framework and no validation.

    Take the lease (one exclusive create), read the consolidated root, encode each new chunk once
    (the stored codecs: bytes + Zstd level 0) and store it beyond the published shape (2 threads, as
    the other contenders; plain file writes: no reader looks there until the commit), write the
    journal, each array's grown document and the consolidated root (the commit point), write the
    append record, delete the journal, release the lease: 19 store operations. Every document a
    reader or a recovery reads (journal, array documents, root, record) is replaced atomically
    (temporary file, then rename), as zarr's LocalStore writes every key: a kill mid-write must leave
    the old document or the new one, never a torn one. Written as files, so its store is read back
    like the others'. It does not check for an earlier append's pending journal, nor read any label.
    """

    def __init__(self, path: Path, packed: bool = False) -> None:
        from concurrent.futures import ThreadPoolExecutor

        import numcodecs

        self.path = path
        self.packed = packed  # t2m encoded with xarray's CF encoder and PACKED, as any writer must
        self.codec = numcodecs.Zstd(level=0)
        self.pool = ThreadPoolExecutor(2)
        self.counts: dict[str, int] = {}  # its own operations by kind, as the counting store counts ours
        self._lock = threading.Lock()

    def _n(self, kind: str) -> None:
        with self._lock:  # chunk writes count from the pool's threads
            self.counts[kind] = self.counts.get(kind, 0) + 1

    def _put(self, key: str, data: bytes, atomic: bool = True) -> None:
        self._n("set")
        target = self.path / key
        target.parent.mkdir(parents=True, exist_ok=True)
        if not atomic:
            target.write_bytes(data)
            return
        partial = target.with_name(f".{target.name}.{threading.get_ident()}.partial")
        partial.write_bytes(data)
        os.replace(partial, target)

    def _chunk(self, key: str, block: np.ndarray) -> None:
        self._put(key, self.codec.encode(np.ascontiguousarray(block)), atomic=False)

    def __call__(self, step: xr.Dataset) -> None:
        from xarray.coding.times import encode_cf_datetime

        lease = self.path / ".floor-lease.json"
        self._n("set")
        fd = os.open(lease, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b'{"id": "floor"}')
        os.close(fd)
        self._n("get")
        root = json.loads((self.path / "zarr.json").read_bytes())
        meta = root["consolidated_metadata"]["metadata"]
        offset = int(meta["time"]["shape"][0])
        attrs = meta["time"]["attributes"]
        times, _, _ = encode_cf_datetime(step.time.values, attrs["units"], attrs["calendar"], np.dtype("int64"))
        jobs = [self.pool.submit(self._chunk, f"time/c/{offset // STEP}", np.asarray(times, dtype="<i8"))]
        for name in ("t2m", "d2m"):
            if self.packed and name == "t2m":
                from xarray.conventions import encode_cf_variable

                var = xr.Variable(step[name].dims, step[name].values, encoding=dict(PACKED))
                values = np.asarray(encode_cf_variable(var, name=name).values, dtype="<i2")
            else:
                values = np.asarray(step[name].values, dtype="<f4")
            cy, cx = meta[name]["chunk_grid"]["configuration"]["chunk_shape"][1:]
            for j in range(values.shape[1] // cy):
                for k in range(values.shape[2] // cx):
                    block = values[:, j * cy:(j + 1) * cy, k * cx:(k + 1) * cx]
                    jobs.append(self.pool.submit(self._chunk, f"{name}/c/{offset // STEP}/{j}/{k}", block))
        for job in jobs:
            job.result()
        self._put(".floor-journal.json", json.dumps({"offset": offset, "length": STEP}).encode())
        for name in ("time", "t2m", "d2m"):
            meta[name]["shape"][0] = offset + STEP
            self._put(f"{name}/zarr.json", json.dumps(meta[name], indent=2).encode())
        self._put("zarr.json", json.dumps(root, indent=2).encode())
        self._put(f".floor-appends/{offset}.json", json.dumps({"offset": offset, "length": STEP}).encode())
        for key in (self.path / ".floor-journal.json", lease):
            self._n("delete")
            os.remove(key)


def run_small(root: Path, appends: int, statics: bool = False, packed: bool = False) -> list[dict]:
    rows = []
    tag_case = f"{appends} small appends" + (", static coordinates" if statics else "") + (", packed" if packed else "")
    root = root / f"statics{statics}-packed{packed}"
    root.mkdir()
    # "parallelzarr to_zarr": the drop-in spelling, pz.to_zarr(ds, store, append_dim=...), which also
    # runs xarray's checks and compares the variables without append_dim, as xarray's mode="a" does.
    names = ("parallelzarr", "parallelzarr to_zarr", "xarray", "floor")
    appenders = {
        "parallelzarr": lambda s, store: pz.append(s, store, "time"),
        "parallelzarr to_zarr": lambda s, store: pz.to_zarr(s, store, append_dim="time"),
        "xarray": lambda s, store: s.to_zarr(store, append_dim="time", consolidated=True),
    }
    # Timed: each contender is given a path, as users give it. Counted: the same appends onto a twin
    # store behind a wrapper that counts every operation (untimed: a wrapper store is not a plain
    # LocalStore, so parallelzarr writes it through the store's coroutines instead of as files).
    timed, counted = {}, {}
    for name in appenders:
        for store_of, tag in ((timed, ""), (counted, "-counted")):
            path = root / f"{name.replace(' ', '-')}{tag}.zarr"
            if name == "xarray":
                small_step(0, statics=statics).to_zarr(str(path), encoding=encoding(packed), zarr_format=3,
                                                       consolidated=True)
            else:
                pz.to_zarr(small_step(0, statics=statics), str(path), encoding=encoding(packed))
            store_of[name] = str(path) if not tag else counting_store(zarr.storage.LocalStore(str(path)))
    least = root / "floor.zarr"
    small_step(0, statics=statics).to_zarr(str(least), encoding=encoding(packed), zarr_format=3, consolidated=True)
    floor = FloorAppend(least, packed)
    times: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    ops: dict[str, list[dict[str, int]]] = {n: [] for n in names}
    for i in range(1, appends + 1):
        step = small_step(i, statics=statics)
        # The order rotates per step, so no contender always runs first (or right after the counted runs).
        for name in names[i % len(names):] + names[:i % len(names)]:
            if name == "floor":
                floor.counts.clear()
                m = measure(lambda s=step: floor(s), rss=False)
                times["floor"].append(m.seconds)
                cpus["floor"].append(m.cpu_seconds)
                ops["floor"].append(dict(floor.counts))
                continue
            append = appenders[name]
            m = measure(lambda s=step, a=append, t=timed[name]: a(s, t), rss=False)
            times[name].append(m.seconds)
            cpus[name].append(m.cpu_seconds)
            counted[name].counts.clear()
            append(step, counted[name])
            ops[name].append(dict(counted[name].counts))
    loaded = {name: xr.open_zarr(store if isinstance(store, str) else store._store).load()
              for name, store in [*timed.items(), *((f"{n} counted", s) for n, s in counted.items())]}
    c = xr.open_zarr(str(least)).load()
    a, b = loaded["parallelzarr"], loaded["xarray"]
    same = bool(np.array_equal(a.t2m.values, b.t2m.values) and np.array_equal(a.time.values, b.time.values)
                and np.array_equal(a.t2m.values, c.t2m.values) and np.array_equal(a.d2m.values, c.d2m.values)
                and np.array_equal(a.time.values, c.time.values)
                and all(a.identical(loaded[n]) for n in loaded if n.startswith("parallelzarr"))
                and b.identical(loaded["xarray counted"])
                and all(a[v].equals(b[v]) for v in a.variables if "time" not in a[v].dims))
    base = statistics.median(times["xarray"])
    for name, ts in times.items():
        rows.append({
            "case": tag_case,
            "contender": name,
            "median_s": round(statistics.median(ts), 4),
            "total_s": round(sum(ts), 2),
            "ratio_vs_xarray": round(statistics.median(ts) / base, 3),
            "cpu_s": round(statistics.median(cpus[name]), 4),
            "total_cpu_s": round(sum(cpus[name]), 2),
            "cpu_ratio_vs_xarray": round(statistics.median(cpus[name]) / statistics.median(cpus["xarray"]), 3),
            "store_ops": statistics.median(sum(c.values()) for c in ops[name]),
            "ops_by_kind": {k: statistics.median(c.get(k, 0) for c in ops[name])
                            for k in sorted({k for c in ops[name] for k in c})},
            "verified": "ok" if same else "MISMATCH",
        })
    return rows


def run_large(root: Path, nbytes: int) -> list[dict]:
    plane = (500, 500)
    n_new = max(8, nbytes // (2 * 4 * plane[0] * plane[1]))
    big = synthetic_numpy((n_new + 10, *plane), seed=7)
    times = pd.date_range("2000-01-01", periods=n_new + 10, freq="h")
    chunks = (24, 250, 250)

    def ds(lo: int, hi: int, dchunk: int) -> xr.Dataset:
        part = big[lo:hi]
        return xr.Dataset(
            {"a": (("time", "y", "x"), da.from_array(part, chunks=(dchunk, *plane))),
             "b": (("time", "y", "x"), da.from_array(part + 1, chunks=(dchunk, *plane)))},
            coords={"time": times[lo:hi]},
        )

    path = root / "large.zarr"
    pz.to_zarr(ds(0, 10, 10), str(path), encoding={"a": {"chunks": chunks}, "b": {"chunks": chunks}})
    new = ds(10, n_new + 10, 36).persist()
    ours = measure(lambda: pz.append(new, str(path), "time"))
    got = xr.open_zarr(str(path))
    ok = bool(np.array_equal(got.a.values, big) and np.array_equal(got.b.values, big + 1))

    floor_vals = big[10:]

    def floor() -> None:
        for name, vals in (("a", floor_vals), ("b", floor_vals + 1)):
            arr = zarr.create_array(str(root / f"floor-{name}.zarr"), shape=vals.shape, chunks=chunks, dtype="f4")
            arr[...] = vals

    fl = measure(floor)
    size = 2 * floor_vals.nbytes
    return [
        {"case": f"large append {format_size(size)}", "contender": "floor", "median_s": round(fl.seconds, 3),
         "total_s": round(fl.seconds, 3), "GB/s": round(size / fl.seconds / 1e9, 3), "ratio_vs_floor": 1.0,
         "peak_rss": format_size(fl.peak_rss), "verified": "-"},
        {"case": f"large append {format_size(size)}", "contender": "parallelzarr", "median_s": round(ours.seconds, 3),
         "total_s": round(ours.seconds, 3), "GB/s": round(size / ours.seconds / 1e9, 3),
         "ratio_vs_floor": round(fl.seconds / ours.seconds, 3), "peak_rss": format_size(ours.peak_rss),
         "verified": "ok" if ok else "MISMATCH"},
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appends", type=int, default=50)
    parser.add_argument("--large", default="1GB", help="size of the large append (0 to skip)")
    parser.add_argument("--out", default="benchmarks/results/append.json")
    args = parser.parse_args(argv)
    dask.config.set(scheduler="threads")
    with tempfile.TemporaryDirectory(prefix="pz-bench-append-") as tmp:
        root = Path(tmp)
        rows = (run_small(root, args.appends) + run_small(root, args.appends, statics=True)
                + run_small(root, args.appends, statics=True, packed=True))
        large = parse_size(args.large)
        if large:
            rows += run_large(root, large)
    cols = [("case", "case"), ("contender", "contender"), ("median_s", "median s"), ("total_s", "total s"),
            ("ratio_vs_xarray", "vs xarray"), ("cpu_s", "median CPU s"),
            ("cpu_ratio_vs_xarray", "CPU vs xarray"), ("total_cpu_s", "total CPU s"), ("store_ops", "store ops/append"), ("ops_by_kind", "ops by kind"),
            ("GB/s", "GB/s"), ("ratio_vs_floor", "x floor speed"),
            ("peak_rss", "peak RSS"), ("verified", "verified")]
    print(format_table(rows, cols))
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    aims = {}
    for case in dict.fromkeys(r["case"] for r in rows if "ratio_vs_xarray" in r):
        of = {r["contender"]: r for r in rows if r["case"] == case}
        floor_ratio = of["floor"]["ratio_vs_xarray"]
        for name in ("parallelzarr", "parallelzarr to_zarr"):
            ratio, n_ops = of[name]["ratio_vs_xarray"], of[name]["store_ops"]
            verdict = "PASS" if ratio <= 0.5 else ("BOUNDED" if floor_ratio > 0.5 else "MISS")
            aims[f"{case}: {name}"] = {"ratio": ratio, "aim": verdict, "store_ops": n_ops}
            print(f"aim ({case}, {name}): median append time <= 0.5x xarray's: {ratio:.3f}x -> {verdict} "
                  f"(the floor, a crash-safe append with no framework: {floor_ratio:.3f}x xarray); "
                  f"<= 20 store operations: {n_ops} -> {'PASS' if n_ops <= 20 else 'MISS'}")
    first = next(iter(aims.values()))
    write_json(args.out, {"environment": environment(), "rows": rows, "aim_ratio": first["ratio"], "aim": first["aim"],
                          "aims": aims, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
