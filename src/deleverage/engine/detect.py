"""Detection: a float screen per symbol (AccountBook + LiquidationPriceIndex), confirmed exactly.

Per symbol one :class:`SymbolDetector` mirrors every open position into an
:class:`~deleverage.core.book.AccountBook` (struct of arrays, built in bulk) and files its float
liquidation price in a :class:`~deleverage.core.liqindex.LiquidationPriceIndex`; a mark tick that
crosses nobody's price costs one comparison. Candidates the screen returns are confirmed with the
exact ledger arithmetic of :func:`exact_margin` (the same numbers as ``Ledger.margin_state``, but
O(instruments) instead of a scan of every position — see the note in ``exact_margin``).

One rule decides (:class:`AccountMargin`): exact equity ≤ exact maintenance, never a maintenance
rounded to a minor unit. The ledger keys accounts by string, the book by int: the detector keeps the
two-way map. Rows of cross accounts that hold several symbols carry the other positions valued at
the marks they were written with; :class:`CrossLinks` says which rows a mark move makes stale.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from deleverage.core import _kernels as kernels
from deleverage.core.book import AccountBook
from deleverage.core.instruments import Instrument
from deleverage.core.ledger import Ledger, Position, Posting, isolated_account_id
from deleverage.core.liqindex import LiquidationPriceIndex
from deleverage.core.tiers import MarginTiers
from deleverage.engine import exact_fast
from deleverage.engine.exact_fast import int_per_tick_lot
from deleverage.errors import InvalidInput


class _MaintenanceTable:
    """A tier table in settle minor units with integer rates, for :func:`maintenance_exact`."""

    __slots__ = ("cums", "floors", "integral", "rates")

    def __init__(self, instrument: Instrument, tiers: MarginTiers) -> None:
        unit = instrument.settle.minor_per_unit
        floors = [Fraction(b.floor) * unit for b in tiers.brackets]
        self.integral = all(f.denominator == 1 for f in floors)
        self.floors: list = [int(f) for f in floors] if self.integral else floors
        self.rates = [Fraction(b.rate) for b in tiers.brackets]
        self.cums = [Fraction(b.cum) * unit for b in tiers.brackets]

    def exact(self, notional_minor: Fraction | int) -> Fraction | int:
        i = bisect_right(self.floors, notional_minor) - 1
        rate, cum = self.rates[i], self.cums[i]
        if isinstance(notional_minor, int):  # all ints: (N·rn·cd − cn·rd) / (rd·cd), an int when whole
            top = notional_minor * rate.numerator * cum.denominator - cum.numerator * rate.denominator
            whole, rest = divmod(top, rate.denominator * cum.denominator)
            return whole if rest == 0 else Fraction(top, rate.denominator * cum.denominator)
        return notional_minor * rate - cum


_TABLES: dict[tuple[Instrument, MarginTiers], _MaintenanceTable] = {}
# the same tables by object identity (hashing a MarginTiers walks its brackets); entries keep both alive
_TABLES_BY_ID: dict[tuple[int, int], tuple[Instrument, MarginTiers, _MaintenanceTable]] = {}


def _table_of(instrument: Instrument, tiers: MarginTiers) -> _MaintenanceTable:
    hit = _TABLES_BY_ID.get((id(instrument), id(tiers)))
    if hit is not None and hit[0] is instrument and hit[1] is tiers:
        return hit[2]
    table = _TABLES.get((instrument, tiers))
    if table is None:
        table = _TABLES[(instrument, tiers)] = _MaintenanceTable(instrument, tiers)
    _TABLES_BY_ID[(id(instrument), id(tiers))] = (instrument, tiers, table)
    return table


def maintenance_exact(instrument: Instrument, tiers: MarginTiers, qty_lots: int,
                      price_ticks: int) -> Fraction | int:
    """Tiered maintenance margin in settle minor units, exact (an int when whole, which is cheaper to add
    and compare): what every liquidation decision uses.

    The same number as ``Ledger.margin_state(...).maintenance_exact`` for one position, with integer
    arithmetic where it can (the exact what-ifs run this several times per liquidation; the core
    converts the notional to settle units and back in Fractions).
    """
    table = _table_of(instrument, tiers)
    if table.integral and type(price_ticks) is int and type(qty_lots) is int and price_ticks > 0:
        per = int_per_tick_lot(instrument)
        if per is not None:  # integer notional: no Fraction (exact_fast)
            return table.exact(per * price_ticks * abs(qty_lots))
    notional = instrument.notional(price_ticks, abs(qty_lots))
    if table.integral and notional.denominator == 1:
        return table.exact(int(notional))
    return table.exact(notional)


def maintenance_minor(instrument: Instrument, tiers: MarginTiers, qty_lots: int, price_ticks: int) -> int:
    """``core.margin.maintenance_margin_minor``: :func:`maintenance_exact` rounded up, for display.

    Equality with the core is a test (tests/engine/test_performance_paths.py). Never compare equity
    with this rounded figure to decide liquidatability: it liquidates accounts whose equity lies in
    the fraction of a minor unit above the exact maintenance (issue 10).
    """
    return math.ceil(maintenance_exact(instrument, tiers, qty_lots, price_ticks))


@dataclass(frozen=True, slots=True)
class AccountMargin:
    """Exact margin of the account that holds a position in one symbol, at given marks.

    The one liquidation rule of the engine, the ledger (``MarginState.liquidatable``) and
    :mod:`deleverage.core.margin`: an open position and exact equity ≤ exact maintenance (margin
    ratio ≥ 100 %: Binance liquidates when the "margin ratio hits 100%"; equality liquidates).
    ``maintenance_minor`` is the rounded-up figure the events report; no decision reads it.
    """

    equity_exact: Fraction
    maintenance_exact: Fraction | int  # exact; an int when whole
    qty_lots: int  # signed position in the symbol
    isolated: bool

    @property
    def maintenance_minor(self) -> int:
        """Maintenance rounded up to a whole minor unit (display and reports)."""
        return math.ceil(self.maintenance_exact)

    @property
    def liquidatable(self) -> bool:
        return self.qty_lots != 0 and self.equity_exact <= self.maintenance_exact

    def _whole(self) -> tuple[int, int] | None:
        """(equity, maintenance) as ints when both are whole (exact_fast: int division is correctly rounded,
        as ``float(Fraction)`` is, so the ratios below are the same floats)."""
        e, m = self.equity_exact, self.maintenance_exact
        if exact_fast.REFERENCE or type(m) is not int or e.denominator != 1:
            return None
        return int(e.numerator), m

    @property
    def margin_ratio(self) -> float:
        """Maintenance / equity, exact then rounded to a float; inf when equity ≤ 0 (the ledger's)."""
        if self.equity_exact <= 0:
            return math.inf
        whole = self._whole()
        if whole is not None:
            return whole[1] / whole[0]
        return float(Fraction(self.maintenance_exact) / self.equity_exact)

    @property
    def equity_ratio(self) -> float:
        """Equity / maintenance (inf with no maintenance): Hyperliquid's 2/3 test reads this."""
        if self.maintenance_exact <= 0:
            return math.inf
        whole = self._whole()
        if whole is not None:
            return whole[0] / whole[1]
        return float(Fraction(self.equity_exact) / self.maintenance_exact)


def exact_margin(ledger: Ledger, account_id: str, symbol: str, marks: Mapping[str, int],
                 instruments: Mapping[str, Instrument], tiers: Mapping[str, MarginTiers]) -> AccountMargin:
    """Exact equity and tiered maintenance, cross (all engine symbols in the settle asset) or isolated.

    Equal to ``ledger.margin_state(...)`` for accounts whose positions are on engine instruments, but
    reads positions by key: ``Ledger.margin_state`` iterates (and sorts) every position of the ledger
    per call, which is O(N log N) at 1M accounts.
    """
    inst = instruments[symbol]
    if not exact_fast.REFERENCE:
        fast = _exact_margin_int(ledger, account_id, symbol, marks, instruments, tiers)
        if fast is not None:
            return fast
    code = inst.settle.code
    pos = ledger.position(account_id, symbol)
    isolated = ledger.has_account(isolated_account_id(account_id, symbol))  # pockets exist only when isolated
    maintenance: Fraction | int = 0
    if isolated:
        equity = Fraction(ledger.balance(isolated_account_id(account_id, symbol), code))
        if pos.qty_lots:
            equity += pos.unrealized_pnl_exact(inst, marks[symbol])
            maintenance = maintenance_exact(inst, tiers[symbol], pos.qty_lots, marks[symbol])
        return AccountMargin(equity, maintenance, pos.qty_lots, True)
    equity = Fraction(ledger.balance(account_id, code))
    for sym, other in instruments.items():
        if other.settle.code != code:
            continue
        p = pos if sym == symbol else ledger.position(account_id, sym)
        if p.qty_lots:
            mark = marks[sym]
            equity += p.unrealized_pnl_exact(other, mark)
            maintenance += maintenance_exact(other, tiers[sym], p.qty_lots, mark)
    return AccountMargin(equity, maintenance, pos.qty_lots, False)


def _exact_margin_int(ledger: Ledger, account_id: str, symbol: str, marks: Mapping[str, int],
                      instruments: Mapping[str, Instrument], tiers: Mapping[str, MarginTiers]) -> AccountMargin | None:
    """:func:`exact_margin` in ints when every position it values has an integer notional (exact_fast);
    None otherwise (the caller takes the reference path). Equity = balance + Σ (per·mark·qty − cost)."""
    inst = instruments[symbol]
    code = inst.settle.code
    pos = ledger.position(account_id, symbol)
    pocket = isolated_account_id(account_id, symbol)
    if ledger.has_account(pocket):
        equity = ledger.balance(pocket, code)
        maintenance: Fraction | int = 0
        if pos.qty_lots:
            terms = _int_terms(inst, tiers[symbol], pos, marks[symbol])
            if terms is None:
                return None
            equity += terms[0]
            maintenance = terms[1]
        return AccountMargin(Fraction(equity), maintenance, pos.qty_lots, True)
    equity = ledger.balance(account_id, code)
    maintenance = 0
    for sym, other in instruments.items():
        if other.settle.code != code:
            continue
        p = pos if sym == symbol else ledger.position(account_id, sym)
        if p.qty_lots:
            terms = _int_terms(other, tiers[sym], p, marks[sym])
            if terms is None:
                return None
            equity += terms[0]
            maintenance += terms[1]
    return AccountMargin(Fraction(equity), maintenance, pos.qty_lots, False)


def _int_terms(inst: Instrument, tiers: MarginTiers, position: Position, mark: object) -> tuple[int, Fraction | int] | None:
    """(unrealized PnL, maintenance) of one open position in ints, or None when its notional is not an
    integer number of minor units (or the mark is not a positive int tick count)."""
    per = int_per_tick_lot(inst)
    if per is None or type(mark) is not int or mark <= 0:
        return None
    q = position.qty_lots
    return per * mark * q - position.cost_minor, maintenance_exact(inst, tiers, q, mark)


def bankruptcy_limit_of(side: str, instrument: Instrument, qty_lots: int, equity_exact: Fraction,
                        mark_ticks: int) -> int | None:
    """``bankruptcy_limit_ticks(side, bankruptcy_price(...))`` — in ints for an integer notional and
    whole equity (exact_fast): price = (per·mark·q − E) / (per·q), rounded in the account's favour."""
    per = int_per_tick_lot(instrument)
    if per is None or qty_lots == 0 or equity_exact.denominator != 1 or type(mark_ticks) is not int \
            or mark_ticks <= 0 or type(qty_lots) is not int:
        return bankruptcy_limit_ticks(side, bankruptcy_price(instrument, qty_lots, equity_exact, mark_ticks))
    a = per * qty_lots
    top = a * mark_ticks - equity_exact.numerator
    if a < 0:  # a short: price = (−top) / (−a)
        top, a = -top, -a
    if top <= 0:  # price ≤ 0: solvent at every price
        return None
    return max(1, -(-top // a)) if side == "long" else max(1, top // a)


def bankruptcy_price(instrument: Instrument, qty_lots: int, equity_exact: Fraction,
                     mark_ticks: int) -> Fraction | None:
    """Exact price (ticks) at which the account's equity reaches zero by moving this position's price.

    equity(P) = E + κ·(N(P) − N(mark)) with N the signed notional (linear ``a·P``, inverse ``a/P``).
    None when no positive price exists (a long solvent at every price, or the inverse mirror).
    """
    if qty_lots == 0:
        return None
    n_mark = instrument.notional(mark_ticks, qty_lots)
    if instrument.contract == "linear":
        a = instrument.notional(1, qty_lots)
        price = (n_mark - equity_exact) / a
    else:
        a = instrument.notional(1, qty_lots)  # N(P) = a / P
        denominator = n_mark + equity_exact
        if denominator == 0 or (a / denominator) <= 0:
            return None
        price = a / denominator
    return price if price > 0 else None


def bankruptcy_limit_ticks(side: str, price: Fraction | None) -> int | None:
    """The bankruptcy price rounded to a tick in the account's favour (long sells ≥, short buys ≤)."""
    if price is None:
        return None
    if side == "long":
        return max(1, math.ceil(price))
    return max(1, math.floor(price))


class SymbolDetector:
    """Float screen of one symbol: AccountBook + LiquidationPriceIndex, string ids ↔ int slots."""

    def __init__(self, instrument: Instrument, tiers: MarginTiers, *, capacity: int,
                 buffer_bps: float, confirm: Callable[[list[str]], list[bool]],
                 cleared: dict[str, int] | None = None) -> None:
        self.instrument = instrument
        self.tiers = tiers
        self.book = AccountBook(instrument, tiers, max(16, capacity))
        self.index: LiquidationPriceIndex | None = None
        self.buffer_bps = buffer_bps
        self._confirm_ids = confirm
        self.ids: list[str] = []
        self.int_of: dict[str, int] = {}
        self._tick = float(instrument.tick_size)
        self._lot = float(instrument.lot_size)
        # price (ticks) each account was last checked safe at: + for a long (safe at every price ≥ it),
        # − for a short (safe at every price ≤ it); written by the engine's confirmer
        self.cleared: dict[str, int] = cleared if cleared is not None else {}
        self._quiet_lo = self._quiet_hi = math.nan  # marks (float price) at which nothing can be new
        self._band_slots = np.empty(max(16, capacity), np.int32)
        self._band_kind = np.empty(max(16, capacity), np.uint8)

    # --- building -----------------------------------------------------------------------------------
    def load(self, account_ids: Sequence[str], qty: np.ndarray, entry_price: np.ndarray,
             balance: np.ndarray, other_maintenance: np.ndarray | None = None) -> None:
        """Bulk-load rows (human units) and build the index once, sorted."""
        start = len(self.ids)
        ints = np.arange(start, start + len(account_ids), dtype=np.int64)
        for offset, aid in enumerate(account_ids):
            self.int_of[aid] = start + offset
        self.ids.extend(account_ids)
        if len(account_ids):
            self.book.load(ints, qty, entry_price, balance, other_maintenance)
        self.index = LiquidationPriceIndex(self.book, buffer_bps=self.buffer_bps, confirm=self._confirm)
        if self._band_slots.shape[0] < self.book.capacity:
            self._band_slots = np.empty(self.book.capacity, np.int32)
            self._band_kind = np.empty(self.book.capacity, np.uint8)
        self._quiet_lo = self._quiet_hi = math.nan

    def retier(self, tiers: MarginTiers) -> int:
        """Rebuild the screen under a new tier table (dynamic margin); returns the accounts re-screened.

        Every liquidation price moves with the tiers, so the book is re-made from its own rows
        (vectorised, no ledger reads) and the index rebuilt with no previous mark: the next tick
        offers every account in the buffered zone for an exact check, once.
        """
        old = self.book
        n = old.high_water
        slots = np.flatnonzero((old.account_ids[:n] >= 0) & (old.qc[:n] != 0.0))
        self.tiers = tiers
        self.book = AccountBook(self.instrument, tiers, old.capacity)
        if slots.size:
            self.book.load(old.account_ids[slots], old.qc[slots] / old.contract_size, old.entry_price[slots],
                           old.balance[slots], old.other_maintenance[slots])
        self.index = LiquidationPriceIndex(self.book, buffer_bps=self.buffer_bps, confirm=self._confirm)
        self._quiet_lo = self._quiet_hi = math.nan
        return int(slots.size)

    def largest_share(self) -> float:
        """The largest account's share of open interest: max |qty| / max(Σ long, Σ short), in [0, 1]."""
        n = self.book.high_water
        qc = self.book.qc[:n]
        longs, shorts = float(qc[qc > 0].sum()), float(-qc[qc < 0].sum())
        open_interest = max(longs, shorts)
        if open_interest <= 0.0:
            return 0.0
        return min(1.0, float(np.abs(qc).max()) / open_interest)

    def cross_accounts(self) -> list[str]:
        """Accounts whose row carries other symbols' maintenance (cross, several symbols)."""
        n = self.book.high_water
        mask = (self.book.account_ids[:n] >= 0) & (self.book.other_maintenance[:n] > 0.0)
        return [self.ids[int(i)] for i in self.book.account_ids[:n][mask].tolist()]

    def _confirm(self, ints: np.ndarray) -> np.ndarray:
        names = [self.ids[i] for i in ints.tolist()]
        return np.asarray(self._confirm_ids(names), dtype=bool)

    def _int_id(self, account_id: str) -> int:
        i = self.int_of.get(account_id)
        if i is None:
            i = len(self.ids)
            self.ids.append(account_id)
            self.int_of[account_id] = i
        return i

    def upsert(self, account_id: str, qty: float, entry_price: float, balance: float,
               other_maintenance: float = 0.0) -> None:
        """Write one account's float row (add, update, or remove when flat)."""
        i = self._int_id(account_id)
        self._quiet_lo = self._quiet_hi = math.nan
        present = i in self.book
        if qty == 0.0:
            if present:
                self.book.remove(i)
            return
        if not math.isfinite(balance):
            balance = 0.0
        if present:
            self.book.update(i, qty=qty, entry_price=entry_price, balance=balance,
                             other_maintenance=other_maintenance)
        else:
            self.book.add(i, qty=qty, entry_price=entry_price, balance=balance,
                          other_maintenance=other_maintenance)

    # --- ticks ----------------------------------------------------------------------------------------
    def on_price(self, price_ticks: int) -> list[str]:
        """Accounts newly liquidatable at ``price_ticks`` (screened, then exactly confirmed).

        A mark inside the detector's quiet interval returns at once: no account can be new there (see
        :meth:`_set_quiet_interval`). Skipping the index is safe because its next scan covers the
        whole range between its previous mark and the new one.
        """
        if self.index is None:
            raise InvalidInput("detector", self.instrument.symbol, "not built: call track_all() first")
        price = price_ticks * self._tick
        if self._quiet_lo < price < self._quiet_hi:  # False for NaN (after any update)
            return []
        found = self.index.on_mark(price)
        self._set_quiet_interval(price)
        if found.size == 0:
            return []
        return [self.ids[i] for i in found.tolist()]

    def _set_quiet_interval(self, price: float) -> None:
        """Marks around ``price`` at which the index cannot offer a new candidate.

        For each side: a filed price outside the buffered band enters it only past its neighbour
        (``sorted_neighbours``); an unreported account inside the band was checked safe exactly at
        some price (``cleared``), and liquidatability is monotone in the price for an unchanged
        account, so it stays safe on the safe side of that price. Reported accounts are active cases,
        re-evaluated by the engine on every tick. Without this the index re-offers every
        checked-safe account inside the buffer on each adverse tick.
        """
        index = self.index
        if index is None:  # not built yet: no quiet interval
            return
        b, eps = index.buffer, 1e-12
        lo = price / (1 + b) * (1 - eps)
        hi = price / (1 - b) * (1 + eps)
        quiet_lo, quiet_hi = 0.0, math.inf
        args = (index._pool_keys, index._pool_slots, index._counts, index._order,  # noqa: SLF001
                index._first_key, index._first_slot, index._meta)  # noqa: SLF001
        for side in (0, 1):  # LONG, SHORT (core.liqindex)
            below, above, inside = kernels.sorted_neighbours(args[0], *args[2:], side, lo, hi)
            quiet_lo = max(quiet_lo, below * (1 + b) / (1 - eps) * (1 + eps))
            quiet_hi = min(quiet_hi, above * (1 - b) / (1 + eps) * (1 - eps))
            if not inside:
                continue
            if self._band_slots.shape[0] < self.book.capacity:  # the book grew since load()
                self._band_slots = np.empty(self.book.capacity, np.int32)
                self._band_kind = np.empty(self.book.capacity, np.uint8)
            n = int(kernels.scan_range(*args, side, lo, hi, False, side == 0, price, b, index.flags,
                                       self._band_slots, self._band_kind, 0))
            for slot in self._band_slots[:n].tolist():
                memo = self.cleared.get(self.ids[int(self.book.account_ids[slot])])
                if memo is None or (memo > 0) != (side == 0):
                    self._quiet_lo = self._quiet_hi = math.nan
                    return
                if side == 0:  # safe at every mark ≥ memo (the memo mark itself included)
                    quiet_lo = max(quiet_lo, memo * self._tick * (1 - eps))
                else:
                    quiet_hi = min(quiet_hi, -memo * self._tick * (1 + eps))
        self._quiet_lo, self._quiet_hi = float(quiet_lo), float(quiet_hi)

    def liquidation_price_ticks(self, account_id: str) -> float | None:
        """The float screen's liquidation price of ``account_id`` in ticks (None if not filed)."""
        i = self.int_of.get(account_id)
        if i is None or i not in self.book or self.index is None:
            return None
        key = float(self.index.keys[self.book.slot_of(i)])
        return key / self._tick if math.isfinite(key) else None

    def slots_of_side(self, long_side: bool) -> np.ndarray:
        """Int ids of every tracked account holding a position on the given side."""
        n = self.book.high_water
        qc = self.book.qc[:n]
        mask = qc > 0 if long_side else qc < 0
        return self.book.account_ids[:n][mask]


class CrossLinks:
    """Cross accounts whose screen rows on one symbol carry the PnL and maintenance of another.

    A float row (:func:`float_row`) holds the account's other positions valued at the marks it was
    written with. When one of those marks moves the rows on the *other* symbols are stale: a row
    that understates another position's loss or maintenance files a liquidation price on the safe side
    and the screen would miss the account. So for every symbol this keeps the cross accounts holding it
    together with another symbol of the same settlement asset; on a mark of that symbol the engine
    re-writes their rows on the other symbols (O(linked accounts), nothing for single-symbol books).
    """

    __slots__ = ("_by_symbol", "_instruments", "count")

    def __init__(self, instruments: Mapping[str, Instrument]) -> None:
        self._instruments = dict(instruments)
        self._by_symbol: dict[str, set[str]] = {s: set() for s in instruments}
        self.count = 0  # (symbol, account) links in all (0: nothing to do on any tick)

    def add_symbol(self, instrument: Instrument) -> None:
        """A newly listed symbol: no account holds it yet, so no account's links change."""
        self._instruments[instrument.symbol] = instrument
        self._by_symbol[instrument.symbol] = set()

    def update(self, ledger: Ledger, account_id: str) -> None:
        """Re-read which symbols link ``account_id`` (after a trade, a transfer, a liquidation)."""
        if len(self._instruments) < 2:
            return
        held: dict[str, list[str]] = {}
        if ledger.has_account(account_id) and ledger.account(account_id).margin_mode == "cross":
            for sym, inst in self._instruments.items():
                if ledger.position(account_id, sym).qty_lots:
                    held.setdefault(inst.settle.code, []).append(sym)
        linked = {sym for group in held.values() if len(group) > 1 for sym in group}
        for sym, members in self._by_symbol.items():
            if sym in linked:
                if account_id not in members:
                    members.add(account_id)
                    self.count += 1
            elif account_id in members:
                members.discard(account_id)
                self.count -= 1

    def stale_after(self, symbol: str) -> list[str]:
        """Accounts whose rows on the other symbols a move of ``symbol``'s mark makes stale (sorted)."""
        return sorted(self._by_symbol[symbol]) if self.count else []


def float_row(ledger: Ledger, account_id: str, symbol: str, marks: Mapping[str, int],
              instruments: Mapping[str, Instrument], tiers: Mapping[str, MarginTiers]
              ) -> tuple[float, float, float, float]:
    """(qty, entry price, margin balance, other maintenance) in human units for the float screen.

    Margin balance = wallet (or isolated pocket) plus the other positions' unrealised PnL; the other
    positions' maintenance goes to ``other_maintenance`` (Binance's TMM1/UPNL1 convention). Each float is
    the exact value correctly rounded: an int division where the value is a ratio of ints (no Fraction).
    """
    inst = instruments[symbol]
    pos = ledger.position(account_id, symbol)
    if pos.qty_lots == 0:
        return 0.0, 1.0, 0.0, 0.0
    entry_price = _entry_price(pos, inst)
    qty = pos.qty_lots * float(inst.lot_size)
    minor = inst.settle.minor_per_unit
    code = inst.settle.code
    pocket = isolated_account_id(account_id, symbol)
    if ledger.has_account(pocket):
        return qty, entry_price, ledger.balance(pocket, code) / minor, 0.0
    wallet = ledger.balance(account_id, code)
    balance: Fraction | None = None
    other_mm: Fraction | int = 0
    for sym, other in instruments.items():
        if sym == symbol or other.settle.code != code or sym not in marks:
            continue
        p = ledger.position(account_id, sym)
        if p.qty_lots:
            balance = (Fraction(wallet) if balance is None else balance) + p.unrealized_pnl_exact(other, marks[sym])
            other_mm += maintenance_exact(other, tiers[sym], p.qty_lots, marks[sym])
    if balance is None:  # no other position: the wallet alone (a ratio of ints, rounded once)
        return qty, entry_price, wallet / minor, 0.0
    return qty, entry_price, float(balance / minor), float(other_mm / minor)


def _entry_price(pos: Position, inst: Instrument) -> float:
    """The average entry price in human units, ``float(entry_ticks) × float(tick)`` (the tick if no cost)."""
    tick = float(inst.tick_size)
    if pos.cost_minor == 0:
        return tick
    per = inst.linear_value_per_tick_lot if inst.contract == "linear" else None
    if per is not None and per.denominator == 1:  # entry ticks = cost / (value per tick-lot × qty)
        return pos.cost_minor / (per.numerator * pos.qty_lots) * tick
    entry = pos.entry_price_ticks(inst)
    return float(entry) * tick if entry else tick


def bulk_open_positions(ledger: Ledger, account_ids: Sequence[str], instrument: Instrument,
                        qty_lots: Sequence[int], price_ticks: Sequence[int],
                        collateral_minor: Sequence[int], *, counterparty: str = "market",
                        ts_ns: int = 0) -> None:
    """Open many trader accounts with collateral and a position against ``counterparty``, fast.

    ``Ledger.open_accounts`` (all-or-nothing, validates the ids), one balanced deposit posting for all
    collateral, then one fill per account.
    """
    n = len(account_ids)
    if not (len(qty_lots) == len(price_ticks) == len(collateral_minor) == n):
        raise InvalidInput("account_ids", n, "qty_lots, price_ticks and collateral_minor must match")
    ledger.open_accounts(list(account_ids), kind="trader")
    code = instrument.settle.code
    entries = [(aid, code, int(c)) for aid, c in zip(account_ids, collateral_minor, strict=True) if c > 0]
    total = sum(e[2] for e in entries)
    if total:
        ledger.post(Posting((("world", code, -total), *entries), "bulk collateral", ts_ns))
    for aid, q, p in zip(account_ids, qty_lots, price_ticks, strict=True):
        q, p = int(q), int(p)
        if q == 0:
            continue
        buyer, seller = (aid, counterparty) if q > 0 else (counterparty, aid)
        ledger.apply_fill(buyer=buyer, seller=seller, instrument=instrument, price_ticks=p,
                          qty_lots=abs(q), ts_ns=ts_ns, reason="open")


__all__ = [
    "AccountMargin",
    "CrossLinks",
    "SymbolDetector",
    "bankruptcy_limit_of",
    "bankruptcy_limit_ticks",
    "bankruptcy_price",
    "bulk_open_positions",
    "exact_margin",
    "float_row",
    "maintenance_exact",
    "maintenance_minor",
]
