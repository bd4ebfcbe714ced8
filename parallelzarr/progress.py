"""Progress bars and performance reports for long runs.

Both write to stderr, so ``--json`` output on stdout stays machine-readable.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, TextIO

__all__ = ["progress", "performance_report", "report_problem", "compute_kwargs", "distributed_get"]


def _active_client() -> Any:
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def distributed_get(client: Any, *, out: TextIO | None = None, width: int = 40) -> Any:
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
