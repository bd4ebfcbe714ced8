"""Two-pass rechunk plans: the intermediate chunks that move the fewest bytes within the budget.

The intermediate's chunks are chosen per axis from a divisibility chain with the source and target
chunks (:func:`intermediate_candidates`), so both stages stay aligned cheaply. The search grows
them in tiers of decreasing ambition (:func:`_first_fit`), then improves one axis at a time
(:func:`_descend`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from parallelzarr.plan.rechunk.balance import BALANCE_TASKS, balance_bytes
from parallelzarr.plan.rechunk.plans import StagePlan
from parallelzarr.plan.rechunk.stages import Problem, best_stage, moved
from parallelzarr.units import format_bytes

__all__ = ["SMALL_INTERMEDIATE_BYTES", "TwoPass", "intermediate_candidates", "plan_two_pass"]

#: Intermediate chunks below this size get a note: a larger budget makes them larger.
SMALL_INTERMEDIATE_BYTES = 2**20

_Pair = tuple[StagePlan, StagePlan]
_Found = tuple[tuple[int, ...], _Pair]


@dataclass(frozen=True)
class TwoPass:
    """A two-pass plan: the intermediate's chunks and the two stages through it."""

    chunks: tuple[int, ...]
    stages: _Pair


def _divisors(x: int) -> list[int]:
    """Divisors of ``x`` in increasing order."""
    small: list[int] = []
    large: list[int] = []
    d = 1
    while d * d <= x:
        if x % d == 0:
            small.append(d)
            if d * d != x:
                large.append(x // d)
        d += 1
    return small + large[::-1]


def intermediate_candidates(n: int, s: int, w: int) -> list[int]:
    """Intermediate chunk sizes on one axis that keep both stages aligned cheaply.

    Candidates form a divisibility chain with the source and target sizes, so the
    stage blocks ``lcm(s, m)`` and ``lcm(m, w)`` stay ``max(s, m)`` and ``max(m, w)``.
    """
    g = math.gcd(s, w)
    cands = set(_divisors(g)) if g <= 10**7 else {g}
    if w % s == 0 and w // s <= 10**7:
        cands.update(s * k for k in _divisors(w // s))
    if s % w == 0 and s // w <= 10**7:
        cands.update(w * k for k in _divisors(s // w))
    cands.add(max(n, 1))
    return sorted(c for c in cands if c <= max(n, 1))


@dataclass
class _Search:
    """The two-pass search over one array's intermediate chunks; the stage pairs found are kept."""

    p: Problem
    cands: list[list[int]]
    target_intermediate_bytes: int
    memo: dict[tuple[int, ...], _Pair | None] = field(default_factory=dict)

    def aligned_mem(self, mm: Sequence[int]) -> int:
        """Floor peak of the two stages with blocks of whole cells of both grids."""
        p = self.p
        b1 = tuple(min(n, math.lcm(a, c)) for n, a, c in zip(p.shape, p.read, mm, strict=True))
        b2 = tuple(min(n, math.lcm(c, b)) for n, c, b in zip(p.shape, mm, p.write, strict=True))
        return max(p.mem(b1, p.read, mm, False), p.mem(b2, mm, p.write, p.sharded))

    def least_mem(self, mm: Sequence[int]) -> int:
        """Floor peak of the two stages with their smallest blocks (one written cell)."""
        p = self.p
        b1 = tuple(min(n, c) for n, c in zip(p.shape, mm, strict=True))
        b2 = tuple(min(n, b) for n, b in zip(p.shape, p.write, strict=True))
        return max(p.mem(b1, p.read, mm, False), p.mem(b2, mm, p.write, p.sharded))

    def units_bytes(self, mm: Sequence[int]) -> int:
        """Bytes of the larger of the two stages' whole-cell units."""
        p = self.p
        b1 = math.prod(min(n, math.lcm(a, c)) for n, a, c in zip(p.shape, p.read, mm, strict=True))
        b2 = math.prod(min(n, math.lcm(c, b)) for n, c, b in zip(p.shape, mm, p.write, strict=True))
        return max(b1, b2) * p.itemsize

    def grow(self, fits: Callable[[Sequence[int]], bool]) -> tuple[int, ...] | None:
        """Grow intermediate chunks along the candidate chains while ``fits`` (None if even the smallest fails)."""
        cands, ndim = self.cands, len(self.cands)
        m = [c[0] for c in cands]
        if not fits(m):
            return None
        pos = [0] * ndim
        while math.prod(m) * self.p.itemsize < self.target_intermediate_bytes:
            best = None
            for i in range(ndim):
                if pos[i] + 1 >= len(cands[i]):
                    continue
                trial = list(m)
                trial[i] = cands[i][pos[i] + 1]
                if fits(trial):
                    size = math.prod(trial)
                    if best is None or size > best[0]:
                        best = (size, i)
            if best is None:
                break
            i = best[1]
            pos[i] += 1
            m[i] = cands[i][pos[i]]
        return tuple(m)

    def pair(self, mm: tuple[int, ...]) -> _Pair | None:
        """The cheapest two stages through intermediate chunks ``mm`` (None if one does not fit)."""
        if mm not in self.memo:
            p = self.p
            s1 = best_stage(p, 0, "source", "intermediate", p.read, mm, False)
            s2 = best_stage(p, 1, "intermediate", "target", mm, p.write, p.sharded) if s1 is not None else None
            self.memo[mm] = None if s1 is None or s2 is None else (s1, s2)
        return self.memo[mm]


def _first_fit(search: _Search, balance: int) -> tuple[_Found | None, bool]:
    """The first tier's intermediate that moves at most 4x the array, else the best of the tiers.

    Tiers: both stages read whole cells and their units are at most ``balance`` bytes (enough tasks
    per stage); both read whole cells (every chunk read once per pass, 4x the array: no two-pass
    plan moves less); the largest that fit at all (stages then split cells). Also returns whether
    the plan found is from the balanced tier.
    """
    budget, nbytes = search.p.budget, search.p.nbytes
    found: _Found | None = None
    balanced = False
    tiers = (lambda mm: search.aligned_mem(mm) <= budget and search.units_bytes(mm) <= balance,
             lambda mm: search.aligned_mem(mm) <= budget, lambda mm: search.least_mem(mm) <= budget)
    for tier, fits in enumerate(tiers):
        mm = search.grow(fits)
        pair = search.pair(mm) if mm is not None else None
        if mm is not None and pair is not None and (found is None or moved(pair) < moved(found[1])):
            found = (mm, pair)
            balanced = tier == 0
        if found is not None and moved(found[1]) <= 4 * nbytes:
            break
    return found, balanced


def _descend(search: _Search, found: _Found | None) -> _Found | None:
    """Improve ``found`` one axis at a time while it moves more than 4x the array.

    Each round moves one axis to whichever of its candidates moves the fewest bytes, until no axis
    helps (coordinate descent; a few dozen stage evaluations per round, at most 16 rounds).
    """
    nbytes = search.p.nbytes
    rounds = 0
    while found is not None and moved(found[1]) > 4 * nbytes and rounds < 16:
        rounds += 1
        mm = found[0]
        better = found
        for i in range(len(mm)):
            for c in search.cands[i]:
                if c != mm[i]:
                    trial = mm[:i] + (c,) + mm[i + 1:]
                    got = search.pair(trial)
                    # Fewer bytes, or as few in larger intermediate chunks (fewer objects).
                    if got is not None and (moved(got), -math.prod(trial)) < (moved(better[1]),
                                                                               -math.prod(better[0])):
                        better = (trial, got)
        if better is found:
            break
        found = better
    return found


def plan_two_pass(p: Problem, target_intermediate_bytes: int,
                  target_task_bytes: int | None) -> tuple[TwoPass | None, int]:
    """The two-pass plan moving the fewest bytes, and the least budget any two-pass plan needs.

    Parameters
    ----------
    p
        The array's rechunk.
    target_intermediate_bytes
        Intermediate chunks grow up to about this size.
    target_task_bytes
        The caller's task size knob, if given (it caps the balanced tier's tasks).

    Returns
    -------
    tuple
        The plan (``None`` when none keeps the budget) and the smallest budget that would fit one.
    """
    cands = [intermediate_candidates(n, a, b) for n, a, b in zip(p.shape, p.read, p.write, strict=True)]
    search = _Search(p, cands, target_intermediate_bytes)
    smallest = [c[0] for c in cands]
    need = min(search.aligned_mem(smallest), search.least_mem(smallest))
    balance = balance_bytes(p.nbytes, target_task_bytes)
    found, balanced = _first_fit(search, balance)
    found = _descend(search, found)
    if found is None:
        return None, need
    mm, (s1, s2) = found
    if balanced and found[1][0].n_tasks > 1:
        why = (f"intermediate chunks keep every task at most {format_bytes(balance)} (about 64 MB, or 1/"
               f"{BALANCE_TASKS} of the array), so each stage has tasks for every worker")
        s1 = replace(s1, note=f"{s1.note}; {why}" if s1.note else why)
    if math.prod(mm) * p.itemsize < SMALL_INTERMEDIATE_BYTES:
        s1 = replace(s1, note=f"intermediate chunks are small ({format_bytes(math.prod(mm) * p.itemsize)}); "
                              "a larger budget makes them larger")
    return TwoPass(mm, (s1, s2)), need
