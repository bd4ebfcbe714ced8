"""Progress bars and performance reports for long runs.

Both write to stderr, so ``--json`` output on stdout stays machine-readable.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, TextIO

from parallelzarr.errors import ParallelZarrError

__all__ = ["progress", "compute_progress", "finish_running_tasks", "performance_report", "report_problem", "compute_kwargs", "distributed_get"]


def _active_client() -> Any:
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel with ipywidgets (``pip install 'parallelzarr[notebook]'``)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
        import ipywidgets  # noqa: F401
    except Exception:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def distributed_get(client: Any, *, out: TextIO | None = None, width: int = 40, widget: bool = False) -> Any:
    """A dask scheduler function that runs on ``client`` and draws a progress bar.

    ``dask.compute(..., scheduler=distributed_get(client))`` submits the graph, shows
    distributed's text progress bar (tracking every task the results depend on) and gathers.
    A scheduler function is used because the API computes internally and only accepts
    ``dask.compute`` keywords.

    Parameters
    ----------
    client
        A connected :class:`distributed.Client`.
    out
        Stream for the bar (stderr by default).
    width
        Bar width in characters.
    widget
        Draw distributed's notebook widget instead (needs ipywidgets).

    Returns
    -------
    callable
        ``get(graph, keys, **kwargs)``.
    """
    from distributed.diagnostics.progressbar import TextProgressBar

    stream = out if out is not None else sys.stderr

    class _Bar(TextProgressBar):
        def _draw_bar(self, remaining: int, all: int, **kwargs: Any) -> None:  # noqa: A002
            frac = (1 - remaining / all) if all else 1.0
            bar = "#" * int(self.width * frac)
            stream.write(f"\r[{bar:<{self.width}}] | {int(100 * frac)}% Completed | {self.elapsed:.1f}s")
            stream.flush()

        def _draw_stop(self, **kwargs: Any) -> None:
            stream.write("\n")
            stream.flush()

    def get(dsk: Any, keys: Any, **kwargs: Any) -> Any:
        from dask.core import flatten

        packed = client.get(dsk, keys, sync=False, **kwargs)
        futures = [f for f in flatten(packed) if hasattr(f, "key")]
        try:
            if widget:
                from distributed import progress as _widget

                _widget(futures, notebook=True, multi=False)
            else:
                _Bar(futures, scheduler=client.scheduler.address, width=width, loop=client.loop)
            return client.gather(packed)
        finally:
            for f in futures:
                f.release()

    return get


@contextmanager
def progress(enabled: bool = True, client: Any = None, *, out: TextIO | None = None) -> Iterator[dict[str, Any]]:
    """Show a progress bar while the block runs and yield the ``dask.compute`` keywords to use.

    Parameters
    ----------
    enabled
        ``False`` shows nothing (the keywords still select ``client``).
    client
        A distributed client, or ``None`` for dask's local schedulers, where
        :class:`dask.diagnostics.ProgressBar` draws the bar.
    out
        Stream for the bar (stderr by default).

    Yields
    ------
    dict
        Keywords for ``dask.compute`` (and the API's ``**compute_kwargs``); empty for local
        schedulers so the caller's own ``scheduler=`` choice stands.
    """
    stream = out if out is not None else sys.stderr
    if client is not None:
        yield {"scheduler": distributed_get(client, out=stream)} if enabled else {"scheduler": client}
        return
    if not enabled:
        yield {}
        return
    from dask.diagnostics import ProgressBar

    with ProgressBar(minimum=0.5, out=stream):
        yield {}


class ProgressError(ParallelZarrError, TypeError):
    """``progress=`` is not a bool."""


class _WidgetBar:
    """dask's local-scheduler callbacks drawing an ipywidgets bar (the notebook form of ProgressBar)."""

    def __init__(self) -> None:
        import ipywidgets
        from dask.callbacks import Callback
        from IPython.display import display

        bar = ipywidgets.IntProgress(min=0, max=1, description="computing")
        display(bar)

        def start_state(dsk: Any, state: Any) -> None:
            bar.max = max(1, len(state["ready"]) + len(state["waiting"]) + len(state["running"]) + len(state["finished"]))

        def posttask(key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            bar.value = len(state["finished"])

        def finish(dsk: Any, state: Any, errored: bool) -> None:
            bar.value = bar.max
            bar.bar_style = "danger" if errored else "success"

        self.callback = Callback(start_state=start_state, posttask=posttask, finish=finish)


@contextmanager
def compute_progress(enabled: bool, compute_kwargs: dict[str, Any], *, out: TextIO | None = None) -> Iterator[dict[str, Any]]:
    """The API's ``progress=True``: yield ``compute_kwargs`` set up to draw a bar while computing.

    On a distributed client (``scheduler=client`` or an active default client) distributed's bar
    is drawn: its notebook widget in Jupyter with ipywidgets, else a text bar on ``out``. On dask's
    local schedulers (threads, processes, sync) :class:`dask.diagnostics.ProgressBar` draws one
    (an ipywidgets bar in Jupyter). ``enabled=False`` yields ``compute_kwargs`` unchanged.

    Parameters
    ----------
    enabled
        Draw a bar.
    compute_kwargs
        The caller's ``dask.compute`` keywords (not modified).
    out
        Stream of the text bars (default: stdout, as dask's ProgressBar).
    """
    if not enabled:
        yield compute_kwargs
        return
    if not isinstance(enabled, bool):
        raise ProgressError(f"progress must be True or False, got {enabled!r}")
    stream = out if out is not None else sys.stdout
    scheduler = compute_kwargs.get("scheduler")
    client = scheduler if hasattr(scheduler, "gather") and hasattr(scheduler, "scheduler") else None
    if client is None and scheduler is None:
        client = _active_client()
    notebook = in_notebook()
    if client is not None:
        yield {**compute_kwargs, "scheduler": distributed_get(client, out=stream, widget=notebook)}
        return
    if notebook:
        with _WidgetBar().callback:
            yield compute_kwargs
        return
    from dask.diagnostics import ProgressBar

    with ProgressBar(minimum=0, out=stream):
        yield compute_kwargs


def finish_running_tasks() -> None:
    """After an interrupt: let the tasks dask's thread pools are running finish, start no more.

    A ``KeyboardInterrupt`` stops only the thread waiting for the results; tasks already running in
    the pool go on (a chunk write, an append's commit). Waiting for them makes the store's state
    final before anyone reports it or releases a lease. The pools are made anew by the next compute.
    """
    import dask.threaded as threaded

    with threaded.pools_lock:
        pools = [threaded.default_pool, *(p for per in threaded.pools.values() for p in per.values())]
        threaded.default_pool = None
        threaded.pools.clear()
    for pool in pools:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def compute_kwargs(client: Any, workers: int | None = None, *, single: bool = False) -> dict[str, Any]:
    """The ``dask.compute`` keywords for a resolved cluster.

    Parameters
    ----------
    client
        The client from :func:`parallelzarr.cluster.resolve_cluster`, or ``None``.
    workers
        Threads of the threaded scheduler when ``client`` is ``None``.
    single
        Use dask's synchronous scheduler instead of threads.
    """
    if client is not None:
        return {"scheduler": client}
    if single:
        return {"scheduler": "sync"}
    kwargs: dict[str, Any] = {"scheduler": "threads"}
    if workers:
        kwargs["num_workers"] = int(workers)
    return kwargs


def report_problem() -> str | None:
    """Why :func:`performance_report` cannot work here, or ``None`` if it can."""
    import importlib.util

    if importlib.util.find_spec("bokeh") is None:
        return "dask performance reports need bokeh: pip install 'parallelzarr[hpc]' (or bokeh>=3.1)"
    return None


@contextmanager
def performance_report(path: str | Path | None, client: Any = None) -> Iterator[Path | None]:
    """Record a :func:`distributed.performance_report` HTML file while the block runs.

    Parameters
    ----------
    path
        Where to write the report; ``None`` records nothing.
    client
        The client to report on (default: the active one).

    Yields
    ------
    pathlib.Path or None
        The report's path.

    Raises
    ------
    RuntimeError
        If ``path`` is given and no distributed client is active (reports need a scheduler).
    """
    if path is None:
        with nullcontext():
            yield None
        return
    client = client or _active_client()
    if client is None:
        raise RuntimeError("a performance report needs a distributed cluster (use --cluster local)")
    problem = report_problem()
    if problem:
        raise RuntimeError(problem)
    from distributed import performance_report as _report

    target = Path(path).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    with _report(filename=str(target)):
        yield target
