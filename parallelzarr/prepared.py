"""A validated, planned write: what to lay down, what each array receives, what to do last."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dask.array as da

from .locks import LockSpec
from .planning.write import VariablePlan, WritePlan


@dataclass
class ArrayJob:
    """One array to fill: its plan, the (encoded) data, and how to open the target array."""

    plan: VariablePlan
    data: da.Array
    open_target: Callable[[], Any]


@dataclass
class PreparedWrite:
    """Everything a write needs once all input checks have passed.

    ``setup`` lays down metadata (new arrays and groups); ``commit`` runs after all data is written
    (appends publish their new shapes there). Neither runs before the whole input is validated.
    """

    plan: WritePlan
    jobs: list[ArrayJob]
    setup: Callable[[], None] = lambda: None
    commit: Callable[[], Any] | None = None
    locks: LockSpec | None = None
    info: dict[str, Any] = field(default_factory=dict)
