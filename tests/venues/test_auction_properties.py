"""Random books against a brute-force oracle: maximal volume, limits respected, fills balanced.

The oracle scans every price on a fine grid (all integer ticks spanning the book plus one either side),
independent of the candidate/level machinery of the implementation: executable volume at the chosen
price must equal the best over all prices, and the tie-break must pick an oracle-valid price.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from deleverage.venues.auction import clear

order = st.tuples(st.one_of(st.none(), st.integers(1, 30)), st.integers(1, 20))
book = st.lists(order, max_size=12)


def _volume_at(bids, asks, price):
    demand = sum(q for p, q in bids if p is None or p >= price)
    supply = sum(q for p, q in asks if p is None or p <= price)
    return min(demand, supply), demand - supply


def _oracle(bids, asks):
    grid = range(0, 32)
    return max(_volume_at(bids, asks, p)[0] for p in grid)


@given(book, book, st.one_of(st.none(), st.integers(1, 30)), st.sampled_from(["pro_rata", "time"]),
       st.sampled_from(["reference", "midpoint"]))
def test_volume_maximal_fills_valid(bids, asks, reference, rationing, tie_break) -> None:
    result = clear(bids, asks, reference_price=reference, rationing=rationing, tie_break=tie_break)
    has_limits = any(p is not None for p, _ in bids + asks)
    if result.price is None:
        assert result.volume == 0
        if has_limits:
            assert _oracle(bids, asks) == 0
    else:
        volume, surplus = _volume_at(bids, asks, result.price)
        assert result.volume == volume
        assert result.surplus == surplus
        if has_limits:
            assert volume == _oracle(bids, asks)
    assert sum(result.buy_fills) == sum(result.sell_fills) == result.volume
    for (price, qty), fill in zip(bids, result.buy_fills, strict=True):
        assert 0 <= fill <= qty
        if fill:
            assert price is None or price >= result.price
    for (price, qty), fill in zip(asks, result.sell_fills, strict=True):
        assert 0 <= fill <= qty
        if fill:
            assert price is None or price <= result.price


@given(book, book, st.one_of(st.none(), st.integers(1, 30)))
def test_price_follows_the_rule(bids, asks, reference) -> None:
    """Brute force of the published rule over the candidate (limit) prices."""
    result = clear(bids, asks, reference_price=reference)
    candidates = sorted({p for p, _ in bids + asks if p is not None})
    if not candidates or result.price is None:
        return
    scored = [(p, *_volume_at(bids, asks, p)) for p in candidates]
    best = max(v for _, v, _ in scored)
    tied = [(p, s) for p, v, s in scored if v == best]
    least = min(abs(s) for _, s in tied)
    tied = [(p, s) for p, s in tied if abs(s) == least]
    low, high = tied[0][0], tied[-1][0]
    if len(tied) == 1:
        expected = low
    elif all(s > 0 for _, s in tied):
        expected = high
    elif all(s < 0 for _, s in tied):
        expected = low
    elif reference is None:
        expected = round((low + high) / 2) if (low + high) % 2 == 0 else round((low + high) / 2)
    else:
        expected = min(max(reference, low), high)
    assert result.price == expected


@given(book, book, st.integers(1, 30))
def test_strictly_better_orders_fill_when_price_is_a_long_side_limit(bids, asks, reference) -> None:
    result = clear(bids, asks, reference_price=reference)
    if result.price is None:
        return
    for (price, qty), fill in zip(bids, result.buy_fills, strict=True):
        if price is not None and price > result.price and any(p == result.price for p, _ in bids):
            assert fill == qty
    for (price, qty), fill in zip(asks, result.sell_fills, strict=True):
        if price is not None and price < result.price and any(p == result.price for p, _ in asks):
            assert fill == qty


@given(st.lists(st.integers(1, 9), min_size=1, max_size=8), st.integers(1, 60))
def test_pro_rata_is_closest_integer_split(sizes, wanted) -> None:
    """Largest remainder: each fill within one lot of the exact share, earlier wins exact ties."""
    total = sum(sizes)
    target = min(wanted, total)
    result = clear([(10, target)], [(10, q) for q in sizes])
    assert sum(result.sell_fills) == target
    for q, fill in zip(sizes, result.sell_fills, strict=True):
        share = target * q / total
        assert share - 1 < fill < share + 1 and fill <= q
