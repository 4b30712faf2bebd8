"""Exact Shapley values over the three modalities (no sampling).

With players M = {t, a, v}, psi_m = sum over S subset of M\\{m} of w_|S| [u(S + m) - u(S)],
with w_0 = 1/3, w_1 = 1/6, w_2 = 1/3 (= |S|! (n-|S|-1)! / n!). Eight coalition utilities
give all three values; they sum to u(M) - u(empty) (efficiency).
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Iterable, Mapping

from models.constants import MODALITIES


def coalitions(players: Iterable[str] = MODALITIES) -> list[frozenset]:
    """All subsets, smallest first: (), (t,), (a,), (v,), (t,a), ..., (t,a,v)."""
    ps = tuple(players)
    return [frozenset(c) for r in range(len(ps) + 1) for c in itertools.combinations(ps, r)]


def coalition_key(coalition: Iterable[str], players: Iterable[str] = MODALITIES) -> str:
    """Stable string key: players in canonical order, '' for the empty coalition."""
    members = set(coalition)
    return "".join(p for p in players if p in members)


def shapley_values(utility: Mapping[frozenset, float], players: Iterable[str] = MODALITIES) -> dict[str, float]:
    """Exact Shapley values from the utility of every coalition (keys: frozensets)."""
    ps = tuple(players)
    n = len(ps)
    if missing := [coalition_key(c, ps) or "{}" for c in coalitions(ps) if c not in utility]:
        raise KeyError(f"utility is missing coalitions: {missing}")
    values = {}
    for m in ps:
        others = [p for p in ps if p != m]
        total = 0.0
        for r in range(n):
            weight = math.factorial(r) * math.factorial(n - r - 1) / math.factorial(n)
            for combo in itertools.combinations(others, r):
                s = frozenset(combo)
                total += weight * (utility[s | {m}] - utility[s])
        values[m] = total
    return values


def shapley_from_fn(utility_fn: Callable[[frozenset], float], players: Iterable[str] = MODALITIES):
    """Evaluate `utility_fn` on every coalition once; return (utilities by key, shapley values)."""
    ps = tuple(players)
    utility = {c: float(utility_fn(c)) for c in coalitions(ps)}
    return {coalition_key(c, ps): u for c, u in utility.items()}, shapley_values(utility, ps)
