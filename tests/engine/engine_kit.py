"""Shared builders for the engine tests: a small ledger, a simulated book, conservation per call."""

from __future__ import annotations

from fractions import Fraction

from deleverage.core.instruments import BTCUSDT
from deleverage.core.ledger import Ledger
from deleverage.core.tiers import MarginTiers
from deleverage.engine import BackstopProvider, LiquidationEngine, get_policy
from deleverage.execution.book import ResilientBook
from deleverage.testing import assert_conserved, make_ledger, open_position

INST = BTCUSDT
FLAT_TIERS = MarginTiers.flat("0.004")
STEP_TIERS = MarginTiers.from_brackets([(0, "0.004"), (50_000, "0.005"), (250_000, "0.01")])
USDT = 10**8  # minor units per USDT (scale 8)


def ticks(price: float) -> int:
    return round(price * 10)


def book(mid: float = 60_000, depth_lots: int = 50, half_spread: int = 1) -> ResilientBook:
    return ResilientBook(mid_ticks=ticks(mid), half_spread_ticks=half_spread, depth_lots_per_tick=depth_lots,
                         resilience_per_s=0.0)


def ledger_with(positions: list[tuple[str, str, str, str, str]], fund_usdt: int = 100_000,
                backstops: tuple[str, ...] = ()) -> Ledger:
    """positions: (account, side, qty BTC, entry price, collateral USDT)."""
    ledger = make_ledger(insurance_fund={"USDT": fund_usdt * USDT} if fund_usdt else None)
    for aid in backstops:
        ledger.open_account(aid, kind="backstop")
        ledger.deposit(aid, "USDT", 10_000_000 * USDT, 0)
    for aid, side, qty, price, collateral in positions:
        open_position(ledger, aid, INST, side, qty, price, collateral)
    return ledger


def engine_for(preset: str, ledger: Ledger, *, liquidity=None, tiers=FLAT_TIERS, backstops=(),  # noqa: ANN001
               **overrides) -> LiquidationEngine:  # noqa: ANN003
    policy = get_policy(preset)
    if overrides:
        policy = policy.with_overrides(**overrides)
    engine = LiquidationEngine(ledger, instruments=[INST], policy=policy,
                               liquidity={INST.symbol: liquidity if liquidity is not None else book()},
                               tiers_for=lambda _i: tiers, backstops=list(backstops))
    engine.track_all()
    return engine


def provider(aid: str = "lp1", capacity_usdt: int = 1_000_000, discount_bps: float = 100.0,
             max_lots: int = 100_000) -> BackstopProvider:
    return BackstopProvider(aid, capacity_usdt * USDT, discount_bps, max_lots)


class Driver:
    """Feeds marks/oracles/advance to an engine and checks conservation after every call."""

    def __init__(self, engine: LiquidationEngine) -> None:
        self.engine = engine
        self.ledger = engine.ledger

    def _check(self, call, symbol_mark: int):  # noqa: ANN001, ANN202
        marks = {INST.symbol: symbol_mark}
        before: dict[str, Fraction] = self.ledger.total_values(marks)
        result = call()
        assert_conserved(self.ledger, before, marks)
        return result

    def _move_book(self, t: int, ts_ns: int) -> None:
        liquidity = self.engine._liquidity[INST.symbol]  # noqa: SLF001
        if isinstance(liquidity, ResilientBook):
            liquidity.advance(ts_ns, mid_ticks=t)

    def mark(self, price: float, ts_s: float, *, move_book: bool = True):  # noqa: ANN201
        t = ticks(price)
        if move_book:
            self._move_book(t, int(ts_s * 1e9))
        return self._check(lambda: self.engine.on_mark(INST.symbol, t, int(ts_s * 1e9)), t)

    def oracle(self, price: float, ts_s: float):  # noqa: ANN201
        mark = self.engine._marks.get(INST.symbol, ticks(price))  # noqa: SLF001
        return self._check(lambda: self.engine.on_oracle(INST.symbol, ticks(price), int(ts_s * 1e9)), mark)

    def advance(self, ts_s: float):  # noqa: ANN201
        mark = self.engine._marks[INST.symbol]  # noqa: SLF001
        return self._check(lambda: self.engine.advance(int(ts_s * 1e9)), mark)

    def kinds(self, account_id: str | None = None) -> list[str]:
        events = self.engine.audit if account_id is None else self.engine.audit.for_account(account_id)
        return [str(e.kind) for e in events]

    def qty(self, account_id: str) -> int:
        return self.ledger.position(account_id, INST.symbol).qty_lots
