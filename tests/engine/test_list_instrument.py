"""Listing a symbol on a running engine behaves exactly like an engine that served it from the start."""

from __future__ import annotations

import pytest

from deleverage.core.instruments import BTCUSD_PERP, BTCUSDT, ETHUSDT
from deleverage.engine import LiquidationEngine, get_policy
from deleverage.errors import InvalidInput
from deleverage.execution.book import ResilientBook
from deleverage.testing import assert_conserved, open_position

from .engine_kit import FLAT_TIERS, book, ledger_with


def eth_book() -> ResilientBook:
    return ResilientBook(mid_ticks=300_000, half_spread_ticks=1, depth_lots_per_tick=50, resilience_per_s=0.0)


def _engine(preset: str, listed_later: bool) -> LiquidationEngine:
    ledger = ledger_with([("alice", "long", "1", "60000", "6000")])
    first = [BTCUSDT] if listed_later else [BTCUSDT, ETHUSDT]
    liquidity = {"BTCUSDT": book()} if listed_later else {"BTCUSDT": book(), "ETHUSDT": eth_book()}
    engine = LiquidationEngine(ledger, instruments=first, policy=get_policy(preset), liquidity=liquidity,
                               tiers_for=lambda _i: FLAT_TIERS)
    engine.track_all()
    engine.on_mark("BTCUSDT", 600_000, 1)
    if listed_later:
        engine.list_instrument(ETHUSDT, tiers=FLAT_TIERS, liquidity=eth_book())
    for i, (side, collateral) in enumerate([("long", "120"), ("long", "200"), ("short", "150"), ("long", "90")]):
        aid = f"eth{i}"
        open_position(engine.ledger, aid, ETHUSDT, side, "1", "3000", collateral, ts_ns=2)
        engine.on_position_changed(aid)
    return engine


def _crash(engine: LiquidationEngine) -> None:
    marks = {"BTCUSDT": 600_000, "ETHUSDT": 300_000}
    before = engine.ledger.total_values(marks)
    ts = 10
    for price in range(300_000, 285_000, -1_000):  # ETH 3,000 → 2,860: the thin longs go
        marks["ETHUSDT"] = price
        engine.on_mark("ETHUSDT", price, ts)
        ts += 1_000_000_000
    assert_conserved(engine.ledger, before, marks)


@pytest.mark.parametrize("preset", ["binance", "okx", "fba", "hyperliquid"])
def test_a_listed_symbol_liquidates_exactly_as_one_served_from_the_start(preset: str) -> None:
    listed, native = _engine(preset, True), _engine(preset, False)
    _crash(listed)
    _crash(native)
    assert listed.records and listed.records == native.records
    assert {r.account_id for r in listed.records} >= {"eth0", "eth3"}
    assert listed.ledger.digest() == native.ledger.digest()
    assert [e.kind for e in listed.audit] == [e.kind for e in native.audit]


def test_a_symbol_served_already_or_settled_elsewhere_is_refused_and_nothing_changes() -> None:
    engine = _engine("binance", True)
    with pytest.raises(InvalidInput, match="symbol"):
        engine.list_instrument(ETHUSDT, tiers=FLAT_TIERS)
    with pytest.raises(InvalidInput, match="settle"):
        engine.list_instrument(BTCUSD_PERP, tiers=FLAT_TIERS)
    with pytest.raises(InvalidInput, match="symbol"):
        engine.on_mark("BTCUSD_PERP", 600_000, 5)


def test_an_engine_starts_on_a_ledger_where_no_position_was_ever_opened() -> None:
    """A venue starting up (the service's genesis): the screen is built from nothing, then grows."""
    ledger = ledger_with([])
    engine = LiquidationEngine(ledger, instruments=[BTCUSDT], policy=get_policy("binance"),
                               liquidity={"BTCUSDT": book()}, tiers_for=lambda _i: FLAT_TIERS)
    engine.track_all()
    engine.on_mark("BTCUSDT", 600_000, 1)
    open_position(ledger, "alice", BTCUSDT, "long", "1", "60000", "700", ts_ns=2)
    engine.on_position_changed("alice")
    engine.on_mark("BTCUSDT", 550_000, 3)
    assert [r.account_id for r in engine.records] == ["alice"]
