"""Turn a population frame into a ledger: accounts funded from the world, positions opened against the market.

The ``market`` account stands for everyone outside the simulated population (the rest of the venue's
book); it takes the opposite side of every opening trade, so open interest balances exactly and the
ledger's total value is conserved from the first posting on. The insurance fund and the backstop
providers are funded from the world too, so every unit of value in a run has a visible origin.

Rows whose ``opened_ns`` (generated populations) is after the run's start are *deferred*: the account is
opened and funded at the start, and its position is opened during the run, when the run's clock reaches
that time, against the market account at the mark of that moment (:class:`DeferredEntries`). Funding
them at the start keeps the ledger's total value constant through the run.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl

from deleverage.core.columns import TraderColumns, minor_floor
from deleverage.core.instruments import Instrument
from deleverage.core.ledger import Ledger
from deleverage.errors import InvalidInput

INSURANCE_FUND = "insurance_fund"
FEE_POOL = "fee_pool"
MARKET = "market"
REQUIRED_COLUMNS = ("account_id", "side", "qty", "entry_price", "collateral", "margin_mode")


def trader_id(account_id: int) -> str:
    """Ledger id of population row ``account_id``."""
    return f"t{int(account_id)}"


@dataclass(frozen=True)
class SeedReport:
    """What seeding did: how many accounts, their open interest, and what was left out and why."""

    accounts: int
    open_interest_notional: float
    long_notional: float
    skipped_zero_qty: int
    skipped_underwater: int
    deferred: int = 0
    deferred_notional: float = 0.0  # at their placeholder entry prices


@dataclass(frozen=True)
class DeferredEntry:
    opened_ns: int
    account_id: str
    side: str
    qty_lots: int
    isolated_minor: int  # moved to the isolated pocket when the position opens (0 for cross)


@dataclass(frozen=True)
class DeferredEntries:
    """Positions opened during the run, in time order; :meth:`cursor` walks them for one policy run."""

    instrument: Instrument
    entries: tuple[DeferredEntry, ...] = ()

    def __len__(self) -> int:
        return len(self.entries)

    def cursor(self) -> EntryCursor:
        return EntryCursor(self)


class EntryCursor:
    """Opens the deferred positions that are due, one policy run at a time."""

    def __init__(self, plan: DeferredEntries) -> None:
        self.plan = plan
        self.next = 0

    def open_due(self, ledger: Ledger, ts_ns: int, price_ticks: int) -> list[str]:
        """Open every position due by ``ts_ns`` at ``price_ticks`` against the market; their ids."""
        entries = self.plan.entries
        start = self.next
        while self.next < len(entries) and entries[self.next].opened_ns <= ts_ns:
            self.next += 1
        due = entries[start:self.next]
        if not due:
            return []
        opened = [e.account_id for e in due]
        # one batch call: the same postings, fills and journal as add_isolated_margin + apply_fill per entry
        ledger.open_positions(opened, [e.qty_lots if e.side == "long" else -e.qty_lots for e in due],
                              [e.isolated_minor for e in due], instrument=self.plan.instrument,
                              price_ticks=int(price_ticks), counterparty=MARKET, ts_ns=ts_ns)
        return opened

    def open_due_one_by_one(self, ledger: Ledger, ts_ns: int, price_ticks: int) -> list[str]:
        """The reference path of :meth:`open_due`: the ledger's own calls, entry by entry."""
        entries, instrument = self.plan.entries, self.plan.instrument
        opened: list[str] = []
        while self.next < len(entries) and entries[self.next].opened_ns <= ts_ns:
            entry = self.next_entry()
            if entry.isolated_minor > 0:
                ledger.add_isolated_margin(entry.account_id, instrument, entry.isolated_minor, ts_ns=ts_ns)
            buyer, seller = (entry.account_id, MARKET) if entry.side == "long" else (MARKET, entry.account_id)
            ledger.apply_fill(buyer=buyer, seller=seller, instrument=instrument, price_ticks=int(price_ticks),
                              qty_lots=entry.qty_lots, ts_ns=ts_ns, reason="open position")
            opened.append(entry.account_id)
        return opened

    def next_entry(self) -> DeferredEntry:
        entry = self.plan.entries[self.next]
        self.next += 1
        return entry


def seed_ledger(
    population: pl.DataFrame,
    instrument: Instrument,
    *,
    start_mark_ticks: int,
    insurance_fund: float,
    backstops: Iterable[tuple[str, float]] = (),
    ts_ns: int = 0,
    drop_liquidatable: Iterable[int] = (),
    start_ns: int | None = None,
    bulk: bool = True,
) -> tuple[Ledger, SeedReport]:
    """A ledger holding the population's positions (opened at their entry prices) and the system accounts.

    ``backstops`` are ``(account_id, capital)`` pairs. ``drop_liquidatable`` lists population ids that
    would already be liquidatable at the start mark (the caller screens them): a real venue would have
    closed them before the replay starts, so they are left out and counted. With ``start_ns``, rows
    whose ``opened_ns`` is later are funded now and opened later (:func:`deferred_entries`).

    The traders go in through :meth:`Ledger.load_traders` (columns, one pass); ``bulk=False`` opens
    them one by one instead, the reference the bulk path is tested against (same digest and journal).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in population.columns]
    if missing:
        raise InvalidInput("population", sorted(population.columns), f"missing columns {missing}")
    if insurance_fund < 0:
        raise InvalidInput("insurance_fund", insurance_fund, "must be >= 0")
    dropped = {int(i) for i in drop_liquidatable}
    rows = _seed_rows(population, instrument, dropped, start_ns)
    ledger = _system_ledger(instrument, insurance_fund, backstops, ts_ns)
    if bulk:
        _load_bulk(ledger, rows, instrument, ts_ns)
    else:
        _load_one_by_one(ledger, rows, instrument, ts_ns)
    return ledger, _seed_report(rows, instrument, start_mark_ticks, len(dropped))


@dataclass(frozen=True)
class _SeedRows:
    """The population rows that become accounts, in population order, as columns."""

    account_ids: list[str]
    long: np.ndarray  # bool
    lots: np.ndarray  # int64 > 0
    entry_ticks: np.ndarray  # int64 > 0
    collateral: np.ndarray  # float64, as given
    isolated: np.ndarray  # bool
    later: np.ndarray  # bool: funded now, opened during the run
    skipped_zero: int


def _seed_rows(population: pl.DataFrame, instrument: Instrument, dropped: set[int],
               start_ns: int | None) -> _SeedRows:
    """Sizes and entries on the instrument's grid; dropped and zero-size rows left out (counted)."""
    modes = population["margin_mode"]
    bad_modes = sorted(set(modes.unique().to_list()) - {"cross", "isolated"}, key=str)
    if bad_modes:
        raise InvalidInput("margin_mode", bad_modes[0], "must be 'cross' or 'isolated'")
    ids = population["account_id"].to_numpy()
    qty_lots = np.rint(population["qty"].to_numpy() / float(instrument.lot_size)).astype(np.int64)
    entry_ticks = np.rint(population["entry_price"].to_numpy() / float(instrument.tick_size)).astype(np.int64)
    kept = ~np.isin(ids.astype(np.int64), np.fromiter(dropped, dtype=np.int64, count=len(dropped)))
    usable = (qty_lots > 0) & (entry_ticks > 0)
    take = kept & usable
    names = ("t" + population["account_id"].cast(pl.Int64).cast(pl.Utf8)).filter(pl.Series(take))
    return _SeedRows(
        account_ids=names.to_list(),
        long=(population["side"] == "long").to_numpy()[take],
        lots=qty_lots[take],
        entry_ticks=entry_ticks[take],
        collateral=population["collateral"].to_numpy().astype(np.float64)[take],
        isolated=(modes == "isolated").to_numpy()[take],
        later=_deferred_mask(population, start_ns)[take],
        skipped_zero=int((kept & ~usable).sum()),
    )


def _system_ledger(instrument: Instrument, insurance_fund: float, backstops: Iterable[tuple[str, float]],
                   ts_ns: int) -> Ledger:
    """The insurance fund, fee pool, market and backstop accounts, funded from the world."""
    ledger = Ledger()
    settle = instrument.settle
    ledger.open_account(INSURANCE_FUND, kind="insurance_fund")
    ledger.open_account(FEE_POOL, kind="fee_pool")
    ledger.open_account(MARKET, kind="market")
    if insurance_fund > 0:
        ledger.deposit(INSURANCE_FUND, settle, settle.to_minor(insurance_fund, rounding="down"), ts_ns)
    for account_id, capital in backstops:
        ledger.open_account(account_id, kind="backstop")
        if capital > 0:
            ledger.deposit(account_id, settle, settle.to_minor(capital, rounding="down"), ts_ns)
    return ledger


def _load_bulk(ledger: Ledger, rows: _SeedRows, instrument: Instrument, ts_ns: int) -> None:
    """Every trader through one :meth:`Ledger.load_traders` call (deferred rows funded, qty 0)."""
    amount = minor_floor(instrument.settle, rows.collateral, "collateral")
    signed = np.where(rows.long, rows.lots, -rows.lots)
    columns = TraderColumns(
        account_ids=rows.account_ids,
        isolated=rows.isolated,
        deposit_minor=np.maximum(amount, 0),
        qty_lots=np.where(rows.later, 0, signed),
        price_ticks=rows.entry_ticks,
    )
    ledger.load_traders(columns, instrument=instrument, counterparty=MARKET, ts_ns=ts_ns)


def _load_one_by_one(ledger: Ledger, rows: _SeedRows, instrument: Instrument, ts_ns: int) -> None:
    """The reference path: open, fund (and isolate) and fill each trader with the ledger's own calls."""
    settle = instrument.settle
    for i, account in enumerate(rows.account_ids):
        isolated = bool(rows.isolated[i])
        ledger.open_account(account, margin_mode="isolated" if isolated else "cross")
        amount = settle.to_minor(float(rows.collateral[i]), rounding="down")
        if amount > 0:
            ledger.deposit(account, settle, amount, ts_ns)
        if rows.later[i]:  # funded now, opened when the run reaches its time
            continue
        if amount > 0 and isolated:
            ledger.add_isolated_margin(account, instrument, amount, ts_ns=ts_ns)
        buyer, seller = (account, MARKET) if rows.long[i] else (MARKET, account)
        ledger.apply_fill(
            buyer=buyer, seller=seller, instrument=instrument, price_ticks=int(rows.entry_ticks[i]),
            qty_lots=int(rows.lots[i]), ts_ns=ts_ns, reason="open position",
        )


def _seed_report(rows: _SeedRows, instrument: Instrument, start_mark_ticks: int, dropped: int) -> SeedReport:
    """Counts and notionals; the float sums run in row order, as a per-row ``+=`` would."""
    now = ~rows.later
    marks = np.full(rows.lots.shape, int(start_mark_ticks), dtype=np.int64)
    at_mark = _notional_units(instrument, marks[now], rows.lots[now])
    deferred = _notional_units(instrument, rows.entry_ticks[rows.later], rows.lots[rows.later])
    return SeedReport(int(now.sum()), _running_sum(at_mark), _running_sum(at_mark[rows.long[now]]),
                      rows.skipped_zero, dropped, int(rows.later.sum()), _running_sum(deferred))


def _notional_units(instrument: Instrument, ticks: np.ndarray, lots: np.ndarray) -> np.ndarray:
    """``float(instrument.notional(t, q)) / minor_per_unit`` per row (both steps correctly rounded)."""
    per_unit = float(instrument.settle.minor_per_unit)
    per = instrument.linear_value_per_tick_lot if instrument.contract == "linear" else None
    if per is not None and per.denominator == 1 and ticks.size:
        bound = int(per.numerator) * int(ticks.max()) * int(lots.max())
        if bound < 2**62:
            return (int(per.numerator) * ticks * lots).astype(np.float64) / per_unit
    values = [float(instrument.notional(int(t), int(q))) / per_unit
              for t, q in zip(ticks.tolist(), lots.tolist(), strict=True)]
    return np.array(values, dtype=np.float64)


def _running_sum(values: np.ndarray) -> float:
    """Left-to-right float sum (``np.sum`` pairs terms up and can differ in the last bit)."""
    return float(np.cumsum(values)[-1]) if values.size else 0.0


def _deferred_mask(population: pl.DataFrame, start_ns: int | None) -> np.ndarray:
    if start_ns is None or "opened_ns" not in population.columns:
        return np.zeros(population.height, dtype=bool)
    return (population["opened_ns"].fill_null(start_ns).to_numpy() > start_ns)


def deferred_entries(population: pl.DataFrame, instrument: Instrument, *, start_ns: int,
                     drop: Iterable[int] = ()) -> DeferredEntries:
    """The positions of ``population`` opened after ``start_ns`` (what :func:`seed_ledger` deferred).

    Columns throughout: sizes on the lot grid (half to even), isolated margin in exact minor units
    (:func:`minor_floor`, the rounding of ``to_minor(..., "down")``), ordered by (time, account id).
    """
    rows = np.flatnonzero(_deferred_mask(population, start_ns))
    if not rows.size:
        return DeferredEntries(instrument, ())
    dropped = {int(i) for i in drop}
    part = population[rows]
    ids = part["account_id"].to_numpy()
    lots = np.rint(part["qty"].to_numpy() / float(instrument.lot_size)).astype(np.int64)
    dropped_rows = np.isin(ids.astype(np.int64), np.fromiter(dropped, dtype=np.int64, count=len(dropped)))
    keep = (lots > 0) & ~dropped_rows
    part = part.filter(pl.Series(keep))
    isolated = (part["margin_mode"] == "isolated").to_numpy()
    amount = np.where(isolated, minor_floor(instrument.settle, part["collateral"].to_numpy(), "collateral"), 0)
    # (time, id) order taken by polars before any object is made: ids are ASCII ("t" + digits), so its byte
    # order is Python's str order, and (time, id) pairs are unique (ids are)
    table = pl.DataFrame({
        "opened_ns": part["opened_ns"], "account_id": "t" + part["account_id"].cast(pl.Int64).cast(pl.Utf8),
        "side": part["side"], "qty_lots": lots[keep], "isolated_minor": amount.astype(np.int64),
    }).sort(["opened_ns", "account_id"])
    collecting = gc.isenabled()
    gc.disable()  # a million small objects: the collector would rescan the growing heap over and over
    try:
        entries = tuple(map(DeferredEntry, *(table[c].to_list() for c in table.columns)))
    finally:
        if collecting:
            gc.enable()
    return DeferredEntries(instrument, entries)


__all__ = [
    "FEE_POOL",
    "INSURANCE_FUND",
    "MARKET",
    "DeferredEntries",
    "DeferredEntry",
    "EntryCursor",
    "SeedReport",
    "deferred_entries",
    "seed_ledger",
    "trader_id",
]
