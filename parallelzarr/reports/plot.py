"""Pictures of plans: write plans over the zarr write grid, rechunk plans stage by stage.

Both functions read only the plan objects (pure data) and import matplotlib lazily, so
``import parallelzarr`` never needs it. Install it with ``pip install 'parallelzarr[plot]'``.

:func:`plot_write_plan` draws a 2-D slice of one variable: the write-grid cells the write touches,
colored by how they are written, the grid lines and the outlines of the dask blocks that write them.
It works from the per-axis segments of the plan, never from per-cell lists of the whole array: at
most :data:`MAX_CELLS` cells are drawn along each axis.

:func:`plot_rechunk_plan` draws, per array and stage, the read chunk, the task block and the write
chunk as bars of bytes (log scale) labelled with their shapes, next to each stage's estimated task
memory and the budget.

:func:`register` gives :class:`~parallelzarr.plan.write.WritePlan` and
:class:`~parallelzarr.plan.rechunk.RechunkPlan` their ``plot()`` methods (these two functions);
``import parallelzarr`` runs it, as it registers the ``ds.pz`` accessor. So reports depend on plans
and never the reverse: the plan layer holds plain data and imports no drawing code.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from parallelzarr.plan.rechunk import RechunkPlan
from parallelzarr.plan.write import WritePlan

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from parallelzarr.plan.grid import Segment
    from parallelzarr.plan.rechunk import ArrayPlan, StagePlan
    from parallelzarr.plan.write import AxisLayout, VariablePlan

__all__ = ["plot_write_plan", "plot_rechunk_plan", "register", "MAX_CELLS", "LABELS"]

#: Most grid cells drawn along one axis; larger writes show their first ``MAX_CELLS`` cells.
MAX_CELLS = 200
#: Most arrays drawn by :func:`plot_rechunk_plan`.
MAX_ARRAYS = 10

#: Legend labels of the cell kinds.
LABELS: Mapping[str, str] = MappingProxyType({
    "owned": "owned (direct)",
    "edge": "edge (shared, gathered)",
    "locked": "locked (shared)",
    "partial": "partial (only partly written)",
    "blocks": "dask blocks",
    "original": "dask blocks before rechunk",
    "grid": "write grid",
})
_COLORS = MappingProxyType({"owned": "#8ecae6", "edge": "#ffb703", "locked": "#e76f51", "partial": "#cdb4db"})
_KINDS = ("owned", "edge", "locked", "partial")


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plotting plans needs matplotlib; install it with `pip install 'parallelzarr[plot]'`"
        ) from exc
    return plt


def _figure_and_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        # The root figure: an axes inside a subfigure has no tight_layout of its own.
        fig = ax.get_figure(root=True)
        if fig is None:
            raise ValueError("ax is not part of a figure; create it with plt.subplots() or fig.add_subplot()")
        return fig, ax
    plt = _pyplot()
    fig, new_ax = plt.subplots(figsize=figsize)
    return fig, new_ax


# --------------------------------------------------------------------------- write plans


def _select_variable(plan: WritePlan | VariablePlan, variable: str | None) -> VariablePlan:
    from parallelzarr.plan.write import VariablePlan

    if isinstance(plan, VariablePlan):
        if variable is not None and variable != plan.name:
            raise KeyError(f"this plan is of variable {plan.name!r}, not {variable!r}")
        return plan
    if not plan.variables:
        raise ValueError(f"the write plan for {plan.target} has no variables to draw")
    if variable is None:
        return next(iter(plan.variables.values()))
    try:
        return plan.variables[variable]
    except KeyError:
        raise KeyError(
            f"no variable {variable!r} in the write plan; it has {', '.join(map(repr, plan.variables))}"
        ) from None


def _axis_cells(ax: AxisLayout, limit: int) -> tuple[int, list[bool], list[bool]]:
    """First cell index and per-cell (shared, full) flags of at most ``limit`` cells of an axis."""
    shared: list[bool] = []
    full: list[bool] = []
    first = ax.segments[0].cell_start if ax.segments else 0
    for seg in ax.segments:
        n = min(seg.ncells, limit - len(shared))
        if n <= 0:
            break
        shared.extend([seg.shared] * n)
        full.extend([seg.full] * n)
    return first, shared, full


def _first_segment(ax: AxisLayout) -> Segment | None:
    return ax.segments[0] if ax.segments else None


def _offsets_between(chunks: Sequence[int], start: int, lo: int, hi: int) -> Iterator[int]:
    """Block boundaries of ``chunks`` (starting at ``start``) inside ``[lo, hi]``, without a full list."""
    pos = start
    if lo <= pos <= hi:
        yield pos
    for c in chunks:
        pos += int(c)
        if pos > hi:
            return
        if pos >= lo:
            yield pos


def _cell_edges(first: int, n: int, grid: int, length: int) -> list[int]:
    return [min((first + i) * grid, length) for i in range(n + 1)]


def plot_write_plan(
    plan: WritePlan | VariablePlan,
    variable: str | None = None,
    axes: tuple[int, int] | Sequence[int] = (0, 1),
    ax: Axes | None = None,
) -> Figure:
    """Draw the dask blocks of one variable over its zarr write grid.

    Each grid cell the write touches is colored by how it is written: *owned* cells are written
    directly by the one dask block covering them; *edge* cells are shared by several blocks and
    assembled by one gather task (``gather-edges``) or written under a lock (``lock``, shown as
    *locked*); *partial* cells are only partly covered by the write (region writes, appends that
    start mid-cell), so their stored values are read and kept (hatched). Thin lines are the write
    grid (shards when sharded, else chunks); thick lines outline the dask blocks that write
    (after rechunking for the ``rechunk`` strategy, with the original blocks dashed).

    The picture is drawn from the plan's per-axis segments. When an axis has more than
    :data:`MAX_CELLS` cells only its first :data:`MAX_CELLS` are drawn and the title says so, so
    plans of huge arrays draw as quickly as small ones.

    Parameters
    ----------
    plan
        A :class:`~parallelzarr.plan.write.WritePlan` (from :func:`parallelzarr.plan_write`)
        or one of its :class:`~parallelzarr.plan.write.VariablePlan`.
    variable
        Name of the variable to draw; the plan's first variable by default.
    axes
        The two array axes to draw (rows, columns). Other axes are sliced at the first cell the
        write touches. A 1-D variable is drawn as a single row.
    ax
        Matplotlib axes to draw into; a new figure is made when None.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the drawing.

    Raises
    ------
    KeyError
        If ``variable`` is not in the plan.
    ValueError
        If ``axes`` does not name two different axes of the variable.
    """
    v = _select_variable(plan, variable)
    rows_axis, cols_axis = _drawn_axes(v, axes)
    w = _window(v, rows_axis, cols_axis)
    if not w.nrows or not w.ncols:
        return _draw_nothing_written(v, w, ax)
    # Other axes are sliced at their first written cell: a cell shared (or partial) there is
    # shared (or partial) in the whole slice.
    slice_shared, slice_full, slice_notes = _slice_facts(v, [a for a in (rows_axis, cols_axis) if a is not None])
    edge_kind = "locked" if v.strategy == "lock" else "edge"
    code = {k: i for i, k in enumerate(_KINDS)}
    grid_codes = [
        [
            code[edge_kind]
            if (rs or cs or slice_shared)
            else (code["owned"] if (rf and cf and slice_full) else code["partial"])
            for cs, cf in zip(w.c_shared, w.c_full, strict=True)
        ]
        for rs, rf in zip(w.r_shared, w.r_full, strict=True)
    ]
    fig, ax = _figure_and_axes(ax, (9.0, 3.0 if w.row_lay is None else 6.0))
    grid_lines = _draw_cells(ax, w, grid_codes)
    _hatch_partial(ax, w)
    rechunked = v.strategy == "rechunk" and tuple(v.write_chunks) != tuple(v.dask_chunks)
    if rechunked:
        _draw_blocks(ax, w, v.dask_chunks, 1.0, colors="0.1", linestyles="dashed")
    _draw_blocks(ax, w, v.write_chunks, 1.8, colors="k")
    ax.set_xlim(w.x_edges[0], w.x_edges[-1])
    ax.set_ylim(w.y_edges[-1], w.y_edges[0])  # axis 0 grows downwards, like an array
    ax.set_xlabel(f"{w.col_lay.name} (grid {w.col_lay.grid})")
    if w.row_lay is not None:
        ax.set_ylabel(f"{w.row_lay.name} (grid {w.row_lay.grid})")
    else:
        ax.set_yticks([])
    ax.set_aspect("auto")
    present = {k for row in grid_codes for k in _KINDS if code[k] in row}
    ax.legend(handles=_write_legend(present, w, rechunked=rechunked, grid_lines=grid_lines), loc="upper left",
              bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    ax.set_title(_write_title(v, w, slice_notes), fontsize="medium")
    fig.tight_layout()
    return fig


def _drawn_axes(v: VariablePlan, axes: Sequence[int]) -> tuple[int | None, int]:
    """The array axes drawn as rows (``None`` for a 1-D variable) and as columns."""
    ndim = len(v.shape)
    if ndim == 0:
        raise ValueError(f"{v.name!r} is a scalar; there is no grid to draw")
    if ndim == 1:
        return None, 0
    pair = tuple(int(a) % ndim for a in axes)
    if len(pair) != 2 or pair[0] == pair[1]:
        raise ValueError(
            f"axes must name two different axes of {v.name!r} (ndim {ndim}), got {tuple(axes)}"
        )
    return pair[0], pair[1]


def _slice_facts(v: VariablePlan, drawn: Sequence[int]) -> tuple[bool, bool, list[str]]:
    """Whether the slice through the axes not drawn is shared or fully written there, and where it is."""
    slice_shared = False
    slice_full = True
    slice_notes: list[str] = []
    for i, lay in enumerate(v.axes):
        if i in drawn:
            continue
        seg = _first_segment(lay)
        if seg is not None:
            slice_shared |= seg.shared
            slice_full &= seg.full
            slice_notes.append(f"{lay.name} cell {seg.cell_start}")
    return slice_shared, slice_full, slice_notes


@dataclass(frozen=True)
class _Window:
    """The cells drawn: per drawn axis its layout, the cells' (shared, full) flags and edges."""

    rows_axis: int | None
    cols_axis: int
    row_lay: AxisLayout | None
    col_lay: AxisLayout
    r_shared: list[bool]
    r_full: list[bool]
    c_shared: list[bool]
    c_full: list[bool]
    x_edges: list[int]
    y_edges: list[int]

    @property
    def nrows(self) -> int:
        return len(self.r_shared)

    @property
    def ncols(self) -> int:
        return len(self.c_shared)

    def written(self) -> tuple[int, int, int, int]:
        """The written extent within the window: ``x0, x1, y0, y1``."""
        x_lo, x_hi, y_lo, y_hi = self.x_edges[0], self.x_edges[-1], self.y_edges[0], self.y_edges[-1]
        wx0, wx1 = max(self.col_lay.start, x_lo), min(self.col_lay.stop, x_hi)
        if self.row_lay is not None:
            return wx0, wx1, max(self.row_lay.start, y_lo), min(self.row_lay.stop, y_hi)
        return wx0, wx1, y_lo, y_hi


def _window(v: VariablePlan, rows_axis: int | None, cols_axis: int) -> _Window:
    """The first :data:`MAX_CELLS` cells of each drawn axis."""
    col_lay = v.axes[cols_axis]
    c_first, c_shared, c_full = _axis_cells(col_lay, MAX_CELLS)
    row_lay = v.axes[rows_axis] if rows_axis is not None else None
    if row_lay is not None:
        r_first, r_shared, r_full = _axis_cells(row_lay, MAX_CELLS)
    else:
        r_first, r_shared, r_full = 0, [False], [True]
    x_edges = _cell_edges(c_first, len(c_shared), col_lay.grid, col_lay.length)
    y_edges = _cell_edges(r_first, len(r_shared), row_lay.grid, row_lay.length) if row_lay is not None else [0, 1]
    return _Window(rows_axis, cols_axis, row_lay, col_lay, r_shared, r_full, c_shared, c_full, x_edges, y_edges)


def _draw_nothing_written(v: VariablePlan, w: _Window, ax: Axes | None) -> Figure:
    """A figure saying which drawn axis the write leaves empty."""
    fig, ax = _figure_and_axes(ax, (6.0, 2.0))
    empty = [lay.name for lay in (w.row_lay, w.col_lay) if lay is not None and not lay.segments]
    ax.text(0.5, 0.5, f"nothing written along {', '.join(map(repr, empty))}", ha="center", va="center")
    ax.set_axis_off()
    ax.set_title(f"{v.name!r} {'x'.join(map(str, v.shape))}: strategy {v.strategy!r}", fontsize="medium")
    return fig


def _draw_cells(ax: Axes, w: _Window, grid_codes: list[list[int]]) -> bool:
    """Color the cells by kind; return whether grid lines are drawn (only while cells are big enough)."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    cmap = ListedColormap([_COLORS[k] for k in _KINDS])
    norm = BoundaryNorm([-0.5, 0.5, 1.5, 2.5, 3.5], cmap.N)
    biggest = max(w.nrows, w.ncols)
    grid_lines = biggest <= 80
    ax.pcolormesh(
        w.x_edges,
        w.y_edges,
        grid_codes,
        cmap=cmap,
        norm=norm,
        edgecolors="0.45" if grid_lines else "face",
        linewidth=max(0.1, min(0.5, 25.0 / biggest)) if grid_lines else 0.0,
    )
    return grid_lines


def _hatch_partial(ax: Axes, w: _Window) -> None:
    """Hatch the rows and columns that are only partly written (at most a few)."""
    from matplotlib.patches import Rectangle

    x_lo, x_hi, y_lo, y_hi = w.x_edges[0], w.x_edges[-1], w.y_edges[0], w.y_edges[-1]
    hatch_kw: dict[str, Any] = {"fill": False, "hatch": "///", "edgecolor": "0.25", "linewidth": 0}
    for j, f in enumerate(w.c_full):
        if not f:
            ax.add_patch(Rectangle((w.x_edges[j], y_lo), w.x_edges[j + 1] - w.x_edges[j], y_hi - y_lo, **hatch_kw))
    for i, f in enumerate(w.r_full):
        if not f and w.row_lay is not None:
            ax.add_patch(Rectangle((x_lo, w.y_edges[i]), x_hi - x_lo, w.y_edges[i + 1] - w.y_edges[i], **hatch_kw))


def _draw_blocks(ax: Axes, w: _Window, chunks_by_axis: Sequence[Sequence[int]], width: float, **style: Any) -> None:
    """Outline dask blocks: they form a tensor product, so lines across the written box are outlines."""
    wx0, wx1, wy0, wy1 = w.written()
    xs = list(_offsets_between(chunks_by_axis[w.cols_axis], w.col_lay.start, wx0, wx1))
    if w.row_lay is not None and w.rows_axis is not None:
        ys = list(_offsets_between(chunks_by_axis[w.rows_axis], w.row_lay.start, wy0, wy1))
    else:
        ys = [wy0, wy1]
    # Thinner lines when many blocks share the picture, so the cells stay visible.
    many = max(len(xs), len(ys), 1)
    lw = max(0.15, min(width, 30.0 / many))
    alpha = 1.0 if many <= 40 else 0.6
    ax.vlines(xs, wy0, wy1, linewidth=lw, alpha=alpha, **style)
    ax.hlines(ys, wx0, wx1, linewidth=lw, alpha=alpha, **style)


def _write_legend(present: set[str], w: _Window, *, rechunked: bool, grid_lines: bool) -> list[Any]:
    """Legend entries: the cell kinds drawn, partial hatching, block outlines and grid lines."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = [
        Patch(
            facecolor=_COLORS[k], edgecolor="0.45", label=LABELS[k], hatch="///" if k == "partial" else None
        )
        for k in _KINDS
        if k in present
    ]
    if "partial" not in present and (not all(w.c_full) or not all(w.r_full)):
        handles.append(Patch(facecolor="white", edgecolor="0.25", hatch="///", label=LABELS["partial"]))
    handles.append(Line2D([], [], color="k", linewidth=1.8, label=LABELS["blocks"]))
    if rechunked:
        handles.append(
            Line2D([], [], color="0.1", linewidth=1.0, linestyle="dashed", label=LABELS["original"])
        )
    if grid_lines:
        handles.append(Line2D([], [], color="0.45", linewidth=0.6, label=LABELS["grid"]))
    return handles


def _write_title(v: VariablePlan, w: _Window, slice_notes: Sequence[str]) -> str:
    """The title: variable, strategy and grid; counts; what is cut off; where the slice is."""
    grid_word = "shards" if v.shards else "chunks"
    title = (
        f"{v.name!r} {'x'.join(map(str, v.shape))} {v.dtype}: strategy {v.strategy!r}, {grid_word} "
        + "x".join(map(str, v.grid))
    )
    details = [f"{v.tasks} tasks, {v.edge_cells} edge, {v.partial_cells} partial of {v.cells} cells"]
    if v.lock_backend:
        details.append(f"{v.locks} locks ({v.lock_backend})")
    cut = [
        f"first {MAX_CELLS} of {lay.ncells} cells along {lay.name!r}"
        for lay in (w.row_lay, w.col_lay)
        if lay is not None and lay.ncells > MAX_CELLS
    ]
    lines = [title, "; ".join(details)]
    if cut:
        lines.append("showing " + "; ".join(cut))
    if slice_notes:
        lines.append("slice at " + ", ".join(slice_notes))
    return "\n".join(lines)


# --------------------------------------------------------------------------- rechunk plans


def _shape_text(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def _bytes_text(n: float) -> str:
    from parallelzarr.units import format_bytes

    return format_bytes(int(n))


def plot_rechunk_plan(plan: RechunkPlan, ax: Axes | None = None) -> Figure:
    """Draw the stages of a rechunk plan: chunk and block sizes per stage against the budget.

    For every array (the first :data:`MAX_ARRAYS`) and every stage (pass), three bars show the
    bytes of one read chunk, of one task's block and of one written chunk, each labelled with its
    shape; a diamond marks the stage's estimated peak memory per task and a dashed line the
    budget (``max_mem``). The x axis is logarithmic, so a time-contiguous to pixel-contiguous
    rechunk shows how each stage trades chunk shapes within the budget.

    Parameters
    ----------
    plan
        A :class:`~parallelzarr.plan.rechunk.RechunkPlan`, e.g. ``parallelzarr.rechunk(...).plan``
        or :func:`parallelzarr.plan_rechunk`.
    ax
        Matplotlib axes to draw into; a new figure is made when None.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the drawing.
    """
    arrays = list(plan.arrays[:MAX_ARRAYS])
    n_stages = sum(len(a.stages) for a in arrays)
    fig, ax = _figure_and_axes(ax, (10.0, 1.5 + 1.1 * max(n_stages, 1)))
    labels: list[str] = []
    xmax = float(plan.max_mem)
    xmin = math.inf
    for a in arrays:
        for s in a.stages:
            lo, hi = _draw_stage_bars(ax, a, s, float(len(labels)))
            xmin, xmax = min(xmin, lo), max(xmax, hi)
            labels.append(
                f"{a.name or '<array>'} stage {s.index}: {s.read_from} -> {s.write_to}\n"
                f"{s.n_tasks} tasks, read amp {s.read_amplification:.2f}, "
                f"mem {_bytes_text(s.task_memory)}"
            )
    ax.axvline(plan.max_mem, color="#d62828", linestyle="--", linewidth=1.2)
    ax.set_xscale("log")
    if xmin is math.inf:
        xmin = 1.0
    ax.set_xlim(max(xmin / 4, 1), xmax * 40)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize="small")
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlabel("bytes (log scale)")
    ax.legend(handles=_rechunk_legend(plan.max_mem), loc="upper left", bbox_to_anchor=(1.01, 1.0),
              fontsize="small", frameon=False)
    title = (
        f"RechunkPlan: {len(plan.arrays)} array(s), up to {plan.passes} pass(es), {plan.n_tasks} tasks; "
        f"reads {_bytes_text(plan.bytes_read)}, writes {_bytes_text(plan.bytes_written)}"
    )
    if len(plan.arrays) > MAX_ARRAYS:
        title += f"\nshowing the first {MAX_ARRAYS} of {len(plan.arrays)} arrays"
    ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    return fig


_STAGE_COLORS = MappingProxyType({"read": "#8ecae6", "block": "#219ebc", "write": "#ffb703"})
_BAR = 0.26


def _draw_stage_bars(ax: Axes, a: ArrayPlan, s: StagePlan, y: float) -> tuple[float, float]:
    """Draw one stage's read chunk, task block and write chunk bars and its peak marker at row ``y``.

    Returns the smallest and largest x drawn.
    """
    sizes = {
        "read": math.prod(s.read_grid) * a.itemsize,
        "block": math.prod(s.block) * a.itemsize,
        "write": math.prod(s.write_grid) * a.itemsize,
    }
    shapes = {"read": s.read_grid, "block": s.block, "write": s.write_grid}
    xmin, xmax = math.inf, float(s.task_memory)
    for k, off in (("read", -_BAR), ("block", 0.0), ("write", _BAR)):
        width = max(sizes[k], 1)
        ax.barh(y + off, width, height=_BAR * 0.9, color=_STAGE_COLORS[k], edgecolor="0.3", linewidth=0.5)
        # Past the memory marker on the block bar, so the two do not overlap.
        at = max(width, s.task_memory) * 1.3 if k == "block" else width * 1.08
        ax.text(at, y + off, _shape_text(shapes[k]), va="center", fontsize="x-small")
        xmax = max(xmax, width)
        xmin = min(xmin, width)
    ax.plot([max(s.task_memory, 1)], [y], marker="D", color="#d62828", markersize=7, linestyle="none")
    return xmin, xmax


def _rechunk_legend(max_mem: int) -> list[Any]:
    """Legend entries of a rechunk plot: the three bars, the peak marker and the budget line."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    return [
        Patch(facecolor=_STAGE_COLORS["read"], edgecolor="0.3", label="read chunk"),
        Patch(facecolor=_STAGE_COLORS["block"], edgecolor="0.3", label="task block"),
        Patch(facecolor=_STAGE_COLORS["write"], edgecolor="0.3", label="write chunk"),
        Line2D([], [], marker="D", color="#d62828", linestyle="none", label="est. peak memory / task"),
        Line2D([], [], color="#d62828", linestyle="--", label=f"budget max_mem {_bytes_text(max_mem)}"),
    ]


# --------------------------------------------------------------------------- plan methods


def _write_plan_method(self: WritePlan, variable: str | None = None, **kwargs: Any) -> Figure:
    """Draw one variable's dask blocks over its write grid (needs matplotlib).

    Parameters
    ----------
    variable
        Name of the variable to draw; the first variable of the plan by default.
    **kwargs
        Passed to :func:`plot_write_plan` (``axes``, ``ax``).

    Returns
    -------
    matplotlib.figure.Figure
        The figure, with cells colored as owned, edge, locked or partial.
    """
    return plot_write_plan(self, variable, **kwargs)


def _rechunk_plan_method(self: RechunkPlan, ax: Axes | None = None) -> Figure:
    """Draw the stages against the budget (:func:`plot_rechunk_plan`); needs matplotlib."""
    return plot_rechunk_plan(self, ax=ax)


def register() -> None:
    """Install ``plot()`` on :class:`WritePlan` and :class:`RechunkPlan` (idempotent).

    ``import parallelzarr`` calls it. The methods live here rather than in the plan classes so
    that the plan layer does not import this one; matplotlib is still imported only when drawing.
    """
    WritePlan.plot = _write_plan_method
    RechunkPlan.plot = _rechunk_plan_method
