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

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl

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
        entries, instrument = self.plan.entries, self.plan.instrument
        opened: list[str] = []
        while self.next < len(entries) and entries[self.next].opened_ns <= ts_ns:
            entry = entries[self.next]
            self.next += 1
            if entry.isolated_minor > 0:
                ledger.add_isolated_margin(entry.account_id, instrument, entry.isolated_minor, ts_ns=ts_ns)
            buyer, seller = (entry.account_id, MARKET) if entry.side == "long" else (MARKET, entry.account_id)
            ledger.apply_fill(buyer=buyer, seller=seller, instrument=instrument, price_ticks=int(price_ticks),
                              qty_lots=entry.qty_lots, ts_ns=ts_ns, reason="open position")
            opened.append(entry.account_id)
        return opened


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
) -> tuple[Ledger, SeedReport]:
    """A ledger holding the population's positions (opened at their entry prices) and the system accounts.

    ``backstops`` are ``(account_id, capital)`` pairs. ``drop_liquidatable`` lists population ids that
    would already be liquidatable at the start mark (the caller screens them): a real venue would have
    closed them before the replay starts, so they are left out and counted. With ``start_ns``, rows
    whose ``opened_ns`` is later are funded now and opened later (:func:`deferred_entries`).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in population.columns]
    if missing:
        raise InvalidInput("population", sorted(population.columns), f"missing columns {missing}")
    if insurance_fund < 0:
        raise InvalidInput("insurance_fund", insurance_fund, "must be >= 0")
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

    dropped = {int(i) for i in drop_liquidatable}
    ids = population["account_id"].to_numpy()
    sides = population["side"].to_list()
    qty_lots = np.rint(population["qty"].to_numpy() / float(instrument.lot_size)).astype(np.int64)
    entry_ticks = np.rint(population["entry_price"].to_numpy() / float(instrument.tick_size)).astype(np.int64)
    collateral = population["collateral"].to_numpy()
    modes = population["margin_mode"].to_list()
    later = _deferred_mask(population, start_ns)
    deferred_notional = 0.0
    deferred = 0
    skipped_zero = 0
    long_notional = 0.0
    total_notional = 0.0
    opened = 0
    for i in range(population.height):
        if int(ids[i]) in dropped:
            continue
        lots = int(qty_lots[i])
        if lots <= 0 or entry_ticks[i] <= 0:
            skipped_zero += 1
            continue
        account = trader_id(ids[i])
        mode = modes[i]
        ledger.open_account(account, margin_mode=mode)
        amount = settle.to_minor(float(collateral[i]), rounding="down")
        if later[i]:  # funded now, opened when the run reaches its time
            if amount > 0:
                ledger.deposit(account, settle, amount, ts_ns)
            deferred += 1
            deferred_notional += float(instrument.notional(int(entry_ticks[i]), lots)) / settle.minor_per_unit
            continue
        if amount > 0:
            ledger.deposit(account, settle, amount, ts_ns)
            if mode == "isolated":
                ledger.add_isolated_margin(account, instrument, amount, ts_ns=ts_ns)
        buyer, seller = (account, MARKET) if sides[i] == "long" else (MARKET, account)
        ledger.apply_fill(
            buyer=buyer, seller=seller, instrument=instrument, price_ticks=int(entry_ticks[i]),
            qty_lots=lots, ts_ns=ts_ns, reason="open position",
        )
        notional = float(instrument.notional(start_mark_ticks, lots)) / settle.minor_per_unit
        total_notional += notional
        if sides[i] == "long":
            long_notional += notional
        opened += 1
    report = SeedReport(opened, total_notional, long_notional, skipped_zero, len(dropped), deferred,
                        deferred_notional)
    return ledger, report


def _deferred_mask(population: pl.DataFrame, start_ns: int | None) -> np.ndarray:
    if start_ns is None or "opened_ns" not in population.columns:
        return np.zeros(population.height, dtype=bool)
    return (population["opened_ns"].fill_null(start_ns).to_numpy() > start_ns)


def deferred_entries(population: pl.DataFrame, instrument: Instrument, *, start_ns: int,
                     drop: Iterable[int] = ()) -> DeferredEntries:
    """The positions of ``population`` opened after ``start_ns`` (what :func:`seed_ledger` deferred)."""
    later = _deferred_mask(population, start_ns)
    dropped = {int(i) for i in drop}
    settle = instrument.settle
    rows = []
    for i in np.flatnonzero(later).tolist():
        row = population.row(i, named=True)
        lots = int(round(row["qty"] / float(instrument.lot_size)))
        if lots <= 0 or int(row["account_id"]) in dropped:
            continue
        amount = settle.to_minor(float(row["collateral"]), rounding="down")
        rows.append(DeferredEntry(int(row["opened_ns"]), trader_id(row["account_id"]), row["side"], lots,
                                  amount if row["margin_mode"] == "isolated" else 0))
    rows.sort(key=lambda e: (e.opened_ns, e.account_id))
    return DeferredEntries(instrument, tuple(rows))


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
