"""Turn a population frame into a ledger: accounts funded from the world, positions opened against the market.

The ``market`` account stands for everyone outside the simulated population (the rest of the venue's
book); it takes the opposite side of every opening trade, so open interest balances exactly and the
ledger's total value is conserved from the first posting on. The insurance fund and the backstop
providers are funded from the world too, so every unit of value in a run has a visible origin.
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


def seed_ledger(
    population: pl.DataFrame,
    instrument: Instrument,
    *,
    start_mark_ticks: int,
    insurance_fund: float,
    backstops: Iterable[tuple[str, float]] = (),
    ts_ns: int = 0,
    drop_liquidatable: Iterable[int] = (),
) -> tuple[Ledger, SeedReport]:
    """A ledger holding the population's positions (opened at their entry prices) and the system accounts.

    ``backstops`` are ``(account_id, capital)`` pairs. ``drop_liquidatable`` lists population ids that
    would already be liquidatable at the start mark (the caller screens them): a real venue would have
    closed them before the replay starts, so they are left out and counted.
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
    report = SeedReport(opened, total_notional, long_notional, skipped_zero, len(dropped))
    return ledger, report


__all__ = ["FEE_POOL", "INSURANCE_FUND", "MARKET", "SeedReport", "seed_ledger", "trader_id"]
