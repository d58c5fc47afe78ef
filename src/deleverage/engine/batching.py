"""Batches: collect liquidation orders per interval, net opposite flow internally, auction the rest.

Frequent batch auctions (Budish, Cramton & Shim 2015): all orders of one interval meet at one price.
At the batch close (docs/engine.md step 6–7):

* **netting** — long liquidations (sells) and short liquidations (buys) cross each other at the mark
  of the batch close, account against account, in the batch's deterministic order (``batch_netted``);
* **auction** — the residual side is offered into ``venues.auction.clear`` against the backstop
  providers' standing quotes and the book's top levels as limit orders; everyone trades at the one
  clearing price, the book liquidity that cleared is consumed with ``take``.

Dutch auctions (MakerDAO Liquidations 2.0, ``clip.sol``/``abaci.sol``): one sale per liquidated
position, price ``top × curve(t)`` falling from ``mark × buf`` for a long (rising from ``mark / buf``
for a short, the mirror image), reset when ``t > tail`` or the price fell below ``cusp × top``;
keepers are the book (when its best bid is at or above the sale price) and the backstop providers
(when their quote is at or above it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from deleverage.engine.events import EventKind
from deleverage.engine.policy import DutchConfig
from deleverage.engine.waterfall import FillSummary, Settler
from deleverage.venues.auction import clear
from deleverage.venues.dutch import (
    ExponentialDecrease,
    LinearDecrease,
    StairstepExponentialDecrease,
)
from deleverage.venues.liquidity import fill_of, top_levels

NS_PER_S = 1_000_000_000


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
    longs = [[o, o.qty_lots] for o in orders if o.side == "long"]
    shorts = [[o, o.qty_lots] for o in orders if o.side == "short"]
    fills: dict[str, FillSummary] = {}
    i = j = 0
    netted = 0
    while i < len(longs) and j < len(shorts):
        (lo, lq), (so, sq) = longs[i], shorts[j]
        lots = min(lq, sq)
        fee = settler.fill(lo.account_id, symbol, "long", so.account_id, mark_ticks, lots, ts_ns,
                           "liquidation: netting", check_counterparty=True)
        fee_short = settler.charge_fee(so.account_id, symbol, mark_ticks, lots, lo.account_id, ts_ns)
        fills.setdefault(lo.account_id, FillSummary()).add(lots, mark_ticks, fee)
        fills.setdefault(so.account_id, FillSummary()).add(lots, mark_ticks, fee_short)
        netted += lots
        longs[i][1] -= lots
        shorts[j][1] -= lots
        if longs[i][1] == 0:
            i += 1
        if shorts[j][1] == 0:
            j += 1
    if netted:
        settler.audit.record(EventKind.BATCH_NETTED, ts_ns, symbol=symbol, lots=netted,
                             price_ticks=mark_ticks, accounts=len(fills))
    residual = [BatchOrder(o.account_id, o.side, q, o.limit_ticks) for o, q in longs + shorts if q > 0]
    return fills, residual


def auction_residual(settler: Settler, symbol: str, orders: Sequence[BatchOrder], book, mark_ticks: int,  # noqa: ANN001
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
    queue = [[who, int(q)] for (who, _, _), q in zip(makers, maker_fills, strict=True) if int(q) > 0]
    m = 0
    for order, want in zip(orders, liq_fills, strict=True):
        want = int(want)
        while want > 0 and m < len(queue):
            who, avail = queue[m]
            lots = min(want, avail)
            fee = settler.fill(order.account_id, symbol, side, who, price, lots, ts_ns, "liquidation: auction")
            for p in settler.backstops:
                if p.account_id == who:
                    p.commit(inst, price, lots)
            fills.setdefault(order.account_id, FillSummary()).add(lots, price, fee)
            want -= lots
            queue[m][1] -= lots
            if queue[m][1] == 0:
                m += 1
    settler.audit.record(EventKind.AUCTION_CLEARED, ts_ns, symbol=symbol, price_ticks=price,
                         volume_lots=sum(f.lots for f in fills.values()), book_lots=book_lots,
                         offered_lots=sum(q for _, q in liq), makers=len(makers), surplus_lots=int(result.surplus))
    return fills


def dutch_curve(cfg: DutchConfig):  # noqa: ANN201
    """The abaci.sol price curve named by the policy."""
    if cfg.curve == "linear":
        return LinearDecrease(max(1, int(cfg.tau_s)))
    if cfg.curve == "stairstep":
        return StairstepExponentialDecrease(max(1, int(cfg.step_s)), Fraction(str(cfg.cut)))
    return ExponentialDecrease(Fraction(str(cfg.cut)))


@dataclass(slots=True)
class DutchSale:
    """A running Dutch sale of one position (Clipper ``Sale``, for a perp position)."""

    account_id: str
    symbol: str
    side: str
    top: Fraction  # long: starting price (mark × buf); short: starting price (mark / buf)
    tic_ns: int
    resets: int = 0


class DutchDesk:
    """Every running sale; prices follow the policy's curve, resets follow ``tail`` and ``cusp``."""

    def __init__(self, cfg: DutchConfig) -> None:
        self.cfg = cfg
        self.curve = dutch_curve(cfg)
        self.sales: dict[tuple[str, str], DutchSale] = {}

    def kick(self, account_id: str, symbol: str, side: str, mark_ticks: int, ts_ns: int) -> DutchSale:
        sale = DutchSale(account_id, symbol, side, self._top(side, mark_ticks), ts_ns)
        self.sales[(symbol, account_id)] = sale
        return sale

    def _top(self, side: str, mark_ticks: int) -> Fraction:
        buf = Fraction(str(self.cfg.buf))
        return mark_ticks * buf if side == "long" else mark_ticks / buf

    def price(self, sale: DutchSale, ts_ns: int) -> tuple[Fraction | None, bool]:
        """(current price in ticks, needs reset): reset after ``tail`` s or below ``cusp`` of the top."""
        elapsed = max(0, (ts_ns - sale.tic_ns) // NS_PER_S)
        m = self.curve.price(Fraction(1), elapsed)
        needs_reset = elapsed > self.cfg.tail_s or m < Fraction(str(self.cfg.cusp))
        if m <= 0:
            return None, True
        return (sale.top * m if sale.side == "long" else sale.top / m), needs_reset

    def reset(self, sale: DutchSale, mark_ticks: int, ts_ns: int) -> None:
        sale.top = self._top(sale.side, mark_ticks)
        sale.tic_ns = ts_ns
        sale.resets += 1


def dutch_take(settler: Settler, sale: DutchSale, price: Fraction, book, ts_ns: int) -> FillSummary:  # noqa: ANN001
    """Keepers take what they can at the sale price: backstop providers first, then the book."""
    symbol, side = sale.symbol, sale.side
    ticks = max(1, math.ceil(price)) if side == "long" else max(1, math.floor(price))
    remaining = abs(settler.ledger.position(sale.account_id, symbol).qty_lots)
    out = FillSummary()
    if remaining and settler.backstops:
        got = settler.backstop_takeover(sale.account_id, symbol, side, remaining, ticks, ts_ns)
        out.add(got.lots, ticks, got.fee_minor)
        remaining -= got.lots
    if remaining:
        taker = "sell" if side == "long" else "buy"
        filled = fill_of(book.take(taker, remaining, ticks)).filled_lots
        if filled:
            fee = settler.fill(sale.account_id, symbol, side, settler.market, ticks, filled, ts_ns,
                               "liquidation: dutch keeper")
            out.add(filled, ticks, fee)
    if out.lots:
        settler.audit.record(EventKind.DUTCH_TAKEN, ts_ns, symbol=symbol, account_id=sale.account_id,
                             lots=out.lots, price_ticks=ticks, price_exact=price,
                             left_lots=abs(settler.ledger.position(sale.account_id, symbol).qty_lots))
    return out


__all__ = [
    "BatchOrder",
    "DutchDesk",
    "DutchSale",
    "auction_residual",
    "dutch_curve",
    "dutch_take",
    "net_orders",
]
