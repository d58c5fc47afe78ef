"""ADL queue and haircut: invariants against brute force, and the published ranking shape."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deleverage.engine.adl import allocate, pro_rata_haircut, ranking_score
from deleverage.errors import InvalidInput

candidate_lists = st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 50), st.integers(-5, 5).map(float)),
    max_size=30,
    unique_by=lambda row: row[0],
)


def test_queue_closes_highest_score_first_then_partially() -> None:
    # Three counterparties, 7 lots to cover: b (score 2) closes fully (3), then a (score 1) gives 4 of 5.
    result = allocate([("a", 5, 1.0), ("b", 3, 2.0), ("c", 10, 0.5)], 7)
    assert result == {"b": 3, "a": 4}
    assert list(result) == ["b", "a"]  # queue order is preserved


def test_queue_short_of_candidates_closes_everyone() -> None:
    result = allocate([("a", 2, 1.0), ("b", 3, 0.5)], 10)
    assert result == {"a": 2, "b": 3}


@given(candidate_lists, st.integers(0, 600))
def test_allocation_matches_greedy_oracle(candidates, qty) -> None:
    result = allocate(candidates, qty)
    total = sum(size for _, size, _ in candidates)
    assert sum(result.values()) == min(qty, total)
    for account_id, closed in result.items():
        size = next(s for a, s, _ in candidates if a == account_id)
        assert 0 < closed <= size
    # Brute-force oracle: nobody with a lower rank is touched while a higher-ranked one keeps size.
    order = sorted(candidates, key=lambda r: (-r[2], -r[1], r[0]))
    partial_seen = False
    for account_id, size, _ in order:
        closed = result.get(account_id, 0)
        if partial_seen:
            assert closed == 0
        elif closed < size:
            partial_seen = True


def test_fractional_quantities_are_exact() -> None:
    result = allocate([("a", Fraction(1, 3), 1.0), ("b", Fraction(2, 3), 0.0)], Fraction(1, 2))
    assert result == {"a": Fraction(1, 3), "b": Fraction(1, 6)}


@pytest.mark.parametrize(
    ("candidates", "qty", "field"),
    [
        ([("a", -1, 1.0)], 1, "candidates[0].qty"),
        ([("a", 1, float("nan"))], 1, "candidates[0].score"),
        ([("a", 1, 1.0), ("a", 2, 0.0)], 1, "candidates[1].account_id"),
        ([("a", 1, 1.0)], -1, "qty"),
        ([("a", 1, 1.0)], float("inf"), "qty"),
    ],
)
def test_bad_input_names_the_field(candidates, qty, field) -> None:
    with pytest.raises(InvalidInput) as info:
        allocate(candidates, qty)
    assert info.value.field == field


def test_ranking_score_shape() -> None:
    # Profit: PnL% × leverage. 10% profit at 5x effective leverage ranks 0.5.
    assert ranking_score(unrealized_pnl=100, entry_notional=1000, mark_notional=1100, margin_balance=220) == pytest.approx(0.5)
    # Loss: PnL% ÷ leverage — a loser at high leverage ranks higher (closer to 0) than at low leverage.
    low = ranking_score(unrealized_pnl=-100, entry_notional=1000, mark_notional=900, margin_balance=900)
    high = ranking_score(unrealized_pnl=-100, entry_notional=1000, mark_notional=900, margin_balance=90)
    assert low == pytest.approx(-0.1) and high == pytest.approx(-0.01)
    assert ranking_score(unrealized_pnl=5, entry_notional=10, mark_notional=15, margin_balance=0) == math.inf


@given(
    st.lists(st.integers(0, 10**12), min_size=1, max_size=20),
    st.integers(0, 10**13),
)
def test_haircut_covers_shortfall_exactly_and_proportionally(profits, shortfall) -> None:
    rows = list(enumerate(profits))
    taken = pro_rata_haircut(rows, shortfall)
    total = sum(profits)
    assert sum(taken.values()) == min(shortfall, total)
    for k, p in rows:
        t = taken.get(k, 0)
        assert 0 <= t <= p
        if 0 < shortfall < total:
            # Never more than one minor unit away from the exact proportional share.
            assert abs(t - Fraction(p * shortfall, total)) < 1 + 1e-9


def test_haircut_leftovers_go_to_the_largest_profits():
    """The documented rule (``pro_rata_haircut``): floor(h × profit) each, then the units lost to rounding
    one at a time from the largest profits. Profits [5, 3, 2], shortfall 7: h = 0.7, floors 3, 2, 1 (6),
    the missing unit goes to the profit of 5 → 4, 2, 1. (Largest remainder agrees here: 3.5, 2.1, 1.4.)"""
    assert pro_rata_haircut([("a", 5), ("b", 3), ("c", 2)], 7) == {"a": 4, "b": 2, "c": 1}
    # ties in profit go by account id; two leftovers: floors 2, 2, 2 of 9 → the two smallest ids
    assert pro_rata_haircut([("z", 4), ("x", 4), ("y", 4)], 8) == {"x": 3, "y": 3, "z": 2}


@given(st.lists(st.integers(1, 10**6), min_size=1, max_size=12), st.integers(1, 10**7))
def test_haircut_leftovers_never_skip_a_larger_profit(profits, shortfall) -> None:
    """Whoever pays a leftover unit, every strictly larger profit (not already paying all) paid one too."""
    total = sum(profits)
    if shortfall >= total:
        return
    rows = list(enumerate(profits))
    taken = pro_rata_haircut(rows, shortfall)
    extra = {k: taken.get(k, 0) - (p * shortfall) // total for k, p in rows}
    assert set(extra.values()) <= {0, 1}
    for k, p in rows:
        if extra[k]:
            for j, q in rows:
                if q > p and taken.get(j, 0) < q:
                    assert extra[j] == 1, (profits, shortfall, k, j)
