"""Agents of the lab: market makers, a front-runner, backstop liquidity providers, leveraged traders.

Why: a liquidation policy is judged by what happens around it — who absorbs the flow, who profits
from seeing it early, whether it cascades. Agents are small, deterministic objects driven by the
market (``on_advance(ts_ns, market)``) or by the engine's hook (``on_before_execute``).

* :class:`MarketMaker` quotes ``levels`` price levels per side; its first level moves out and its sizes
  shrink as realised volatility rises (``stress`` = σ/σ_calm), it pulls everything at ``pull_stress``,
  and it never quotes more on a side than its inventory limit leaves room for — so its inventory can
  never exceed the limit. With ``lay_off_per_s`` it hedges a share of its inventory elsewhere every
  second (at the mark), which gives it room to quote again.
* :class:`FrontRunner` sees each book-bound liquidation order through the engine's
  ``on_before_execute(symbol, taker_side, qty_lots, limit_ticks, ts_ns)`` hook, takes the same side
  first (capital-limited), and unwinds once ``reaction_latency_ms`` has passed, after the flow has moved
  the price. Its profit (exact, settlement minor units) is a metric. In an auction venue the engine
  does not call the hook before clearing, so it never trades and its profit is exactly 0.
* :func:`make_backstops` builds the engine's :class:`~deleverage.engine.backstop.BackstopProvider` set.
* :class:`LeveragedTraders` — positions with liquidation prices that are market-closed on the book
  when the mark crosses them (the engine-free closed loop used to show a cascade).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np

from deleverage.core.instruments import Instrument
from deleverage.core.money import USDT, Asset
from deleverage.errors import InvalidInput

# --- market maker -------------------------------------------------------------------------------------


@dataclass
class MarketMaker:
    """Quotes a ladder whose width and size depend on volatility stress and inventory room."""

    name: str = "mm"
    levels: int = 5
    size_lots: int = 1_000
    first_level_ticks: int = 0  # level index (ticks from the touch) of its best quote when calm
    level_spacing_ticks: int = 1
    inventory_limit_lots: int = 20_000
    widen_elasticity: float = 1.0
    size_elasticity: float = 1.0
    pull_stress: float = 6.0
    lay_off_per_s: float = 0.0  # share of inventory hedged elsewhere per second
    inventory_lots: int = 0
    cash_tick_lots: int = 0  # Σ sells price×lots − Σ buys price×lots
    filled_lots: int = 0

    def __post_init__(self) -> None:
        for name in ("levels", "size_lots", "inventory_limit_lots", "level_spacing_ticks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidInput(name, value, "must be a positive int")
        if self.first_level_ticks < 0:
            raise InvalidInput("first_level_ticks", self.first_level_ticks, "must be >= 0")
        if not self.pull_stress > 1:
            raise InvalidInput("pull_stress", self.pull_stress, "must be > 1")
        if not (math.isfinite(self.lay_off_per_s) and 0 <= self.lay_off_per_s <= 1):
            raise InvalidInput("lay_off_per_s", self.lay_off_per_s, "must be in [0, 1]")

    def lay_off(self, dt_s: float, mark_ticks: int) -> int:
        """Hedge ``1 − e^{−rate·dt}`` of the inventory elsewhere at the mark; returns the lots laid off."""
        if not self.inventory_lots or self.lay_off_per_s <= 0 or dt_s <= 0:
            return 0
        lots = int(abs(self.inventory_lots) * -math.expm1(-self.lay_off_per_s * dt_s))
        if lots <= 0:
            return 0
        sign = 1 if self.inventory_lots > 0 else -1
        self.inventory_lots -= sign * lots
        self.cash_tick_lots += sign * lots * mark_ticks
        return lots

    def room_lots(self, book_side: str) -> int:
        """Lots it may still buy (bid) or sell (ask) before its inventory limit."""
        if book_side == "bid":
            return max(0, self.inventory_limit_lots - self.inventory_lots)
        return max(0, self.inventory_limit_lots + self.inventory_lots)

    def quotes(self, book_side: str, stress: float) -> np.ndarray:
        """Lots by level index (ticks from the touch) on one side; empty when pulled."""
        if stress >= self.pull_stress:
            return np.zeros(0, np.int64)
        s = max(1.0, stress)
        first = math.ceil((self.first_level_ticks + 1) * s ** self.widen_elasticity) - 1
        size = int(self.size_lots * s ** (-self.size_elasticity))
        room = self.room_lots(book_side)
        if size <= 0 or room <= 0:
            return np.zeros(0, np.int64)
        out = np.zeros(first + self.levels * self.level_spacing_ticks, np.int64)
        for j in range(self.levels):
            lots = min(size, room)
            if lots <= 0:
                break
            out[first + j * self.level_spacing_ticks] = lots
            room -= lots
        return out

    def on_fill(self, book_side: str, lots: int, price_ticks: int) -> None:
        """Its ``book_side`` quote was hit: a bid fill buys (inventory up), an ask fill sells."""
        if lots < 0 or lots > self.room_lots(book_side):
            raise InvalidInput("lots", lots, f"exceeds {self.name}'s room {self.room_lots(book_side)}")
        sign = 1 if book_side == "bid" else -1
        self.inventory_lots += sign * lots
        self.cash_tick_lots -= sign * lots * price_ticks
        self.filled_lots += lots

    def pnl_tick_lots(self, mark_ticks: int) -> int:
        """Mark-to-market P&L in tick×lots (× the instrument's value per tick-lot for linear contracts)."""
        return self.cash_tick_lots + self.inventory_lots * mark_ticks


# --- front-runner -----------------------------------------------------------------------------------


@dataclass
class FrontRunner:
    """Trades ahead of book-bound liquidation flow it sees through the engine's hook.

    ``capital`` (settlement units) bounds the notional of its position; ``participation`` is the share
    of the seen order it trades ahead; it only acts when walking the seen order would move the price
    by more than ``min_edge_ticks`` (else it would pay the spread for nothing).
    """

    market: Any
    instrument: Instrument
    capital: float
    reaction_latency_ms: int = 0
    participation: float = 1.0
    min_edge_ticks: int = 2
    position_lots: int = 0
    trades: int = 0
    _sell_minor: Fraction = field(default=Fraction(0), repr=False)
    _buy_minor: Fraction = field(default=Fraction(0), repr=False)
    _entry_ns: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.capital) and self.capital >= 0):
            raise InvalidInput("capital", self.capital, "must be a finite number >= 0")
        if not 0 < self.participation <= 1:
            raise InvalidInput("participation", self.participation, "must be in (0, 1]")
        if self.reaction_latency_ms < 0:
            raise InvalidInput("reaction_latency_ms", self.reaction_latency_ms, "must be >= 0")

    def _book(self) -> Any:
        return self.market.liquidity() if hasattr(self.market, "liquidity") else self.market

    def on_before_execute(self, *args: Any) -> None:
        """Engine hook: ``(symbol, taker_side, qty_lots, limit_ticks, ts_ns)``, or a list of orders."""
        if len(args) == 1:
            for order in args[0]:
                self._see(_field(order, "symbol"), _field(order, "side"),
                          int(_field(order, "qty_lots")), _field(order, "ts_ns") or 0)
            return
        symbol, side, qty_lots, _limit, ts_ns = args
        self._see(symbol, side, int(qty_lots), int(ts_ns))

    def _see(self, symbol: str | None, side: str, qty_lots: int, ts_ns: int) -> None:
        if symbol is not None and symbol != self.instrument.symbol:
            return
        book = self._book()
        sign = 1 if side == "buy" else -1
        if self.position_lots * sign < 0:
            return  # already positioned the other way: do not flip inside one wave
        touch = book.best_ask() if side == "buy" else book.best_bid()
        if touch is None:
            return
        per_lot = abs(self.instrument.notional(touch[0], 1))
        used = abs(self.instrument.notional(touch[0], abs(self.position_lots)))
        room = int((Fraction(self.capital) * self.instrument.settle.minor_per_unit - used) // per_lot)
        lots = min(int(qty_lots * self.participation), room)
        if lots <= 0:
            return
        seen = book.walk(side, qty_lots + lots)
        if not seen.filled_lots or abs(seen.worst_price_ticks - touch[0]) <= self.min_edge_ticks:
            return
        self._trade(side, lots)
        if self._entry_ns is None:
            self._entry_ns = ts_ns

    def _trade(self, side: str, lots: int) -> None:
        walk = self._book().take(side, lots)
        value = _walk_value(self.instrument, _fills(walk))
        if side == "sell":
            self._sell_minor += value
        else:
            self._buy_minor += value
        self.position_lots += walk.filled_lots if side == "buy" else -walk.filled_lots
        self.trades += 1

    def on_tick(self, ts_ns: int) -> None:
        """Unwind once the reaction latency has passed (called after the engine's step)."""
        if self._entry_ns is not None and ts_ns >= self._entry_ns + self.reaction_latency_ms * 1_000_000:
            self.unwind()

    def on_advance(self, ts_ns: int, market: Any) -> None:
        self.on_tick(ts_ns)

    def unwind(self) -> None:
        if self.position_lots:
            self._trade("buy" if self.position_lots < 0 else "sell", abs(self.position_lots))
        if self.position_lots == 0:
            self._entry_ns = None

    def close(self, ts_ns: int) -> None:
        """End of run: flatten whatever is left."""
        self.unwind()

    @property
    def profit_minor(self) -> Fraction:
        """Realised profit in settlement minor units (exact), valuing any open position at the mark."""
        sign = 1 if self.instrument.contract == "linear" else -1
        open_value = Fraction(0)
        if self.position_lots and hasattr(self.market, "mark_ticks"):
            open_value = Fraction(self.instrument.notional(self.market.mark_ticks(), abs(self.position_lots)))
            if self.position_lots > 0:
                return sign * (self._sell_minor + open_value - self._buy_minor)
            return sign * (self._sell_minor - self._buy_minor - open_value)
        return sign * (self._sell_minor - self._buy_minor)

    @property
    def profit(self) -> float:
        """Profit in settlement units (float, for reports)."""
        return float(self.profit_minor / self.instrument.settle.minor_per_unit)


def _field(order: Any, key: str) -> Any:
    """One field of an order given as a dict or as an object (None when absent)."""
    return order.get(key) if isinstance(order, dict) else getattr(order, key, None)


def _walk_value(instrument: Any, fills: list[tuple[int, int]]) -> Fraction:
    """Exact value of a walk's fills: a linear contract's value is linear in Σ price·lots (one product
    instead of a Fraction per level of a deep walk); an inverse one is summed fill by fill."""
    if instrument.contract == "linear":
        return instrument.linear_value_per_tick_lot * sum(p * q for p, q in fills)
    return sum((Fraction(instrument.notional(p, q)) for p, q in fills), Fraction(0))


def _fills(walk: Any) -> list[tuple[int, int]]:
    """(price, lots) of any book's walk; books without per-level fills settle at the exact VWAP split."""
    fills = getattr(walk, "fills", None)
    if fills is not None:
        return list(fills)
    q = int(walk.filled_lots)
    if not q:
        return []
    total = int(getattr(walk, "notional", None) or walk.notional_tick_lots)
    base, extra = divmod(total, q)
    return [(base, q - extra)] + ([(base + 1, extra)] if extra else [])


# --- backstop liquidity providers -------------------------------------------------------------------


def make_backstops(n: int, capital: float | Decimal, discount_bps: float, max_position_lots: int,
                   seed: int, *, settle: Asset = USDT, prefix: str = "backstop") -> list[Any]:
    """``n`` engine BackstopProviders sharing ``capital`` (settlement units) by seeded Dirichlet shares.

    Discounts vary ±20 % around ``discount_bps`` (seeded, rounded to 0.1 bps); capacities sum to
    ``capital`` exactly (largest remainder on minor units). Account ids ``<prefix>_<i>``; the ledger
    must hold these accounts.
    """
    from deleverage.engine.backstop import BackstopProvider

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidInput("n", n, "must be an int >= 1")
    total_minor = settle.to_minor(Decimal(str(capital)), rounding="down")
    if total_minor < 0:
        raise InvalidInput("capital", capital, "must be >= 0")
    rng = np.random.default_rng(seed)
    shares = rng.dirichlet(np.full(n, 5.0))
    raw = shares * total_minor
    floors = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - floors), kind="stable")
    floors[order[: total_minor - int(floors.sum())]] += 1
    discounts = np.round(discount_bps * rng.uniform(0.8, 1.2, n), 1)
    return [BackstopProvider(f"{prefix}_{i}", int(floors[i]), float(discounts[i]), int(max_position_lots))
            for i in range(n)]


# --- leveraged traders (engine-free closed loop) ----------------------------------------------------


class LeveragedTraders:
    """Positions closed on the book with a market order when the mark crosses their liquidation price.

    Longs (``qty_lots`` > 0) are sold when mark ≤ liquidation price, shorts bought when mark ≥ it; within
    one advance it re-checks after each wave, so one liquidation's impact can trigger the next (cascade).
    """

    def __init__(self, qty_lots: np.ndarray, liquidation_ticks: np.ndarray, *, max_waves: int = 100) -> None:
        self.qty_lots = np.asarray(qty_lots, np.int64).copy()
        self.liquidation_ticks = np.asarray(liquidation_ticks, np.int64)
        if self.qty_lots.shape != self.liquidation_ticks.shape:
            raise InvalidInput("liquidation_ticks", self.liquidation_ticks.shape, "must match qty_lots")
        self.alive = self.qty_lots != 0
        self.max_waves = max_waves
        self.liquidated = 0
        self.liquidated_lots = 0
        self.waves: list[int] = []

    def on_advance(self, ts_ns: int, market: Any) -> None:
        for _ in range(self.max_waves):
            mark = market.mark_ticks()
            hit = self.alive & (((self.qty_lots > 0) & (mark <= self.liquidation_ticks))
                                | ((self.qty_lots < 0) & (mark >= self.liquidation_ticks)))
            if not hit.any():
                return
            book = market.liquidity()
            for side, mask in (("sell", hit & (self.qty_lots > 0)), ("buy", hit & (self.qty_lots < 0))):
                lots = int(np.abs(self.qty_lots[mask]).sum())
                if lots:
                    book.take(side, lots)
            self.alive &= ~hit
            self.liquidated += int(hit.sum())
            self.liquidated_lots += int(np.abs(self.qty_lots[hit]).sum())
            self.waves.append(int(hit.sum()))


__all__ = [
    "FrontRunner",
    "LeveragedTraders",
    "MarketMaker",
    "make_backstops",
]
