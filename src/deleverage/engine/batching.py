"""Batches: collect liquidation orders per interval and clear them together at one price.

Frequent batch auctions (Budish, Cramton & Shim 2015): all orders of one interval meet at one price.
At the batch close (docs/engine.md steps 6–7), on the current tick's mark M:

* **the auction** (``venue = "auction"``, :func:`clear_batch`) — one uniform-price call auction
  (``venues.auction.clear_ticks``) over, on the sell side, the long liquidations and the insurance
  fund's long inventory, and on the buy side the short liquidations and the fund's short inventory,
  all as market orders limited at the edge of the band ``M × (1 ∓ band_bps)``; against them the book's
  **whole depth curve within the band** (``LiquiditySource.depth_within``: every resting level at the
  band's edge or better, market makers' quotes included, read only as deep as the batch's own size can
  reach) and the standing quotes of the backstop providers (mark ∓ the policy's discount). Opposite
  liquidation flow therefore nets at the clearing price before the residual meets the book; a batch
  whose two sides balance needs no outside liquidity and clears at the mark; excess supply the band
  cannot absorb is rationed at the band's last level, it does not push the price to the band's edge
  (``pressure_band_ppm = 0``). Bankruptcy prices play no part here: an account sold
  below its bankruptcy price leaves a deficit for the waterfall.
  Who trades with whom at that one price is an allocation: liquidations first against opposite
  liquidations (``batch_netted``), then against the fund's opposite inventory, then backstops, then
  the book; the book's share is consumed with ``take`` (so the mark moves).
* **netting at the mark** (:func:`net_orders`, a book venue with ``net_opposite``) — long against
  short liquidations at M, the residual goes to the book as orders.

Dutch auctions live in :mod:`deleverage.engine.dutch_exec`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from deleverage.config.events import EventKind
from deleverage.engine.waterfall import FillSummary, Settler
from deleverage.errors import SimulationError
from deleverage.venues.auction import clear_ticks
from deleverage.venues.liquidity import depth_curve, fill_of


@dataclass(frozen=True, slots=True)
class BatchOrder:
    """One liquidation order in a batch; ``side`` is the liquidated position's side."""

    account_id: str
    side: str
    qty_lots: int
    limit_ticks: int | None


@dataclass(slots=True)
class BatchResult:
    """What one batch close did: fills per (liquidated account, counterparty), the fund's offload."""

    price_ticks: int | None = None
    fills: dict[tuple[str, str], FillSummary] = field(default_factory=dict)
    fund_offload: dict[str, FillSummary] = field(default_factory=dict)  # counterparty → fills
    netted_lots: int = 0  # liquidation against opposite liquidation


@dataclass(frozen=True, slots=True)
class _Participant:
    """One line of the batch: a liquidation, the fund's inventory, a backstop quote or a book level."""

    kind: str  # "liq", "fund", "backstop", "market"
    who: str
    qty_lots: int
    price_ticks: int
    order: BatchOrder | None = None
    provider: Any = None


def band_limits(mark_ticks: int, band_bps: float) -> tuple[int, int]:
    """(floor, ceiling) of the band: ``⌈M(1 − b)⌉`` and ``⌊M(1 + b)⌋``, at least one tick."""
    b = Fraction(str(band_bps)) / 10_000
    return max(1, math.ceil(mark_ticks * (1 - b))), max(1, math.floor(mark_ticks * (1 + b)))


def net_orders(settler: Settler, symbol: str, orders: Sequence[BatchOrder], mark_ticks: int,
               ts_ns: int) -> tuple[dict[str, FillSummary], list[BatchOrder]]:
    """Cross long against short liquidations at the mark; return fills per account and the residual."""
    longs = [o for o in orders if o.side == "long"]
    shorts = [o for o in orders if o.side == "short"]
    left = {o.account_id: o.qty_lots for o in orders}  # lots still to net, per account
    fills: dict[str, FillSummary] = {}
    i = j = 0
    netted = 0
    while i < len(longs) and j < len(shorts):
        lo, so = longs[i], shorts[j]
        lots = min(left[lo.account_id], left[so.account_id])
        fee = settler.fill(lo.account_id, symbol, "long", so.account_id, mark_ticks, lots, ts_ns,
                           "liquidation: netting", check_counterparty=True)
        fee_short = settler.charge_fee(so.account_id, symbol, mark_ticks, lots, lo.account_id, ts_ns)
        fills.setdefault(lo.account_id, FillSummary()).add(lots, mark_ticks, fee)
        fills.setdefault(so.account_id, FillSummary()).add(lots, mark_ticks, fee_short)
        netted += lots
        left[lo.account_id] -= lots
        left[so.account_id] -= lots
        if left[lo.account_id] == 0:
            i += 1
        if left[so.account_id] == 0:
            j += 1
    if netted:
        settler.audit.record(EventKind.BATCH_NETTED, ts_ns, symbol=symbol, lots=netted,
                             price_ticks=mark_ticks, accounts=len(fills))
    residual = [BatchOrder(o.account_id, o.side, left[o.account_id], o.limit_ticks)
                for o in longs + shorts if left[o.account_id] > 0]
    return fills, residual


def _participants(settler: Settler, symbol: str, orders: Sequence[BatchOrder], fund_lots: int, book: Any,
                  mark_ticks: int, *, band_bps: float, depth_levels: int | None, include_backstops: bool,
                  backstop_discount_bps: float | None) -> tuple[list[_Participant], list[_Participant]]:
    """Sellers and buyers of the batch, each list in allocation priority (see the module doc)."""
    floor, ceiling = band_limits(mark_ticks, band_bps)
    inst = settler.instruments[symbol]
    sellers = [_Participant("liq", o.account_id, o.qty_lots, floor, o) for o in orders if o.side == "long"]
    buyers = [_Participant("liq", o.account_id, o.qty_lots, ceiling, o) for o in orders if o.side == "short"]
    if fund_lots > 0:
        sellers.append(_Participant("fund", settler.fund, fund_lots, floor))
    elif fund_lots < 0:
        buyers.append(_Participant("fund", settler.fund, -fund_lots, ceiling))
    to_sell = sum(p.qty_lots for p in sellers)
    to_buy = sum(p.qty_lots for p in buyers)
    if to_sell == to_buy:  # the batch balances by itself: no outside liquidity, it clears at the mark
        return sellers, buyers
    for total, out, taker, book_side, inside in (
        (to_sell, buyers, "buy", "bid", lambda p: p >= floor),
        (to_buy, sellers, "sell", "ask", lambda p: p <= ceiling),
    ):
        if total <= 0:
            continue
        if include_backstops:
            for provider in settler.backstops:
                position = settler.ledger.position(provider.account_id, symbol).qty_lots
                price, lots = provider.standing_bid(inst, taker, mark_ticks, position, backstop_discount_bps)
                if lots > 0 and inside(price):
                    out.append(_Participant("backstop", provider.account_id, min(lots, total), price,
                                            provider=provider))
        limit = floor if book_side == "bid" else ceiling
        for price, lots in depth_curve(book, book_side, limit, max_lots=total, max_levels=depth_levels):
            if lots > 0:
                out.append(_Participant("market", settler.market, lots, price))
    return sellers, buyers


def _consume_book(book: Any, taker: str, side: list[_Participant], fills: np.ndarray, price: int) -> int:
    """Take the book's cleared lots at the clearing price; cut any it no longer has (returns the cut)."""
    wanted = int(sum(int(fills[i]) for i, p in enumerate(side) if p.kind == "market"))
    if wanted == 0:
        return 0
    got = fill_of(book.take(taker, wanted, price)).filled_lots
    short = wanted - got
    for i in range(len(side) - 1, -1, -1):
        if short <= 0:
            break
        if side[i].kind == "market" and fills[i] > 0:
            cut = min(short, int(fills[i]))
            fills[i] -= cut
            short -= cut
    return wanted - got


def _collapse_book(side: list[_Participant], fills: np.ndarray) -> tuple[list[_Participant], np.ndarray]:
    """The book's levels as one participant: at one price, a liquidation's fills against the book are one
    trade with the market account, not one per level (the levels differ only before the clearing)."""
    book = [i for i, p in enumerate(side) if p.kind == "market"]
    if len(book) <= 1:
        return side, fills
    lots = int(sum(int(fills[i]) for i in book))
    keep = [i for i, p in enumerate(side) if p.kind != "market"]
    merged = [side[i] for i in keep] + [_Participant("market", side[book[0]].who, max(lots, 1), side[book[0]].price_ticks)]
    return merged, np.array([int(fills[i]) for i in keep] + [lots], dtype=np.int64)


def _trim(side: list[_Participant], fills: np.ndarray, excess: int) -> None:
    """Give back ``excess`` lots from the end of a side (its least-priority lines)."""
    for i in range(len(side) - 1, -1, -1):
        if excess <= 0:
            return
        cut = min(excess, int(fills[i]))
        fills[i] -= cut
        excess -= cut


def clear_batch(settler: Settler, symbol: str, orders: Sequence[BatchOrder], book: Any, mark_ticks: int,
                ts_ns: int, *, band_bps: float, depth_levels: int | None, include_backstops: bool,
                backstop_discount_bps: float | None, fund_lots: int = 0) -> BatchResult:
    """Clear one batch at one price and settle every trade (module doc); returns what filled."""
    result = BatchResult()
    sellers, buyers = _participants(settler, symbol, orders, fund_lots, book, mark_ticks, band_bps=band_bps,
                                    depth_levels=depth_levels, include_backstops=include_backstops,
                                    backstop_discount_bps=backstop_discount_bps)
    offered = sum(o.qty_lots for o in orders)
    floor, ceiling = band_limits(mark_ticks, band_bps)
    summary: dict[str, Any] = {"offered_lots": offered, "fund_offered_lots": abs(fund_lots), "band_floor_ticks": floor,
               "band_ceiling_ticks": ceiling, "mark_ticks": mark_ticks,
               "depth_lots": sum(p.qty_lots for p in sellers + buyers if p.kind == "market"),
               "backstop_quoted_lots": sum(p.qty_lots for p in sellers + buyers if p.kind == "backstop")}
    if not sellers or not buyers:
        settler.audit.record(EventKind.AUCTION_CLEARED, ts_ns, symbol=symbol, volume_lots=0, **summary)
        return result
    cleared = clear_ticks(np.array([p.price_ticks for p in buyers], np.int64),
                          np.array([p.qty_lots for p in buyers], np.int64),
                          np.array([p.price_ticks for p in sellers], np.int64),
                          np.array([p.qty_lots for p in sellers], np.int64),
                          reference_price_ticks=int(mark_ticks), pressure_band_ppm=0)
    if cleared.price_ticks is None or cleared.volume_lots == 0:
        settler.audit.record(EventKind.AUCTION_CLEARED, ts_ns, symbol=symbol, volume_lots=0, **summary)
        return result
    price = int(cleared.price_ticks)
    if all(p.kind in ("liq", "fund") for p in sellers + buyers):
        price = int(mark_ticks)  # balanced: every price between the band's edges clears it; the mark
    result.price_ticks = price
    buy, sell = cleared.buy_fill_lots.copy(), cleared.sell_fill_lots.copy()
    cut = _consume_book(book, "sell", buyers, buy, price) + _consume_book(book, "buy", sellers, sell, price)
    if cut:  # a book that moved under us: the other side gives the same lots back
        _trim(sellers, sell, int(sell.sum()) - int(buy.sum()))
        _trim(buyers, buy, int(buy.sum()) - int(sell.sum()))
    sellers, sell = _collapse_book(sellers, sell)
    buyers, buy = _collapse_book(buyers, buy)
    stats = _settle_pairs(settler, symbol, sellers, sell, buyers, buy, price, ts_ns, result)
    if result.netted_lots:
        accounts = len({a for (a, cp) in result.fills if cp == "peer"})
        settler.audit.record(EventKind.BATCH_NETTED, ts_ns, symbol=symbol, lots=result.netted_lots,
                             price_ticks=price, accounts=accounts)
    settler.audit.record(EventKind.AUCTION_CLEARED, ts_ns, symbol=symbol, price_ticks=price,
                         volume_lots=int(sell.sum()), **summary, **stats)
    return result


def _settle_pairs(settler: Settler, symbol: str, sellers: list[_Participant], sell: np.ndarray,
                  buyers: list[_Participant], buy: np.ndarray, price: int, ts_ns: int,
                  result: BatchResult) -> dict[str, Any]:
    """Pair sellers and buyers in priority order at ``price`` and post every trade to the ledger."""
    stats: dict[str, Any] = {"filled_lots": 0, "netted_lots": 0, "fund_lots": 0, "backstop_lots": 0, "book_lots": 0}
    i = j = 0
    left_s = int(sell[0]) if len(sellers) else 0
    left_b = int(buy[0]) if len(buyers) else 0
    while i < len(sellers) and j < len(buyers):
        if left_s == 0:
            i += 1
            left_s = int(sell[i]) if i < len(sellers) else 0
            continue
        if left_b == 0:
            j += 1
            left_b = int(buy[j]) if j < len(buyers) else 0
            continue
        lots = min(left_s, left_b)
        _settle(settler, symbol, sellers[i], buyers[j], lots, price, ts_ns, result, stats)
        left_s -= lots
        left_b -= lots
    return stats


def _settle(settler: Settler, symbol: str, seller: _Participant, buyer: _Participant, lots: int, price: int,
            ts_ns: int, result: BatchResult, stats: dict[str, Any]) -> None:
    """Post one matched trade; liquidated accounts' fills are kept per counterparty kind."""
    inst = settler.instruments[symbol]
    kinds = (seller.kind, buyer.kind)
    if "market" in kinds and "backstop" in kinds or kinds in (("market", "market"), ("backstop", "backstop")):
        raise SimulationError(f"batch allocation paired {kinds} at {price}: the book or the quotes crossed")
    if kinds == ("liq", "liq"):
        fee = settler.fill(seller.who, symbol, "long", buyer.who, price, lots, ts_ns, "liquidation: batch netting",
                           check_counterparty=True)
        fee_short = settler.charge_fee(buyer.who, symbol, price, lots, seller.who, ts_ns)
        result.fills.setdefault((seller.who, "peer"), FillSummary()).add(lots, price, fee)
        result.fills.setdefault((buyer.who, "peer"), FillSummary()).add(lots, price, fee_short)
        result.netted_lots += lots
        stats["netted_lots"] += lots
        stats["filled_lots"] += 2 * lots
        return
    liq = seller if seller.kind == "liq" else buyer if buyer.kind == "liq" else None
    if liq is not None:
        other = buyer if liq is seller else seller
        side = "long" if liq is seller else "short"
        cp = {"fund": "fund", "backstop": "backstop", "market": "market"}[other.kind]
        fee = settler.fill(liq.who, symbol, side, other.who, price, lots, ts_ns, f"liquidation: batch vs {cp}")
        if other.provider is not None:
            other.provider.commit(inst, price, lots)
        result.fills.setdefault((liq.who, cp), FillSummary()).add(lots, price, fee)
        stats["filled_lots"] += lots
        stats[{"fund": "fund_lots", "backstop": "backstop_lots", "market": "book_lots"}[cp]] += lots
        if cp == "fund":
            result.fund_offload.setdefault("peer", FillSummary()).add(lots, price)
        return
    # the fund's inventory against the book or a backstop quote
    fund, other = (seller, buyer) if seller.kind == "fund" else (buyer, seller)
    if fund.kind != "fund":  # pragma: no cover - excluded above
        raise SimulationError(f"batch allocation paired {kinds}")
    buyer_id, seller_id = (other.who, fund.who) if fund is seller else (fund.who, other.who)
    settler.ledger.apply_fill(buyer=buyer_id, seller=seller_id, instrument=inst, price_ticks=price, qty_lots=lots,
                              ts_ns=ts_ns, reason="fund offload: batch", reduce_only_for=fund.who)
    if other.provider is not None:
        other.provider.commit(inst, price, lots)
        settler.changed.add(other.who)
    cp = "backstop" if other.kind == "backstop" else "market"
    result.fund_offload.setdefault(cp, FillSummary()).add(lots, price)
    stats["backstop_lots" if cp == "backstop" else "book_lots"] += lots


__all__ = ["BatchOrder", "BatchResult", "band_limits", "clear_batch", "net_orders"]
