"""Price-time priority limit order book (CLOB) on integer ticks and lots.

Why it exists: liquidation flow is executed against a venue's book, so the lab needs a matching
engine whose fills are exact and reproducible. The book is pure: no I/O, no accounts ledger; fills
are returned in each :class:`SubmitResult` and, optionally, emitted through ``on_fill`` in the order
they happen (``Fill.seq`` counts from 1 per book), once the submission is fully applied to the book.

Rules, as venues document them:

- Matching walks the opposite side best price first, and within a price level oldest first. A fill
  prints at the maker's (resting order's) price.
- ``type="market"`` never rests: its remainder is cancelled (IOC); an optional ``price_ticks`` on a
  market order is a protection limit beyond which it does not trade. ``time_in_force="FOK"`` is
  honoured for market orders too.
- ``time_in_force``: ``GTC`` rests the remainder, ``IOC`` cancels it, ``FOK`` first checks, without
  changing the book, that the whole quantity can fill (self-trade prevention included) and is
  rejected otherwise.
- ``post_only``: an order that would take liquidity is rejected (Binance ``timeInForce=GTX``).
- ``reduce_only``: the account's signed position (lots, long > 0) comes from ``position_of``; the
  order is capped at the position size at submission (the excess is cancelled, reason
  ``reduce_only_capped``) and rejected if it would only increase or open a position.
- Self-trade prevention follows the *taker's* mode, as Binance USDⓈ-M futures does
  (developers.binance.com/docs/derivatives/usds-margined-futures/faq/stp-faq): ``cancel_taker``
  (EXPIRE_TAKER, default) expires the taker's remainder; ``cancel_maker`` (EXPIRE_MAKER) expires the
  resting order and goes on matching; ``cancel_both`` (EXPIRE_BOTH) expires both; ``none`` lets the
  account trade with itself. Orders without an ``account_id`` never trigger STP.
- ``amend``: reducing the open quantity keeps time priority; raising it or changing the price loses
  it (the order goes to the back of its level), as on CME/Binance. An amend never trades: a new
  price that would cross the opposite side is rejected (reason ``amend_would_cross``), order intact.

Business outcomes (post-only would cross, FOK not fillable, STP) are statuses with reasons; malformed
input raises :class:`~deleverage.errors.InvalidInput` naming the field, and leaves the book unchanged.
Per order, ``submitted = filled + resting + cancelled`` always holds.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral
from typing import Literal, NamedTuple

from deleverage.errors import InvalidInput
from deleverage.venues._match_kernels import (
    FILL_DTYPE,
    MAKER_CANCEL_DTYPE,
    OP_RESULT_DTYPE,
    ORDER_TYPES,
    REASONS,
    SIDES,
    STATUSES,
    STP_MODES,
    TIMES_IN_FORCE,
    ArrayOrderBook,
    BatchResult,
)

Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market"]
TimeInForce = Literal["GTC", "IOC", "FOK"]
StpMode = Literal["cancel_taker", "cancel_maker", "cancel_both", "none"]
Status = Literal["resting", "partially_filled", "filled", "cancelled", "rejected", "amended"]


@dataclass(frozen=True, slots=True)
class Order:
    """An order as submitted. ``price_ticks`` is the limit (or the protection limit of a market order)."""

    order_id: int
    side: Side
    qty_lots: int
    price_ticks: int | None = None
    type: OrderType = "limit"
    time_in_force: TimeInForce = "GTC"
    post_only: bool = False
    reduce_only: bool = False
    account_id: str | None = None
    stp: StpMode = "cancel_taker"


class Fill(NamedTuple):
    """One match between an incoming (taker) order and a resting (maker) order, at the maker's price."""

    taker_order_id: int
    maker_order_id: int
    taker_account: str | None
    maker_account: str | None
    price_ticks: int
    qty_lots: int
    taker_side: Side
    seq: int


class SubmitResult(NamedTuple):
    """What became of one submission; ``cancelled_makers`` lists (order_id, lots) expired by STP."""

    order_id: int
    status: Status
    fills: tuple[Fill, ...]
    resting_lots: int
    cancelled_lots: int
    reason: str | None
    cancelled_makers: tuple[tuple[int, int], ...] = ()


class AmendResult(NamedTuple):
    """Outcome of an amend: ``priority_kept`` is False when the order went to the back of its level."""

    order_id: int
    status: Status
    reason: str | None
    priority_kept: bool


class RestingOrder(NamedTuple):
    """Read-only view of a live order."""

    order_id: int
    side: Side
    price_ticks: int
    open_lots: int
    account_id: str | None


class _Live:
    """Mutable state of a resting order (kept small: it is on the hot path)."""

    __slots__ = ("account_id", "open_lots", "order_id", "price_ticks", "side")

    def __init__(
        self, order_id: int, side: Side, price_ticks: int, open_lots: int, account: str | None
    ) -> None:
        self.order_id = order_id
        self.side = side
        self.price_ticks = price_ticks
        self.open_lots = open_lots
        self.account_id = account


class _BookSide:
    """One side: price → FIFO of live orders, and a sorted key list whose last item is the best.

    Keys are ``price * sign`` (bids +1, asks −1) so the best price is always ``keys[-1]``.
    """

    __slots__ = ("keys", "levels", "sign")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.levels: dict[int, OrderedDict[int, _Live]] = {}
        self.keys: list[int] = []

    def best(self) -> int | None:
        return self.keys[-1] * self.sign if self.keys else None

    def add(self, live: _Live) -> None:
        level = self.levels.get(live.price_ticks)
        if level is None:
            level = self.levels[live.price_ticks] = OrderedDict()
            bisect.insort(self.keys, live.price_ticks * self.sign)
        level[live.order_id] = live

    def remove(self, live: _Live) -> None:
        level = self.levels[live.price_ticks]
        del level[live.order_id]
        if not level:
            self.drop_level(live.price_ticks)

    def drop_level(self, price_ticks: int) -> None:
        del self.levels[price_ticks]
        key = price_ticks * self.sign
        if self.keys[-1] == key:
            self.keys.pop()
        else:
            del self.keys[bisect.bisect_left(self.keys, key)]

    def crosses(self, limit_ticks: int | None) -> bool:
        """True if the best price here would trade with an opposite order limited at limit_ticks."""
        if not self.keys:
            return False
        return limit_ticks is None or self.keys[-1] >= limit_ticks * self.sign


def _require_int(value: object, field: str, *, positive: bool = True) -> int:
    if type(value) is int:
        number = value
    elif isinstance(value, Integral) and not isinstance(value, bool):
        number = int(value)
    elif isinstance(value, float) and math.isnan(value):
        raise InvalidInput(field, value, "is NaN; expected an integer")
    elif isinstance(value, float) and field == "price_ticks":
        raise InvalidInput(field, value, "is off the tick grid; prices are integer ticks")
    else:
        raise InvalidInput(field, value, "must be an integer")
    if positive and number <= 0:
        raise InvalidInput(field, value, "must be > 0")
    return number


def validate_order(order: Order) -> None:
    """Refuse malformed orders by field name (business rules are checked by the book, not here)."""
    if not isinstance(order, Order):
        raise InvalidInput("order", order, "must be an Order")
    _require_int(order.order_id, "order_id", positive=False)
    if order.order_id < 0:
        raise InvalidInput("order_id", order.order_id, "must be >= 0")
    if order.side not in SIDES:
        raise InvalidInput("side", order.side, "must be 'buy' or 'sell'")
    _require_int(order.qty_lots, "qty_lots")
    if order.type not in ORDER_TYPES:
        raise InvalidInput("type", order.type, "must be 'limit' or 'market'")
    if order.time_in_force not in TIMES_IN_FORCE:
        raise InvalidInput("time_in_force", order.time_in_force, "must be 'GTC', 'IOC' or 'FOK'")
    if order.stp not in STP_MODES:
        raise InvalidInput("stp", order.stp, f"must be one of {STP_MODES}")
    if order.type == "limit" or order.price_ticks is not None:
        _require_int(order.price_ticks, "price_ticks")
    if order.post_only and (order.type != "limit" or order.time_in_force != "GTC"):
        raise InvalidInput("post_only", order.post_only, "only a GTC limit order can be post-only")


class OrderBook:
    """Price-time priority book for one symbol; see the module docstring for the rules."""

    def __init__(
        self,
        symbol: str = "BTCUSDT",
        *,
        position_of: Callable[[str], int] | None = None,
        on_fill: Callable[[Fill], None] | None = None,
    ) -> None:
        self.symbol = symbol
        self._position_of = position_of
        self._on_fill = on_fill
        self._bids = _BookSide(1)
        self._asks = _BookSide(-1)
        self._live: dict[int, _Live] = {}
        self._used_ids: set[int] = set()
        self._seq = 0

    # ----------------------------------------------------------------- queries
    def best_bid(self) -> int | None:
        """Highest bid price in ticks, or None on an empty side."""
        return self._bids.best()

    def best_ask(self) -> int | None:
        """Lowest ask price in ticks, or None on an empty side."""
        return self._asks.best()

    def depth(self, side: Side, levels: int = 10) -> list[tuple[int, int]]:
        """The best ``levels`` price levels of one side as (price_ticks, total open lots)."""
        book = self._side(side, "side")
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 0:
            raise InvalidInput("levels", levels, "must be an integer >= 0")
        out = []
        for key in reversed(book.keys[len(book.keys) - levels :] if levels else []):
            price = key * book.sign
            out.append((price, sum(o.open_lots for o in book.levels[price].values())))
        return out

    def order(self, order_id: int) -> RestingOrder | None:
        """The live order with that id, or None if it is not (or no longer) resting."""
        live = self._live.get(order_id)
        if live is None:
            return None
        return RestingOrder(
            live.order_id, live.side, live.price_ticks, live.open_lots, live.account_id
        )

    def level_queue(self, side: Side, price_ticks: int) -> list[int]:
        """Order ids resting at one price, in time priority (front first)."""
        level = self._side(side, "side").levels.get(price_ticks)
        return list(level) if level else []

    def live_order_ids(self) -> list[int]:
        """Ids of all resting orders, ascending."""
        return sorted(self._live)

    def __len__(self) -> int:
        return len(self._live)

    def digest(self) -> tuple:
        """A hashable picture of the whole state (both sides in priority order, sequence, used ids)."""
        sides = []
        for book in (self._bids, self._asks):
            sides.append(
                tuple(
                    (
                        key * book.sign,
                        tuple(
                            (o.order_id, o.open_lots, o.account_id)
                            for o in book.levels[key * book.sign].values()
                        ),
                    )
                    for key in reversed(book.keys)
                )
            )
        return (tuple(sides), self._seq, frozenset(self._used_ids))

    # ---------------------------------------------------------------- commands
    def submit(self, order: Order) -> SubmitResult:
        """Match an order against the book, rest what a GTC limit leaves, and report what happened."""
        validate_order(order)
        order_id = order.order_id
        if order_id in self._used_ids:
            raise InvalidInput("order_id", order_id, "was already used on this book")
        qty, cancelled, reason = order.qty_lots, 0, None
        if order.reduce_only:
            qty, cancelled, reason = self._reduce_only_cap(order)
            if qty == 0:
                return self._rejected(order, "reduce_only_would_increase")
        limit = order.price_ticks
        opposite = self._asks if order.side == "buy" else self._bids
        if order.post_only and opposite.crosses(limit):
            return self._rejected(order, "post_only_would_cross")
        if order.time_in_force == "FOK" and self._fillable_lots(order, opposite, limit, qty) < qty:
            return self._rejected(order, "fok_not_fillable")
        self._used_ids.add(order_id)
        fills, remaining, stp_hit, makers = self._match(order, opposite, limit, qty)
        resting = 0
        if remaining:
            if stp_hit or order.type == "market" or order.time_in_force != "GTC":
                cancelled += remaining
                reason = reason or "ioc_remainder"
            else:
                resting = remaining
                live = _Live(order_id, order.side, limit, remaining, order.account_id)  # type: ignore[arg-type]
                self._live[order_id] = live
                (self._bids if order.side == "buy" else self._asks).add(live)
        if stp_hit or makers:
            reason = "self_trade_prevention"
        status = _status(bool(fills), resting, cancelled)
        if self._on_fill is not None:  # only once the book is whole: a raising listener cannot tear it
            for fill in fills:
                self._on_fill(fill)
        return SubmitResult(
            order_id, status, tuple(fills), resting, cancelled, reason, tuple(makers)
        )

    def cancel(self, order_id: int) -> int:
        """Cancel a live order; returns the lots cancelled. An id that is not live is an error."""
        live = self._live_order(order_id)
        self._side(live.side, "side").remove(live)
        del self._live[order_id]
        return live.open_lots

    def amend(
        self, order_id: int, *, qty_lots: int | None = None, price_ticks: int | None = None
    ) -> AmendResult:
        """Change a live order's open quantity and/or price (see the module docstring for priority)."""
        live = self._live_order(order_id)
        new_qty = live.open_lots if qty_lots is None else _require_int(qty_lots, "qty_lots")
        new_price = (
            live.price_ticks if price_ticks is None else _require_int(price_ticks, "price_ticks")
        )
        book = self._side(live.side, "side")
        opposite = self._asks if live.side == "buy" else self._bids
        if new_price != live.price_ticks and opposite.crosses(new_price):
            return AmendResult(order_id, "rejected", "amend_would_cross", True)
        if new_price == live.price_ticks and new_qty <= live.open_lots:
            live.open_lots = new_qty
            return AmendResult(order_id, "amended", None, True)
        book.remove(live)
        live.open_lots, live.price_ticks = new_qty, new_price
        book.add(live)
        return AmendResult(order_id, "amended", None, False)

    # ---------------------------------------------------------------- internals
    def _side(self, side: str, field: str) -> _BookSide:
        if side == "buy":
            return self._bids
        if side == "sell":
            return self._asks
        raise InvalidInput(field, side, "must be 'buy' or 'sell'")

    def _live_order(self, order_id: int) -> _Live:
        try:
            live = self._live.get(order_id)
        except TypeError:
            live = None
        if live is None or isinstance(order_id, (bool, float)):
            raise InvalidInput("order_id", order_id, "is not a live order on this book")
        return live

    def _rejected(self, order: Order, reason: str) -> SubmitResult:
        return SubmitResult(order.order_id, "rejected", (), 0, order.qty_lots, reason)

    def _reduce_only_cap(self, order: Order) -> tuple[int, int, str | None]:
        """Cap a reduce-only order at the account's position; (0, qty, _) means it would increase it."""
        if self._position_of is None:
            raise InvalidInput("reduce_only", True, "this book has no position_of callback")
        if order.account_id is None:
            raise InvalidInput("account_id", None, "a reduce-only order needs an account")
        position_lots = _require_int(
            self._position_of(order.account_id), "position_lots", positive=False
        )
        reducible = position_lots if order.side == "sell" else -position_lots
        if reducible <= 0:
            return 0, order.qty_lots, None
        if order.qty_lots > reducible:
            return reducible, order.qty_lots - reducible, "reduce_only_capped"
        return order.qty_lots, 0, None

    def _fillable_lots(self, order: Order, opposite: _BookSide, limit: int | None, qty: int) -> int:
        """Lots that matching would fill, computed without touching the book (for FOK)."""
        account, stp = order.account_id, order.stp
        total = 0
        for key in reversed(opposite.keys):
            if limit is not None and key < limit * opposite.sign:
                break
            for maker in opposite.levels[key * opposite.sign].values():
                if account is not None and stp != "none" and maker.account_id == account:
                    if stp == "cancel_maker":
                        continue
                    return total
                total += maker.open_lots
                if total >= qty:
                    return total
        return total

    def _match(
        self, order: Order, opposite: _BookSide, limit: int | None, qty: int
    ) -> tuple[list[Fill], int, bool, list[tuple[int, int]]]:
        fills: list[Fill] = []
        makers: list[tuple[int, int]] = []
        account, side, taker_id = order.account_id, order.side, order.order_id
        check_stp = account is not None and order.stp != "none"
        keys, levels, live_orders = opposite.keys, opposite.levels, self._live
        limit_key = None if limit is None else limit * opposite.sign
        remaining, stp_hit = qty, False
        while remaining and keys and (limit_key is None or keys[-1] >= limit_key):
            price = keys[-1] * opposite.sign
            level = levels[price]
            while remaining and level:
                maker = next(iter(level.values()))
                if check_stp and maker.account_id == account:
                    if order.stp != "cancel_taker":
                        level.popitem(last=False)
                        del live_orders[maker.order_id]
                        makers.append((maker.order_id, maker.open_lots))
                    if order.stp != "cancel_maker":
                        stp_hit = True
                        break
                    continue
                lots = remaining if remaining < maker.open_lots else maker.open_lots
                self._seq += 1
                fill = Fill(
                    taker_id,
                    maker.order_id,
                    account,
                    maker.account_id,
                    price,
                    lots,
                    side,
                    self._seq,
                )
                fills.append(fill)
                remaining -= lots
                maker.open_lots -= lots
                if not maker.open_lots:
                    level.popitem(last=False)
                    del live_orders[maker.order_id]
            if not level:
                del levels[price]
                keys.pop()
            if stp_hit:
                break
        return fills, remaining, stp_hit, makers


def _status(filled: bool, resting: int, cancelled: int) -> Status:
    if resting:
        return "partially_filled" if filled else "resting"
    return "cancelled" if cancelled else "filled"


__all__ = [
    "FILL_DTYPE",
    "MAKER_CANCEL_DTYPE",
    "OP_RESULT_DTYPE",
    "ORDER_TYPES",
    "REASONS",
    "SIDES",
    "STATUSES",
    "STP_MODES",
    "TIMES_IN_FORCE",
    "AmendResult",
    "ArrayOrderBook",
    "BatchResult",
    "Fill",
    "Order",
    "OrderBook",
    "RestingOrder",
    "SubmitResult",
    "validate_order",
]
