"""Strategies for awkward markets: linear and inverse instruments with odd ticks, lots and contract
sizes, shipped and drawn stepped tier tables, cross and isolated accounts on one or two symbols, and
accounts placed exactly on the edge of liquidation at a mark of the path.

Used by the exact-liquidation tests and the engine properties; the maintenance here is read straight
from the tier table (independent of the engine's fast paths).
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

from hypothesis import strategies as st

from deleverage.core.instruments import Instrument
from deleverage.core.ledger import Ledger, MarginState
from deleverage.core.money import Asset
from deleverage.core.tiers import MarginTiers
from deleverage.testing import make_ledger

SHIPPED = [MarginTiers.load(name) for name in MarginTiers.available()]


def maintenance_exact(inst: Instrument, tiers: MarginTiers, qty_lots: int, mark_ticks: int) -> Fraction:
    """Exact tiered maintenance in minor units, straight from the tier table (independent of the engine)."""
    unit = inst.settle.minor_per_unit
    return tiers.maintenance_margin_exact(abs(inst.notional(mark_ticks, qty_lots)) / unit) * unit


RATES = ["0.004", "0.005", "0.0065", "0.01", "0.0125", "0.02", "0.025", "0.05", "0.1"]


@st.composite
def markets(draw, symbols: int):
    """``symbols`` instruments sharing one settlement asset, each with a base price (ticks) and a tier
    table, chosen so maintenance often has a fraction of a minor unit and positions cross brackets."""
    contract = draw(st.sampled_from(["linear", "inverse"]))
    if contract == "linear":
        settle = Asset("USDT", draw(st.sampled_from([8, 6, 2])))
        unit_notional = Decimal(10_000)  # settle units: the shipped tables' brackets are reachable
    else:
        settle = Asset("BTC", 8)
        unit_notional = Decimal(1)
    out = []
    for k in range(symbols):
        tick = Decimal(draw(st.sampled_from(["0.01", "0.1", "0.5", "0.05", "1", "0.001"])))
        if contract == "linear":
            lot = Decimal(draw(st.sampled_from(["0.001", "0.01", "0.1", "1", "0.003"])))
            size = Decimal(draw(st.sampled_from(["1", "0.1", "10"])))
            price = Decimal(draw(st.sampled_from(["0.7", "31.5", "3000", "61234.5"])))
        else:
            lot = Decimal(1)
            size = Decimal(draw(st.sampled_from(["1", "10", "100"])))
            price = Decimal(draw(st.sampled_from(["9.99", "3000", "61234.5"])))
        base_ticks = max(50, int(price / tick))
        inst = Instrument(symbol=f"S{k}", contract=contract, base=f"B{k}", quote="USD", settle=settle,
                          tick_size=tick, lot_size=lot, contract_size=size)
        if contract == "linear" and draw(st.booleans()):
            tiers = draw(st.sampled_from(SHIPPED))
        else:
            n = draw(st.integers(1, 4))
            rates = sorted(draw(st.lists(st.sampled_from(RATES), min_size=n, max_size=n, unique=True)), key=Decimal)
            floors = sorted(draw(st.lists(st.sampled_from(["0.3", "1", "3", "10", "30", "100"]),
                                          min_size=n - 1, max_size=n - 1, unique=True)), key=Decimal)
            tiers = MarginTiers.from_brackets(
                [(0, rates[0])] + [(unit_notional * Decimal(f), r) for f, r in zip(floors, rates[1:], strict=True)])
        out.append((inst, tiers, base_ticks, unit_notional))
    return out


account_rows = st.tuples(
    st.sampled_from(["long", "short"]),
    st.integers(1, 3000),              # notional in hundredths of the unit notional (0.01x – 30x)
    st.integers(-300, 300),            # entry offset from the base price, in 0.1 %
    st.sampled_from([1.5, 3, 10, 40, 100]),  # leverage at entry
    st.booleans(),                     # isolated
    st.integers(0, 1),                 # which symbol (cross accounts may also hold the other)
    st.booleans(),                     # cross: also hold the other symbol
    st.one_of(st.none(), st.tuples(st.integers(0, 11), st.integers(-1, 1))),  # knife edge: step, delta
)


def lots_for(inst: Instrument, ticks: int, notional: Decimal) -> int:
    per_lot = abs(inst.notional(ticks, 1)) / inst.settle.minor_per_unit  # settle units per lot
    return max(1, int(Fraction(notional) / per_lot))


def open_raw(ledger: Ledger, aid: str, inst: Instrument, side: str, lots: int, ticks: int, collateral_minor: int,
          isolated: bool) -> None:
    code = inst.settle.code
    if collateral_minor > 0:
        ledger.deposit(aid, code, collateral_minor, 0)
        if isolated:
            ledger.add_isolated_margin(aid, inst, collateral_minor, ts_ns=0)
    buyer, seller = (aid, "market") if side == "long" else ("market", aid)
    ledger.apply_fill(buyer=buyer, seller=seller, instrument=inst, price_ticks=ticks, qty_lots=lots, ts_ns=0,
                      reason="open")


class Scenario:
    """Instruments, tiers, a ledger of accounts and a mark path drawn together (see the strategies)."""

    def __init__(self, market: list, accounts: list, moves: list, *, fund_minor: int = 0) -> None:
        self.insts = {inst.symbol: inst for inst, *_ in market}
        self.tiers = {inst.symbol: t for inst, t, *_ in market}
        self.base = {inst.symbol: b for inst, _, b, _ in market}
        self.symbols = sorted(self.insts)
        unit_notional = {inst.symbol: u for inst, _, _, u in market}
        # the path is known in advance so knife-edge accounts can be placed exactly at one of its marks
        self.path, marks = [], dict(self.base)
        for which, ppm in moves:
            symbol = self.symbols[which % len(self.symbols)]
            marks[symbol] = max(1, marks[symbol] + marks[symbol] * ppm // 1_000_000)
            self.path.append((symbol, dict(marks)))
        code = next(iter(self.insts.values())).settle.code
        self.ledger = ledger = make_ledger(insurance_fund={code: fund_minor} if fund_minor else None)
        for i, (side, hundredths, offset, leverage, isolated, which, both, edge) in enumerate(accounts):
            aid = f"t{i}"
            ledger.open_account(aid, margin_mode="isolated" if isolated else "cross")
            held = [self.symbols[which % len(self.symbols)]]
            if both and not isolated and len(self.symbols) > 1:
                held = self.symbols
            knife_edge = edge is not None and len(held) == 1
            for symbol in held:
                inst = self.insts[symbol]
                entry = max(1, self.base[symbol] + self.base[symbol] * offset // 1000)
                lots = lots_for(inst, entry, unit_notional[symbol] * hundredths / 100)
                collateral = 0 if knife_edge else int(abs(inst.notional(entry, lots)) / Fraction(leverage))
                open_raw(ledger, aid, inst, side, lots, entry, collateral, isolated)
            if knife_edge:  # equity = ceil(maintenance) + delta at one mark of the path
                self._place_on_edge(aid, held[0], isolated, *edge)

    def _place_on_edge(self, aid: str, symbol: str, isolated: bool, step: int, delta: int) -> None:
        ledger, inst = self.ledger, self.insts[symbol]
        at = self.path[step % len(self.path)][1]
        mm = maintenance_exact(inst, self.tiers[symbol], ledger.position(aid, symbol).qty_lots, at[symbol])
        equity = ledger.equity_exact(aid, at, symbol=symbol) if isolated else \
            ledger.equity_exact(aid, at, asset_code=inst.settle.code)
        need = math.ceil(mm) + delta - equity
        if need >= 1:
            ledger.deposit(aid, inst.settle.code, int(need), 0)
            if isolated:
                ledger.add_isolated_margin(aid, inst, int(need), ts_ns=0)

    def steps(self) -> list[tuple[str, dict[str, int]]]:
        """(symbol marked, all marks) per call: each symbol's first mark, then the path."""
        return [(s, dict(self.base)) for s in self.symbols] + self.path

    def traders(self, symbol: str) -> list[str]:
        return [p.account_id for p in self.ledger.positions(symbol) if p.account_id.startswith("t")]

    def state(self, aid: str, symbol: str, marks: dict[str, int]) -> MarginState:
        isolated = self.ledger.account(aid).margin_mode == "isolated"
        return self.ledger.margin_state(aid, marks, lambda inst: self.tiers[inst.symbol],
                                        symbol=symbol if isolated else None,
                                        asset_code=None if isolated else self.insts[symbol].settle.code)


scenario_args = dict(two_symbols=st.booleans(), accounts=st.lists(account_rows, min_size=1, max_size=6),
                     moves=st.lists(st.tuples(st.integers(0, 1), st.integers(-60_000, 50_000)), min_size=3,
                                    max_size=12))
