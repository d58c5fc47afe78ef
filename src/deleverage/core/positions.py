"""Positions in one perpetual: signed size, signed entry cost, and the exact arithmetic of a trade.

A trade of ``qty_lots`` at ``price_ticks`` has one integer value
``v = trade_value_minor(instrument, price_ticks, qty_lots)`` (round half to even of the exact
notional), used with opposite signs by buyer and seller. A position keeps ``cost_minor``, the signed
entry value still open (positive for a long), so that at a mark price

* linear:  unrealized PnL = value(mark) − cost       (value = qty × price × contract size)
* inverse: unrealized PnL = cost − value(mark)       (value = qty × contract size / price, in coin)

A reducing trade removes cost in proportion to the size closed, truncated toward zero (named rule
:func:`removed_cost_minor`), and realizes the integer difference, so the sum of realized and
unrealized PnL of every account is exactly the sum of its trades' ``±(value(mark) − v)``: rounding
moves value between realized and unrealized, never creates it. A flip through zero is a close of the
whole position followed by an open of the remainder; the trade value is split so the parts add up
to ``v`` exactly.

Across all accounts of an instrument, ``Σ qty = 0`` and ``Σ (cost − κ·realized) = 0`` with κ = +1 for
linear and −1 for inverse contracts (realized cash is paid from the instrument's clearing account).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any, Protocol

from deleverage.core.instruments import Instrument
from deleverage.errors import InvalidInput, LedgerError


class BulkSegment(Protocol):
    """What the book reads of a bulk-loaded segment (core/bulk.py implements it; the arrow points down)."""

    symbol: str
    qty: Any

    def copy(self) -> BulkSegment: ...
    def live_row(self, account_id: str) -> int: ...
    def cost(self, row: int) -> int: ...
    def costs(self) -> Any: ...
    def live_sorted_rows(self, mask: Any = None) -> tuple[Any, list[str]]: ...
    def live_open_sums(self) -> tuple[int, int, bool]: ...


def trade_value_minor(instrument: Instrument, price_ticks: int, qty_lots: int) -> int:
    """The one integer value of a trade, in settlement minor units: exact notional, half to even.

    Half-to-even is unbiased over many trades; the same integer is used by buyer and seller, so
    rounding cannot create value between them.
    """
    return round(instrument.notional(price_ticks, qty_lots))


def contract_sign(instrument: Instrument) -> int:
    """κ: +1 when PnL is value − cost (linear), −1 when it is cost − value (inverse)."""
    return 1 if instrument.contract == "linear" else -1


def removed_cost_minor(cost_minor: int, qty_lots: int, closed_lots: int) -> int:
    """Entry cost leaving a position when ``closed_lots`` of its ``qty_lots`` are closed.

    Proportional, truncated toward zero, and all of it on a full close, so the remaining cost stays
    an integer with the sign of the remaining position.
    """
    size = abs(qty_lots)
    if closed_lots == size:
        return cost_minor
    magnitude = abs(cost_minor) * closed_lots // size
    return magnitude if cost_minor >= 0 else -magnitude


@dataclass(frozen=True, slots=True)
class Position:
    """One account's position in one instrument (an immutable value; the ledger swaps it whole)."""

    account_id: str
    symbol: str
    qty_lots: int = 0
    cost_minor: int = 0
    realized_pnl_minor: int = 0
    fees_minor: int = 0
    funding_minor: int = 0

    @property
    def is_open(self) -> bool:
        return self.qty_lots != 0

    @property
    def side(self) -> str:
        """'long', 'short' or 'flat'."""
        if self.qty_lots > 0:
            return "long"
        return "short" if self.qty_lots < 0 else "flat"

    def value_exact(self, instrument: Instrument, mark_ticks: int) -> Fraction:
        """Exact signed value of the open size at ``mark_ticks`` in settlement minor units."""
        if self.qty_lots == 0:
            return Fraction(0)
        return instrument.notional(mark_ticks, self.qty_lots)

    def unrealized_pnl_exact(self, instrument: Instrument, mark_ticks: int) -> Fraction:
        """Exact unrealized PnL at ``mark_ticks`` (value − cost for linear, cost − value for inverse)."""
        if self.qty_lots == 0:
            return Fraction(0)
        return contract_sign(instrument) * (self.value_exact(instrument, mark_ticks) - self.cost_minor)

    def entry_price_ticks(self, instrument: Instrument) -> Fraction | None:
        """Average entry price in ticks, exact; None when flat.

        Linear: cost / (value of one tick × qty). Inverse: value(1 tick, qty) / cost.
        """
        if self.qty_lots == 0 or self.cost_minor == 0:
            return None
        if instrument.contract == "linear":
            return Fraction(self.cost_minor) / instrument.notional(1, self.qty_lots)
        return instrument.notional(1, self.qty_lots) / self.cost_minor


_POSITION_FIELDS = ("account_id", "symbol", "qty_lots", "cost_minor", "realized_pnl_minor", "fees_minor",
                    "funding_minor")  # Position's fields in order: PositionBook pickles them as columns


@dataclass(frozen=True, slots=True)
class FillRecord:
    """One trade between two ledger accounts, as the journal keeps it (enough to rebuild positions)."""

    symbol: str
    buyer: str
    seller: str
    price_ticks: int
    qty_lots: int
    value_minor: int
    buyer_fee_minor: int = 0
    seller_fee_minor: int = 0

    def sides(self) -> tuple[tuple[str, int, int], tuple[str, int, int]]:
        """(account, signed lots, fee) for the buyer, then the seller."""
        return (
            (self.buyer, self.qty_lots, self.buyer_fee_minor),
            (self.seller, -self.qty_lots, self.seller_fee_minor),
        )


@dataclass(frozen=True, slots=True)
class TradeOutcome:
    """What one side of a trade does to a position: the new position and the cash it realizes."""

    position: Position
    realized_minor: int


def apply_trade(
    position: Position,
    instrument: Instrument,
    *,
    signed_qty_lots: int,
    value_minor: int,
    price_ticks: int,
    fee_minor: int = 0,
) -> TradeOutcome:
    """One side of a trade: ``signed_qty_lots`` (+buy, −sell) of total value ``value_minor`` (≥ 0).

    Pure: the caller decides whether to commit the new position and post the realized cash.
    """
    if signed_qty_lots == 0:
        raise InvalidInput("signed_qty_lots", signed_qty_lots, "must not be zero")
    qty = position.qty_lots
    direction = 1 if signed_qty_lots > 0 else -1
    size = abs(signed_qty_lots)
    kappa = contract_sign(instrument)
    cost = position.cost_minor
    realized = 0
    if qty == 0 or (qty > 0) == (direction > 0):
        qty += signed_qty_lots
        cost += direction * value_minor
    else:
        closed = min(size, abs(qty))
        close_value = value_minor
        if closed < size:
            # Flip: close the whole position, open the rest; the parts add up to the trade value.
            close_value = trade_value_minor(instrument, price_ticks, closed)
        removed = removed_cost_minor(cost, qty, closed)
        position_sign = 1 if qty > 0 else -1
        realized = kappa * (position_sign * close_value - removed)
        cost -= removed
        qty += direction * closed
        if closed < size:
            qty += direction * (size - closed)
            cost += direction * (value_minor - close_value)
    new_position = replace(
        position,
        qty_lots=qty,
        cost_minor=cost,
        realized_pnl_minor=position.realized_pnl_minor + realized,
        fees_minor=position.fees_minor + fee_minor,
    )
    return TradeOutcome(position=new_position, realized_minor=realized)


def mark_ticks_for(marks: Mapping[str, int], symbol: str) -> int:
    """The mark of ``symbol`` from ``marks``, refusing a missing or non-integer one by name."""
    try:
        mark = marks[symbol]
    except KeyError:
        raise InvalidInput("marks", symbol, "no mark price for an open position") from None
    if isinstance(mark, bool) or not isinstance(mark, int) or mark <= 0:
        raise InvalidInput(f"marks[{symbol}]", mark, "must be a positive integer number of ticks")
    return mark


_QTY = attrgetter("qty_lots")
_COST = attrgetter("cost_minor")
_ACCOUNT = attrgetter("account_id")
_KEY = itemgetter(0)
_SYMBOL_ACCOUNT = attrgetter("symbol", "account_id")


class PositionBook:
    """Every (account, instrument) position and the instruments in use; the ledger owns one.

    Positions are immutable values: the ledger computes the new ones, validates its posting, then
    commits them with :meth:`commit`, so a refused fill changes nothing.
    """

    def __init__(self) -> None:
        self._positions: dict[tuple[str, str], Position] = {}
        # account → the sorted symbols it holds; the tuples are shared (one per distinct set), so a
        # million one-instrument accounts cost a dict entry each, and copying the book is shallow
        self._by_account: dict[str, tuple[str, ...]] = {}
        self._symbol_sets: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._instruments: dict[str, Instrument] = {}
        # bulk-loaded positions kept as columns (core/bulk.py), the same list the ledger holds: a row's
        # position is here until its account is touched, then it lives in ``_positions`` like any other
        self._bulk: list[BulkSegment] = []

    def __getstate__(self) -> dict[str, Any]:
        """Pickled as columns (ids, symbols, five int lists): a scene shared with workers holds a million
        positions, and one dataclass ``__getstate__``/``__setstate__`` per position took seconds each way."""
        state = dict(self.__dict__)
        values = list(self._positions.values())
        state["_positions"] = [list(map(attrgetter(name), values)) for name in _POSITION_FIELDS]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        columns: list[list[Any]] = state.pop("_positions")
        self.__dict__.update(state)
        self._positions = dict(zip(zip(columns[0], columns[1], strict=True), map(Position, *columns), strict=True))

    def copy(self) -> PositionBook:
        other = PositionBook()
        other._positions = dict(self._positions)
        other._by_account = dict(self._by_account)
        other._symbol_sets = self._symbol_sets  # an intern table of immutable tuples: sharing is safe
        other._instruments = dict(self._instruments)
        other._bulk = [segment.copy() for segment in self._bulk]
        return other

    # --- instruments ------------------------------------------------------------------------------
    def check_instrument(self, instrument: Instrument) -> None:
        """Refuse a non-instrument, or a second spec under a symbol already in use."""
        if not isinstance(instrument, Instrument):
            raise InvalidInput("instrument", instrument, "expected an Instrument")
        known = self._instruments.get(instrument.symbol)
        if known is not None and known != instrument:
            raise InvalidInput("instrument", instrument.symbol, "a different spec is already in use")

    def register(self, instrument: Instrument) -> bool:
        """Remember a checked instrument; True when it is new."""
        if instrument.symbol in self._instruments:
            return False
        self._instruments[instrument.symbol] = instrument
        return True

    def instrument(self, symbol: str) -> Instrument:
        try:
            return self._instruments[symbol]
        except (KeyError, TypeError):
            raise InvalidInput("symbol", symbol, "no position was ever opened in this instrument") from None

    def instruments(self) -> list[Instrument]:
        return [self._instruments[s] for s in sorted(self._instruments)]

    # --- positions --------------------------------------------------------------------------------
    def get(self, account_id: str, symbol: str) -> Position:
        pos = self._positions.get((account_id, symbol))
        if pos is not None:
            return pos
        for segment in self._bulk:
            if segment.symbol == symbol:
                row = segment.live_row(account_id)
                if row >= 0 and segment.qty[row]:
                    return Position(account_id, symbol, int(segment.qty[row]), segment.cost(row))
        return Position(account_id, symbol)

    def _bulk_positions(self, segment: BulkSegment) -> list[Position]:
        """The untouched open positions of a segment, in account order (made now, not kept)."""
        rows, ids = segment.live_sorted_rows(segment.qty != 0)
        costs = segment.costs()[rows]
        return list(map(Position, ids, repeat(segment.symbol), segment.qty[rows].tolist(), costs.tolist()))

    def _bulk_of(self, account_id: str) -> list[Position]:
        """The position an untouched bulk account holds (at most one), in a list."""
        for segment in self._bulk:
            row = segment.live_row(account_id)
            if row >= 0:
                if not segment.qty[row]:
                    return []
                return [Position(account_id, segment.symbol, int(segment.qty[row]), segment.cost(row))]
        return []

    def all_positions(self) -> dict[tuple[str, str], Position]:
        """Every position, the bulk columns' included, as one dict (for checks that compare whole states)."""
        merged = dict(self._positions)
        for segment in self._bulk:
            merged.update(((p.account_id, p.symbol), p) for p in self._bulk_positions(segment))
        return merged

    def commit(self, positions: list[Position]) -> None:
        book, held, shared = self._positions, self._by_account, self._symbol_sets
        for pos in positions:
            book[(pos.account_id, pos.symbol)] = pos
            symbols = held.get(pos.account_id, ())
            if pos.symbol not in symbols:
                grown = tuple(sorted((*symbols, pos.symbol)))
                held[pos.account_id] = shared.setdefault(grown, grown)

    def commit_new(self, symbol: str, account_ids: list[str], positions: Iterable[Position]) -> None:
        """Commit one position in ``symbol`` for each of ``account_ids``, accounts holding none yet."""
        self._positions.update(zip(zip(account_ids, repeat(symbol)), positions, strict=True))
        one = self._symbol_sets.setdefault((symbol,), (symbol,))
        self._by_account.update(dict.fromkeys(account_ids, one))

    def iterate(
        self, symbol: str | None = None, *, account_id: str | None = None, open_only: bool = True
    ) -> Iterator[Position]:
        """Positions sorted by (symbol, account), filtered by instrument and/or account."""
        if account_id is not None:
            held = self._by_account.get(account_id)
            if held is None and self._bulk:
                candidates = [p for p in self._bulk_of(account_id) if symbol is None or p.symbol == symbol]
            else:
                candidates = [self._positions[(account_id, s)] for s in held or ()
                              if symbol is None or s == symbol]
        elif symbol is not None:  # one symbol: (symbol, account) order is account order, a plain str sort
            book = self._positions
            candidates = [book[(aid, symbol)] for aid in sorted([aid for aid, sym in book if sym == symbol])]
            runs = [self._bulk_positions(seg) for seg in self._bulk if seg.symbol == symbol]
            if runs:  # sorted runs: one C-level merge by timsort
                candidates = sorted([p for run in (candidates, *runs) for p in run], key=_ACCOUNT)
        else:
            candidates = [pos for _, pos in sorted(self._positions.items(), key=lambda kv: (kv[0][1], kv[0][0]))]
            if self._bulk:
                runs = [self._bulk_positions(seg) for seg in self._bulk]
                candidates = sorted([p for run in (candidates, *runs) for p in run], key=_SYMBOL_ACCOUNT)
        for pos in candidates:
            if pos.is_open or not open_only:
                yield pos

    def symbols(self) -> list[str]:
        """The instruments in use, sorted."""
        return sorted(self._instruments)

    def open_sums(self) -> dict[str, tuple[int, int]]:
        """Per symbol with an open position: (Σ qty, Σ cost) over its open positions, in Python ints."""
        sums: dict[str, tuple[int, int]] = {}
        if len(self._instruments) == 1:  # one instrument: sum the columns at C speed
            (symbol,) = self._instruments
            open_positions = [p for p in self._positions.values() if p.qty_lots]
            if open_positions:
                sums[symbol] = (sum(map(_QTY, open_positions)), sum(map(_COST, open_positions)))
        else:
            for pos in self._positions.values():
                if pos.qty_lots:
                    qty, cost = sums.get(pos.symbol, (0, 0))
                    sums[pos.symbol] = (qty + pos.qty_lots, cost + pos.cost_minor)
        for segment in self._bulk:
            bulk_qty, bulk_cost, any_open = segment.live_open_sums()
            if any_open:
                qty, cost = sums.get(segment.symbol, (0, 0))
                sums[segment.symbol] = (qty + bulk_qty, cost + bulk_cost)
        return sums

    def unrealized_exact(self, pos: Position, marks: Mapping[str, int]) -> Fraction:
        if not pos.is_open:
            return Fraction(0)
        return pos.unrealized_pnl_exact(self._instruments[pos.symbol], mark_ticks_for(marks, pos.symbol))

    def state_key(self) -> str:
        """Canonical text of all positions and instruments, for the ledger digest."""
        items = sorted(self._positions.items())
        if not self._bulk:
            return repr((items, sorted(self._instruments)))
        # the bulk rows' text written directly (the repr of the Position each stands for, tested against it):
        # a Position object and a dataclass repr per row were most of a digest
        texts = [(key, repr((key, pos))) for key, pos in items]
        for seg in self._bulk:
            rows, ids = seg.live_sorted_rows(seg.qty != 0)
            sym = repr(seg.symbol)
            texts += zip(zip(ids, repeat(seg.symbol)), (
                f"(({a!r}, {sym}), Position(account_id={a!r}, symbol={sym}, qty_lots={q}, cost_minor={c}, "
                "realized_pnl_minor=0, fees_minor=0, funding_minor=0))"
                for a, q, c in zip(ids, seg.qty[rows].tolist(), seg.costs()[rows].tolist(), strict=True)), strict=True)
        texts.sort(key=_KEY)
        return f"([{', '.join(text for _, text in texts)}], {sorted(self._instruments)!r})"

    # --- integrity --------------------------------------------------------------------------------
    def check_invariants(self, clearing_balance: Callable[[Instrument], int]) -> None:
        """Per instrument: Σ qty = 0, Σ (cost − κ·realized) = 0, clearing = −Σ realized, flat ⇒ no cost."""
        for symbol, instrument in sorted(self._instruments.items()):
            kappa = contract_sign(instrument)
            mine = [p for p in self._positions.values() if p.symbol == symbol]
            # untouched bulk rows: open positions (no flat one), realized 0, summed over the columns
            bulk = [seg.live_open_sums() for seg in self._bulk if seg.symbol == symbol]
            qty = sum(p.qty_lots for p in mine) + sum(b[0] for b in bulk)
            if qty != 0:
                raise LedgerError(f"{symbol}: positions sum to {qty} lots, not 0")
            basis = sum(p.cost_minor - kappa * p.realized_pnl_minor for p in mine) + sum(b[1] for b in bulk)
            if basis != 0:
                raise LedgerError(f"{symbol}: sum of cost - kappa*realized is {basis}, not 0")
            realized = sum(p.realized_pnl_minor for p in mine)
            clearing = clearing_balance(instrument)
            if clearing != -realized:
                raise LedgerError(f"{symbol}: clearing balance {clearing} != -realized {-realized}")
            for p in mine:
                if p.qty_lots == 0 and p.cost_minor != 0:
                    raise LedgerError(f"{symbol}: flat position of {p.account_id} has cost {p.cost_minor}")

    def check_replay(self, fills: Iterable[FillRecord]) -> None:
        """Rebuild every position from the journal's fills alone and compare with the live ones."""
        rebuilt = PositionBook()
        rebuilt._instruments = self._instruments
        for fill in fills:
            instrument = self._instruments[fill.symbol]
            for account_id, signed_qty, fee in fill.sides():
                outcome = apply_trade(
                    rebuilt.get(account_id, fill.symbol), instrument, signed_qty_lots=signed_qty,
                    value_minor=fill.value_minor, price_ticks=fill.price_ticks, fee_minor=fee,
                )
                rebuilt.commit([outcome.position])
        mine = self.all_positions()
        if rebuilt._positions != mine:
            keys = set(rebuilt._positions) | set(mine)
            differing = sorted(k for k in keys if rebuilt._positions.get(k) != mine.get(k))
            raise LedgerError(f"positions {differing} differ from the journal replay")


__all__ = [
    "FillRecord",
    "Position",
    "PositionBook",
    "TradeOutcome",
    "apply_trade",
    "contract_sign",
    "mark_ticks_for",
    "removed_cost_minor",
    "trade_value_minor",
]
