"""Index, mark and oracle prices: hand-computed closed forms and Hypothesis invariants."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deleverage.core.prices import (
    NS_PER_HOUR,
    NS_PER_SECOND,
    IndexPrice,
    MovingAverageBasis,
    Oracle,
    VenueQuote,
    binance_mark_price,
    median,
    weighted_median,
)
from deleverage.errors import InvalidInput, SimulationError

S = NS_PER_SECOND


# --- index ----------------------------------------------------------------------------------------


def test_weighted_mean_index_drops_stale_and_future_quotes() -> None:
    """Binance FAQ "Mark Price and Price Index" (binance.com/en/support/faq/360033525071):
    index = Σ weight_i × price_i over the constituent exchanges."""
    index = IndexPrice(max_age_ns=10 * S, weights={"a": "0.5", "b": "0.3", "c": "0.2"})
    quotes = [
        VenueQuote("a", "100", 95 * S),
        VenueQuote("b", "101", 99 * S),
        VenueQuote("c", "110", 80 * S),  # 20 s old: stale, dropped
        VenueQuote("c", "103", 101 * S),  # from the future at now=100 s: ignored
    ]
    # a, b remain: (0.5·100 + 0.3·101) / 0.8 = 100.375
    assert index.compute(quotes, 100 * S) == Decimal("100.375")
    # at 106 s 'a' is 11 s old and dropped; c's 103 is now visible: (0.3·101 + 0.2·103)/0.5 = 101.8
    assert index.compute(quotes, 106 * S) == Decimal("101.8")


def test_index_uses_latest_quote_per_venue_and_min_sources() -> None:
    index = IndexPrice(max_age_ns=10 * S, min_sources=2)
    quotes = [VenueQuote("a", 100, 1 * S), VenueQuote("a", 102, 2 * S), VenueQuote("b", 104, 2 * S)]
    assert index.compute(quotes, 3 * S) == Decimal(103)  # equal weights: (102 + 104)/2
    assert index.compute(quotes[:2], 3 * S) is None  # one source < min_sources


def test_weighted_median_index() -> None:
    assert weighted_median([(Fraction(1), Fraction(1)), (Fraction(2), Fraction(1)), (Fraction(9), Fraction(5))]) == 9
    assert weighted_median([(Fraction(1), Fraction(1)), (Fraction(3), Fraction(1))]) == 2  # exact half split
    index = IndexPrice(max_age_ns=S, method="weighted_median", weights={"a": 1, "b": 2, "c": 1})
    quotes = [VenueQuote("a", 100, 0), VenueQuote("b", 101, 0), VenueQuote("c", 130, 0)]
    assert index.compute(quotes, 0) == Decimal(101)


def test_binance_outlier_rules() -> None:
    """Binance FAQ (Mark Price in USDⓈ-M futures): one source > 5 % from the median gets weight 0;
    when more than one deviates, the median of all sources is the index."""
    index = IndexPrice(max_age_ns=S, max_deviation="0.05")
    one_outlier = [VenueQuote("a", 100, 0), VenueQuote("b", 102, 0), VenueQuote("c", 101, 0), VenueQuote("d", 120, 0)]
    assert index.compute(one_outlier, 0) == Decimal(101)  # (100 + 102 + 101)/3
    two_outliers = [*one_outlier, VenueQuote("e", 80, 0)]
    assert index.compute(two_outliers, 0) == Decimal(101)  # median of 80, 100, 101, 102, 120
    assert median([Fraction(4), Fraction(1), Fraction(3), Fraction(2)]) == Fraction(5, 2)


def test_index_bad_input() -> None:
    with pytest.raises(InvalidInput) as info:
        IndexPrice(max_age_ns=S).compute([VenueQuote("a", float("nan"), 0)], 0)
    assert info.value.field == "a.price"
    with pytest.raises(InvalidInput):
        IndexPrice(max_age_ns=0)
    with pytest.raises(InvalidInput):
        IndexPrice(max_age_ns=S, weights={"a": -1})


# --- mark -----------------------------------------------------------------------------------------


def test_binance_mark_price_is_the_median_of_three() -> None:
    """Binance "Mark Price in Perpetual Futures" (binance.com/en/support/faq/fff6ec1b3f5845d19f1fb924644a0877):
    mark = median(price 1, price 2, contract price), price 1 = index·(1 + last funding rate ·
    time until funding / 8 h), price 2 = index + moving average basis. Hand-computed: index 10,000,
    rate 0.01 %, 4 h to funding → price 1 = 10,000.5; basis 3 → price 2 = 10,003."""
    common = {"index_price": 10_000, "last_funding_rate": "0.0001", "time_until_funding_ns": 4 * NS_PER_HOUR, "basis": 3}
    assert binance_mark_price(last_price=10_010, **common) == Decimal(10_003)  # p1 < p2 < last → p2
    assert binance_mark_price(last_price=10_002, **common) == Decimal(10_002)  # p1 < last < p2 → last
    assert binance_mark_price(last_price=9_990, **common) == Decimal("10000.5")  # last < p1 < p2 → p1
    no_basis = {**common, "basis": None}
    assert binance_mark_price(last_price=10_010, **no_basis) == Decimal("10000.5")  # median(10000.5, 10000, 10010)


def test_mark_price_bad_input() -> None:
    with pytest.raises(InvalidInput) as info:
        binance_mark_price(index_price=float("inf"), last_price=1, last_funding_rate=0, time_until_funding_ns=0, basis=0)
    assert info.value.field == "index_price"
    with pytest.raises(InvalidInput):
        binance_mark_price(index_price=1, last_price=1, last_funding_rate=0, time_until_funding_ns=9 * NS_PER_HOUR, basis=0)


def test_moving_average_basis_samples_on_the_interval() -> None:
    """30 points, one every 5 s (Binance COIN-M 2.5-minute basis); faster updates are skipped."""
    ma = MovingAverageBasis(window_points=3, interval_ns=5 * S)
    assert ma.value() is None
    kept = [ma.observe(t * S, bid=100 + t, ask=102 + t, index=100) for t in range(0, 21)]
    assert [t for t, k in enumerate(kept) if k] == [0, 5, 10, 15, 20]
    # last three kept samples: mid − index = (101+t) − 100 at t = 10, 15, 20 → 11, 16, 21 → mean 16
    assert ma.value() == Decimal(16) and len(ma) == 3
    with pytest.raises(SimulationError):
        ma.observe(19 * S, bid=1, ask=2, index=1)
    with pytest.raises(InvalidInput):
        ma.observe(30 * S, bid=3, ask=2, index=1)


# --- oracle ---------------------------------------------------------------------------------------


def test_oracle_publishes_at_deviation_and_heartbeat_crossings() -> None:
    """Chainlink-style push oracle: heartbeat 1 h, deviation 0.5 %, latency 2 s (all by hand)."""
    oracle = Oracle(heartbeat_ns=NS_PER_HOUR, deviation="0.005", latency_ns=2 * S)
    first = oracle.observe(0, "100")
    assert first is not None and first.reason == "first" and first.ts_visible == 2 * S
    assert oracle.observe(10 * S, "100.4") is None  # 0.4 % < 0.5 %
    dev = oracle.observe(20 * S, "100.5")  # exactly 0.5 %: publishes
    assert dev is not None and dev.reason == "deviation" and dev.price == Decimal("100.5")
    assert oracle.observe(30 * S, "100.0") is None  # |100 − 100.5|/100.5 = 0.4975 % < 0.5 %
    # nothing readable before the latency has passed
    assert oracle.price_at(1 * S) is None and oracle.is_stale(1 * S)
    assert oracle.latest(21 * S).price == Decimal(100)  # type: ignore[union-attr]
    assert oracle.latest(22 * S).price == Decimal("100.5")  # type: ignore[union-attr]
    # heartbeat: one hour after the last publication (decided at 20 s), with the latest observation
    beats = oracle.advance(20 * S + NS_PER_HOUR)
    assert len(beats) == 1
    beat = beats[0]
    assert beat.reason == "heartbeat" and beat.ts_decided == 20 * S + NS_PER_HOUR
    assert beat.price == Decimal(100) and beat.ts_observed == 30 * S
    assert oracle.advance(20 * S + NS_PER_HOUR) == []  # idempotent at the same time


def test_oracle_staleness_and_missed_heartbeats() -> None:
    oracle = Oracle(heartbeat_ns=100 * S, deviation="0.01", latency_ns=0, max_age_ns=150 * S)
    oracle.observe(0, 50)
    assert not oracle.is_stale(150 * S) and oracle.is_stale(150 * S + 1)
    # an observation at 350 s: heartbeats due at 100, 200, 300 s are published first (old price)
    publication = oracle.observe(350 * S, 50)
    assert publication is None  # 50 s since the 300 s heartbeat, no deviation
    decided = [p.ts_decided for p in oracle.publications]
    assert decided == [0, 100 * S, 200 * S, 300 * S]
    assert oracle.is_stale(300 * S + 1)  # readable price was observed at 0 s
    fresh = oracle.observe(360 * S, 51)  # 2 % move
    assert fresh is not None and not oracle.is_stale(400 * S)


def test_fast_trigger_and_slow_confirmation_disagree() -> None:
    """A tight, fast oracle sees a 1 % drop at once; a 2 %-threshold, 5 s-latency one still reads
    the pre-drop price: the engine must not treat them as one signal."""
    fast = Oracle(heartbeat_ns=60 * S, deviation="0.001", latency_ns=0)
    slow = Oracle(heartbeat_ns=60 * S, deviation="0.02", latency_ns=5 * S)
    for oracle in (fast, slow):
        oracle.observe(0, 100)
        oracle.observe(10 * S, 99)
    assert fast.latest(11 * S).price == Decimal(99)  # type: ignore[union-attr]
    assert slow.latest(11 * S).price == Decimal(100)  # type: ignore[union-attr]
    slow.observe(20 * S, 97)  # 3 % from 100: publishes, visible at 25 s
    assert slow.latest(24 * S).price == Decimal(100)  # type: ignore[union-attr]
    assert slow.latest(25 * S).price == Decimal(97)  # type: ignore[union-attr]


def test_oracle_bad_input() -> None:
    oracle = Oracle(heartbeat_ns=S, deviation="0.01")
    with pytest.raises(InvalidInput) as info:
        oracle.observe(0, float("nan"))
    assert info.value.field == "price"
    oracle.observe(10, 1)
    with pytest.raises(SimulationError):
        oracle.observe(5, 1)
    with pytest.raises(SimulationError):
        oracle.advance(9)
    with pytest.raises(InvalidInput):
        Oracle(heartbeat_ns=S, deviation=1)
    with pytest.raises(InvalidInput):
        Oracle(heartbeat_ns=0, deviation="0.01")
    with pytest.raises(InvalidInput):
        oracle.observe(20, -1)


observations = st.lists(
    st.tuples(st.integers(0, 50 * S), st.integers(9_000, 11_000)), min_size=1, max_size=40
)


@given(observations)
def test_oracle_publication_invariants(raw: list[tuple[int, int]]) -> None:
    """Every publication is the first, a ≥ threshold move from the previous one, or a heartbeat
    exactly one heartbeat after the previous one; no gap between publications exceeds a heartbeat."""
    heartbeat, threshold = 7 * S, Fraction(1, 100)
    oracle = Oracle(heartbeat_ns=heartbeat, deviation=threshold, latency_ns=S)
    ts = 0
    for gap, price in raw:
        ts += gap
        oracle.observe(ts, price)
    oracle.advance(ts + 3 * heartbeat)
    pubs = oracle.publications
    assert pubs[0].reason == "first"
    for previous, current in zip(pubs, pubs[1:], strict=False):
        assert current.ts_decided >= previous.ts_decided
        assert current.ts_decided - previous.ts_decided <= heartbeat
        assert current.ts_visible == current.ts_decided + S
        moved = abs(Fraction(current.price) - Fraction(previous.price)) / Fraction(previous.price)
        if current.reason == "deviation":
            assert moved >= threshold
        elif current.reason == "heartbeat":
            assert current.ts_decided - previous.ts_decided == heartbeat
    # the readable price at any time is the last publication visible by then
    for pub in pubs:
        assert oracle.price_at(pub.ts_visible).ts_visible == pub.ts_visible  # type: ignore[union-attr]
