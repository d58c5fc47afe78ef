"""The batch auction that can clear: one uniform price, netting first, the book's whole depth in the band.

Hand-built batches are checked against a brute-force demand curve computed here from the book's levels,
independently of ``venues.auction``; every engine call is checked for conservation (Driver).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from deleverage.engine import EventKind
from deleverage.engine.batching import band_limits
from deleverage.venues.l2 import L2Book

from .engine_kit import Driver, book, engine_for, ledger_with, provider, ticks

MARK = 54_150  # alice-style longs (entry 60,000, 10x) and carol-style shorts (entry 49,000) both liquidatable
FULL = {"partial": {"mode": "full"}, "fees": {"liquidation_fee_rate": 0.0}}


def _l2(bids: list[tuple[int, int]], asks: list[tuple[int, int]] | None = None) -> L2Book:
    b = L2Book()
    b.apply_snapshot(bids, asks or [(ticks(MARK) + 10, 5_000)], 1)
    return b


def _brute_force_price(levels: list[tuple[int, int]], residual: int, floor: int, ceiling: int) -> int:
    """The highest price at which the book's demand D(p) = Σ lots bid at ≥ p covers the residual
    (or, if the band's whole depth cannot, all of it): scanned tick by tick over the band."""
    total = sum(q for p, q in levels if p >= floor)
    need = min(residual, total)
    for p in range(ceiling, floor - 1, -1):
        if sum(q for price, q in levels if price >= p) >= need:
            return p
    raise AssertionError("no price in the band")


def _positions(longs: list[int], shorts: list[int]) -> list[tuple[str, str, str, str, str]]:
    rows = [(f"l{i}", "long", f"{lots / 1000:.3f}", "60000", f"{lots * 6:.2f}") for i, lots in enumerate(longs)]
    rows += [(f"s{i}", "short", f"{lots / 1000:.3f}", "49000", f"{lots * 1.96:.2f}") for i, lots in enumerate(shorts)]
    return rows


def test_opposite_liquidations_net_at_the_uniform_price_and_the_residual_meets_the_book() -> None:
    """1,500 lots sold, 700 bought: 700 cross, 800 meet bids of 100/250/300/400/1000 lots — the 4th level
    (541,300) is the first where the demand curve covers 800, so every lot of the batch trades there."""
    levels = [(541_490, 100), (541_450, 250), (541_400, 300), (541_300, 400), (541_000, 1_000)]
    ledger = ledger_with(_positions([1_000, 500], [400, 300]), fund_usdt=100_000)
    d = Driver(engine_for("fba", ledger, liquidity=_l2(levels), **FULL))
    d.mark(MARK, 0)
    assert sorted(d.engine.active_accounts("BTCUSDT")) == ["l0", "l1", "s0", "s1"]
    d.advance(1.0)
    floor, ceiling = band_limits(ticks(MARK), 200.0)
    price = _brute_force_price(levels, 1_500 - 700, floor, ceiling)
    assert price == 541_300
    netted = d.engine.audit.of_kind(EventKind.BATCH_NETTED)[0].data
    assert netted == {"lots": 700, "price_ticks": price, "accounts": 3}
    cleared = d.engine.audit.of_kind(EventKind.AUCTION_CLEARED)[0].data
    assert cleared["price_ticks"] == price and cleared["book_lots"] == 800 and cleared["offered_lots"] == 2_200
    # depth read as far as the batch could reach: bids to cover the 1,500 sold (the 1,000 level cut to
    # 450), asks to cover the 700 bought
    assert cleared["filled_lots"] == 2_200 and cleared["depth_lots"] == (100 + 250 + 300 + 400 + 450) + 700
    fills = {(r.account_id, r.venue, r.counterparty): r.qty_lots for r in d.engine.records if r.qty_lots}
    assert fills == {("l0", "netting", "peer"): 700, ("l0", "auction", "market"): 300,
                     ("l1", "auction", "market"): 500, ("s0", "netting", "peer"): 400,
                     ("s1", "netting", "peer"): 300}
    assert {r.fill_vwap_ticks for r in d.engine.records if r.qty_lots} == {float(price)}
    assert all(d.qty(a) == 0 for a in ("l0", "l1", "s0", "s1"))
    # the book gave exactly the 800 lots above and at the marginal level: 150 of 541,300's 400 are left
    assert d.engine._liquidity["BTCUSDT"].best_bid() == (541_300, 250)  # noqa: SLF001


@settings(max_examples=25, deadline=None)
@given(
    longs=st.lists(st.integers(1, 800), min_size=1, max_size=4),
    shorts=st.lists(st.integers(1, 800), min_size=0, max_size=4),
    offsets=st.lists(st.tuples(st.integers(1, 1_500), st.integers(1, 900)), min_size=1, max_size=8,
                     unique_by=lambda t: t[0]),
)
def test_batch_nets_exactly_and_clears_against_the_brute_force_demand_curve(longs, shorts, offsets) -> None:
    levels = sorted(((ticks(MARK) - off, lots) for off, lots in offsets), reverse=True)
    sells, buys = sum(longs), sum(shorts)
    ledger = ledger_with(_positions(longs, shorts), fund_usdt=10_000_000)
    d = Driver(engine_for("fba", ledger, liquidity=_l2(levels), **FULL))
    d.mark(MARK, 0)
    d.advance(1.0)
    cleared = d.engine.audit.of_kind(EventKind.AUCTION_CLEARED)[0].data
    floor, ceiling = band_limits(ticks(MARK), 200.0)
    netted_lots = min(sells, buys)
    residual = sells - buys
    if residual > 0:
        in_band = sum(q for p, q in levels if p >= floor)
        assert cleared["price_ticks"] == _brute_force_price(levels, residual, floor, ceiling)
        assert cleared["book_lots"] == min(residual, in_band)
    elif residual == 0:
        assert cleared["price_ticks"] == ticks(MARK)  # no outside demand needed: the mark
        assert cleared["book_lots"] == 0
    netted = d.engine.audit.of_kind(EventKind.BATCH_NETTED)
    assert sum(e.data["lots"] for e in netted) == netted_lots
    batch = [r for r in d.engine.records if r.venue in ("netting", "auction") and r.qty_lots]
    assert {r.fill_vwap_ticks for r in batch} <= {float(cleared["price_ticks"])}
    assert sum(r.qty_lots for r in batch if r.venue == "netting") == 2 * netted_lots
    assert sum(r.qty_lots for r in batch if r.venue == "auction") == cleared["book_lots"]


def test_a_batch_beyond_the_band_leaves_the_rest_to_the_backstop_at_its_quote() -> None:
    """The band's depth (300 lots) cannot take 1,000: the rest goes to the backstop at mark − 25 bps,
    below the account's bankruptcy price (54,100: 1 BTC from 60,000 with 5,900) — the deficit is the
    fund's (the waterfall, not the order's limit)."""
    ledger = ledger_with([("l0", "long", "1", "60000", "5900")], fund_usdt=100_000, backstops=("lp",))
    lp = provider("lp", discount_bps=500)  # its own discount is ignored: the policy sets 25 bps
    levels = [(ticks(MARK) - 5, 300), (ticks(MARK) * 97 // 100, 5_000)]  # the second is beyond 200 bps
    d = Driver(engine_for("fba", ledger, liquidity=_l2(levels), backstops=[lp], **FULL))
    d.mark(MARK, 0)
    d.advance(1.0)
    cleared = d.engine.audit.of_kind(EventKind.AUCTION_CLEARED)[0].data
    quote = int(ticks(MARK) * (1 - 0.0025))  # 540,146.25 → 540,146
    # the backstop's standing bid is in the batch too: 300 from the book at 541,495 leave 700, and the
    # uniform price falls to the bid that covers them, the backstop's quote
    assert cleared["price_ticks"] == quote == 540_146
    assert cleared["backstop_lots"] == 700 and cleared["book_lots"] == 300
    assert d.qty("l0") == 0 and ledger.position("lp", "BTCUSDT").qty_lots == 700
    assert d.engine.audit.of_kind(EventKind.FUND_DRAWN)  # sold below 54,000: the fund covers the deficit


def test_the_funds_inventory_is_offered_in_the_next_batch() -> None:
    """No bids at the first close: the (bankrupt) position goes to the fund at its bankruptcy price; the
    next batch offers the fund's 1,000 lots into the book that has come back — 600 at 541,400 do not
    cover them, 1,200 down to 541,300 do: the uniform price is 541,300."""
    ledger = ledger_with([("l0", "long", "1", "60000", "5000")], fund_usdt=100_000)  # bankrupt below 55,000
    l2 = _l2([], asks=[(ticks(MARK) + 10, 5_000)])
    d = Driver(engine_for("fba", ledger, liquidity=l2, **FULL))
    d.mark(MARK, 0)
    d.advance(1.0)
    take = d.engine.audit.of_kind(EventKind.TAKEOVER)[0].data
    assert take["by"] == "insurance_fund" and take["price_ticks"] == 550_000
    assert ledger.position("insurance_fund", "BTCUSDT").qty_lots == 1_000
    assert not [r for r in d.engine.records if r.action == "offload"]  # not sold at once: the next batch
    l2.apply_snapshot([(541_400, 600), (541_300, 600)], [(ticks(MARK) + 10, 5_000)], 2)
    d.mark(MARK, 1.5)
    d.advance(2.0)
    cleared = d.engine.audit.of_kind(EventKind.AUCTION_CLEARED)[-1].data
    assert cleared["fund_offered_lots"] == 1_000 and cleared["offered_lots"] == 0
    assert cleared["price_ticks"] == 541_300 and cleared["book_lots"] == 1_000
    offload = [r for r in d.engine.records if r.action == "offload"]
    assert [(r.account_id, r.venue, r.counterparty, r.qty_lots, r.price_tick_lots) for r in offload] == [
        ("insurance_fund", "auction", "market", 1_000, 1_000 * 541_300)]
    assert ledger.position("insurance_fund", "BTCUSDT").qty_lots == 0


def test_a_batch_closes_at_the_mark_of_the_tick_that_closes_it_not_on_an_oracle_print() -> None:
    ledger = ledger_with(_positions([1_000], []), fund_usdt=100_000)
    d = Driver(engine_for("fba", ledger, liquidity=book(mid=MARK, depth_lots=500), **FULL))
    d.mark(MARK, 0)
    d.oracle(MARK, 1.2)  # the batch is due, but an oracle print does not close it
    assert not d.engine.audit.of_kind(EventKind.AUCTION_CLEARED) and d.qty("l0") == 1_000
    d.mark(MARK - 20, 1.4)  # the next mark closes it, at that mark
    cleared = d.engine.audit.of_kind(EventKind.AUCTION_CLEARED)[0].data
    assert cleared["mark_ticks"] == ticks(MARK - 20)
    assert d.engine.records[0].mark_ticks == ticks(MARK - 20)
