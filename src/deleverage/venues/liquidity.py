"""The liquidity-source protocol the engine executes against, and adapters over the concrete books.

Two books exist: :class:`deleverage.venues.l2.L2Book` (replayed depth) and
:class:`deleverage.execution.book.ResilientBook` (simulated Obizhaeva–Wang book). Both offer
``best_bid()``/``best_ask()`` → ``(price_ticks, qty_lots) | None`` and ``walk``/``take(side,
qty_lots, limit_price_ticks)`` with ``side`` the *taker* side ("buy"/"sell"); they differ in the
walk's notional field (``notional`` vs ``notional_tick_lots``) and in ``levels`` (arrays vs list of
pairs). :func:`fill_of` and :func:`top_levels` read either; :class:`EmptyBook` is a source with no
liquidity (everything goes down the waterfall).

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


__all__ = ["BookFill", "EmptyBook", "LiquiditySource", "fill_of", "split_vwap", "top_levels"]
