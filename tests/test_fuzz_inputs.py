"""Bad-input fuzzing: every call succeeds (and reads back equal) or raises a documented error, writing nothing.

Hypothesis draws bad and borderline inputs for :func:`parallelzarr.to_zarr`, :func:`~parallelzarr.plan_write`,
:func:`~parallelzarr.append`, :func:`~parallelzarr.rechunk` and the command line (``parallelzarr
write|append|rechunk|info`` through click's in-process runner): odd shapes and dtypes (object, complex, strings,
datetimes, empty and 0-d arrays), junk encodings (unknown keys, wrong types, zero/negative/float/bool/huge chunks,
shards that are not multiples of chunks, bad codecs), regions (out of bounds, steps, negative, wrong dims,
non-slices), rechunk chunk specs, memory budgets, modes, append dimensions and CLI argument strings.

The property checked for every example:

* the call succeeds, and then the data reads back equal to the input (checked for the value-preserving subset), or
* it raises a :class:`parallelzarr.errors.ParallelZarrError` subclass whose message is non-empty and names what
  is wrong (variable, axis, key or argument), and every file under the example's directory -- pre-existing stores
  and the (absent) new target -- is byte-identical to before the call;
* nothing else escapes (a ``TypeError``/``ValueError``/``KeyError``... from zarr, numcodecs, dask or xarray is a
  failure); the CLI exits 0, or 2 with a message and no traceback, never 1.

Example counts: ``PZ_FUZZ_EXAMPLES`` (default 50 per test, derandomized so CI runs are reproducible). The tests
marked ``slow`` run a mixed fuzz of all targets with ``PZ_FUZZ_EXAMPLES`` x 4 examples (also derandomized unless
``PZ_FUZZ_EXAMPLES`` is set). Any explicit ``PZ_FUZZ_EXAMPLES`` makes every test random. A long run::

    PZ_FUZZ_EXAMPLES=2000 .venv/bin/pytest tests/test_fuzz_inputs.py
"""

from __future__ import annotations

import itertools
import os
import shutil
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import parallelzarr as pz
from parallelzarr.cli import main as cli_main
from parallelzarr.errors import ParallelZarrError
from tests.conftest import snapshot

_ENV_EXAMPLES = os.environ.get("PZ_FUZZ_EXAMPLES")
EXAMPLES = int(_ENV_EXAMPLES or 50)
SLOW_EXAMPLES = EXAMPLES * 4
_counter = itertools.count()


def fuzz_settings(n: int) -> settings:
    """Hypothesis settings: ``n`` examples, derandomized unless ``PZ_FUZZ_EXAMPLES`` asks for a (random) long run."""
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=_ENV_EXAMPLES is None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large],
    )


# --- the property ---------------------------------------------------------------------------------


def check(call: Callable[[], Any], root: Path, names: Iterable[str]) -> Any:
    """Run ``call``; on a documented error check its message and that no file under ``root`` changed.

    Returns the call's result, or ``None`` after a documented error. Any other exception propagates and
    fails the test.
    """
    before = snapshot(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = call()
        except ParallelZarrError as exc:
            event(f"refused: {type(exc).__name__}")
            message = str(exc)
            assert message.strip(), f"{type(exc).__name__} with an empty message"
            tokens = [str(n) for n in names if str(n)]
            assert any(t in message for t in tokens), (
                f"{type(exc).__name__} message names none of {tokens}: {message}"
            )
            assert snapshot(root) == before, f"files changed although {type(exc).__name__} was raised: {message}"
            return None
    event("succeeded")
    return result


def new_root(base: Path) -> Path:
    root = base / f"ex{next(_counter)}"
    root.mkdir()
    return root


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def templates(base: Path) -> dict[str, Path]:
    """Pre-existing stores (copied per example before anything may write to them)."""
    arr = base / "tpl-array.zarr"
    pz.to_zarr(da.arange(40, chunks=10, dtype="f8"), str(arr), encoding={"chunks": (10,)}, scheduler="threads")
    ds = base / "tpl-ds.zarr"
    dataset = xr.Dataset(
        {"t": (("time", "x"), np.arange(60, dtype="f4").reshape(10, 6)), "p": (("time",), np.arange(10.0))},
        coords={"time": np.arange(10), "x": np.arange(6)},
    ).chunk({"time": 5})
    pz.to_zarr(dataset, str(ds), encoding={"t": {"chunks": (5, 6)}}, scheduler="threads")
    return {"array": arr, "dataset": ds}


def copy_template(template: Path, root: Path, name: str | None = None) -> Path:
    dst = root / (name or template.name.replace("tpl-", ""))
    shutil.copytree(template, dst)
    return dst


# --- strategies: junk and borderline values -------------------------------------------------------

JUNK_SCALARS = st.sampled_from(
    [0, -1, -2, 1, 2, 3, 7, 10**20, 2.5, 3.0, True, False, None, "a", "", "auto", b"x", float("nan"), [], {}]
)
DIMS = ["x", "y", "time", "zz", "dim_0", "dim_1", 0, 1, 5]


def chunk_specs(ndim: int) -> st.SearchStrategy[Any]:
    """Chunk or shard specs: valid tuples and ints, and every kind of wrong entry."""
    entry = st.one_of(st.integers(1, 12), st.sampled_from([-1, None]), JUNK_SCALARS)
    return st.one_of(
        st.tuples(*[st.integers(1, 12)] * ndim) if ndim else st.just(()),
        st.lists(entry, min_size=0, max_size=ndim + 1).map(tuple),
        st.integers(-3, 12),
        st.dictionaries(st.sampled_from(DIMS), entry, max_size=3),
        JUNK_SCALARS,
    )


CODECS = st.sampled_from(
    [None, "auto", "nonsense", 5, [], [zarr.codecs.ZstdCodec(level=1)], [zarr.codecs.BloscCodec()],
     {"name": "zstd"}, {"name": "bogus", "configuration": {}}, [None]]
)
MAX_MEM = st.sampled_from(["256MiB", "64MB", 10**9, None, -1, 0, "abc", "1KB", "1B", "-5MB", 1.5, True, [1],
                           float("inf"), float("nan"), "1e3", "10 GB", b"1GB"])
MODES = st.sampled_from(["w-", "w", "a", "r+", "x", None, 5, "W", ""])
WRITE_STRATEGIES = st.sampled_from(["auto", "direct", "gather-edges", "rechunk", "lock", "fast", None, 3])

DTYPES = ["f8", "f4", "i2", "u1", "bool", "c8", "U3", "S2", "M8[ns]", "m8[s]", "O", "f2"]


def fields(draw: st.DrawFn, spec: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]]) -> dict[str, Any]:
    """Draw each field valid, except 0-2 of them drawn from their bad/borderline strategy.

    Hypothesis shrinks towards no bad field, so every test also covers the all-valid case (where the
    call must succeed and read back equal).
    """
    bad = set(draw(st.lists(st.sampled_from(sorted(spec)), max_size=2, unique=True)))
    return {k: draw(junk if k in bad else valid) for k, (valid, junk) in spec.items()}


def make_values(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    n = int(np.prod(shape)) if shape else 1
    base = np.arange(n)
    kind = np.dtype(dtype).kind
    if kind == "M":
        values = np.datetime64("2020-01-01", "ns") + base.astype("m8[h]")
    elif kind == "m":
        values = base.astype(dtype)
    elif kind in "US":
        values = np.array([str(i % 100) for i in base], dtype=dtype) if n else np.array([], dtype=dtype)
    elif kind == "O":
        values = np.array([("s", i)[i % 2] for i in base] if n else [], dtype=object)
    elif kind == "b":
        values = base % 2 == 1
    else:
        values = (base % 100).astype(dtype)
        if kind == "c":
            values = values + 1j
    return np.asarray(values).reshape(shape)


@st.composite
def arrays(draw: st.DrawFn) -> Any:
    """numpy or dask arrays of 0-3 dims (sizes 0..9), any dtype, any dask chunking."""
    ndim = draw(st.integers(0, 3))
    shape = tuple(draw(st.integers(0, 9)) for _ in range(ndim))
    dtype = draw(st.sampled_from(DTYPES))
    values = make_values(shape, dtype)
    if draw(st.booleans()) or dtype == "O":
        return values
    chunks = tuple(draw(st.integers(1, max(1, n))) for n in shape)
    return da.from_array(values, chunks=chunks)


@st.composite
def array_encodings(draw: st.DrawFn, ndim: int) -> Any:
    keys = st.sampled_from(["chunks", "shards", "compressors", "filters", "fill_value", "dimension_names",
                            "attributes", "dtype", "chunk", "compressor", "bogus", 5])
    values = {
        "chunks": chunk_specs(ndim), "shards": chunk_specs(ndim), "compressors": CODECS, "filters": CODECS,
        "fill_value": st.sampled_from([0, 1.5, "abc", None, True, [1]]),
        "dimension_names": st.one_of(st.lists(st.sampled_from(["a", "b", "c", ""]), max_size=4),
                                     st.sampled_from(["ab", 5, None, [1, 2]])),
        "attributes": st.sampled_from([{"a": 1}, 5, {1: 2}, None]),
        "dtype": st.sampled_from(["f8", "i4", "nonsense", object, "U2", "M8[s]", None, 5]),
    }
    enc = {}
    for key in draw(st.lists(keys, max_size=3, unique_by=str)):
        enc[key] = draw(values.get(key, JUNK_SCALARS))
    return draw(st.one_of(st.just(enc), st.just(enc), st.sampled_from([None, {}, 5, "x", [1]])))


VALUE_PRESERVING = {"chunks", "shards", "compressors", "filters"}


def assert_array_back(path: Path, data: Any, encoding: Any) -> None:
    """The stored array equals the input (only when the encoding cannot change values)."""
    if isinstance(encoding, dict) and set(encoding) - VALUE_PRESERVING:
        return
    expected = np.asarray(data)
    stored = zarr.open_array(str(path), mode="r")
    assert stored.shape == expected.shape
    got = stored[...]
    if expected.dtype.kind in "US":
        got = np.asarray(got).astype(expected.dtype)
    np.testing.assert_array_equal(np.asarray(got), expected)


ARG_NAMES = ["'array'", "dim_", "max_mem", "memory", "mode", "strategy", "zarr_format", "region", "encoding",
             "chunks", "shards", "dtype", "dimension_names", "attributes", "codec", "lock", "fill_value",
             "compressors", "filters", "object", "already holds data"]


# --- to_zarr / plan_write of bare arrays -----------------------------------------------------------


@st.composite
def array_cases(draw: st.DrawFn) -> dict[str, Any]:
    data = draw(arrays())
    ndim = np.ndim(data)
    valid_enc = st.one_of(st.none(), st.fixed_dictionaries({"chunks": st.tuples(*[st.integers(1, 9)] * ndim)}))
    case = fields(draw, {
        "encoding": (valid_enc, array_encodings(ndim)),
        "mode": (st.sampled_from(["w-", "w"]), MODES),
        "strategy": (st.sampled_from(["auto", "gather-edges", "rechunk"]), WRITE_STRATEGIES),
        "max_mem": (st.sampled_from(["256MiB", None]), MAX_MEM),
        "zarr_format": (st.sampled_from([3, 2]), st.sampled_from([1, "3", None, 4, True])),
    })
    return {"data": data, **case, "plan_only": draw(st.booleans())}


def run_array_case(case: dict[str, Any], base: Path) -> None:
    root = new_root(base)
    target = root / "new.zarr"
    kwargs = {k: case[k] for k in ("encoding", "mode", "strategy", "max_mem", "zarr_format")}
    keys = list(case["encoding"]) if isinstance(case["encoding"], dict) else []
    names = ARG_NAMES + [repr(k) for k in keys] + [str(k) for k in keys]
    if case["plan_only"]:
        plan = check(lambda: pz.plan_write(case["data"], str(target), **kwargs), root, names)
        assert not target.exists() or not any(target.iterdir()), "plan_write wrote files"
        if plan is not None:
            assert str(plan) and plan.to_dict()
        return
    result = check(lambda: pz.to_zarr(case["data"], str(target), scheduler="threads", **kwargs), root, names)
    if result is not None:
        assert_array_back(target, case["data"], case["encoding"])


@fuzz_settings(EXAMPLES)
@given(case=array_cases())
def test_fuzz_array_write(case: dict[str, Any], base: Path) -> None:
    run_array_case(case, base)


# --- Datasets ---------------------------------------------------------------------------------------


@st.composite
def datasets(draw: st.DrawFn) -> xr.Dataset | xr.DataArray:
    """Datasets of 1-2 variables over dims x/time (sizes 0..7, possibly mismatched), any dtype."""
    sizes = {"x": draw(st.integers(0, 7)), "time": draw(st.integers(0, 7))}
    variables: dict[Any, Any] = {}
    for name in draw(st.lists(st.sampled_from(["a", "b", "t"]), min_size=1, max_size=2, unique=True)):
        dims = tuple(draw(st.lists(st.sampled_from(["x", "time"]), max_size=2, unique=True)))
        dtype = draw(st.sampled_from(DTYPES))
        shape = tuple(sizes[d] for d in dims)
        values: Any = make_values(shape, dtype)
        if dtype != "O" and draw(st.booleans()):
            values = da.from_array(values, chunks=tuple(draw(st.integers(1, max(1, n))) for n in shape))
        variables[name] = (dims, values)
    coords = {}
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["int", "datetime", "float"]))
        n = sizes["time"]
        coords["time"] = {"int": np.arange(n), "float": np.arange(n) / 2,
                          "datetime": pd.date_range("2020", periods=n, freq="h").values}[kind]
    ds = xr.Dataset(variables, coords=coords)
    if draw(st.booleans()) and len(ds.data_vars) == 1:
        return ds[next(iter(ds.data_vars))]
    return ds


@st.composite
def dataset_encodings(draw: st.DrawFn, ds: xr.Dataset) -> Any:
    names = [*map(str, ds.variables), "nope"]
    keys = st.sampled_from(["chunks", "shards", "compressors", "dtype", "_FillValue", "units", "calendar",
                            "scale_factor", "write_empty_chunks", "chunk", "bogus"])
    enc: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(names), max_size=2, unique=True)):
        ndim = ds[name].ndim if name in ds.variables else 1
        per = {}
        for key in draw(st.lists(keys, max_size=3, unique=True)):
            per[key] = draw({
                "chunks": chunk_specs(ndim), "shards": chunk_specs(ndim), "compressors": CODECS,
                "dtype": st.sampled_from(["f8", "i1", "nonsense", "S1", None]),
                "_FillValue": st.sampled_from([0, -1, "abc", None, 1.5]),
                "units": st.sampled_from(["days since 2000-01-01", "garbage", 5]),
                "calendar": st.sampled_from(["standard", "nope"]),
                "scale_factor": st.sampled_from([0.5, "a", 0]),
                "write_empty_chunks": st.sampled_from([True, "x"]),
            }.get(key, JUNK_SCALARS))
        enc[name] = draw(st.one_of(st.just(per), st.just(per), JUNK_SCALARS))
    return draw(st.one_of(st.just(enc), st.just(enc), st.sampled_from([None, 5, [1]])))


@st.composite
def dataset_cases(draw: st.DrawFn) -> dict[str, Any]:
    data = draw(datasets())
    ds = data.to_dataset() if isinstance(data, xr.DataArray) else data
    case = fields(draw, {
        "encoding": (st.none(), dataset_encodings(ds)),
        "mode": (st.sampled_from(["w-", "w"]), MODES),
        "max_mem": (st.just("256MiB"), MAX_MEM),
        "strategy": (st.sampled_from(["auto", "gather-edges"]), WRITE_STRATEGIES),
    })
    return {"data": data, **case, "plan_only": draw(st.booleans())}


def dataset_names(data: Any, encoding: Any) -> list[str]:
    ds = data.to_dataset() if isinstance(data, xr.DataArray) else data
    out = ARG_NAMES + [repr(str(n)) for n in ds.variables] + [repr(str(d)) for d in ds.dims]
    if isinstance(encoding, dict):
        out += [repr(k) for k in encoding] + [str(k) for k in encoding]
        for v in encoding.values():
            if isinstance(v, dict):
                out += [repr(k) for k in v] + [str(k) for k in v]
    return out + ["xarray refused", "cannot encode"]


def run_dataset_case(case: dict[str, Any], base: Path) -> None:
    root = new_root(base)
    target = root / "new.zarr"
    kwargs = {k: case[k] for k in ("encoding", "mode", "max_mem", "strategy")}
    names = dataset_names(case["data"], case["encoding"])
    if case["plan_only"]:
        check(lambda: pz.plan_write(case["data"], str(target), **kwargs), root, names)
        assert not target.exists() or not any(target.iterdir()), "plan_write wrote files"
        return
    result = check(lambda: pz.to_zarr(case["data"], str(target), scheduler="threads", **kwargs), root, names)
    enc = case["encoding"]
    preserving = enc is None or (isinstance(enc, dict) and all(
        isinstance(v, dict) and set(v) <= VALUE_PRESERVING for v in enc.values()))
    if result is not None and preserving and case["mode"] != "a":
        data = case["data"]
        ds = data.to_dataset() if isinstance(data, xr.DataArray) else data
        if isinstance(data, xr.DataArray) and data.name is None:
            back = xr.open_dataarray(str(target), engine="zarr").load()
            xr.testing.assert_equal(back, data.load())
            return
        xr.testing.assert_equal(xr.open_zarr(str(target)).load(), ds.load())


@fuzz_settings(EXAMPLES)
@given(case=dataset_cases())
def test_fuzz_dataset_write(case: dict[str, Any], base: Path) -> None:
    run_dataset_case(case, base)


# --- regions of existing arrays and datasets --------------------------------------------------------

BOUND = st.one_of(st.integers(-3, 45), st.none(), st.sampled_from([2.0, "a", np.int64(5), True]))


@st.composite
def slices(draw: st.DrawFn) -> Any:
    sl = slice(draw(BOUND), draw(BOUND), draw(st.sampled_from([None, None, 1, 2, -1, 0])))
    return draw(st.one_of(st.just(sl), st.just(sl), st.just(sl), JUNK_SCALARS))


@st.composite
def region_cases(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["array", "dataset"]))
    total = 40 if kind == "array" else 10
    start = draw(st.integers(0, total))
    length = draw(st.integers(0, total - start))
    good = slice(start, start + length)
    if kind == "array":
        region = (st.sampled_from([(good,), {"dim_0": good}, {0: good}, [good]]), st.one_of(
            st.lists(slices(), min_size=0, max_size=2).map(tuple),
            st.dictionaries(st.sampled_from(DIMS), slices(), max_size=2),
            slices(), st.sampled_from(["auto", "x"]),
        ))
    else:
        region = (st.sampled_from([{"time": good}, "auto"]), st.one_of(
            st.dictionaries(st.sampled_from(["time", "x", "zz", 0]), slices(), max_size=2),
            st.sampled_from(["x", None, (slice(0, 3),), {}]),
        ))
    case = fields(draw, {
        "region": region,
        "length": (st.just(length), st.integers(0, total + 3)),
        "dtype": (st.sampled_from(["f8", "f4", "i4"]), st.sampled_from(["c16", "U2", "M8[ns]"])),
        "mode": (st.just("r+"), st.sampled_from(["a", "w-", "w", "x"])),
        "strategy": (st.sampled_from(["auto", "gather-edges", "lock"]), st.sampled_from(["direct", "bogus"])),
        "labels": (st.just("int"), st.sampled_from(["shifted", "datetime", "none"])),
    })
    if kind == "dataset" and case["labels"] == "int":
        case["labels"] = start  # labels of the region's rows, so region='auto' finds it
    return {"kind": kind, **case}


def run_region_case(case: dict[str, Any], base: Path, templates: dict[str, Path]) -> None:
    root = new_root(base)
    store = copy_template(templates[case["kind"]], root)
    names = ARG_NAMES + ["'t'", "'p'", "'time'", "'x'", "time", "dimension", "dims"]
    n, dtype, region = case["length"], case["dtype"], case["region"]
    if case["kind"] == "array":
        data = da.from_array(make_values((n,), dtype), chunks=max(1, n // 3 or 1))
        old = zarr.open_array(str(store), mode="r")[...]
        result = check(lambda: pz.to_zarr(data, str(store), mode=case["mode"], region=region,
                                          strategy=case["strategy"], scheduler="threads"), root, names)
        if result is None or case["mode"] == "w" or region is None:
            return
        start = result.variables["array"].region[0][0]
        expected = old.copy()
        expected[start:start + n] = np.asarray(data)
        np.testing.assert_array_equal(zarr.open_array(str(store), mode="r")[...], expected)
        return
    old = xr.open_zarr(str(store)).load()
    part = old.isel(time=slice(0, n))
    n = part.sizes["time"]
    part = part.assign(t=part.t.astype(dtype) if dtype not in ("U2", "M8[ns]") else part.t)
    lab = case["labels"]
    labels = np.arange(lab, lab + n) if isinstance(lab, int) else {
        "shifted": np.arange(n) + 7, "datetime": pd.date_range("2020", periods=n).values, "none": None}[lab]
    if labels is None:
        part = part.drop_vars("time")
    else:
        part = part.assign_coords(time=labels)
    part = part.chunk({"time": max(1, n // 2 or 1)}) if n else part
    result = check(lambda: pz.to_zarr(part, str(store), mode=case["mode"], region=region,
                                      strategy=case["strategy"], scheduler="threads"), root, names)
    if result is None or case["mode"] != "r+":
        return
    back = xr.open_zarr(str(store)).load()
    if "t" not in result.variables:
        return
    sl = slice(*result.variables["t"].region[0])  # where the plan wrote the rows (region='auto' finds it)
    xr.testing.assert_equal(back.t.isel(time=sl).drop_vars("time"), part.t.load().drop_vars("time", errors="ignore"))


@fuzz_settings(EXAMPLES)
@given(case=region_cases())
def test_fuzz_region(case: dict[str, Any], base: Path, templates: dict[str, Path]) -> None:
    run_region_case(case, base, templates)


# --- appends ----------------------------------------------------------------------------------------


@st.composite
def append_cases(draw: st.DrawFn) -> dict[str, Any]:
    return fields(draw, {
        "n": (st.integers(1, 4), st.just(0)),
        "start": (st.sampled_from([10, 12]), st.sampled_from([5, 0, -3, 9])),
        "labels": (st.just("int"), st.sampled_from(["float", "datetime", "decreasing", "str", "none"])),
        "xsize": (st.just(6), st.sampled_from([3, 7])),
        "dtype": (st.sampled_from(["f4", "f8", "i2"]), st.sampled_from(["c8", "U3", "M8[ns]", "O"])),
        "drop": (st.none(), st.sampled_from(["p", "t"])),
        "extra": (st.just(False), st.just(True)),
        "append_dim": (st.just("time"), st.sampled_from(["x", "zz", None, 5, ""])),
        "max_mem": (st.sampled_from(["256MiB", None]), MAX_MEM),
        "strategy": (st.sampled_from(["auto", "gather-edges"]), st.sampled_from(["direct", "lock", "bogus"])),
        "encoding": (st.none(), st.sampled_from([{"t": {"chunks": (2, 6)}}, {"new": {}}, 5, {"t": 5}])),
        "data_kind": (st.just("dataset"), st.sampled_from(["dataarray", "numpy"])),
    })


def run_append_case(case: dict[str, Any], base: Path, templates: dict[str, Path]) -> None:
    root = new_root(base)
    store = copy_template(templates["dataset"], root)
    n, start = case["n"], case["start"]
    labels: Any = {
        "int": np.arange(start, start + n), "float": np.arange(start, start + n) + 0.5,
        "datetime": pd.date_range("2030", periods=n).values, "decreasing": np.arange(start + n, start, -1),
        "str": np.array([f"l{i}" for i in range(n)]), "none": None,
    }[case["labels"]]
    t = make_values((n, case["xsize"]), case["dtype"])
    new = xr.Dataset({"t": (("time", "x"), t), "p": (("time",), np.arange(n, dtype="f8"))},
                     coords={"x": np.arange(case["xsize"])})
    if labels is not None:
        new = new.assign_coords(time=labels)
    if case["drop"]:
        new = new.drop_vars(case["drop"])
    if case["extra"]:
        new = new.assign(extra=(("time",), np.zeros(n)))
    data: Any = new
    if case["data_kind"] == "dataarray" and "t" in new:
        data = new["t"]
    elif case["data_kind"] == "numpy":
        data = t
    names = ARG_NAMES + ["'t'", "'p'", "'time'", "'x'", "'extra'", "append_dim", "labels", "'zz'", "variable",
                         "'new'", "dtype", "nothing to append", "DataArray", "Dataset"]
    old = xr.open_zarr(str(store)).load()
    result = check(lambda: pz.append(data, str(store), case["append_dim"], max_mem=case["max_mem"],
                                     strategy=case["strategy"], encoding=case["encoding"], scheduler="threads"),
                   root, names)
    if result is None or not result.applied:
        return
    back = xr.open_zarr(str(store)).load()
    expected = np.concatenate([old.t.values, np.asarray(new.t.values).astype(old.t.dtype)])
    np.testing.assert_array_equal(back.t.values, expected)
    np.testing.assert_array_equal(back.time.values, np.concatenate([old.time.values, new.time.values]))


@fuzz_settings(EXAMPLES)
@given(case=append_cases())
def test_fuzz_append(case: dict[str, Any], base: Path, templates: dict[str, Path]) -> None:
    run_append_case(case, base, templates)


# --- rechunk ----------------------------------------------------------------------------------------


@st.composite
def rechunk_cases(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["array", "group"]))
    ndim = 1 if kind == "array" else 2
    if kind == "array":
        valid = st.one_of(st.tuples(st.integers(1, 40)), st.just(-1), st.integers(1, 40),
                          st.fixed_dictionaries({0: st.integers(1, 40)}))
    else:
        valid = st.one_of(st.fixed_dictionaries({"time": st.integers(1, 10)}),
                          st.fixed_dictionaries({"t": st.tuples(st.integers(1, 10), st.integers(1, 6))}),
                          st.just({"time": -1, "x": 2}))
    junk = st.one_of(
        chunk_specs(ndim),
        st.dictionaries(st.sampled_from(["time", "x", "t", "p", "zz"]), st.one_of(chunk_specs(2), JUNK_SCALARS),
                        max_size=2),
    )
    return {"kind": kind, **fields(draw, {
        "chunks": (valid, junk),
        "max_mem": (st.sampled_from(["64MB", 10**9]), MAX_MEM),
        "target_options": (st.sampled_from([None, {"zarr_format": 2}, {"compressors": None}]), st.sampled_from([
            {"zarr_format": "x"}, {"shards": (20,)}, {"compressors": "bad"}, {"bogus": 1}, 5,
            {"t": {"shards": (10, 6)}}, {"zarr_format": 2, "shards": 4}, {"zarr_format": 5}])),
        "target": (st.sampled_from(["new", "new-with-temp"]),
                   st.sampled_from(["source", "temp-in-target", "temp-is-source", "existing", ""])),
    })}


def run_rechunk_case(case: dict[str, Any], base: Path, templates: dict[str, Path]) -> None:
    root = new_root(base)
    src_path = copy_template(templates[case["kind"] if case["kind"] == "array" else "dataset"], root)
    source = zarr.open_array(str(src_path), mode="r") if case["kind"] == "array" else zarr.open_group(
        str(src_path), mode="r")
    target, temp = str(root / "target.zarr"), None
    if case["target"] == "source":
        target = str(src_path)
    elif case["target"] == "temp-in-target":
        temp = str(root / "target.zarr" / "tmp")
    elif case["target"] == "temp-is-source":
        temp = str(src_path)
    elif case["target"] == "new-with-temp":
        temp = str(root / "temp.zarr")
    elif case["target"] == "existing":
        target = str(copy_template(templates["array"], root, "existing.zarr"))
    elif case["target"] == "":
        target = ""
    names = ARG_NAMES + ["target", "temp_store", "axis", "'t'", "'p'", "'time'", "'x'", "'zz'", "max_mem",
                         "target_options", "source", "bogus", "array", "store"]

    def run() -> Any:
        job = pz.rechunk(source, case["chunks"], case["max_mem"], target, temp_store=temp,
                         target_options=case["target_options"])
        return job, job.execute(scheduler="threads")

    result = check(run, root, names)
    if result is None:
        return
    out = zarr.open(target, mode="r")
    if case["kind"] == "array":
        np.testing.assert_array_equal(out[...], source[...])
    else:
        for name in ("t", "p", "time", "x"):
            np.testing.assert_array_equal(out[name][...], source[name][...])


@fuzz_settings(EXAMPLES)
@given(case=rechunk_cases())
def test_fuzz_rechunk(case: dict[str, Any], base: Path, templates: dict[str, Path]) -> None:
    run_rechunk_case(case, base, templates)


# --- the command line -------------------------------------------------------------------------------

CLI_CHUNKS = st.sampled_from(["time=5", "time=-1,x=3", "time=0", "x=-2", "zz=3", "time=a", "5,5", "5", "a,b",
                              "", ",", "time=", "=3", "time=auto", "time=99999999999999999999"])
CLI_REGION = st.sampled_from(["time=0:5", "time=5:10", "time=-1:4", "time=0:5:2", "time=a:b", "zz=0:5", "time=8:20",
                              "auto", "time", "x=0:6,time=0:5", ""])
CLI_MEM = st.sampled_from(["256MiB", "1GB", "-5", "0", "abc", "1B", "1e40", "", "10 GB"])


@st.composite
def cli_cases(draw: st.DrawFn) -> dict[str, Any]:
    command = draw(st.sampled_from(["write", "append", "rechunk", "info"]))
    bad_target = st.sampled_from(["", "existing.zarr", "missing/deeper.zarr", "a\x00b.zarr", " "])
    if command == "info":
        target = draw(st.one_of(st.sampled_from(["in.zarr", "existing.zarr"]),
                                st.sampled_from(["missing.zarr", "", "a\x00b", "s3://nobucket"])))
        return {"args": ["info", target] + (["--json"] if draw(st.booleans()) else [])}
    spec: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
        "max_mem": (st.sampled_from([None, "256MiB", "1GB"]), CLI_MEM),
        "storage": (st.none(), st.sampled_from(["anon=true", "novalue", "=x", "a.b=1"])),
    }
    if command == "write":
        spec |= {
            "input": (st.just("in.zarr"), st.sampled_from(["missing.zarr", "*.nothing", ""])),
            "target": (st.just("new.zarr"), bad_target),
            "chunks": (st.sampled_from([None, "time=5", "time=3,x=2", "time=-1"]), CLI_CHUNKS),
            "mode": (st.sampled_from([None, "w-"]), st.sampled_from(["r+", "a", "x", "w"])),
            "region": (st.none(), CLI_REGION),
            "strategy": (st.sampled_from([None, "auto", "gather-edges"]), st.sampled_from(["direct", "fast"])),
            "zarr_format": (st.sampled_from([None, "2", "3"]), st.sampled_from(["4", "x"])),
        }
    elif command == "append":
        spec |= {
            "input": (st.just("more.zarr"), st.sampled_from(["in.zarr", "missing.zarr"])),
            "target": (st.sampled_from(["existing.zarr", "new.zarr"]), bad_target),
            "append_dim": (st.just("time"), st.sampled_from(["x", "zz", ""])),
            "chunks": (st.sampled_from([None, "time=5"]), CLI_CHUNKS),
        }
    else:
        spec |= {
            "input": (st.just("in.zarr"), st.sampled_from(["missing.zarr", "", "existing.zarr"])),
            "target": (st.just("new.zarr"), st.sampled_from(["", "in.zarr", "existing.zarr", "a\x00b.zarr"])),
            "chunks": (st.sampled_from(["time=5", "time=-1,x=3", "10,2"]), CLI_CHUNKS),
            "temp": (st.sampled_from([None, "tmp.zarr"]), st.sampled_from(["new.zarr", "in.zarr", ""])),
            "zarr_format": (st.sampled_from([None, "2", "3"]), st.sampled_from(["9", "x"])),
        }
    c = fields(draw, spec)
    args: list[str] = [command, c["input"], c["target"]]
    for key in ("chunks", "mode", "region", "strategy", "zarr_format", "max_mem", "append_dim", "temp"):
        if c.get(key) is not None:
            args += [f"--{key.replace('_', '-')}", c[key]]
    if c["storage"] is not None:
        args += ["-o", c["storage"]]
    if draw(st.booleans()):
        args.append("--dry-run")
    if draw(st.booleans()):
        args.append("--json")
    return {"args": args + ["--cluster", "threads", "--no-progress"]}


@pytest.fixture(scope="module")
def cli_inputs(base: Path, templates: dict[str, Path]) -> Path:
    """A CLI working directory: input stores and an existing target (copied per example)."""
    src = base / "cli-template"
    src.mkdir()
    ds = xr.Dataset(
        {"t": (("time", "x"), np.arange(60, dtype="f4").reshape(10, 6))},
        coords={"time": np.arange(10), "x": np.arange(6)},
    )
    ds.to_zarr(src / "in.zarr", mode="w")
    ds.assign_coords(time=np.arange(10, 20)).to_zarr(src / "more.zarr", mode="w")
    shutil.copytree(src / "in.zarr", src / "existing.zarr")
    return src


def run_cli_case(case: dict[str, Any], base: Path, cli_inputs: Path) -> None:
    root = new_root(base)
    shutil.copytree(cli_inputs, root, dirs_exist_ok=True)
    before = snapshot(root)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = CliRunner().invoke(cli_main, case["args"])
    finally:
        os.chdir(cwd)
    output = result.output
    event(f"exit {result.exit_code}")
    assert result.exit_code in (0, 2), f"{case['args']} exited {result.exit_code}: {output}\n{result.exception!r}"
    assert "Traceback" not in output, output
    if result.exit_code == 2:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
        assert "Error" in output and len(output.strip()) > len("Error:"), output
        assert snapshot(root) == before, f"{case['args']} exited 2 but changed files: {output}"
        return
    args = case["args"]
    if "--dry-run" in args:
        assert snapshot(root) == before, f"{case['args']}: a dry run changed files"
    elif args[0] in ("write", "rechunk") and "--region" not in args and "--mode" not in args:
        with xr.open_zarr(root / args[2]) as out, xr.open_zarr(root / args[1]) as src:
            xr.testing.assert_equal(out.load(), src.load())
    elif args[0] == "append" and args[2] == "existing.zarr":
        with xr.open_zarr(root / args[2]) as out:
            # re-appending the rows already stored (in.zarr) is a no-op: identical content is skipped
            expected = np.arange(20 if args[1] == "more.zarr" else 10)
            np.testing.assert_array_equal(out.time.values, expected)


@fuzz_settings(EXAMPLES)
@given(case=cli_cases())
def test_fuzz_cli(case: dict[str, Any], base: Path, cli_inputs: Path) -> None:
    run_cli_case(case, base, cli_inputs)


# --- the longer, mixed run ---------------------------------------------------------------------------


@pytest.mark.slow
@fuzz_settings(SLOW_EXAMPLES)
@given(case=st.one_of(
    array_cases().map(lambda c: ("array", c)),
    dataset_cases().map(lambda c: ("dataset", c)),
    region_cases().map(lambda c: ("region", c)),
    append_cases().map(lambda c: ("append", c)),
    rechunk_cases().map(lambda c: ("rechunk", c)),
    cli_cases().map(lambda c: ("cli", c)),
))
def test_fuzz_mixed_long(case: tuple[str, dict[str, Any]], base: Path, templates: dict[str, Path],
                         cli_inputs: Path) -> None:
    kind, c = case
    with dask.config.set(scheduler="threads"):
        if kind == "array":
            run_array_case(c, base)
        elif kind == "dataset":
            run_dataset_case(c, base)
        elif kind == "region":
            run_region_case(c, base, templates)
        elif kind == "append":
            run_append_case(c, base, templates)
        elif kind == "rechunk":
            run_rechunk_case(c, base, templates)
        else:
            run_cli_case(c, base, cli_inputs)
