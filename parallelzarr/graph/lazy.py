"""Graph layers whose tasks are made from their keys on demand, never stored.

A write of a 10-million-chunk array has millions of tasks. Building them as a dict before the graph
is submitted costs seconds and hundreds of MB on the client, and ``compute=False`` would hand the user
that dict. These layers hold only per-axis arithmetic: ``len`` and key membership are O(ndim), and
tasks are made one at a time when dask asks for them at submission.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from dask._task_spec import DataNode, Task, TaskRef
from dask.highlevelgraph import HighLevelGraph, Layer, MaterializedLayer
from dask.typing import Key

#: Leaves a link of the summation chain that ends a graph adds at least (see chain_sum_layers).
FAN_IN = 32


class KeySpace(AbstractSet):
    """A set of keys described by arithmetic; ``key_at(i)`` gives the ``i``-th in iteration order."""

    name: str

    def key_at(self, i: int) -> Key:  # pragma: no cover - interface
        raise NotImplementedError


class GridKeys(KeySpace):
    """Keys ``(name, i0, i1, ...)`` for every index of a grid of ``shape`` (C order)."""

    def __init__(self, name: str, shape: Sequence[int]):
        self.name = name
        self.shape = tuple(int(n) for n in shape)

    def __len__(self) -> int:
        return math.prod(self.shape)

    def __iter__(self) -> Iterator[Key]:
        for idx in itertools.product(*(range(n) for n in self.shape)):
            yield (self.name, *idx)

    def __contains__(self, key: object) -> bool:
        return (
            isinstance(key, tuple)
            and len(key) == len(self.shape) + 1
            and key[0] == self.name
            and all(isinstance(i, int) and 0 <= i < n for i, n in zip(key[1:], self.shape, strict=True))
        )

    def key_at(self, i: int) -> Key:
        idx = []
        for n in reversed(self.shape):
            i, r = divmod(i, n)
            idx.append(r)
        return (self.name, *reversed(idx))


class LazyLayer(Layer):
    """A layer holding a :class:`KeySpace` and a function making the task of a key.

    Parameters
    ----------
    keys
        The layer's keys.
    make_task
        ``make_task(key) -> dask._task_spec.Task`` (called once per key at submission).
    """

    def __init__(self, keys: KeySpace, make_task: Callable[[Any], Task]):
        super().__init__()
        self._keys = keys
        self._make_task = make_task

    def __getitem__(self, key: Key) -> Task:
        if key not in self._keys:
            raise KeyError(key)
        return self._make_task(key)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def is_materialized(self) -> bool:
        return False

    def get_output_keys(self) -> KeySpace:
        return self._keys


def _sum(*parts: int) -> int:
    return int(sum(parts))


#: A chain link sums at most this many leaves when one row of the grid is longer.
MAX_LINK = 1024


def chain_sum_layers(name: str, leaves: GridKeys) -> tuple[list[tuple[str, Layer]], str]:
    """Layers adding up the integer results of ``leaves`` along a chain that follows the grid's rows.

    Link ``j`` adds link ``j - 1`` and the next run of leaves in C order: whole rows of the grid's
    first axis (at least ``FAN_IN`` leaves, or ``FAN_IN`` at a time when a row is longer than
    ``MAX_LINK``). The chain is an ordering hint as much as a sum: dask's ordering follows it from
    the start of the array to the end, finishing one row's writes (and freeing their edge slabs)
    before it starts the source blocks of rows far ahead. With a balanced summation tree instead,
    edge slabs piled up as the array grew (simulated with ``dask.order``: 1.0 GB held at 2 GB of
    data, 2.8 GB at 5 GB; with the chain 0.4 GB at 2, 5 and 10 GB).

    Returns the layers in dependency order and the key of the total, ``name`` itself (a layer name,
    as ``Delayed`` wants).
    """
    n = len(leaves)
    row = math.prod(leaves.shape[1:]) if leaves.shape else 1
    run = row * math.ceil(FAN_IN / row) if 0 < row <= MAX_LINK else FAN_IN
    links = GridKeys(f"{name}-chain", (math.ceil(n / run),))
    layers: list[tuple[str, Layer]] = []
    if len(links):

        def make(key: Any) -> Task:
            j = key[1]
            prev = (TaskRef((links.name, j - 1)),) if j else ()
            return Task(key, _sum, *prev, *(TaskRef(leaves.key_at(i)) for i in range(j * run, min(n, (j + 1) * run))))

        layers.append((links.name, LazyLayer(links, make)))
        total = Task(name, _sum, TaskRef(links.key_at(len(links) - 1)))
    else:
        total = Task(name, _sum)
    layers.append((name, MaterializedLayer({name: total})))
    return layers, name


def data_layer(key: str, value: Any) -> Layer:
    """A one-key layer holding ``value`` (shipped once per worker, not pickled into every task)."""
    return MaterializedLayer({key: DataNode(key, value)})


def stack_layers(
    base: HighLevelGraph | None,
    layers: Sequence[tuple[str, Layer, set[str]]],
) -> HighLevelGraph:
    """Add ``(name, layer, depends_on_layer_names)`` on top of ``base``."""
    all_layers: dict[str, Layer] = dict(base.layers) if base is not None else {}
    deps: dict[str, set[str]] = {k: set(v) for k, v in base.dependencies.items()} if base is not None else {}
    for name, layer, on in layers:
        all_layers[name] = layer
        deps[name] = set(on)
    return HighLevelGraph(all_layers, deps)


def as_hlg(collection: Any) -> HighLevelGraph:
    """The high-level graph of a dask collection (wrapping a plain dict graph in one layer)."""
    graph = collection.__dask_graph__()
    if isinstance(graph, HighLevelGraph):
        return graph
    name = collection.__dask_layers__()[0]
    return HighLevelGraph({name: MaterializedLayer(dict(graph))}, {name: set()})
