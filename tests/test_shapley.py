"""Exact 3-player Shapley values."""

import itertools

import pytest

from bench.shapley import coalition_key, coalitions, shapley_from_fn, shapley_values
from models.constants import MODALITIES


def game(fn):
    return {c: fn(c) for c in coalitions()}


def test_additive_game_gives_each_player_its_weight():
    w = {"t": 3.0, "a": 1.5, "v": -0.5}
    values = shapley_values(game(lambda c: sum(w[m] for m in c)))
    assert values == pytest.approx(w)


def test_efficiency_symmetry_and_interaction_split():
    # u = 2*[t] + 1*[t and a together] : the interaction is split equally between t and a
    u = game(lambda c: 2.0 * ("t" in c) + 1.0 * ({"t", "a"} <= c))
    values = shapley_values(u)
    assert values == pytest.approx({"t": 2.5, "a": 0.5, "v": 0.0})
    assert sum(values.values()) == pytest.approx(u[frozenset(MODALITIES)] - u[frozenset()])


def test_matches_permutation_definition_on_a_random_game():
    import random

    rng = random.Random(0)
    u = game(lambda c: rng.uniform(-1, 1))
    perms = list(itertools.permutations(MODALITIES))
    expected = {m: 0.0 for m in MODALITIES}
    for order in perms:
        seen = frozenset()
        for m in order:
            expected[m] += (u[seen | {m}] - u[seen]) / len(perms)
            seen = seen | {m}
    assert shapley_values(u) == pytest.approx(expected)


def test_from_fn_evaluates_each_coalition_once_and_keys_are_canonical():
    calls = []
    utilities, values = shapley_from_fn(lambda c: calls.append(c) or len(c))
    assert len(calls) == 8 and len(set(calls)) == 8
    assert set(utilities) == {"", "t", "a", "v", "ta", "tv", "av", "tav"}
    assert values == pytest.approx({"t": 1.0, "a": 1.0, "v": 1.0})
    assert coalition_key({"v", "t"}) == "tv"


def test_missing_coalition_raises():
    u = game(lambda c: 0.0)
    del u[frozenset({"a"})]
    with pytest.raises(KeyError, match="missing"):
        shapley_values(u)
