"""Backstop providers: a policy-set discount, a vault that takes at the bankruptcy price, inventory worked
back into the book over time, and records of every offloaded lot (conservation checked per call)."""

from __future__ import annotations

import math

import pytest

from deleverage.core.instruments import BTCUSDT
from deleverage.engine import BackstopProvider, EventKind
from deleverage.errors import InvalidInput
from deleverage.venues.liquidity import EmptyBook

from .engine_kit import USDT, Driver, book, engine_for, ledger_with, ticks

WHALE = ("whale", "long", "3", "60000", "18000")


def _vault(discount_bps: float = 500.0, half_life: float | None = 60.0) -> BackstopProvider:
    return BackstopProvider("vault", 10_000_000 * USDT, discount_bps, 100_000, offload_half_life_s=half_life)


def test_a_vault_takes_over_at_the_bankruptcy_price_whatever_its_quote() -> None:
    """Hyperliquid: the liquidator vault is the protocol's backstop; a 5% quote would decline the price."""
    ledger = ledger_with([WHALE], backstops=("vault",))
    vault = _vault(discount_bps=500.0)
    d = Driver(engine_for("hyperliquid", ledger, backstops=[vault], liquidity=EmptyBook()))
    d.mark(60_000, 0)
    d.mark(54_030, 1)  # equity/MM < 2/3: direct takeover by the vault
    take = [e.data for e in d.engine.audit.of_kind(EventKind.TAKEOVER) if e.data["by"] == "vault"]
    assert take and take[0]["price_ticks"] == 540_000  # 60,000 − 18,000/3: the bankruptcy price
    assert vault.quote_ticks("buy", ticks(54_030)) < 540_000  # its own quote would have declined
    assert not d.engine.audit.of_kind(EventKind.BACKSTOP_DECLINED)
    rec = [r for r in d.engine.records if r.venue == "backstop"][0]
    assert rec.counterparty == "backstop" and rec.qty_lots == 3_000 and rec.price_tick_lots == 3_000 * 540_000


def test_a_fund_policy_never_offers_lots_to_backstops() -> None:
    ledger = ledger_with([WHALE], backstops=("vault",))
    d = Driver(engine_for("binance", ledger, backstops=[_vault()], liquidity=EmptyBook()))
    d.mark(60_000, 0)
    d.mark(54_030, 1)
    assert {e.data["by"] for e in d.engine.audit.of_kind(EventKind.TAKEOVER)} == {"insurance_fund"}


def test_the_policy_discount_replaces_the_providers_own() -> None:
    p = _vault(discount_bps=500.0)
    assert p.quote_ticks("buy", 1_000_000) == 950_000
    assert p.quote_ticks("buy", 1_000_000, discount_bps=25.0) == 997_500
    assert p.quote_ticks("sell", 1_000_000, discount_bps=25.0) == 1_002_500
    decision = p.decide(instrument=BTCUSDT,
                        taker_side="buy", qty_lots=10, price_ticks=998_000, mark_ticks=1_000_000, position_lots=0,
                        discount_bps=25.0)
    assert decision.reason == "price" and decision.accepted_lots == 0


def test_the_vault_works_its_inventory_back_into_the_book_at_its_half_life() -> None:
    ledger = ledger_with([WHALE], backstops=("vault",))
    vault = _vault(half_life=60.0)
    bk = book(mid=54_000, depth_lots=500)
    d = Driver(engine_for("hyperliquid", ledger, backstops=[vault], liquidity=bk))
    d.mark(60_000, 0)
    d.mark(54_030, 1, move_book=False)
    held = ledger.position("vault", "BTCUSDT").qty_lots
    assert held == 3_000 and not [r for r in d.engine.records if r.action == "offload"]  # clock starts now
    used = vault.used_minor
    expected = held
    for t in (2, 3, 5):
        before = expected
        dt = t - (1 if t == 2 else (2 if t == 3 else 3))
        due = math.ceil(before * (1 - 2 ** (-dt / 60.0)) - 1e-12)
        d.mark(54_030, t, move_book=False)
        expected = before - due
        assert ledger.position("vault", "BTCUSDT").qty_lots == expected, t
    offloads = [r for r in d.engine.records if r.action == "offload"]
    assert [r.qty_lots for r in offloads] == [35, 35, 67]  # ⌈3000·(1−2^(−1/60))⌉ = ⌈34.46⌉, ⌈2965·…⌉, ⌈2930·(1−2^(−2/60))⌉
    assert all(r.account_id == "vault" and r.venue == "book" and r.counterparty == "market" for r in offloads)
    assert len(d.engine.audit.of_kind(EventKind.BACKSTOP_OFFLOADED)) == 3
    assert vault.used_minor < used  # the capacity the inventory held is freed as it goes


def test_a_provider_that_holds_keeps_its_inventory() -> None:
    ledger = ledger_with([WHALE], backstops=("vault",))
    d = Driver(engine_for("hyperliquid", ledger, backstops=[_vault(half_life=None)], liquidity=book(depth_lots=500)))
    d.mark(60_000, 0)
    d.mark(54_030, 1, move_book=False)
    for t in range(2, 10):
        d.mark(54_030, t, move_book=False)
    assert ledger.position("vault", "BTCUSDT").qty_lots == 3_000


def test_offload_half_life_is_validated() -> None:
    with pytest.raises(InvalidInput, match="offload_half_life_s"):
        BackstopProvider("x", 1, 10.0, 1, offload_half_life_s=0.0)
    with pytest.raises(InvalidInput, match="offload_half_life_s"):
        BackstopProvider("x", 1, 10.0, 1, offload_half_life_s=float("nan"))
