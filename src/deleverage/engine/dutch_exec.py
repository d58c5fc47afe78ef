"""The Dutch-auction venue (MakerDAO Liquidations 2.0) for perpetual positions.

Rules come from :class:`deleverage.venues.dutch.DutchAuctionHouse` (``dog.sol`` + ``clip.sol``): the
house decides whether an auction may start under the global ``Hole`` and per-symbol ``hole`` caps
(``Dog/liquidation-limit-hit``, ``Dog/leaves-dust``), how much is put up (``dart``/``dink`` when the cap
binds), the ``tab = debt × chop``, the price curve (``abaci.sol``), when a sale needs a reset (``tail``,
``cusp``) and the keeper incentive ``tip + chip × tab`` paid on kick and on redo.

Mapping a perp position onto a Maker vault (assumptions, also in docs/engine.md):

* collateral = the position's lots; debt = the position's value at the kick mark (settle minor units);
  the house prices in ticks per lot, ``top = mark × buf``.
* A long is sold on the falling curve ``P = top × m(t)``; a short is bought back on the mirror, rising
  ``P = mark² / (top × m(t)) = (mark / buf) / m(t)`` (Maker has no shorts; ``cusp`` and ``tail`` apply
  to ``m`` the same way).
* The penalty ``chop`` is charged as a fee of ``(chop − 1) × debt`` pro rata to the lots sold, from the
  account to the insurance fund (Maker's ``vow``), capped by the account's equity above zero.
* Keeper coin (``tip + chip × tab``) is paid by the insurance fund to the keeper account — the first
  backstop provider if any, else the market account — as a balanced ledger transfer, capped by the fund.
* Keepers take only when it pays: the book when its best bid (ask for a short) is at or better than the
  sale price, a backstop provider when its quote is. The book is walked (``take``) only then, so a sale
  nobody wants costs one comparison per tick.

Events are written on state changes only: ``dutch_kicked``, ``dutch_taken``, ``dutch_reset`` and the
end of the sale (``dutch_done``-style data on ``liquidation_done`` is the engine's); a sale that waits
writes nothing per tick.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from deleverage.config.events import EventKind
from deleverage.config.policy import DutchConfig
from deleverage.core.instruments import Instrument
from deleverage.engine.waterfall import FillSummary, Settler
from deleverage.venues.dutch import (
    AuctionStatus,
    CollateralConfig,
    DutchAuctionHouse,
    ExponentialDecrease,
    LinearDecrease,
    StairstepExponentialDecrease,
)
from deleverage.venues.liquidity import fill_of

NS_PER_S = 1_000_000_000
UNCAPPED = 2**255


def dutch_curve(cfg: DutchConfig) -> Any:
    """The abaci.sol price curve named by the policy."""
    if cfg.curve == "linear":
        return LinearDecrease(max(1, int(cfg.tau_s)))
    if cfg.curve == "stairstep":
        return StairstepExponentialDecrease(max(1, int(cfg.step_s)), Fraction(str(cfg.cut)))
    return ExponentialDecrease(Fraction(str(cfg.cut)))


def _minor(value: float | None, inst: Instrument) -> int:
    return UNCAPPED if value is None else round(Fraction(str(value)) * inst.settle.minor_per_unit)


@dataclass(slots=True)
class RunningSale:
    """Engine-side state of one auction: the house's id plus what a tick needs without Fractions."""

    auction_id: int
    account_id: str
    symbol: str
    side: str
    ref_mark_ticks: int  # the mark at kick / last reset (top = ref × buf)
    lots_at_kick: int
    tab_at_kick: int
    penalty_minor: int  # (chop − 1) × debt, charged pro rata to lots sold
    penalty_charged: int = 0
    curve_key: int = -1  # cached step of the curve
    price_ticks: int = 0  # cached take price in whole ticks (account-favourable rounding)
    needs_reset: bool = False
    resets: int = 0


class DutchExecutor:
    """Every running sale of the engine, over one :class:`DutchAuctionHouse`."""

    def __init__(self, cfg: DutchConfig, settler: Settler, instruments: Mapping[str, Instrument], *,
                 keeper: str, fund: str, backstop_discount_bps: float | None = None) -> None:
        self.cfg = cfg
        self.backstop_discount_bps = backstop_discount_bps
        self.settler = settler
        self.audit = settler.audit
        self.instruments = instruments
        self.keeper = keeper
        self.fund = fund
        curve = dutch_curve(cfg)
        self._stair_s = max(1, int(cfg.step_s)) if cfg.curve == "stairstep" else 1
        self._chop = Fraction(str(cfg.chop))
        some = next(iter(instruments.values()))
        self.house = DutchAuctionHouse(
            {s: CollateralConfig(curve=curve, buf=Fraction(str(cfg.buf)), tail_s=int(cfg.tail_s),
                                 cusp=Fraction(str(cfg.cusp)), chip_ppm=round(cfg.chip * 1_000_000),
                                 tip_minor=_minor(cfg.tip, i), dust_minor=_minor(cfg.dust, i),
                                 chop=self._chop, hole_minor=_minor(cfg.hole, i))
             for s, i in instruments.items()},
            global_hole_minor=_minor(cfg.global_hole, some))
        self.sales: dict[tuple[str, str], RunningSale] = {}
        self.keeper_paid_minor = 0

    # --- queries ----------------------------------------------------------------------------------
    def has_sales(self, symbol: str | None = None) -> bool:
        return bool(self.sales) if symbol is None else any(k[0] == symbol for k in self.sales)

    def running(self, symbol: str, account_id: str) -> bool:
        return (symbol, account_id) in self.sales

    # --- kick and redo --------------------------------------------------------------------------
    def kick(self, account_id: str, symbol: str, side: str, position_lots: int, mark_ticks: int,
             ts_ns: int) -> AuctionStatus:
        """Start a sale of the position (or of the part the caps allow); returns the house's status."""
        inst = self.instruments[symbol]
        debt = math.ceil(abs(inst.notional(mark_ticks, position_lots)))
        result = self.house.liquidate(symbol, debt, position_lots, Fraction(mark_ticks), ts_ns,
                                      owner=account_id, keeper=self.keeper)
        if result.status != AuctionStatus.KICKED or result.auction_id is None:
            return result.status
        dart = debt * result.lot_minor // position_lots
        sale = RunningSale(result.auction_id, account_id, symbol, side, mark_ticks, result.lot_minor,
                           result.tab_minor, math.floor(dart * (self._chop - 1)))
        self.sales[(symbol, account_id)] = sale
        paid = self._pay_keeper(symbol, result.keeper_coin_minor, ts_ns, "kick")
        self._refresh(sale, ts_ns)
        self.audit.record(EventKind.DUTCH_KICKED, ts_ns, symbol=symbol, account_id=account_id,
                          lots=position_lots, auction_lots=result.lot_minor, debt_minor=debt,
                          tab_minor=result.tab_minor, top_ticks=result.top, mark_ticks=mark_ticks,
                          keeper=self.keeper, keeper_coin_minor=paid, dirt_minor=self.house.dirt_minor)
        return result.status

    def _pay_keeper(self, symbol: str, coin: int, ts_ns: int, why: str) -> int:
        """tip + chip × tab from the fund (Maker's vow) to the keeper, capped by the fund."""
        if coin <= 0:
            return 0
        code = self.instruments[symbol].settle.code
        paid = min(coin, max(0, self.settler.fund_balance(code)))
        if paid > 0:
            self.settler.ledger.transfer(self.fund, self.keeper, code, paid, reason=f"dutch keeper {why}",
                                         ts_ns=ts_ns)
            self.keeper_paid_minor += paid
        return paid

    def _refresh(self, sale: RunningSale, ts_ns: int) -> None:
        """Recompute the cached price when the curve has stepped (the Fraction math runs per step)."""
        elapsed = (ts_ns - self.house.sales[sale.auction_id].tic_ns) // NS_PER_S
        key = elapsed // self._stair_s
        if key == sale.curve_key and not sale.needs_reset:
            sale.needs_reset = elapsed > self.house.collaterals[sale.symbol].tail_s
            return
        sale.curve_key = key
        needs_reset, price = self.house.status(sale.auction_id, ts_ns)
        sale.needs_reset = needs_reset
        if sale.side == "long":
            sale.price_ticks = max(1, math.ceil(price))
        else:
            sale.price_ticks = math.floor(Fraction(sale.ref_mark_ticks) ** 2 / price) if price > 0 else 0

    # --- a tick ---------------------------------------------------------------------------------
    def step(self, symbol: str, book: Any, mark_ticks: int, ts_ns: int,
             on_take: Callable[[str, list[tuple[str, FillSummary]]], None]) -> None:
        """Reset stale sales, then let keepers take where it pays; ``on_take`` records each take
        as its fills per counterparty ("backstop", "market").

        The best price any keeper pays is read once per side and tick (book top, best backstop quote)
        and re-read only after a take: a sale nobody wants costs a cached-price comparison.
        """
        best: dict[str, int | None] = {"long": None, "short": None}
        for key in sorted(k for k in self.sales if k[0] == symbol):
            sale = self.sales.get(key)
            if sale is None:
                continue
            self._refresh(sale, ts_ns)
            if sale.needs_reset:
                self._redo(sale, mark_ticks, ts_ns)
            side = sale.side
            if best[side] is None:
                best[side] = self._best_keeper_ticks(symbol, side, book, mark_ticks)
            edge = best[side]
            if edge is None or sale.price_ticks <= 0 or (edge < sale.price_ticks if side == "long" else edge > sale.price_ticks):
                continue
            parts = self._take(sale, book, ts_ns)
            if parts:
                best[side] = None
                on_take(sale.account_id, parts)

    def _best_keeper_ticks(self, symbol: str, side: str, book: Any, mark_ticks: int) -> int:
        """Best price a keeper pays now: the book's best bid (ask for a short) or a backstop's quote."""
        top = book.best_bid() if side == "long" else book.best_ask()
        prices = [top[0]] if top and top[1] > 0 and top[0] > 0 else []
        settler = self.settler
        inst = self.instruments[symbol]
        taker = "buy" if side == "long" else "sell"
        for p in settler.backstops:
            position = settler.ledger.position(p.account_id, symbol).qty_lots
            quote = p.quote_ticks(taker, mark_ticks, self.backstop_discount_bps)
            if p.room_lots(taker, position) > 0 and p.capacity_lots(inst, quote) > 0:
                prices.append(quote)
        if not prices:
            return 0 if side == "long" else 2**62
        return max(prices) if side == "long" else min(prices)

    def _redo(self, sale: RunningSale, mark_ticks: int, ts_ns: int) -> None:
        result = self.house.redo(sale.auction_id, Fraction(mark_ticks), ts_ns)
        if result.status != AuctionStatus.RESET:
            return
        sale.ref_mark_ticks, sale.curve_key, sale.needs_reset = mark_ticks, -1, False
        sale.resets += 1
        paid = self._pay_keeper(sale.symbol, result.keeper_coin_minor, ts_ns, "redo")
        self._refresh(sale, ts_ns)
        self.audit.record(EventKind.DUTCH_RESET, ts_ns, symbol=sale.symbol, account_id=sale.account_id,
                          top_ticks=result.top, mark_ticks=mark_ticks, resets=sale.resets,
                          keeper=self.keeper, keeper_coin_minor=paid)

    def _take(self, sale: RunningSale, book: Any, ts_ns: int) -> list[tuple[str, FillSummary]]:
        """Keepers buy (sell, for a short) at the sale price: backstops first, then the book.

        Returns the fills per counterparty ("backstop", "market"); the chop penalty is on the first.
        """
        settler, symbol, side = self.settler, sale.symbol, sale.side
        ticks = sale.price_ticks
        house_sale = self.house.sales[sale.auction_id]
        position = abs(settler.ledger.position(sale.account_id, symbol).qty_lots)
        remaining = min(house_sale.lot_minor, position)
        parts: list[tuple[str, FillSummary]] = []
        if remaining and settler.backstops:
            got = settler.backstop_takeover(sale.account_id, symbol, side, remaining, ticks, ts_ns,
                                            discount_bps=self.backstop_discount_bps)
            if got.lots:
                parts.append(("backstop", got))
            remaining -= got.lots
        if remaining:
            filled = fill_of(book.take("sell" if side == "long" else "buy", remaining, ticks)).filled_lots
            if filled:
                fee = settler.fill(sale.account_id, symbol, side, settler.market, ticks, filled, ts_ns,
                                   "liquidation: dutch keeper")
                market = FillSummary()
                market.add(filled, ticks, fee)
                parts.append(("market", market))
        lots = sum(got.lots for _, got in parts)
        if lots:
            parts[0][1].fee_minor += self._penalty(sale, lots, ts_ns)
            left = self._release(sale, lots)
            self.audit.record(EventKind.DUTCH_TAKEN, ts_ns, symbol=symbol, account_id=sale.account_id,
                              lots=lots, price_ticks=ticks, auction_lots_left=left,
                              position_lots_left=abs(settler.ledger.position(sale.account_id, symbol).qty_lots),
                              dirt_minor=self.house.dirt_minor)
        return parts

    def _penalty(self, sale: RunningSale, lots: int, ts_ns: int) -> int:
        """``chop``: (chop − 1) × debt pro rata to the lots sold, to the fund, capped by equity."""
        due = sale.penalty_minor * min(sale.lots_at_kick, lots) // max(1, sale.lots_at_kick)
        due = min(due, sale.penalty_minor - sale.penalty_charged)
        if due <= 0:
            return 0
        settler, inst = self.settler, self.instruments[sale.symbol]
        code = inst.settle.code
        equity = settler.margin(sale.account_id, sale.symbol).equity_exact
        fee = min(due, max(0, math.floor(equity)), max(0, settler.ledger.balance(sale.account_id, code)))
        if fee <= 0:
            return 0
        settler.ledger.transfer(sale.account_id, self.fund, code, fee, reason="dutch penalty (chop)", ts_ns=ts_ns)
        settler.changed.add(sale.account_id)
        sale.penalty_charged += fee
        self.audit.record(EventKind.FEE_CHARGED, ts_ns, symbol=sale.symbol, account_id=sale.account_id,
                          fee_minor=fee, uncapped_minor=due, to=self.fund, penalty="chop")
        return fee

    def _release(self, sale: RunningSale, lots: int) -> int:
        """Take ``lots`` out of the house's sale, releasing its tab from Dirt pro rata; end it when empty."""
        house = self.house
        hs = house.sales[sale.auction_id]
        lots = min(lots, hs.lot_minor)
        release = hs.tab_minor if lots == hs.lot_minor else hs.tab_minor * lots // hs.lot_minor
        hs.lot_minor -= lots
        hs.tab_minor -= release
        house.dirt_minor -= release
        house.collateral_dirt_minor[sale.symbol] -= release
        if hs.lot_minor == 0:
            self.finish(sale.symbol, sale.account_id)
            return 0
        return hs.lot_minor

    def finish(self, symbol: str, account_id: str) -> None:
        """End the account's sale (closed, flat, or the auction sold out): its tab leaves Dirt."""
        sale = self.sales.pop((symbol, account_id), None)
        if sale is not None:
            self.house.yank(sale.auction_id)


__all__ = ["DutchExecutor", "RunningSale", "dutch_curve"]
