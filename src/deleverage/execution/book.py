"""A resilient block-shaped book on integer ticks and lots: the Obizhaeva–Wang model as a venue.

Why: algorithms must be run against *a* book whose behaviour an impact model predicts, and the lab
needs a book driven by a recorded mark path. This book has ``depth_lots_per_tick`` lots at every tick
from the touch outward, the touch sits ``half_spread_ticks`` either side of an exogenous mid (moved
by :meth:`advance`, e.g. from replayed klines), and liquidity taken from either side refills
exponentially at rate ``resilience_per_s`` (OW 2013 "volume resilience"; consumed volume is kept in
whole lots, rounded down when it decays). It offers the read/take surface of ``venues.l2.L2Book``
that the algorithms use: best_bid/best_ask, mid_ticks, depth_within_bps, levels, walk, take.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deleverage.errors import InvalidInput, SimulationError


@dataclass(frozen=True, slots=True)
class Walk:
    """What a marketable order of ``requested_lots`` gets: fills at integer ticks, lot by lot."""

    side: str
    requested_lots: int
    filled_lots: int
    notional_tick_lots: int  # Σ price_ticks × lots
    worst_price_ticks: int | None
    touch_price_ticks: int | None

    @property
    def vwap_ticks(self) -> float | None:
        return self.notional_tick_lots / self.filled_lots if self.filled_lots else None

    @property
    def slippage_bps(self) -> float:
        if not self.filled_lots or self.touch_price_ticks is None:
            return 0.0
        sign = 1.0 if self.side == "buy" else -1.0
        vwap_ticks = self.notional_tick_lots / self.filled_lots
        return sign * (vwap_ticks - self.touch_price_ticks) / self.touch_price_ticks * 1e4


class ResilientBook:
    """Block-shaped book around an exogenous mid with exponential refill of taken liquidity."""

    def __init__(self, *, mid_ticks: int, half_spread_ticks: int, depth_lots_per_tick: int,
                 resilience_per_s: float, ts_ns: int = 0, max_levels: int = 1_000_000) -> None:
        for name, value in (("mid_ticks", mid_ticks), ("half_spread_ticks", half_spread_ticks),
                            ("depth_lots_per_tick", depth_lots_per_tick)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidInput(name, value, "must be a positive int")
        if not (isinstance(resilience_per_s, (int, float)) and math.isfinite(resilience_per_s)
                and resilience_per_s >= 0):
            raise InvalidInput("resilience_per_s", resilience_per_s, "must be a finite number >= 0")
        self._mid = mid_ticks
        self.half_spread_ticks = half_spread_ticks
        self.depth_lots_per_tick = depth_lots_per_tick
        self.resilience_per_s = float(resilience_per_s)
        self.max_levels = max_levels
        self.ts_ns = ts_ns
        self._consumed = {"bid": 0, "ask": 0}

    # --- market evolution ---------------------------------------------------------------------------
    def advance(self, ts_ns: int, mid_ticks: int | None = None) -> None:
        """Move the clock (liquidity refills) and, optionally, the exogenous mid."""
        if ts_ns < self.ts_ns:
            raise SimulationError(f"ts_ns={ts_ns} is before the book's clock {self.ts_ns}")
        decay = math.exp(-self.resilience_per_s * (ts_ns - self.ts_ns) / 1e9)
        for side in self._consumed:
            self._consumed[side] = int(math.floor(self._consumed[side] * decay))
        self.ts_ns = ts_ns
        if mid_ticks is not None:
            if mid_ticks <= self.half_spread_ticks:
                raise InvalidInput("mid_ticks", mid_ticks, "must exceed half_spread_ticks")
            self._mid = int(mid_ticks)

    # --- reads --------------------------------------------------------------------------------------
    def _touch(self, book_side: str) -> int:
        return self._mid - self.half_spread_ticks if book_side == "bid" else self._mid + self.half_spread_ticks

    def _level(self, book_side: str, k: int) -> tuple[int, int]:
        """k-th non-empty level from the top: (price_ticks, lots)."""
        d = self.depth_lots_per_tick
        consumed = self._consumed[book_side]
        first, part = divmod(consumed, d)
        step = -1 if book_side == "bid" else 1
        price = self._touch(book_side) + step * (first + k)
        return price, (d - part) if k == 0 else d

    def best_bid(self) -> tuple[int, int] | None:
        price, qty = self._level("bid", 0)
        return (price, qty) if price > 0 else None

    def best_ask(self) -> tuple[int, int]:
        return self._level("ask", 0)

    def mid_ticks(self) -> float:
        """Mid of the current touch (moves with our own impact), in ticks."""
        bid = self.best_bid()
        ask = self.best_ask()
        return (ask[0] + (bid[0] if bid else ask[0])) / 2

    def levels(self, side: str, n: int) -> list[tuple[int, int]]:
        book_side = _book_side(side)
        out = [self._level(book_side, k) for k in range(n)]
        return [(p, q) for p, q in out if p > 0]

    def depth_within(self, book_side: str, limit_price_ticks: int, max_lots: int | None = None,
                     max_levels: int | None = None) -> list[tuple[int, int]]:
        """Levels of ``book_side`` at ``limit_price_ticks`` or better, best first (``LiquiditySource``).

        Stops once ``max_lots`` are covered (that level cut to what is needed) or after ``max_levels``.
        """
        if isinstance(limit_price_ticks, bool) or not isinstance(limit_price_ticks, int) or limit_price_ticks <= 0:
            raise InvalidInput("limit_price_ticks", limit_price_ticks, "must be an int number of ticks > 0")
        side = _book_side(book_side)
        out: list[tuple[int, int]] = []
        covered = 0
        k = 0
        while k < self.max_levels and (max_levels is None or k < max_levels):
            price, lots = self._level(side, k)
            if price <= 0 or (price < limit_price_ticks if side == "bid" else price > limit_price_ticks):
                break
            if max_lots is not None and covered + lots >= max_lots:
                out.append((price, max_lots - covered))
                break
            out.append((price, lots))
            covered += lots
            k += 1
        return out

    def depth_within_bps(self, side: str, bps: float) -> int:
        """Lots resting within ``bps`` of the current mid on ``side`` ('bid'/'ask' or 'buy'/'sell')."""
        book_side = _book_side(side)
        mid = self.mid_ticks()
        limit = mid * (1 - bps / 1e4) if book_side == "bid" else mid * (1 + bps / 1e4)
        top, top_qty = self._level(book_side, 0)
        if (book_side == "bid" and top < limit) or (book_side == "ask" and top > limit):
            return 0
        extra = int(math.floor(abs(limit - top)))
        return top_qty + extra * self.depth_lots_per_tick

    # --- taking -------------------------------------------------------------------------------------
    def walk(self, side: str, qty_lots: int, limit_price_ticks: int | None = None) -> Walk:
        """What a marketable ``side`` order would fill, without changing the book."""
        if isinstance(qty_lots, bool) or not isinstance(qty_lots, int) or qty_lots <= 0:
            raise InvalidInput("qty_lots", qty_lots, "must be a positive int")
        book_side = "bid" if side == "sell" else "ask" if side == "buy" else None
        if book_side is None:
            raise InvalidInput("side", side, "must be 'buy' or 'sell'")
        filled = notional = 0
        worst = None
        touch = self._level(book_side, 0)[0]
        k = 0
        while filled < qty_lots and k < self.max_levels:
            price, lots = self._level(book_side, k)
            if price <= 0:
                break
            if limit_price_ticks is not None and (
                (side == "sell" and price < limit_price_ticks) or (side == "buy" and price > limit_price_ticks)
            ):
                break
            take = min(lots, qty_lots - filled)
            filled += take
            notional += take * price
            worst = price
            k += 1
        return Walk(side, qty_lots, filled, notional, worst, touch)

    def take(self, side: str, qty_lots: int, limit_price_ticks: int | None = None) -> Walk:
        """Fill like :meth:`walk` and remove the liquidity taken."""
        result = self.walk(side, qty_lots, limit_price_ticks)
        self._consumed["bid" if side == "sell" else "ask"] += result.filled_lots
        return result


def _book_side(side: str) -> str:
    if side in ("bid", "buy"):
        return "bid"
    if side in ("ask", "sell"):
        return "ask"
    raise InvalidInput("side", side, "must be 'bid'/'ask' (or 'buy'/'sell' for the resting side)")


__all__ = ["ResilientBook", "Walk"]
