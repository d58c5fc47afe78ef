"""A hand-made lab scene: a given reference path, a block-shaped impact book, a few seeded accounts.

So lab-level numbers (the yardstick, the cascade counterfactual) can be checked against values worked
out by hand, through the same ``run_policy`` the replays use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deleverage.core.instruments import BTCUSDT
from deleverage.core.tiers import MarginTiers
from deleverage.engine import BackstopProvider
from deleverage.lab.impact_book import ImpactBook, Ladder
from deleverage.lab.market import PathMarket
from deleverage.lab.seeding import INSURANCE_FUND, MARKET, SeedReport
from deleverage.lab.setup import Scene
from deleverage.testing import make_ledger, open_position

INST = BTCUSDT
TIERS = MarginTiers.flat("0.004")
S = 1_000_000_000
USDT = 10**8


class PathBookMarket(PathMarket):
    """Reference = ``path`` (one point a second); book = ``lots_per_tick`` at every tick from the touch."""

    def __init__(self, path_ticks: list[int], *, lots_per_tick: int, spread_ticks: int = 2,
                 permanent_share: float = 1.0, resilience_per_s: float = 0.0, feedback: bool = True) -> None:
        self.instrument, self.symbol = INST, INST.symbol
        self._path = np.asarray(path_ticks, dtype=np.int64)
        self._times = np.arange(len(path_ticks), dtype=np.int64) * S
        self.start_ns, self.end_ns = 0, int(self._times[-1])
        self._index = 0
        ladder = Ladder(float(lots_per_tick), 1.0, 200_000)
        self.book = ImpactBook(reference_ticks=int(self._path[0]), bid=ladder, ask=ladder, spread_ticks=spread_ticks,
                               resilience_per_s=resilience_per_s, permanent_share=permanent_share, ts_ns=0,
                               feedback=feedback)

    def times(self) -> np.ndarray:
        return self._times

    def advance_to(self, ts_ns: int) -> None:
        self._index = int(np.searchsorted(self._times, ts_ns, side="right") - 1)
        self.book.decay_to(ts_ns)
        self.book.set_reference(int(self._path[self._index]))

    def description(self) -> list[str]:
        return ["hand-made path and book"]


def scene(path_ticks: list[int], positions: list[tuple[str, str, str, str, str]], *, lots_per_tick: int,
          fund_usdt: int = 1_000_000, backstops: tuple[str, ...] = (), **market: Any) -> Scene:
    """positions: (account, side, qty BTC, entry price, collateral USDT), opened against the market."""
    ledger = make_ledger(insurance_fund={"USDT": fund_usdt * USDT})
    for aid in backstops:
        ledger.open_account(aid, kind="backstop")
        ledger.deposit(aid, "USDT", 10_000_000 * USDT, 0)
    notional = 0.0
    for aid, side, qty, price, collateral in positions:
        open_position(ledger, aid, INST, side, qty, price, collateral)
        notional += float(qty) * float(price)
    assert ledger.has_account(INSURANCE_FUND) and ledger.has_account(MARKET)

    def make_market(feedback: bool = True) -> PathBookMarket:
        return PathBookMarket(path_ticks, lots_per_tick=lots_per_tick, feedback=feedback, **market)

    def make_backstops() -> list[BackstopProvider]:
        return [BackstopProvider(b, 10_000_000 * USDT, 50.0, 1_000_000) for b in backstops]

    probe = make_market()
    return Scene(
        title="hand-made", instrument=INST, tiers=TIERS, ledger=ledger,
        seed_report=SeedReport(len(positions), notional, notional, 0, 0), times=probe.times(),
        make_market=make_market, make_backstops=make_backstops, make_frontrunner=lambda _l, _m: None,
        data_digest="hand", population_digest="hand", reference_low_ticks=min(path_ticks),
        reference_high_ticks=max(path_ticks),
    )


def record_ledger_copies(monkeypatch: Any) -> list[Any]:
    """Patch ``Ledger.copy`` to keep every copy it makes: a run works on a copy of the scene's ledger,
    so the copies are the run's final ledgers (the scene's own stays untouched)."""
    from deleverage.core.ledger import Ledger  # noqa: PLC0415

    copies: list[Ledger] = []
    real_copy = Ledger.copy

    def recording_copy(self: Ledger) -> Ledger:
        out = real_copy(self)
        copies.append(out)
        return out

    monkeypatch.setattr(Ledger, "copy", recording_copy)
    return copies
