"""The lab seeds its traders in bulk (``Ledger.load_traders``); the one-by-one path is the reference.

For several seeds (with isolated accounts, deferred entries and dropped rows) the two scenes hold the
same ledger (digest, journal, every balance) and seed report, and every preset then runs on them to the
same audit digest, records and final balances; conservation holds on both.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import polars as pl
import pytest

from deleverage.config.policy import get_policy
from deleverage.config.presets import PRESET_SPECS
from deleverage.core.instruments import BTCUSDT
from deleverage.core.ledger import Ledger
from deleverage.errors import InvalidInput
from deleverage.lab import setup
from deleverage.lab.config import RunConfig
from deleverage.lab.runner import run_policy
from deleverage.lab.seeding import seed_ledger

from .scene_kit import record_ledger_copies

SEEDS = (3, 11)


def config(seed: int) -> RunConfig:
    return RunConfig(scenario="2025-10-10", accounts=120, seed=seed, window="21:10-21:16")


def scenes(seed: int, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    bulk = setup.build_scene(config(seed))
    with monkeypatch.context() as m:
        m.setattr(setup, "seed_ledger", partial(seed_ledger, bulk=False))
        one = setup.build_scene(config(seed))
    return bulk, one


def balances(ledger: Ledger) -> dict[str, dict[str, int]]:
    return {a: dict(ledger.account(a).balances) for a in ledger.account_ids(include_system=True)}


@pytest.fixture(scope="module")
def scene_pairs() -> dict[int, tuple[Any, Any]]:
    mp = pytest.MonkeyPatch()
    try:
        return {seed: scenes(seed, mp) for seed in SEEDS}
    finally:
        mp.undo()


@pytest.mark.parametrize("seed", SEEDS)
def test_bulk_seeded_ledger_equals_the_one_by_one_ledger(scene_pairs, seed: int) -> None:
    bulk, one = scene_pairs[seed]
    assert bulk.ledger.digest() == one.ledger.digest()
    assert bulk.ledger.journal == one.ledger.journal
    assert balances(bulk.ledger) == balances(one.ledger)
    assert bulk.seed_report == one.seed_report
    assert bulk.seed_report.deferred > 0 and bulk.seed_report.accounts > 0  # both kinds of row exercised
    isolated = [a for a in bulk.ledger.account_ids() if bulk.ledger.account(a).margin_mode == "isolated"]
    assert isolated
    bulk.ledger.check_invariants(replay_journal=True)


@pytest.mark.parametrize("preset", sorted(PRESET_SPECS))
def test_every_preset_runs_the_same_on_a_bulk_seeded_ledger(scene_pairs, preset: str, monkeypatch) -> None:
    copies = record_ledger_copies(monkeypatch)
    policy = get_policy(preset)
    for seed, (bulk, one) in scene_pairs.items():
        copies.clear()
        run_b, digest_b = run_policy(policy, bulk, config(seed))
        run_o, digest_o = run_policy(policy, one, config(seed))
        assert digest_b == digest_o, (preset, seed)
        assert run_b.records.equals(run_o.records) and run_b.totals == run_o.totals
        first, second = copies[0], copies[-1]
        assert first.digest() == second.digest() and balances(first) == balances(second)
        first.check_invariants()
        marks = {BTCUSDT.symbol: 600_000}
        assert first.total_value(marks) == bulk.ledger.total_value(marks)  # conservation through the run


def test_bad_margin_mode_is_refused_before_anything_is_written() -> None:
    population = pl.DataFrame({"account_id": [1, 2], "side": ["long", "short"], "qty": [0.01, 0.01],
                               "entry_price": [60_000.0, 60_000.0], "collateral": [100.0, 100.0],
                               "margin_mode": ["cross", "portfolio"]})
    with pytest.raises(InvalidInput, match="margin_mode"):
        seed_ledger(population, BTCUSDT, start_mark_ticks=600_000, insurance_fund=0.0)


def deferred_one_by_one(population: pl.DataFrame, start_ns: int, drop: set[int]) -> tuple:
    """The row-by-row reference of ``deferred_entries`` (what it did before it read columns)."""
    from deleverage.lab.seeding import DeferredEntry, trader_id

    settle, rows = BTCUSDT.settle, []
    for row in population.iter_rows(named=True):
        if row["opened_ns"] is None or row["opened_ns"] <= start_ns:
            continue
        lots = int(round(row["qty"] / float(BTCUSDT.lot_size)))
        if lots <= 0 or int(row["account_id"]) in drop:
            continue
        amount = settle.to_minor(float(row["collateral"]), rounding="down")
        rows.append(DeferredEntry(int(row["opened_ns"]), trader_id(row["account_id"]), row["side"], lots,
                                  amount if row["margin_mode"] == "isolated" else 0))
    rows.sort(key=lambda e: (e.opened_ns, e.account_id))
    return tuple(rows)


@pytest.mark.parametrize("seed", range(5))
def test_deferred_entries_from_columns_equal_the_row_by_row_reference(seed: int) -> None:
    import numpy as np

    from deleverage.lab.seeding import deferred_entries

    rng = np.random.default_rng(seed)
    n = 400
    population = pl.DataFrame({
        "account_id": rng.permutation(n).astype(np.int64),
        "side": np.where(rng.random(n) < 0.5, "long", "short"),
        "qty": np.round(rng.lognormal(-4, 1.5, n), 4) * (rng.random(n) > 0.05),
        "entry_price": np.round(60_000 * np.exp(rng.normal(0, 0.01, n)), 1),
        "collateral": np.round(rng.lognormal(5, 2, n), int(rng.integers(0, 9))) + 0.29,
        "margin_mode": np.where(rng.random(n) < 0.3, "isolated", "cross"),
        "opened_ns": rng.integers(0, 5, n).astype(np.int64) * 10,
    }).with_columns(pl.when(pl.col("account_id") % 17 == 0).then(None).otherwise(pl.col("opened_ns"))
                    .alias("opened_ns"))
    drop = {int(i) for i in rng.choice(n, 30, replace=False)}
    got = deferred_entries(population, BTCUSDT, start_ns=15, drop=drop)
    assert got.entries == deferred_one_by_one(population, 15, drop) and len(got) > 50
