"""Plots of write and rechunk plans: legend labels per strategy, huge plans draw quickly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import dask.array as da  # noqa: E402
import numpy as np  # noqa: E402
import zarr  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import parallelzarr as pz  # noqa: E402
from parallelzarr.plan.rechunk import ArraySpec  # noqa: E402
from parallelzarr.plan.write import WritePlan, plan_variable  # noqa: E402
from parallelzarr.reports import plot as pzplot  # noqa: E402

L = pzplot.LABELS


@pytest.fixture(autouse=True)
def _close_figures():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def legend_labels(fig: Figure) -> set[str]:
    legend = fig.axes[0].get_legend()
    assert legend is not None
    return {t.get_text() for t in legend.get_texts()}


def one_variable(**kw) -> WritePlan:
    kw.setdefault("dims", ("time", "lat"))
    v = plan_variable("t2m", dtype="float32", itemsize=4, **kw)
    return WritePlan(target="memory", mode="w", variables={"t2m": v})


def test_aligned_plan(tmp_path: Path) -> None:
    data = da.zeros((100, 60), chunks=(20, 30), dtype="float32")
    plan = pz.plan_write(data, str(tmp_path / "a.zarr"), encoding={"chunks": (20, 30)})
    v = next(iter(plan.variables.values()))
    assert v.strategy == "direct"
    fig = plan.plot()
    assert isinstance(fig, Figure)
    labels = legend_labels(fig)
    assert labels >= {L["owned"], L["blocks"], L["grid"]}
    assert not labels & {L["edge"], L["locked"], L["partial"]}
    assert "'direct'" in fig.axes[0].get_title()
    assert not (tmp_path / "a.zarr").exists()  # planning writes nothing


def test_gather_edges_plan(tmp_path: Path) -> None:
    data = da.zeros((100, 60), chunks=(30, 25), dtype="float32")
    plan = pz.plan_write(
        data, str(tmp_path / "g.zarr"), encoding={"chunks": (20, 20)}, strategy="gather-edges"
    )
    fig = pzplot.plot_write_plan(plan)
    labels = legend_labels(fig)
    assert {L["owned"], L["edge"], L["blocks"]} <= labels
    assert L["locked"] not in labels
    assert "'gather-edges'" in fig.axes[0].get_title()


def test_lock_plan() -> None:
    plan = one_variable(
        shape=(100, 60),
        dask_chunks=((30, 30, 30, 10), (25, 35)),
        chunks=(20, 20),
        strategy="lock",
        lock_backend="threading",
    )
    fig = plan.plot("t2m")
    labels = legend_labels(fig)
    assert {L["owned"], L["locked"], L["blocks"]} <= labels
    assert L["edge"] not in labels
    assert "'lock'" in fig.axes[0].get_title()


def test_region_plan_shows_partial_cells(tmp_path: Path) -> None:
    store = str(tmp_path / "r.zarr")
    zarr.create_array(store, shape=(100, 60), chunks=(20, 20), dtype="float32", fill_value=0)
    part = da.ones((40, 40), chunks=(40, 40), dtype="float32")
    plan = pz.plan_write(part, store, region=(slice(5, 45), slice(10, 50)))
    fig = pzplot.plot_write_plan(plan)
    assert L["partial"] in legend_labels(fig)


def test_rechunk_strategy_draws_original_blocks() -> None:
    # blocks of 1 along time: a shared cell would gather 10 x 2 blocks, so auto rechunks
    plan = one_variable(shape=(100, 60), dask_chunks=((1,) * 100, (25, 35)), chunks=(20, 20))
    assert plan.variables["t2m"].strategy == "rechunk"
    assert L["original"] in legend_labels(plan.plot())


def test_one_dimensional_plan_draws_one_row() -> None:
    plan = one_variable(shape=(100,), dims=("time",), dask_chunks=((30, 30, 30, 10),), chunks=(20,))
    fig = plan.plot()
    ax = fig.axes[0]
    assert ax.get_ylim() == (1.0, 0.0)
    assert L["edge"] in legend_labels(fig)


def test_choose_variable_and_axes() -> None:
    v1 = plan_variable(
        "a",
        shape=(10, 20, 30),
        dims=("x", "y", "z"),
        dtype="float32",
        itemsize=4,
        dask_chunks=((5, 5), (10, 10), (15, 15)),
        chunks=(5, 10, 15),
    )
    v2 = plan_variable(
        "b", shape=(10,), dims=("x",), dtype="float32", itemsize=4, dask_chunks=((3, 7),), chunks=(5,)
    )
    plan = WritePlan(target="memory", mode="w", variables={"a": v1, "b": v2})
    fig = pzplot.plot_write_plan(plan, "a", axes=(1, 2))
    assert fig.axes[0].get_xlabel().startswith("z")
    assert fig.axes[0].get_ylabel().startswith("y")
    assert "'b'" in pzplot.plot_write_plan(plan, "b").axes[0].get_title()
    with pytest.raises(KeyError, match="no variable 'c'"):
        pzplot.plot_write_plan(plan, "c")
    with pytest.raises(ValueError, match="two different axes"):
        pzplot.plot_write_plan(plan, "a", axes=(1, 1))


def test_draws_into_given_axes() -> None:
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2)
    plan = one_variable(shape=(40, 40), dask_chunks=((15, 25), (40,)), chunks=(10, 10))
    assert pzplot.plot_write_plan(plan, ax=a2) is fig
    assert a2.get_legend() is not None and a1.get_legend() is None


def test_huge_plan_draws_quickly() -> None:
    """An ERA5-sized write: 14610 grid cells along time; only the first 200 are drawn."""
    nt = 350640
    v = plan_variable(
        "t2m",
        shape=(nt, 721, 1440),
        dims=("time", "lat", "lon"),
        dtype="float32",
        itemsize=4,
        dask_chunks=((36,) * (nt // 36), (721,), (1440,)),
        chunks=(24, 721, 1440),
    )
    plan = WritePlan(target="era5.zarr", mode="w", variables={"t2m": v})
    start = time.perf_counter()
    fig = plan.plot()
    fig.canvas.draw()
    elapsed = time.perf_counter() - start
    assert elapsed < 5, elapsed
    ax = fig.axes[0]
    assert f"first {pzplot.MAX_CELLS} of 14610 cells along 'time'" in ax.get_title()
    mesh = ax.collections[0]
    assert mesh.get_array().size == pzplot.MAX_CELLS * 1  # 200 time cells x 1 lat cell
    assert ax.get_ylim()[0] == pzplot.MAX_CELLS * 24
    assert {L["owned"], L["edge"]} <= legend_labels(fig)


def test_plot_rechunk_plan() -> None:
    specs = [
        ArraySpec(
            name="t2m",
            shape=(2000, 100, 100),
            dtype="float32",
            itemsize=4,
            source_chunks=(1, 100, 100),
            target_chunks=(2000, 10, 10),
        )
    ]
    plan = pz.plan_rechunk(specs, max_mem="16MB", threads_per_worker=1)
    fig = pzplot.plot_rechunk_plan(plan)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert len(ticks) == sum(len(a.stages) for a in plan.arrays)
    assert any("source -> " in t for t in ticks) and any("-> target" in t for t in ticks)
    assert {"read chunk", "task block", "write chunk"} <= legend_labels(fig)
    # every chunk shape drawn is labelled
    texts = {t.get_text() for t in ax.texts}
    assert "(1, 100, 100)" in texts and "(2000, 10, 10)" in texts


def test_no_matplotlib_import_on_package_import() -> None:
    import subprocess
    import sys

    code = "import sys, parallelzarr; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_numpy_input_plan(tmp_path: Path) -> None:
    plan = pz.plan_write(
        np.zeros((50, 50), "float32"), str(tmp_path / "n.zarr"), encoding={"chunks": (10, 10)}
    )
    assert isinstance(plan.plot(), Figure)


def test_empty_write_draws_a_note() -> None:
    v = plan_variable(
        "x",
        shape=(10, 0),
        dims=("a", "b"),
        dtype="float32",
        itemsize=4,
        dask_chunks=((5, 5), (0,)),
        chunks=(5, 1),
    )
    fig = pzplot.plot_write_plan(v)
    assert "nothing written along 'b'" in fig.axes[0].texts[0].get_text()
