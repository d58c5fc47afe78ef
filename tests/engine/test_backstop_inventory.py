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


def test_a_banded_resale_sells_only_the_depth_near_the_mark_and_waits_for_more() -> None:
    """offload_band_bps = 10: every resale fill is at mark × (1 − 10 bps) or better; with a book that never
    refills (ρ = 0, 1 lot per tick below the mark) the vault sells exactly the lots inside the band and holds
    the rest instead of walking the emptied book."""
    ledger = ledger_with([WHALE], backstops=("vault",))
    vault = BackstopProvider("vault", 10_000_000 * USDT, 500.0, 100_000, offload_half_life_s=60.0,
                             offload_band_bps=10.0)
    d = Driver(engine_for("hyperliquid", ledger, backstops=[vault], liquidity=book(depth_lots=1)))
    d.mark(60_000, 0)
    d.mark(54_030, 1, move_book=False)
    assert ledger.position("vault", "BTCUSDT").qty_lots == 3_000
    limit = math.ceil(ticks(54_030) * (1 - 0.001))  # 539,760: the worst price the band accepts
    assert vault.offload_limit_ticks(3_000, ticks(54_030)) == limit
    assert vault.offload_limit_ticks(-3_000, ticks(54_030)) == math.floor(ticks(54_030) * 1.001)
    for t in range(2, 400, 10):
        d.mark(54_030, t)  # the book's mid at the mark; it never refills
    inside = ticks(54_030) - 1 - limit + 1  # bid levels 540,299 … 539,760, one lot each
    assert ledger.position("vault", "BTCUSDT").qty_lots == 3_000 - inside
    fills = [e.data for e in d.engine.audit.of_kind(EventKind.BACKSTOP_OFFLOADED)]
    assert sum(f["lots"] for f in fills) == inside and all(f["vwap_ticks"] >= limit for f in fills)


def test_offload_band_is_validated() -> None:
    for bad in (-1.0, 10_000.0, float("inf"), True):
        with pytest.raises(InvalidInput, match="offload_band_bps"):
            BackstopProvider("x", 1, 10.0, 1, offload_band_bps=bad)
    assert BackstopProvider("x", 1, 10.0, 1).offload_limit_ticks(5, 1_000) is None


def test_a_paced_resale_offers_a_share_of_the_depth_inside_the_band_each_step() -> None:
    """offload_depth_share = 0.1 inside a 10 bps band, on a book that never refills: each step the vault
    offers min(what its half-life makes due, ⌊0.1 × the lots resting inside the band⌋) — checked against
    that schedule written out step by step."""
    ledger = ledger_with([WHALE], backstops=("vault",))
    vault = BackstopProvider("vault", 10_000_000 * USDT, 500.0, 100_000, offload_half_life_s=60.0,
                             offload_band_bps=10.0, offload_depth_share=0.1)
    d = Driver(engine_for("hyperliquid", ledger, backstops=[vault], liquidity=book(depth_lots=1)))
    d.mark(60_000, 0)
    d.mark(54_030, 1, move_book=False)
    position, depth = 3_000, ticks(54_030) - math.ceil(ticks(54_030) * (1 - 0.001))  # 540 lots in the band
    expected, last = [], 1  # the takeover's step started the clock (offload_lots)
    for t in range(2, 400, 10):
        d.mark(54_030, t)
        due = min(position, math.ceil(position * (1 - 2 ** (-(t - last) / 60.0)) - 1e-12))
        lots = min(due, math.floor(depth * 0.1))
        if lots:
            expected.append(lots)
            position, depth = position - lots, depth - lots
        last = t
    got = [e.data["lots"] for e in d.engine.audit.of_kind(EventKind.BACKSTOP_OFFLOADED)]
    assert got == expected and expected[:2] == [35, 50] and depth > 0  # the cap binds from the second step
    assert ledger.position("vault", "BTCUSDT").qty_lots == position
    with pytest.raises(InvalidInput, match="offload_depth_share"):
        BackstopProvider("x", 1, 10.0, 1, offload_depth_share=0.5)  # no band to count the depth in
    with pytest.raises(InvalidInput, match="offload_depth_share"):
        BackstopProvider("x", 1, 10.0, 1, offload_band_bps=10.0, offload_depth_share=0.0)
