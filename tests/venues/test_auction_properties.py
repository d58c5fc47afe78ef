"""Random books against a brute-force oracle: maximal volume, limits respected, fills balanced.

The oracle scans every price on a fine grid (all integer ticks spanning the book plus one either side),
independent of the candidate/level machinery of the implementation: executable volume at the chosen
price must equal the best over all prices, and the tie-break must pick an oracle-valid price.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

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


def _rule_price(bids, asks, reference, band_ppm, tie_break, integral):
    """The documented rule by brute force over the candidate (limit) prices, exact (Fractions).

    Max volume, then min |surplus|; within the remaining range [low, high]: ``midpoint`` → the
    midpoint; all surplus on the buy side → high, capped at ceil(ref × (1 + band)) when a band is set
    (sell side: low, floored at floor(ref × (1 − band))); otherwise the reference clamped to the range,
    or the midpoint without one. Integer prices snap to a tick, half to even (Python's ``round``).
    """
    candidates = sorted({Fraction(p) for p, _ in bids + asks if p is not None})
    if not candidates:
        return None
    scored = [(p, *_volume_at(bids, asks, p)) for p in candidates]
    best = max(v for _, v, _ in scored)
    if best == 0:
        return None
    tied = [(p, s) for p, v, s in scored if v == best]
    least = min(abs(s) for _, s in tied)
    tied = [(p, s) for p, s in tied if abs(s) == least]
    low, high = tied[0][0], tied[-1][0]
    signs = {(s > 0) - (s < 0) for _, s in tied}

    def midpoint():
        middle = (low + high) / 2
        return Fraction(round(middle)) if integral else middle

    if low == high:
        return low
    if tie_break == "midpoint":
        return midpoint()
    ref = None if reference is None else Fraction(reference)
    if signs == {1}:
        if ref is None or band_ppm is None:
            return high
        cap = ref * (1_000_000 + band_ppm) / 1_000_000
        cap = Fraction(math.ceil(cap)) if integral else cap
        return min(max(cap, low), high)
    if signs == {-1}:
        if ref is None or band_ppm is None:
            return low
        floor = ref * (1_000_000 - band_ppm) / 1_000_000
        floor = Fraction(math.floor(floor)) if integral else floor
        return min(max(floor, low), high)
    if ref is None:
        return midpoint()
    return min(max(ref, low), high)


@given(book, book, st.one_of(st.none(), st.integers(1, 30)), st.sampled_from([None, 0, 10_000, 50_000, 300_000]),
       st.sampled_from(["reference", "midpoint"]), st.sampled_from([None, "0.25", "0.01", "7"]),
       st.sampled_from([None, "0.001", "0.5", 5]))
def test_rule_with_pressure_band_lots_and_decimal_prices(bids, asks, reference, band_ppm, tie_break, price_step,
                                                         lot) -> None:
    """The same books in ticks, or as Decimal prices (× a price step), with sizes in lots of ``lot``:
    the clearing price follows the documented rule exactly, volume is maximal, fills are whole lots."""
    step = None if price_step is None else Decimal(price_step)
    lot_value = None if lot is None else (lot if isinstance(lot, int) else Decimal(lot))

    def price(p):  # noqa: ANN001, ANN202
        return p if p is None or step is None else Decimal(p) * step

    def size(q):  # noqa: ANN001, ANN202
        return q if lot_value is None else q * lot_value

    if not any(p is not None for p, _ in bids + asks):
        return  # market orders only: the reference is the price (a unit test covers it)
    result = clear([(price(p), size(q)) for p, q in bids], [(price(p), size(q)) for p, q in asks],
                   reference_price=price(reference), lot=lot_value, tie_break=tie_break,
                   pressure_band_ppm=band_ppm)
    expected = _rule_price(bids, asks, reference, band_ppm, tie_break, integral=step is None)
    if expected is None:
        assert result.price is None and result.volume == 0
        return
    got = Fraction(result.price) / (1 if step is None else Fraction(step))
    assert got == expected, (result.price, expected)
    volume, surplus = _volume_at(bids, asks, got)
    assert result.volume == size(volume) and result.surplus == size(surplus)
    assert volume == _oracle(bids, asks)
    assert sum(result.buy_fills) == sum(result.sell_fills) == result.volume
    for (_p, q), fill in zip(bids + asks, result.buy_fills + result.sell_fills, strict=True):
        assert 0 <= fill <= size(q)
        if lot_value is not None:
            assert fill % lot_value == 0


@given(st.integers(1, 10**6), st.integers(1, 10**6), st.integers(1, 50), st.sampled_from(["reference", "midpoint"]))
def test_a_crossed_pair_clears_at_the_midpoint_half_to_even(low, width, qty, tie_break) -> None:
    """A bid above an ask, same size: every price between clears it all, no surplus → the midpoint,
    half to even in ticks (an odd sum half the time), exact with Decimal prices."""
    high = low + width
    assert clear([(high, qty)], [(low, qty)], tie_break=tie_break).price == round(Fraction(low + high, 2))
    exact = clear([(Decimal(high), qty)], [(Decimal(low), qty)], tie_break=tie_break).price
    assert Fraction(exact) == Fraction(low + high, 2)
