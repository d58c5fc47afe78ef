"""The liquidity-source protocol the engine executes against, and adapters over the concrete books.

Two books exist: :class:`deleverage.venues.l2.L2Book` (replayed depth) and
:class:`deleverage.execution.book.ResilientBook` (simulated Obizhaeva–Wang book). Both offer
``best_bid()``/``best_ask()`` → ``(price_ticks, qty_lots) | None`` and ``walk``/``take(side,
qty_lots, limit_price_ticks)`` with ``side`` the *taker* side ("buy"/"sell"); they differ in the
walk's notional field (``notional`` vs ``notional_tick_lots``) and in ``levels`` (arrays vs list of
pairs). :func:`fill_of` and :func:`top_levels` read either; :class:`EmptyBook` is a source with no
liquidity (everything goes down the waterfall).

The depth curve: ``depth_within(book_side, limit_price_ticks, max_lots=None, max_levels=None)`` gives
every resting level of ``book_side`` at the limit or better (bids at or above it, asks at or below),
best first, as ``(price_ticks, lots)`` — everything that rests there, the modelled depth and any market
maker's quotes alike. It stops once ``max_lots`` lots are covered — the level that reaches them cut to
what is needed, exactly what a walk of ``max_lots`` to that limit would fill (deeper levels cannot be
marginal for that quantity) — or after ``max_levels`` levels. A batch auction reads its demand
(supply) from it (engine/batching.py); :func:`depth_curve` falls back to ``levels`` for a source
without the method.

Settlement of a walk across many levels: the ledger needs integer ticks, so a walk with ``Σ p·q = N``
over ``Q`` lots settles as at most two fills, ``Q − r`` lots at ``⌊N/Q⌋`` and ``r`` lots at
``⌊N/Q⌋ + 1`` (``r = N mod Q``): same lots, same Σ price×lots, exactly the walk's value for linear
contracts (:func:`split_vwap`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from deleverage.errors import InvalidInput


@runtime_checkable
class LiquiditySource(Protocol):
    """What the engine needs from a venue's book (``L2Book`` and ``ResilientBook`` both conform)."""

    def best_bid(self) -> tuple[int, int] | None: ...

    def best_ask(self) -> tuple[int, int] | None: ...

    def walk(self, side: str, qty_lots: int, limit_price_ticks: int | None = None) -> Any: ...

    def take(self, side: str, qty_lots: int, limit_price_ticks: int | None = None) -> Any: ...

    def levels(self, side: str, n: int) -> Any: ...

    def depth_within(self, book_side: str, limit_price_ticks: int, max_lots: int | None = None,
                     max_levels: int | None = None) -> list[tuple[int, int]]: ...


def check_depth_query(limit_price_ticks: object, max_lots: object, max_levels: object) -> int:
    """Validate the arguments of a ``depth_within`` call; returns the limit as an int."""
    if isinstance(limit_price_ticks, bool) or not isinstance(limit_price_ticks, int) or limit_price_ticks <= 0:
        raise InvalidInput("limit_price_ticks", limit_price_ticks, "must be an int number of ticks > 0")
    for name, value in (("max_lots", max_lots), ("max_levels", max_levels)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise InvalidInput(name, value, "must be a positive int or None")
    return int(limit_price_ticks)


def depth_curve(source: Any, book_side: str, limit_price_ticks: int, *, max_lots: int | None = None,
                max_levels: int | None = None) -> list[tuple[int, int]]:
    """``source.depth_within(...)``, or for a source without it the same curve read from ``levels``."""
    if book_side not in ("bid", "ask"):
        raise InvalidInput("book_side", book_side, "must be 'bid' or 'ask'")
    method = getattr(source, "depth_within", None)
    if method is not None:
        return [(int(p), int(q)) for p, q in method(book_side, limit_price_ticks, max_lots, max_levels)]
    limit = check_depth_query(limit_price_ticks, max_lots, max_levels)
    n = 64
    while True:
        levels = top_levels(source, book_side, n)
        out: list[tuple[int, int]] = []
        covered = 0
        for price, lots in levels:
            if (price < limit) if book_side == "bid" else (price > limit):
                return out
            if max_lots is not None and covered + lots >= max_lots:
                out.append((price, max_lots - covered))
                return out
            out.append((price, lots))
            covered += lots
            if max_levels is not None and len(out) >= max_levels:
                return out
        if len(levels) < n:
            return out
        n *= 4


@dataclass(frozen=True, slots=True)
class BookFill:
    """A walk/take result reduced to what settlement needs."""

    filled_lots: int
    notional_tick_lots: int  # Σ price_ticks × lots

    @property
    def vwap_ticks(self) -> float | None:
        return self.notional_tick_lots / self.filled_lots if self.filled_lots else None


def fill_of(walk: Any) -> BookFill:
    """The filled lots and Σ price×lots of either book's Walk."""
    filled = int(walk.filled_lots)
    notional = getattr(walk, "notional", None)
    if notional is None:
        notional = getattr(walk, "notional_tick_lots", None)
    if notional is None:
        raise InvalidInput("walk", type(walk).__name__, "has neither 'notional' nor 'notional_tick_lots'")
    return BookFill(filled, int(notional) if filled else 0)


def top_levels(source: Any, book_side: str, n: int) -> list[tuple[int, int]]:
    """The best ``n`` resting levels of ``book_side`` ("bid"/"ask") as (price_ticks, qty_lots) pairs."""
    if book_side not in ("bid", "ask"):
        raise InvalidInput("book_side", book_side, "must be 'bid' or 'ask'")
    raw = source.levels(book_side, n)
    if isinstance(raw, tuple) and len(raw) == 2 and hasattr(raw[0], "tolist"):
        prices, sizes = raw
        pairs = zip(prices.tolist(), sizes.tolist(), strict=True)
    else:
        pairs = raw
    return [(int(p), int(q)) for p, q in pairs if int(q) > 0 and int(p) > 0]


def split_vwap(fill: BookFill) -> list[tuple[int, int]]:
    """At most two (price_ticks, lots) fills with the walk's lots and Σ price×lots, exactly."""
    q, total = fill.filled_lots, fill.notional_tick_lots
    if q <= 0:
        return []
    low, r = divmod(total, q)
    out = [(low, q - r)] if q - r else []
    if r:
        out.append((low + 1, r))
    return out


class EmptyBook:
    """A liquidity source with nothing resting: every take fills zero."""

    def best_bid(self) -> tuple[int, int] | None:
        return None

    def best_ask(self) -> tuple[int, int] | None:
        return None

    def walk(self, side: str, qty_lots: int, limit_price_ticks: int | None = None) -> BookFill:
        if side not in ("buy", "sell"):
            raise InvalidInput("side", side, "must be 'buy' or 'sell'")
        return BookFill(0, 0)

    def take(self, side: str, qty_lots: int, limit_price_ticks: int | None = None) -> BookFill:
        return self.walk(side, qty_lots, limit_price_ticks)

    def levels(self, side: str, n: int) -> list[tuple[int, int]]:
        return []

    def depth_within(self, book_side: str, limit_price_ticks: int, max_lots: int | None = None,
                     max_levels: int | None = None) -> list[tuple[int, int]]:
        check_depth_query(limit_price_ticks, max_lots, max_levels)
        return []


__all__ = [
    "BookFill",
    "EmptyBook",
    "LiquiditySource",
    "check_depth_query",
    "depth_curve",
    "fill_of",
    "split_vwap",
    "top_levels",
]
