"""Uniform-price call auction: every order of one interval clears at one price.

The rule (frequent batch auctions, Budish–Cramton–Shim 2015; exchange opening/closing crosses; the BNB
Beacon Chain DEX match, docs ``match-examples.md``), applied to the candidate prices — the limit
prices present in the book:

1. maximise executable volume ``min(demand(p), supply(p))``;
2. then minimise the absolute surplus ``|demand(p) - supply(p)|``;
3. then market pressure: a surplus all on the buy side takes the highest remaining price, all on the
   sell side the lowest (optionally bounded by a band around the reference, ``pressure_band_ppm``,
   as the BNB DEX does);
4. then the reference price (the last clearing price or the mark): the reference itself when it lies
   in the remaining range, else the remaining candidate closest to it. Without a reference the
   midpoint of the remaining range is used (BCS's rule), rounded to a whole tick half-to-even.

``tie_break="midpoint"`` applies BCS's midpoint-of-range rule right after step 2 instead.
Every price in the remaining range gives the maximal volume, so steps 3–4 never cost volume.

Allocation: the short side fills fully. The long side fills in price priority (market orders first);
the marginal price level — where cumulative quantity reaches the volume — is rationed. With
``rationing="pro_rata"`` (default) each order there gets ``floor(R · q / Q)`` lots and the leftover
lots go one at a time by largest remainder, ties by input order (earlier first): the largest-remainder
rule is the closest integer allocation to the exact pro-rata share, and input order is the only
deterministic, size-neutral tiebreak available. ``rationing="time"`` fills the marginal level in
input order (price-time priority). When the clearing price is a limit price of the long side the
marginal level is the clearing price itself: orders strictly better fill fully.

Prices are integer ticks (fast vectorised path) or Decimals/floats (converted once via ``repr``).
Quantities are integer lots when ``lot`` is None; with ``lot`` every quantity must be a multiple.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from deleverage.core.money import Number, to_decimal
from deleverage.errors import InvalidInput

TieBreak = Literal["reference", "midpoint"]
Rationing = Literal["pro_rata", "time"]
Price = int | Decimal
Quantity = int | Decimal
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_PRICE_LIMIT = 2**62
_QTY_LIMIT = 2**62
_FLOAT_EXACT = 2**53
_TIE_BREAKS = ("reference", "midpoint")
_RATIONINGS = ("pro_rata", "time")


@dataclass(frozen=True, slots=True)
class TickAuctionResult:
    """Outcome of :func:`clear_ticks`: price in ticks, quantities in lots, fills as int64 arrays."""

    price_ticks: int | None
    volume_lots: int
    surplus_lots: int
    buy_fill_lots: IntArray
    sell_fill_lots: IntArray


@dataclass(frozen=True, slots=True)
class AuctionResult:
    """Outcome of :func:`clear`; ``surplus`` is buy minus sell at ``price``, fills in input order."""

    price: Price | None
    volume: Quantity
    surplus: Quantity
    buy_fills: tuple[Quantity, ...]
    sell_fills: tuple[Quantity, ...]



def _check_options(tie_break: str, rationing: str, pressure_band_ppm: int | None) -> None:
    if tie_break not in _TIE_BREAKS:
        raise InvalidInput("tie_break", tie_break, f"must be one of {_TIE_BREAKS}")
    if rationing not in _RATIONINGS:
        raise InvalidInput("rationing", rationing, f"must be one of {_RATIONINGS}")
    if pressure_band_ppm is not None and (
        isinstance(pressure_band_ppm, bool)
        or not isinstance(pressure_band_ppm, int)
        or not 0 <= pressure_band_ppm < 1_000_000
    ):
        raise InvalidInput("pressure_band_ppm", pressure_band_ppm, "must be an int in [0, 1e6)")


def _as_int_array(values: object, field: str) -> IntArray:
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise InvalidInput(field, getattr(array, "dtype", type(values)), "must be a 1-d integer array")
    return array.astype(np.int64, copy=False)


def _check_side(prices: IntArray, qtys: IntArray, market: IntArray | None, side: str) -> None:
    if prices.shape != qtys.shape or (market is not None and market.shape != prices.shape):
        raise InvalidInput(f"{side}_qty_lots", qtys.shape, "arrays of one side must have one length")
    if qtys.size and int(qtys.min()) <= 0:
        at = int(np.argmax(qtys <= 0))
        raise InvalidInput(f"{side}[{at}].qty", int(qtys[at]), "must be > 0")
    bad = (prices <= 0) | (prices >= _PRICE_LIMIT)
    if market is not None:
        bad &= ~market.astype(bool)
    if bad.any():
        at = int(np.argmax(bad))
        raise InvalidInput(f"{side}[{at}].price", int(prices[at]), "ticks must be in (0, 2**62)")



def _level_sums(keys: IntArray, qtys: IntArray, nb: int) -> tuple[IntArray, IntArray, IntArray]:
    """Distinct prices (ascending) and the bid and ask quantity resting at each."""
    if keys.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    low, high = int(keys.min()), int(keys.max())
    exact_float = int(qtys.sum()) < _FLOAT_EXACT
    if high - low <= 4 * keys.size + 1024 and exact_float:
        index = keys - low  # dense tick range: counting sort, no comparison sort at all
        bid = np.bincount(index[:nb], weights=qtys[:nb], minlength=high - low + 1)
        ask = np.bincount(index[nb:], weights=qtys[nb:], minlength=high - low + 1)
        present = np.flatnonzero(np.bincount(index, minlength=high - low + 1))
        return present + low, bid[present].astype(np.int64), ask[present].astype(np.int64)
    levels, inverse = np.unique(keys, return_inverse=True)
    if exact_float:
        bid = np.bincount(inverse[:nb], weights=qtys[:nb], minlength=levels.size).astype(np.int64)
        ask = np.bincount(inverse[nb:], weights=qtys[nb:], minlength=levels.size).astype(np.int64)
    else:
        bid = np.zeros(levels.size, dtype=np.int64)
        ask = np.zeros(levels.size, dtype=np.int64)
        np.add.at(bid, inverse[:nb], qtys[:nb])
        np.add.at(ask, inverse[nb:], qtys[nb:])
    return levels.astype(np.int64), bid, ask



def _round_tick(value: Fraction, direction: str) -> int:
    if direction == "up":
        return -((-value.numerator) // value.denominator)
    if direction == "down":
        return value.numerator // value.denominator
    return round(value)  # half to even: unbiased over many auctions


def _choose_price(
    low: Fraction,
    high: Fraction,
    surplus_signs: set[int],
    reference: Fraction | None,
    tie_break: str,
    band_ppm: int | None,
    integral: bool,
) -> Fraction:
    """Steps 3–4 on the remaining range [low, high] (already max volume, min |surplus|)."""

    def snap(value: Fraction, direction: str) -> Fraction:
        return Fraction(_round_tick(value, direction)) if integral else value

    if low == high:
        return low
    if tie_break == "midpoint":
        return snap((low + high) / 2, "nearest")
    if surplus_signs == {1}:  # buying pressure
        if reference is None or band_ppm is None:
            return high
        upper = snap(reference * (1_000_000 + band_ppm) / 1_000_000, "up")
        return high if high < upper else low if low > upper else upper
    if surplus_signs == {-1}:  # selling pressure
        if reference is None or band_ppm is None:
            return low
        lower = snap(reference * (1_000_000 - band_ppm) / 1_000_000, "down")
        return low if low > lower else high if high < lower else lower
    if reference is None:
        return snap((low + high) / 2, "nearest")
    return min(max(reference, low), high)



def _ration(qtys: IntArray, target: int, rationing: str) -> IntArray:
    """Split ``target`` lots over orders ``qtys`` (input order) of the marginal level."""
    total = int(qtys.sum())
    if target >= total:
        return qtys.copy()
    if rationing == "time":
        before = np.cumsum(qtys) - qtys
        return np.clip(target - before, 0, qtys)
    if target * int(qtys.max()) < _PRICE_LIMIT:
        scaled = qtys * target
        base, remainder = scaled // total, scaled % total
    else:  # exact big-int fallback for huge books
        pairs = [divmod(int(q) * target, total) for q in qtys]
        base = np.array([p[0] for p in pairs], dtype=np.int64)
        remainder = np.array([p[1] for p in pairs], dtype=object)
    leftover = target - int(base.sum())
    if leftover:  # largest remainder first, ties by input order
        if remainder.dtype == object:
            order = sorted(range(qtys.size), key=lambda i: (-int(remainder[i]), i))[:leftover]
        else:
            order = np.lexsort((np.arange(qtys.size), -remainder))[:leftover]
        base[np.asarray(order, dtype=np.int64)] += 1
    return base.astype(np.int64)


def _fill_side(
    keys: IntArray, qtys: IntArray, market: BoolArray, eligible: BoolArray, volume: int,
    level_keys: IntArray, level_qty: IntArray, *, is_bid: bool, rationing: str,
) -> IntArray:
    """Fill one side up to ``volume`` in price priority: market orders, then best levels first.

    ``level_keys``/``level_qty`` are this side's eligible price levels, best first.
    """
    fills = np.zeros(keys.size, dtype=np.int64)
    if volume == 0:
        return fills
    market_qty = int(qtys[market].sum())
    if market_qty >= volume:
        fills[market] = _ration(qtys[market], volume, rationing)
        return fills
    fills[market] = qtys[market]
    remaining = volume - market_qty
    limit_ok = eligible & ~market
    cumulative = np.cumsum(level_qty)
    if int(cumulative[-1]) <= remaining:
        fills[limit_ok] = qtys[limit_ok]
        return fills
    marginal = int(np.searchsorted(cumulative, remaining, side="left"))
    marginal_key = int(level_keys[marginal])
    before = int(cumulative[marginal - 1]) if marginal else 0
    better = limit_ok & ((keys > marginal_key) if is_bid else (keys < marginal_key))
    fills[better] = qtys[better]
    at_level = np.flatnonzero(limit_ok & (keys == marginal_key))
    fills[at_level] = _ration(qtys[at_level], remaining - before, rationing)
    return fills


@dataclass(frozen=True, slots=True)
class _Book:
    """One batch in key space: keys order like prices; market orders flagged, not priced."""

    bid_keys: IntArray
    bid_qty: IntArray
    bid_market: BoolArray
    ask_keys: IntArray
    ask_qty: IntArray
    ask_market: BoolArray


def _clear_book(
    book: _Book,
    value_of: Callable[[int], Fraction],
    key_of: Callable[[Fraction], int],
    reference: Fraction | None,
    *,
    integral: bool,
    tie_break: str,
    rationing: str,
    band_ppm: int | None,
) -> tuple[Fraction | None, int, int, IntArray, IntArray]:
    """Choose the price, then allocate; returns (price, volume, surplus, buy fills, sell fills)."""
    bid_limit, ask_limit = ~book.bid_market, ~book.ask_market
    keys = np.concatenate([book.bid_keys[bid_limit], book.ask_keys[ask_limit]])
    qtys = np.concatenate([book.bid_qty[bid_limit], book.ask_qty[ask_limit]])
    levels, bid_level, ask_level = _level_sums(keys, qtys, int(bid_limit.sum()))
    market_bid = int(book.bid_qty[book.bid_market].sum())
    market_ask = int(book.ask_qty[book.ask_market].sum())
    no_fill = (np.zeros(book.bid_keys.size, np.int64), np.zeros(book.ask_keys.size, np.int64))
    if levels.size == 0:  # market orders only: the reference is the only price there is
        if reference is None or not (market_bid and market_ask):
            return None, 0, 0, *no_fill
        price = reference
    else:
        demand = market_bid + int(bid_level.sum()) - np.cumsum(bid_level) + bid_level
        supply = market_ask + np.cumsum(ask_level)
        volume_at = np.minimum(demand, supply)
        best = int(volume_at.max())
        if best == 0:
            return None, 0, 0, *no_fill
        surplus_at = demand - supply
        tied = np.flatnonzero(volume_at == best)
        least = int(np.abs(surplus_at[tied]).min())
        tied = tied[np.abs(surplus_at[tied]) == least]
        signs = {int(s) for s in np.sign(surplus_at[tied])}
        low, high = value_of(int(levels[tied[0]])), value_of(int(levels[tied[-1]]))
        price = _choose_price(low, high, signs, reference, tie_break, band_ppm, integral)
    price_key = key_of(price)
    bid_ok = book.bid_market | (book.bid_keys >= price_key)
    ask_ok = book.ask_market | (book.ask_keys <= price_key)
    demand_p = int(book.bid_qty[bid_ok].sum())
    supply_p = int(book.ask_qty[ask_ok].sum())
    volume = min(demand_p, supply_p)
    bid_side = (levels >= price_key) & (bid_level > 0)
    ask_side = (levels <= price_key) & (ask_level > 0)
    buy = _fill_side(
        book.bid_keys, book.bid_qty, book.bid_market, bid_ok, volume,
        levels[bid_side][::-1], bid_level[bid_side][::-1], is_bid=True, rationing=rationing,
    )
    sell = _fill_side(
        book.ask_keys, book.ask_qty, book.ask_market, ask_ok, volume,
        levels[ask_side], ask_level[ask_side], is_bid=False, rationing=rationing,
    )
    return price, volume, demand_p - supply_p, buy, sell



def clear_ticks(
    bid_price_ticks: npt.ArrayLike,
    bid_qty_lots: npt.ArrayLike,
    ask_price_ticks: npt.ArrayLike,
    ask_qty_lots: npt.ArrayLike,
    *,
    bid_market: npt.ArrayLike | None = None,
    ask_market: npt.ArrayLike | None = None,
    reference_price_ticks: int | None = None,
    tie_break: TieBreak = "reference",
    rationing: Rationing = "pro_rata",
    pressure_band_ppm: int | None = None,
) -> TickAuctionResult:
    """Vectorised clearing of integer books (prices in ticks, sizes in lots); no Python loop per order.

    ``bid_market``/``ask_market`` flag market orders (their price entry is ignored).
    """
    _check_options(tie_break, rationing, pressure_band_ppm)
    bid_keys = _as_int_array(bid_price_ticks, "bid_price_ticks")
    ask_keys = _as_int_array(ask_price_ticks, "ask_price_ticks")
    bid_qty = _as_int_array(bid_qty_lots, "bid_qty_lots")
    ask_qty = _as_int_array(ask_qty_lots, "ask_qty_lots")
    bid_flags = np.zeros(bid_keys.size, bool) if bid_market is None else np.asarray(bid_market, bool)
    ask_flags = np.zeros(ask_keys.size, bool) if ask_market is None else np.asarray(ask_market, bool)
    _check_side(bid_keys, bid_qty, bid_flags, "bids")
    _check_side(ask_keys, ask_qty, ask_flags, "asks")
    if int(bid_qty.sum()) >= _QTY_LIMIT or int(ask_qty.sum()) >= _QTY_LIMIT:
        raise InvalidInput("qty", "sum", "total size of one side must stay below 2**62 lots")
    reference = None
    if reference_price_ticks is not None:
        if isinstance(reference_price_ticks, bool) or not isinstance(reference_price_ticks, int | np.integer):
            raise InvalidInput("reference_price_ticks", reference_price_ticks, "must be an int")
        reference = Fraction(int(reference_price_ticks))
    book = _Book(bid_keys, bid_qty, bid_flags, ask_keys, ask_qty, ask_flags)
    price, volume, surplus, buy, sell = _clear_book(
        book, Fraction, int, reference, integral=True,
        tie_break=tie_break, rationing=rationing, band_ppm=pressure_band_ppm,
    )
    return TickAuctionResult(None if price is None else int(price), volume, surplus, buy, sell)


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _split_orders(orders: Sequence[tuple[object, object]], side: str) -> tuple[list[object], list[object]]:
    prices: list[object] = []
    qtys: list[object] = []
    for i, order in enumerate(orders):
        if not isinstance(order, tuple | list | np.ndarray) or len(order) != 2:
            raise InvalidInput(f"{side}[{i}]", order, "must be a (price, qty) pair")
        prices.append(order[0])
        qtys.append(order[1])
    return prices, qtys


def _parse_qtys(qtys: list[object], lot: Decimal | None, side: str) -> IntArray:
    """Sizes as integer lot counts; refuses zero, negative and off-lot sizes."""
    lots: list[int] = []
    for i, qty in enumerate(qtys):
        field = f"{side}[{i}].qty"
        if lot is None:
            if not _is_int(qty):
                raise InvalidInput(field, qty, "must be an int number of lots when lot is None")
            count = int(qty)  # type: ignore[call-overload]
        else:
            ratio = to_decimal(qty, field) / lot  # type: ignore[arg-type]
            if ratio != ratio.to_integral_value():
                raise InvalidInput(field, qty, f"is not a multiple of lot {lot}")
            count = int(ratio)
        if count <= 0:
            raise InvalidInput(field, qty, "must be > 0")
        lots.append(count)
    return np.array(lots, dtype=np.int64) if lots else np.zeros(0, np.int64)


def clear(
    bids: Sequence[tuple[object, object]] | npt.NDArray[np.integer],
    asks: Sequence[tuple[object, object]] | npt.NDArray[np.integer],
    *,
    reference_price: Number | None = None,
    lot: Number | None = None,
    tie_break: TieBreak = "reference",
    rationing: Rationing = "pro_rata",
    pressure_band_ppm: int | None = None,
) -> AuctionResult:
    """Clear one batch: ``bids``/``asks`` are (price, qty) with price None for a market order.

    Integer prices are ticks; any Decimal/float price switches the batch to exact decimal prices.
    ``reference_price`` is in the unit of the prices (ticks when they are ints). ``lot`` None means
    quantities are integer lots; otherwise each quantity must be a multiple of ``lot``.
    An (n, 2) integer numpy array per side takes a fast path (no market orders there).
    """
    _check_options(tie_break, rationing, pressure_band_ppm)
    lot_decimal = None if lot is None else to_decimal(lot, "lot")
    if lot_decimal is not None and lot_decimal <= 0:
        raise InvalidInput("lot", lot, "must be > 0")
    if lot is None and not (_is_fast(bids) and _is_fast(asks)):
        bids, asks = _try_int_matrix(bids), _try_int_matrix(asks)
    if _is_fast(bids) and _is_fast(asks) and lot is None:
        fast = clear_ticks(
            bids[:, 0], bids[:, 1], asks[:, 0], asks[:, 1],  # type: ignore[call-overload]
            reference_price_ticks=None if reference_price is None else _integral_reference(reference_price),
            tie_break=tie_break, rationing=rationing, pressure_band_ppm=pressure_band_ppm,
        )
        return AuctionResult(
            fast.price_ticks, fast.volume_lots, fast.surplus_lots,
            tuple(fast.buy_fill_lots.tolist()), tuple(fast.sell_fill_lots.tolist()),
        )
    bid_prices, bid_sizes = _split_orders(bids, "bids")  # type: ignore[arg-type]
    ask_prices, ask_sizes = _split_orders(asks, "asks")  # type: ignore[arg-type]
    bid_qty = _parse_qtys(bid_sizes, lot_decimal, "bids")
    ask_qty = _parse_qtys(ask_sizes, lot_decimal, "asks")
    integral = all(p is None or _is_int(p) for p in bid_prices + ask_prices)
    parsed = _PriceSpace(bid_prices, ask_prices, integral)
    reference = None if reference_price is None else parsed.reference(reference_price)
    book = _Book(parsed.bid_keys, bid_qty, parsed.bid_market, parsed.ask_keys, ask_qty, parsed.ask_market)
    price, volume, surplus, buy, sell = _clear_book(
        book, parsed.value_of, parsed.key_of, reference, integral=integral,
        tie_break=tie_break, rationing=rationing, band_ppm=pressure_band_ppm,
    )
    unit = _unit_converter(lot, lot_decimal, bid_sizes + ask_sizes)
    return AuctionResult(
        parsed.output_price(price, reference_price),
        unit(volume), unit(surplus),
        tuple(unit(int(q)) for q in buy.tolist()), tuple(unit(int(q)) for q in sell.tolist()),
    )


def _try_int_matrix(side: Any) -> Any:
    """A list of integer (price, qty) pairs as an (n, 2) int64 array, else unchanged."""
    if isinstance(side, np.ndarray) or not isinstance(side, Sequence) or len(side) == 0:
        return side
    try:
        matrix = np.array(side)
    except (ValueError, TypeError):
        return side
    if matrix.ndim == 2 and matrix.shape[1] == 2 and matrix.dtype.kind in "iu":
        if any(isinstance(value, bool | np.bool_) for row in side for value in row):
            return side  # numpy turns True into 1: let the exact path refuse it by name
        return matrix.astype(np.int64, copy=False)
    return side


def _is_fast(side: object) -> bool:
    return isinstance(side, np.ndarray) and side.ndim == 2 and side.shape[1] == 2 and side.dtype.kind in "iu"


def _integral_reference(reference: Number) -> int:
    value = to_decimal(reference, "reference_price")
    if value != value.to_integral_value():
        raise InvalidInput("reference_price", reference, "must be a whole number of ticks for integer prices")
    return int(value)


def _unit_converter(
    lot: Number | None, lot_decimal: Decimal | None, sizes: list[object]
) -> Callable[[int], Quantity]:
    if lot_decimal is None:
        return int
    if _is_int(lot) and all(_is_int(q) for q in sizes):
        lot_int = int(lot)  # type: ignore[arg-type]
        return lambda count: count * lot_int
    return lambda count: count * lot_decimal


class _PriceSpace:
    """Maps prices to int64 keys that order like them: ticks as-is, decimals as 2 × rank."""

    def __init__(self, bid_prices: list[object], ask_prices: list[object], integral: bool) -> None:
        self.integral = integral
        self.bid_market = np.array([p is None for p in bid_prices], dtype=bool)
        self.ask_market = np.array([p is None for p in ask_prices], dtype=bool)
        if integral:
            self.bid_keys = self._ticks(bid_prices, "bids")
            self.ask_keys = self._ticks(ask_prices, "asks")
            self.values: list[Decimal] = []
            return
        bid_dec = self._decimals(bid_prices, "bids")
        ask_dec = self._decimals(ask_prices, "asks")
        self.values = sorted({p for p in bid_dec + ask_dec if p is not None})
        self.fractions = [Fraction(v) for v in self.values]
        rank = {v: 2 * i for i, v in enumerate(self.values)}
        self.bid_keys = np.array([0 if p is None else rank[p] for p in bid_dec], dtype=np.int64)
        self.ask_keys = np.array([0 if p is None else rank[p] for p in ask_dec], dtype=np.int64)

    @staticmethod
    def _ticks(prices: list[object], side: str) -> IntArray:
        out = []
        for i, price in enumerate(prices):
            if price is None:
                out.append(0)
                continue
            tick = int(price)  # type: ignore[call-overload]
            if not 0 < tick < _PRICE_LIMIT:
                raise InvalidInput(f"{side}[{i}].price", price, "must be in (0, 2**62) ticks")
            out.append(tick)
        return np.array(out, dtype=np.int64) if out else np.zeros(0, np.int64)

    @staticmethod
    def _decimals(prices: list[object], side: str) -> list[Decimal | None]:
        out: list[Decimal | None] = []
        for i, price in enumerate(prices):
            if price is None:
                out.append(None)
                continue
            value = to_decimal(price, f"{side}[{i}].price")  # type: ignore[arg-type]
            if value <= 0:
                raise InvalidInput(f"{side}[{i}].price", price, "must be > 0")
            out.append(value)
        return out

    def reference(self, reference_price: Number) -> Fraction:
        if self.integral:
            return Fraction(_integral_reference(reference_price))
        return Fraction(to_decimal(reference_price, "reference_price"))

    def value_of(self, key: int) -> Fraction:
        return Fraction(key) if self.integral else self.fractions[key // 2]

    def key_of(self, price: Fraction) -> int:
        if self.integral:
            return int(price)
        rank = bisect_left(self.fractions, price)
        if rank < len(self.fractions) and self.fractions[rank] == price:
            return 2 * rank
        return 2 * rank - 1

    def output_price(self, price: Fraction | None, reference_price: Number | None) -> Price | None:
        if price is None:
            return None
        if self.integral:
            return int(price)
        rank = self.key_of(price)
        if rank % 2 == 0:
            return self.values[rank // 2]
        if reference_price is not None and Fraction(to_decimal(reference_price, "reference_price")) == price:
            return to_decimal(reference_price, "reference_price")
        with localcontext() as context:  # exact: midpoints and ppm bands of decimals terminate
            context.prec = 80
            return Decimal(price.numerator) / Decimal(price.denominator)



@dataclass(frozen=True, slots=True)
class BatchClearing:
    """One batch cleared: the auction result plus fills and unfilled remainders keyed by order id."""

    result: AuctionResult
    bid_fills: dict[Hashable, Quantity]
    ask_fills: dict[Hashable, Quantity]
    unfilled_bids: tuple[tuple[Hashable, Price | None, Quantity], ...]
    unfilled_asks: tuple[tuple[Hashable, Price | None, Quantity], ...]


class BatchAuction:
    """Collects the orders of one interval, clears them at one price, optionally carries remainders.

    Remainders carried over keep their original order and go ahead of the next interval's orders
    (they arrived earlier: time priority). Without an explicit reference the last clearing price is used.
    """

    def __init__(
        self,
        *,
        lot: Number | None = None,
        tie_break: TieBreak = "reference",
        rationing: Rationing = "pro_rata",
        pressure_band_ppm: int | None = None,
    ) -> None:
        _check_options(tie_break, rationing, pressure_band_ppm)
        if lot is not None and to_decimal(lot, "lot") <= 0:
            raise InvalidInput("lot", lot, "must be > 0")
        self._options = dict(lot=lot, tie_break=tie_break, rationing=rationing, pressure_band_ppm=pressure_band_ppm)
        self._bids: list[tuple[Hashable, object, object]] = []
        self._asks: list[tuple[Hashable, object, object]] = []
        self.last_price: Price | None = None

    def add_bid(self, order_id: Hashable, price: Number | None, qty: Number) -> None:
        self._add(self._bids, "bids", order_id, price, qty)

    def add_ask(self, order_id: Hashable, price: Number | None, qty: Number) -> None:
        self._add(self._asks, "asks", order_id, price, qty)

    @property
    def pending(self) -> int:
        return len(self._bids) + len(self._asks)

    def _add(self, book: list[tuple[Hashable, object, object]], side: str,
             order_id: Hashable, price: object, qty: object) -> None:
        if any(order_id == known for known, _, _ in self._bids + self._asks):
            raise InvalidInput("order_id", order_id, "is already in this batch")
        lot = self._options["lot"]
        _parse_qtys([qty], None if lot is None else to_decimal(lot, "lot"), side)
        if price is not None:
            if _is_int(price):
                _PriceSpace._ticks([price], side)
            else:
                _PriceSpace._decimals([price], side)
        book.append((order_id, price, qty))

    def clear(self, reference_price: Number | None = None, *, carry_over: bool = False) -> BatchClearing:
        """Clear the pending orders; with ``carry_over`` the unfilled remainders stay for the next batch."""
        reference = self.last_price if reference_price is None else reference_price
        result = clear(
            [(p, q) for _, p, q in self._bids], [(p, q) for _, p, q in self._asks],
            reference_price=reference, **self._options,  # type: ignore[arg-type]
        )
        unfilled_bids = _remainders(self._bids, result.buy_fills)
        unfilled_asks = _remainders(self._asks, result.sell_fills)
        clearing = BatchClearing(
            result,
            {oid: fill for (oid, _, _), fill in zip(self._bids, result.buy_fills, strict=True)},
            {oid: fill for (oid, _, _), fill in zip(self._asks, result.sell_fills, strict=True)},
            unfilled_bids, unfilled_asks,
        )
        if result.price is not None:
            self.last_price = result.price
        self._bids = list(unfilled_bids) if carry_over else []
        self._asks = list(unfilled_asks) if carry_over else []
        return clearing


def _remainders(
    orders: list[tuple[Hashable, object, object]], fills: tuple[Quantity, ...]
) -> tuple[tuple[Hashable, Price | None, Quantity], ...]:
    out: list[tuple[Hashable, Any, Quantity]] = []
    for (order_id, price, qty), fill in zip(orders, fills, strict=True):
        left: Quantity = int(qty) - int(fill) if _is_int(qty) else (  # type: ignore[call-overload]
            to_decimal(qty, "qty") - to_decimal(fill, "fill")  # type: ignore[arg-type]
        )
        if left > 0:
            out.append((order_id, price, left))
    return tuple(out)


__all__ = [
    "AuctionResult",
    "BatchAuction",
    "BatchClearing",
    "Rationing",
    "TickAuctionResult",
    "TieBreak",
    "clear",
    "clear_ticks",
]
