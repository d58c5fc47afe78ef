"""Batches: collect liquidation orders per interval, net opposite flow internally, auction the rest.

Frequent batch auctions (Budish, Cramton & Shim 2015): all orders of one interval meet at one price.
At the batch close (docs/engine.md step 6–7):

* **netting** — long liquidations (sells) and short liquidations (buys) cross each other at the mark
  of the batch close, account against account, in the batch's deterministic order (``batch_netted``);
* **auction** — the residual side is offered into ``venues.auction.clear`` against the backstop
  providers' standing quotes and the book's top levels as limit orders; everyone trades at the one
  clearing price, the book liquidity that cleared is consumed with ``take``.

Dutch auctions live in :mod:`deleverage.engine.dutch_exec`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deleverage.config.events import EventKind
from deleverage.engine.waterfall import FillSummary, Settler
from deleverage.venues.auction import clear
from deleverage.venues.liquidity import fill_of, top_levels


@dataclass(frozen=True, slots=True)
class BatchOrder:
    """One liquidation order in a batch; ``side`` is the liquidated position's side."""

    account_id: str
    side: str
    qty_lots: int
    limit_ticks: int | None


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


def auction_residual(settler: Settler, symbol: str, orders: Sequence[BatchOrder], book: Any, mark_ticks: int,
                     ts_ns: int, *, include_backstops: bool, depth_levels: int = 50) -> dict[str, FillSummary]:
    """Clear one side of liquidation orders against backstop quotes and book depth at one price."""
    fills: dict[str, FillSummary] = {}
    if not orders:
        return fills
    side = orders[0].side
    inst = settler.instruments[symbol]
    provider_side = "buy" if side == "long" else "sell"
    liq = [(o.limit_ticks, o.qty_lots) for o in orders]
    makers: list[tuple[str, int, int]] = []  # (who, price, lots)
    if include_backstops:
        for p in settler.backstops:
            pos = settler.ledger.position(p.account_id, symbol).qty_lots
            price, lots = p.standing_bid(inst, provider_side, mark_ticks, pos)
            if lots > 0:
                makers.append((p.account_id, price, lots))
    makers += [(settler.market, price, lots)
               for price, lots in top_levels(book, "bid" if side == "long" else "ask", depth_levels)]
    if not makers:
        return fills
    other = [(price, lots) for _, price, lots in makers]
    bids, asks = (other, liq) if side == "long" else (liq, other)
    result = clear(bids, asks, reference_price=mark_ticks)
    if result.price is None or result.volume == 0:
        settler.audit.record(EventKind.AUCTION_CLEARED, ts_ns, symbol=symbol, volume_lots=0,
                             offered_lots=sum(q for _, q in liq), makers=len(makers))
        return fills
    price = int(result.price)
    liq_fills = result.sell_fills if side == "long" else result.buy_fills
    maker_fills = list(result.buy_fills if side == "long" else result.sell_fills)
    book_lots = sum(int(q) for (who, _, _), q in zip(makers, maker_fills, strict=True) if who == settler.market)
    if book_lots:
        taken = fill_of(book.take("sell" if side == "long" else "buy", book_lots, price)).filled_lots
        shortfall = book_lots - taken  # a book that moved under us: give back what it did not fill
        for k in range(len(makers) - 1, -1, -1):
            if shortfall <= 0:
                break
            if makers[k][0] == settler.market:
                cut = min(shortfall, int(maker_fills[k]))
                maker_fills[k] = int(maker_fills[k]) - cut
                shortfall -= cut
    queue = [(who, int(q)) for (who, _, _), q in zip(makers, maker_fills, strict=True) if int(q) > 0]
    m = 0
    used = 0  # lots already taken from queue[m]
    for order, wanted in zip(orders, liq_fills, strict=True):
        want = int(wanted)
        while want > 0 and m < len(queue):
            who, avail = queue[m]
            lots = min(want, avail - used)
            fee = settler.fill(order.account_id, symbol, side, who, price, lots, ts_ns, "liquidation: auction")
            for p in settler.backstops:
                if p.account_id == who:
                    p.commit(inst, price, lots)
            fills.setdefault(order.account_id, FillSummary()).add(lots, price, fee)
            want -= lots
            used += lots
            if used == avail:
                m, used = m + 1, 0
    settler.audit.record(EventKind.AUCTION_CLEARED, ts_ns, symbol=symbol, price_ticks=price,
                         volume_lots=sum(f.lots for f in fills.values()), book_lots=book_lots,
                         offered_lots=sum(q for _, q in liq), makers=len(makers), surplus_lots=int(result.surplus))
    return fills


__all__ = [
    "BatchOrder",
    "auction_residual",
    "net_orders",
]
