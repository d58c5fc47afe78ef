"""Dutch venue (DutchAuctionHouse rules), keeper incentives, caps, and event volume of waiting cases.

Setting: BTCUSDT, alice long 1 BTC at 60,000 with 6,000 USDT (flat 0.4 % maintenance → liquidatable
below 54,216.87). Maker preset: top = mark × 1.2, −1 % per 90 s, tail 8,400 s, cusp 0.4, chip 0.1 %.
"""

from __future__ import annotations

import math

from deleverage.engine import EventKind
from deleverage.venues.liquidity import EmptyBook

from .engine_kit import USDT, Driver, book, engine_for, ledger_with

ALICE_LONG = ("alice", "long", "1", "60000", "6000")
CAROL_LONG = ("carol", "long", "1", "60000", "6000")


class CountingBook:
    """A book wrapper that counts walks/takes (the expensive calls)."""

    def __init__(self, inner) -> None:  # noqa: ANN001
        self.inner = inner
        self.takes = 0

    def best_bid(self):  # noqa: ANN201
        return self.inner.best_bid()

    def best_ask(self):  # noqa: ANN201
        return self.inner.best_ask()

    def walk(self, *a, **k):  # noqa: ANN002, ANN003, ANN201
        self.takes += 1
        return self.inner.walk(*a, **k)

    def take(self, *a, **k):  # noqa: ANN002, ANN003, ANN201
        self.takes += 1
        return self.inner.take(*a, **k)

    def levels(self, *a, **k):  # noqa: ANN002, ANN003, ANN201
        return self.inner.levels(*a, **k)

    def advance(self, *a, **k):  # noqa: ANN002, ANN003, ANN201
        return self.inner.advance(*a, **k)


def test_dutch_keeper_takes_only_when_the_price_reaches_the_bid_and_events_only_on_changes():
    bk = CountingBook(book(depth_lots=200))
    d = Driver(engine_for("maker", ledger_with([ALICE_LONG]), liquidity=bk))
    d.mark(60_000, 0)
    d.mark(54_200, 1, move_book=False)  # kicked: top = 54,200 × 1.2 = 65,040, far above the ~60,000 bid
    kicked = d.engine.audit.of_kind(EventKind.DUTCH_KICKED)
    assert len(kicked) == 1 and kicked[0].data["top_ticks"] == 542_000 * 1.2
    events_after_kick = len(d.engine.audit)
    for k in range(100):  # 100 ticks within the first 90 s step: the price stays at 65,040
        d.mark(54_200 + (k % 3), 2 + 0.5 * k, move_book=False)
    assert bk.takes == 0  # no keeper walked the book: the sale price is above the best bid
    assert len(d.engine.audit) == events_after_kick  # no per-tick events for an unchanged sale
    # the price falls 1 % per 90 s: 65,040 × 0.99^k ≤ 60,000 (best bid 59,999.9) from k = 9 steps on
    steps = math.ceil(math.log(599_999 / 650_400) / math.log(0.99))
    d.advance(1 + 90 * steps + 1)
    assert d.qty("alice") == 0
    taken = d.engine.audit.of_kind(EventKind.DUTCH_TAKEN)
    assert len(taken) == 1 and taken[0].data["price_ticks"] == math.ceil(650_400 * 0.99**steps - 1e-6)
    assert bk.takes == 1


def test_dutch_keeper_coin_tip_plus_chip_times_tab_from_the_fund():
    """clip.sol kick: coin = tip + chip × tab, tab = debt × chop; paid by the vow (fund) to the keeper."""
    ledger = ledger_with([ALICE_LONG])
    d = Driver(engine_for("maker", ledger, liquidity=EmptyBook(),
                          execution={"dutch": {"tip": 5.0, "chip": 0.002}}))
    fund0, market0 = ledger.balance("insurance_fund", "USDT"), ledger.balance("market", "USDT")
    d.mark(60_000, 0)
    d.mark(54_200, 1)
    kick = d.engine.audit.of_kind(EventKind.DUTCH_KICKED)[0].data
    debt = 54_200 * USDT  # 1 BTC at the kick mark, minor units
    tab = int(debt * 113 // 100)  # chop 1.13
    coin = 5 * USDT + tab * 2_000 // 1_000_000
    assert kick["debt_minor"] == debt and kick["tab_minor"] == tab and kick["keeper_coin_minor"] == coin
    assert ledger.balance("insurance_fund", "USDT") == fund0 - coin
    assert ledger.balance("market", "USDT") == market0 + coin  # no backstop: the market keeper kicked


def test_dutch_hole_caps_debt_in_auction_until_a_sale_ends():
    """dog.sol: a kick needs room under hole; the second position waits (one event) until room frees."""
    ledger = ledger_with([ALICE_LONG, CAROL_LONG])
    d = Driver(engine_for("maker", ledger, liquidity=book(depth_lots=200),
                          execution={"dutch": {"hole": 70_000.0, "dust": 20_000.0}}))
    d.mark(60_000, 0)
    d.mark(54_200, 1, move_book=False)
    kicks = d.engine.audit.of_kind(EventKind.DUTCH_KICKED)
    assert len(kicks) == 1  # 61,246 of tab in auction; the second would need 61,246 more > 70,000
    waits = [e for e in d.engine.audit.of_kind(EventKind.SKIPPED) if e.data["reason"] == "Dog/liquidation-limit-hit"]
    assert len(waits) == 1
    for k in range(50):
        d.mark(54_200, 2 + k, move_book=False)
    waits = [e for e in d.engine.audit.of_kind(EventKind.SKIPPED) if e.data["reason"] == "Dog/liquidation-limit-hit"]
    assert len(waits) == 1  # the wait is announced once, not per tick
    d.advance(1 + 90 * 9 + 1)  # first sale taken → its tab leaves Dirt → the second one is kicked
    d.advance(1 + 90 * 9 + 2)
    assert len(d.engine.audit.of_kind(EventKind.DUTCH_KICKED)) == 2
    ended = d.engine.audit.of_kind(EventKind.WAIT_ENDED)
    assert ended and ended[0].data["reason"] == "Dog/liquidation-limit-hit" and ended[0].data["ticks"] >= 50


def test_dutch_chop_penalty_goes_to_the_fund():
    ledger = ledger_with([ALICE_LONG])
    d = Driver(engine_for("maker", ledger, liquidity=book(depth_lots=200)))
    d.mark(60_000, 0)
    d.mark(54_200, 1, move_book=False)
    d.advance(1 + 90 * 9 + 1)
    fees = [e for e in d.engine.audit.of_kind(EventKind.FEE_CHARGED) if e.data.get("penalty") == "chop"]
    # (chop − 1) × debt = 0.13 × 54,200 USDT, capped by the equity left after the sale
    assert fees and fees[0].data["uncapped_minor"] == math.floor(54_200 * USDT * 13 // 100)
    assert 0 < fees[0].data["fee_minor"] <= fees[0].data["uncapped_minor"]


def test_a_waiting_case_writes_o1_events_over_100_ticks():
    """hybrid: a case awaiting oracle confirmation through 100 quiet ticks writes a constant number of events."""
    ledger = ledger_with([ALICE_LONG])
    d = Driver(engine_for("hybrid", ledger, liquidity=book(depth_lots=200),
                          trigger={"confirm_timeout_ms": 10_000_000}))
    d.mark(60_000, 0)
    d.oracle(60_000, 0.01)
    d.mark(54_200, 1)
    after_first = len(d.engine.audit)
    for k in range(100):
        d.mark(54_200 - (k % 2), 1.1 + 0.05 * k)
    assert len(d.engine.audit) == after_first
    skipped = [e for e in d.engine.audit.of_kind(EventKind.SKIPPED) if e.account_id == "alice"]
    assert [e.data["reason"] for e in skipped] == ["awaiting_confirmation"]
    d.oracle(54_150, 7.0)  # the oracle confirms: the wait ends with its length, then the batch
    ended = d.engine.audit.of_kind(EventKind.WAIT_ENDED)
    assert ended[0].data["reason"] == "awaiting_confirmation" and ended[0].data["ticks"] == 101


def test_cooldown_wait_is_announced_once():
    ledger = ledger_with([("whale", "long", "3", "60000", "18000")])
    d = Driver(engine_for("hyperliquid", ledger, liquidity=book(depth_lots=200),
                          partial={"during_cooldown": "wait", "cooldown_ms": 600_000}))
    d.mark(60_000, 0)
    d.mark(54_200, 1)
    assert d.qty("whale") == 2400
    n = len(d.engine.audit)
    for k in range(100):
        d.mark(54_150 + (k % 2), 2 + k)
    cooldown = [e for e in d.engine.audit.of_kind(EventKind.SKIPPED) if e.data["reason"] == "cooldown"]
    assert len(cooldown) == 1 and len(d.engine.audit) - n <= 2
