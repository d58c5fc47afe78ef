"""Builders for the monitor tests: leveraged books on a real ledger and a brute-force rescan of them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from deleverage.core.instruments import BTCUSD_PERP, BTCUSDT, Instrument
from deleverage.core.ledger import Ledger
from deleverage.core.tiers import MarginTiers
from deleverage.engine import LiquidationEngine, get_policy
from deleverage.testing import make_ledger

LINEAR_TIERS = {"flat": MarginTiers.flat("0.004"),
                "stepped": MarginTiers.from_brackets([(0, "0.004"), (50_000, "0.005"), (250_000, "0.01"),
                                                      (1_000_000, "0.025")])}
INVERSE_TIERS = {"flat": MarginTiers.flat("0.005"),
                 "stepped": MarginTiers.from_brackets([(0, "0.005"), (1, "0.01"), (5, "0.025")])}


@dataclass(frozen=True)
class Account:
    """A position to open: side, lots, entry ticks, leverage (collateral = notional / leverage), isolated,
    and ``knife`` — a level at which the account is made liquidatable with equity = maintenance."""

    side: str
    lots: int
    entry_ticks: int
    leverage: float
    isolated: bool = False
    knife_ticks: int | None = None


def market(inverse: bool, tiers: str) -> tuple[Instrument, MarginTiers]:
    return (BTCUSD_PERP, INVERSE_TIERS[tiers]) if inverse else (BTCUSDT, LINEAR_TIERS[tiers])


def build(inst: Instrument, tiers: MarginTiers, accounts: list[Account], *, fund_minor: int = 10**14,
          policy: str = "binance", **overrides: object) -> LiquidationEngine:
    """A ledger with the accounts opened against ``market``, and an engine tracking them."""
    code = inst.settle.code
    ledger = make_ledger(insurance_fund={code: fund_minor})
    for i, acc in enumerate(accounts):
        open_account(ledger, f"t{i:03d}", inst, tiers, acc)
    chosen = get_policy(policy)
    if overrides:
        chosen = chosen.with_overrides(**overrides)
    engine = LiquidationEngine(ledger, instruments=[inst], policy=chosen, tiers_for=lambda _i: tiers)
    engine.track_all()
    return engine


def open_account(ledger: Ledger, aid: str, inst: Instrument, tiers: MarginTiers, acc: Account) -> None:
    ledger.open_account(aid, margin_mode="isolated" if acc.isolated else "cross")
    buyer, seller = (aid, "market") if acc.side == "long" else ("market", aid)
    ledger.apply_fill(buyer=buyer, seller=seller, instrument=inst, price_ticks=acc.entry_ticks,
                      qty_lots=acc.lots, ts_ns=0, reason="open")
    notional = abs(inst.notional(acc.entry_ticks, acc.lots))
    collateral = math.ceil(notional / Fraction(acc.leverage))
    if acc.knife_ticks is not None:  # equity at the knife level = maintenance there (floored to a minor unit)
        state = ledger.margin_state(aid, {inst.symbol: acc.knife_ticks}, lambda _i: tiers, symbol=inst.symbol)
        collateral = math.floor(state.maintenance_exact - state.equity_exact)
    if collateral <= 0:
        collateral = 1
    ledger.deposit(aid, inst.settle, collateral, 0, reason="collateral")
    if acc.isolated:
        ledger.add_isolated_margin(aid, inst, collateral, ts_ns=0)


def liquidatable(ledger: Ledger, inst: Instrument, tiers: MarginTiers, price_ticks: int, side: str
                 ) -> tuple[int, int]:
    """(accounts, lots) of traders on ``side`` liquidatable with the mark at ``price_ticks`` — a full
    rescan with ``Ledger.margin_state``, the ledger's own rule."""
    count = lots = 0
    for pos in ledger.positions(inst.symbol):
        if ledger.account(pos.account_id).kind != "trader" or (pos.qty_lots > 0) != (side == "long"):
            continue
        state = ledger.margin_state(pos.account_id, {inst.symbol: price_ticks}, lambda _i: tiers,
                                    symbol=inst.symbol)
        if state.liquidatable:
            count += 1
            lots += abs(pos.qty_lots)
    return count, lots


def notional_units(inst: Instrument, mark_ticks: int, lots: int) -> float:
    """What the snapshot shows for ``lots`` at the mark: minor units rounded to nearest, in settle units."""
    return round(abs(inst.notional(mark_ticks, lots))) / inst.settle.minor_per_unit if lots else 0.0


def qty(inst: Instrument, lots: int) -> float:
    return float(inst.lot_size * Decimal(lots))


def crash(seed: int, n: int = 60, *, policy: str = "binance", depth_lots: int = 40, fund_minor: int = 10**12,
          **overrides: object) -> tuple[LiquidationEngine, list[tuple[int, int]]]:
    """A levered BTCUSDT book (both sides, cross and isolated) and a seeded path: a 6 % fall over ten
    minutes, a bounce, then a grind — marks every 5 s, the book's mid following the mark."""
    import numpy as np

    from deleverage.execution.book import ResilientBook

    rng = np.random.default_rng(seed)
    inst, tiers = BTCUSDT, LINEAR_TIERS["stepped"]
    accounts = [Account("long" if rng.random() < 0.7 else "short", int(rng.integers(50, 4000)),
                        int(600_000 + rng.integers(-3000, 3000)), float(rng.uniform(5, 90)), bool(rng.random() < 0.3))
                for _ in range(n)]
    code = inst.settle.code
    ledger = make_ledger(insurance_fund={code: fund_minor})
    for i, acc in enumerate(accounts):
        open_account(ledger, f"t{i:03d}", inst, tiers, acc)
    chosen = get_policy(policy)
    if overrides:
        chosen = chosen.with_overrides(**overrides)
    book = ResilientBook(mid_ticks=600_000, half_spread_ticks=1, depth_lots_per_tick=depth_lots,
                         resilience_per_s=0.5)
    engine = LiquidationEngine(ledger, instruments=[inst], policy=chosen, tiers_for=lambda _i: tiers,
                               liquidity={inst.symbol: book})
    engine.track_all()
    path, price = [], 600_000.0
    for step in range(360):  # 30 minutes, every 5 s
        drift = -0.0012 if step < 120 else (0.0008 if step < 160 else -0.0002)
        price *= math.exp(drift + rng.normal(0, 0.0008))
        path.append(((step + 1) * 5 * 10**9, int(round(price))))
    return engine, path


def drive(engine: LiquidationEngine, path: list[tuple[int, int]], on_tick=None) -> None:  # noqa: ANN001
    """Feed the marks (the book's mid follows), checking conservation after every call."""
    from deleverage.testing import assert_conserved

    symbol = "BTCUSDT"
    book = engine._liquidity[symbol]  # noqa: SLF001 — the test's own book
    for ts, mark in path:
        book.advance(ts, mid_ticks=mark)
        before = engine.ledger.total_values({symbol: mark})
        engine.on_mark(symbol, mark, ts)
        assert_conserved(engine.ledger, before, {symbol: mark})
        if on_tick is not None:
            on_tick(ts)
