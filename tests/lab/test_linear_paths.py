"""Issue 12: the per-account work of a run outside the ledger load, made linear, against its reference.

``Ledger.total_values`` (integer sums, one exact division per instrument), ``EntryCursor.open_due`` (one
``Ledger.open_positions`` batch per tick) and the engine's screen build (float columns) each keep their
old row-by-row form as the reference here: on bulk-seeded scenes of several seeds, with isolated
accounts and deferred entries, every preset runs to the same audit digest, records, totals and final
ledger with the new paths as with all three references patched in.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from deleverage.config.policy import get_policy
from deleverage.config.presets import PRESET_SPECS
from deleverage.core.instruments import BTCUSDT
from deleverage.core.ledger import Ledger, isolated_account_id
from deleverage.engine import engine as engine_module
from deleverage.engine.detect import float_row, maintenance_exact
from deleverage.engine.engine import LiquidationEngine
from deleverage.lab import setup
from deleverage.lab.config import RunConfig
from deleverage.lab.runner import run_policy
from deleverage.lab.seeding import MARKET, EntryCursor

from .scene_kit import record_ledger_copies

SEEDS = (3, 11)


def config(seed: int) -> RunConfig:
    return RunConfig(scenario="2025-10-10", accounts=150, seed=seed, window="21:10-21:16")


def reference_total_values(ledger: Ledger, marks: dict[str, int]) -> dict[str, Fraction]:
    """What ``total_values`` computed before: every balance and every position's exact PnL, one by one."""
    totals: dict[str, Fraction] = {}
    for (account_id, code), amount in ledger._all_balances().items():  # noqa: SLF001 - columns included
        if ledger._require_account(account_id).kind not in ("world", "clearing"):  # noqa: SLF001
            totals[code] = totals.get(code, Fraction(0)) + amount
    for pos in ledger._book.iterate():  # noqa: SLF001
        code = ledger._book.instrument(pos.symbol).settle.code  # noqa: SLF001
        totals[code] = totals.get(code, Fraction(0)) + ledger._book.unrealized_exact(pos, marks)  # noqa: SLF001
    return dict(sorted(totals.items()))


def reference_float_row(ledger: Ledger, account_id: str, symbol: str, marks: dict, instruments: dict,
                        tiers: dict) -> tuple[float, float, float, float]:
    """``float_row`` as it was: every value a Fraction, converted at the end."""
    inst = instruments[symbol]
    pos = ledger.position(account_id, symbol)
    if pos.qty_lots == 0:
        return 0.0, 1.0, 0.0, 0.0
    entry = pos.entry_price_ticks(inst)
    entry_price = float(entry) * float(inst.tick_size) if entry else float(inst.tick_size)
    qty = pos.qty_lots * float(inst.lot_size)
    minor = inst.settle.minor_per_unit
    pocket = isolated_account_id(account_id, symbol)
    if ledger.has_account(pocket):
        return qty, entry_price, ledger.balance(pocket, inst.settle.code) / minor, 0.0
    balance = Fraction(ledger.balance(account_id, inst.settle.code))
    other_mm: Fraction | int = 0
    for sym, other in instruments.items():
        if sym == symbol or other.settle.code != inst.settle.code or sym not in marks:
            continue
        p = ledger.position(account_id, sym)
        if p.qty_lots:
            balance += p.unrealized_pnl_exact(other, marks[sym])
            other_mm += maintenance_exact(other, tiers[sym], p.qty_lots, marks[sym])
    return qty, entry_price, float(balance / minor), float(other_mm / minor)


def reference_screen_columns(self: LiquidationEngine, symbol: str, positions: list) -> tuple[np.ndarray, ...]:
    data = [reference_float_row(self.ledger, p.account_id, symbol, self._marks, self._instruments, self._tiers)
            for p in positions]
    arr = np.array(data, dtype=np.float64).reshape(-1, 4)
    return tuple(np.ascontiguousarray(arr[:, k]) for k in range(4))


@pytest.fixture(scope="module")
def scenes() -> dict[int, Any]:
    return {seed: setup.build_scene(config(seed)) for seed in SEEDS}


def final_ledgers(monkeypatch: pytest.MonkeyPatch) -> list[Ledger]:
    return record_ledger_copies(monkeypatch)


@pytest.mark.parametrize("seed", SEEDS)
def test_total_values_equal_the_position_by_position_sum(scenes, seed: int) -> None:
    ledger = scenes[seed].ledger
    for mark in (1, 480_000, 600_000, 10**9 + 7):
        marks = {BTCUSDT.symbol: mark}
        assert ledger.total_values(marks) == reference_total_values(ledger, marks)
        assert ledger.copy().total_values(marks) == reference_total_values(ledger, marks)
    assert Ledger().total_values({}) == {}


@pytest.mark.parametrize("seed", SEEDS)
def test_open_due_in_batches_equals_entry_by_entry(scenes, seed: int) -> None:
    scene = scenes[seed]
    assert scene.entries is not None and len(scene.entries) > 5
    fast, slow = scene.ledger.copy(), scene.ledger.copy()
    a, b = scene.entries.cursor(), scene.entries.cursor()
    times = sorted({e.opened_ns for e in scene.entries.entries})
    for k, ts in enumerate(times[::3] + [times[-1]]):
        price = 600_000 + 37 * k * (-1) ** k
        assert a.open_due(fast, ts, price) == b.open_due_one_by_one(slow, ts, price)
    assert a.next == b.next == len(scene.entries)
    assert fast.digest() == slow.digest() and fast.journal == slow.journal
    fast.check_invariants(replay_journal=True)


def test_open_positions_falls_back_to_the_ledger_calls_and_their_refusals(scenes) -> None:
    from deleverage.errors import InvalidInput

    scene = scenes[SEEDS[0]]
    ledger = scene.ledger.copy()
    held = next(p.account_id for p in ledger.positions(BTCUSDT.symbol) if p.account_id.startswith("t"))
    with pytest.raises(InvalidInput):  # a held position is not an open from flat: the fill path refuses it
        ledger.open_positions([held, held], [1, 1], [0, 10**15], instrument=BTCUSDT, price_ticks=600_000,
                              counterparty=MARKET, ts_ns=1)


@pytest.mark.parametrize("preset", sorted(PRESET_SPECS))
def test_every_preset_runs_the_same_with_the_reference_paths(scenes, preset: str, monkeypatch) -> None:
    policy = get_policy(preset)
    for seed, scene in scenes.items():
        with monkeypatch.context() as m:
            copies = final_ledgers(m)
            run_new, digest_new = run_policy(policy, scene, config(seed))
            new_ledger = copies[0]
        with monkeypatch.context() as m:
            m.setattr(Ledger, "total_values", reference_total_values)
            m.setattr(EntryCursor, "open_due", EntryCursor.open_due_one_by_one)
            m.setattr(LiquidationEngine, "_screen_columns", reference_screen_columns)
            m.setattr(engine_module, "float_row", reference_float_row)
            copies = final_ledgers(m)
            run_ref, digest_ref = run_policy(policy, scene, config(seed))
            ref_ledger = copies[0]
        assert digest_new == digest_ref, (preset, seed)
        assert run_new.records.equals(run_ref.records) and run_new.totals == run_ref.totals
        assert new_ledger.digest() == ref_ledger.digest() and new_ledger.journal == ref_ledger.journal


@pytest.mark.parametrize("seed", SEEDS)
def test_float_rows_equal_the_fraction_reference_on_every_account(scenes, seed: int) -> None:
    from deleverage.core.instruments import ETHUSDT

    scene = scenes[seed]
    ledger, symbol = scene.ledger, scene.instrument.symbol
    instruments, tiers = {symbol: scene.instrument}, {symbol: scene.tiers}
    ids = [a for a in ledger.account_ids() if a.startswith("t")]
    marks = {symbol: 600_000}
    for aid in ids:
        assert float_row(ledger, aid, symbol, marks, instruments, tiers) == reference_float_row(
            ledger, aid, symbol, marks, instruments, tiers)
    # a cross account holding a second instrument takes the Fraction path for its other PnL and maintenance
    two = ledger.copy()
    cross = next(a for a in ids if two.account(a).margin_mode == "cross" and two.position(a, symbol).qty_lots)
    two.apply_fill(buyer=cross, seller=MARKET, instrument=ETHUSDT, price_ticks=30_000, qty_lots=7, ts_ns=1,
                   reason="open position")
    both, tiers2, marks2 = {**instruments, ETHUSDT.symbol: ETHUSDT}, {**tiers, ETHUSDT.symbol: scene.tiers}, {
        symbol: 600_000, ETHUSDT.symbol: 29_000}
    row = float_row(two, cross, symbol, marks2, both, tiers2)
    assert row == reference_float_row(two, cross, symbol, marks2, both, tiers2) and row[3] > 0.0
