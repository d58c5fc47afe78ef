"""The liquidation map, the risk bands and ``liquidatable_now`` against a brute-force rescan.

For every level the snapshot reports, the mark is set there and ``Ledger.margin_state`` is asked which
traders are liquidatable: the map's per-bin and cumulative accounts, lots and notional must match
exactly — linear and inverse, cross and isolated, flat and stepped tiers, both sides, with accounts
placed exactly on bin edges (equity = maintenance there: the float screen alone cannot decide them).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deleverage.core.instruments import BTCUSDT, ETHUSDT
from deleverage.engine import LiquidationEngine, get_policy
from deleverage.engine.liqmap import (
    _first_by_table,
    _first_level,
    _level_table,
    book_sides,
    map_levels,
    nice_bin_ticks,
    scan_levels,
)
from deleverage.engine.monitor import MonitorConfig, RiskMonitor
from deleverage.errors import InvalidInput
from deleverage.testing import assert_conserved, make_ledger
from tests.engine.monitor_kit import (
    LINEAR_TIERS,
    Account,
    build,
    liquidatable,
    market,
    notional_units,
    open_account,
)

SECOND = 10**9


def check_against_rescan(engine, inst, tiers, snapshot) -> int:  # noqa: ANN001
    """Every number of the map, the bands and liquidatable-now equals the rescan; returns levels checked."""
    risk = snapshot.symbols[inst.symbol]
    mark = risk.mark_ticks
    ledger = engine.ledger
    checked = 0
    now = {side: liquidatable(ledger, inst, tiers, mark, side) for side in ("long", "short")}
    for side, (count, lots) in now.items():
        got = risk.liquidatable_now[side]
        assert (got.accounts, got.lots) == (count, lots), (side, "now")
        assert got.notional == notional_units(inst, mark, lots)
    liq_map = risk.liquidation_map
    for side, part in (("long", liq_map.below), ("short", liq_map.above)):
        assert list(part.price_ticks) == map_levels(mark, liq_map.bin_ticks, len(part.price_ticks), side)
        previous = now[side]
        for k, edge in enumerate(part.price_ticks):
            count, lots = liquidatable(ledger, inst, tiers, edge, side)
            assert part.cumulative_accounts[k] == count - now[side][0], (side, edge)
            assert part.cumulative_lots[k] == lots - now[side][1], (side, edge)
            assert part.accounts[k] == count - previous[0], (side, edge)
            assert part.lots[k] == lots - previous[1], (side, edge)
            assert part.notional[k] == notional_units(inst, mark, lots - previous[1])
            assert part.cumulative_notional[k] == notional_units(inst, mark, lots - now[side][1])
            previous = (count, lots)
            checked += 1
    for label, band in risk.at_risk.items():
        pct = float(label.rstrip("%")) / 100
        assert band.long_level_ticks == max(1, math.ceil(round(mark * (1 - pct), 6)))
        assert band.short_level_ticks == math.floor(round(mark * (1 + pct), 6))
        long_ = liquidatable(ledger, inst, tiers, band.long_level_ticks, "long")
        short = liquidatable(ledger, inst, tiers, band.short_level_ticks, "short")
        assert (band.long.accounts, band.long.lots) == long_, label
        assert (band.short.accounts, band.short.lots) == short, label
        assert band.accounts == long_[0] + short[0]
        assert band.notional == notional_units(inst, mark, long_[1] + short[1])
        checked += 2
    return checked


@st.composite
def books(draw):  # noqa: ANN001, ANN201
    inverse = draw(st.booleans())
    tier_name = draw(st.sampled_from(["flat", "stepped"]))
    inst, tiers = market(inverse, tier_name)
    mark = draw(st.integers(590_000, 610_000))
    bin_ticks = draw(st.sampled_from([37, 100, 250, 1000]))
    levels = draw(st.integers(3, 12))
    batched = draw(st.booleans())  # cases wait for a batch: liquidatable accounts stay on the books
    accounts = []
    for _ in range(draw(st.integers(1, 18))):
        side = draw(st.sampled_from(["long", "short"]))
        lots = draw(st.integers(1, 400)) if inverse else draw(st.integers(1, 6000))
        entry = mark + draw(st.integers(-9000, 9000))
        leverage = draw(st.floats(1.5, 120))
        isolated = draw(st.booleans())
        knife = None
        if draw(st.integers(0, 2)) == 0:  # exactly on an edge of the map (or on the mark)
            edges = map_levels(mark, bin_ticks, levels, side)
            knife = draw(st.sampled_from([mark, *edges])) if edges else mark
            if knife == mark and not batched:
                knife += -1 if side == "long" else 1  # on the mark it would be liquidated at once
        accounts.append(Account(side, lots, entry, leverage, isolated, knife))
    return inst, tiers, mark, bin_ticks, levels, accounts, draw(st.integers(-4000, 4000)), batched, \
        draw(st.sampled_from([1e-9, 1e-9, 1e-5, 2e-3]))  # wide: exact binary search over several levels


@settings(max_examples=60, deadline=None)
@given(books())
def test_map_bands_and_now_equal_a_rescan_of_every_account(case) -> None:  # noqa: ANN001
    inst, tiers, mark, bin_ticks, levels, accounts, move, batched, tolerance = case
    engine = build(inst, tiers, accounts, **({"execution": {"batch_interval_ms": 3_600_000}} if batched else {}))
    config = MonitorConfig(map_levels=levels, map_bin_ticks={inst.symbol: bin_ticks},
                           bands_pct=("0.5", "1", "2.5"), exact_tolerance=tolerance)
    monitor = RiskMonitor(engine, config)
    before = engine.ledger.total_values({inst.symbol: mark})
    engine.on_mark(inst.symbol, mark, SECOND)
    assert_conserved(engine.ledger, before, {inst.symbol: mark})
    snapshot = monitor.sample(SECOND)
    assert check_against_rescan(engine, inst, tiers, snapshot) > 0
    # a second mark (accounts liquidated at the first are flat or taken over now)
    second = mark + move
    before = engine.ledger.total_values({inst.symbol: second})
    engine.on_mark(inst.symbol, second, 2 * SECOND)
    assert_conserved(engine.ledger, before, {inst.symbol: second})
    check_against_rescan(engine, inst, tiers, monitor.sample(2 * SECOND))


def test_knife_edge_accounts_are_decided_exactly() -> None:
    """Accounts with equity = maintenance exactly at a bin edge: the exact check places them there."""
    inst, tiers = market(False, "flat")
    mark, bin_ticks = 600_000, 100
    edges_below = map_levels(mark, bin_ticks, 5, "long")
    edges_above = map_levels(mark, bin_ticks, 5, "short")
    accounts = [Account("long", 1000 + i, 606_000, 80.0, i % 2 == 1, e) for i, e in enumerate(edges_below)]
    accounts += [Account("short", 700 + i, 594_000, 80.0, i % 2 == 0, e) for i, e in enumerate(edges_above)]
    engine = build(inst, tiers, accounts)
    engine.on_mark(inst.symbol, mark, SECOND)
    monitor = RiskMonitor(engine, MonitorConfig(map_levels=5, map_bin_ticks={inst.symbol: bin_ticks}))
    snapshot = monitor.sample(SECOND)
    risk = snapshot.symbols[inst.symbol]
    assert risk.exact_checks == len(accounts)  # every one within the tolerance of its edge
    assert risk.liquidation_map.below.lots == tuple(1000 + i for i in range(5))
    assert risk.liquidation_map.above.lots == tuple(700 + i for i in range(5))
    check_against_rescan(engine, inst, tiers, snapshot)
    # one tick nearer the mark, none of them is liquidatable: the bins are exactly right
    for acc in accounts:
        nearer = acc.knife_ticks + (1 if acc.side == "long" else -1)
        assert liquidatable(engine.ledger, inst, tiers, nearer, acc.side)[1] < \
            liquidatable(engine.ledger, inst, tiers, acc.knife_ticks, acc.side)[1]


def test_without_the_exact_check_a_float_error_would_misplace_an_account() -> None:
    """The confirm callback is what decides inside the tolerance: a wrong one moves the account."""
    inst, tiers = market(False, "flat")
    engine = build(inst, tiers, [Account("long", 1000, 606_000, 80.0, False, 599_900)])
    engine.on_mark(inst.symbol, 600_000, SECOND)
    det = engine.detector(inst.symbol)
    levels = [600_000, 599_950, 599_900, 599_850]
    truth = scan_levels(det, "long", levels, confirm=lambda a, p: engine.margin_at(a, inst.symbol, p).liquidatable)
    assert truth.lots == (0, 0, 1000, 1000) and truth.exact_checks == 1
    lying = scan_levels(det, "long", levels, confirm=lambda a, p: p <= 599_850)
    assert lying.lots == (0, 0, 0, 1000)  # the band's answer came from confirm, not from the float price
    unconfirmed = scan_levels(det, "long", levels, confirm=None, tolerance=0.0)
    assert unconfirmed.exact_checks == 0


def test_two_symbol_cross_account_moves_one_mark_at_a_time() -> None:
    """A cross account long BTC and short ETH: the BTC map holds the ETH position at its mark."""
    btc, tiers = BTCUSDT, LINEAR_TIERS["flat"]
    ledger = make_ledger(insurance_fund={"USDT": 10**14})
    open_account(ledger, "a", btc, tiers, Account("long", 2000, 600_000, 40.0))
    ledger.apply_fill(buyer="market", seller="a", instrument=ETHUSDT, price_ticks=300_000, qty_lots=5000, ts_ns=0,
                      reason="open")  # short 5 ETH at 3,000
    open_account(ledger, "b", btc, tiers, Account("short", 1500, 600_000, 30.0))
    engine = LiquidationEngine(ledger, instruments=[btc, ETHUSDT], policy=get_policy("binance"),
                               tiers_for=lambda _i: tiers)
    engine.track_all()
    engine.on_mark("ETHUSDT", 296_000, SECOND)  # the short ETH leg is in profit
    engine.on_mark("BTCUSDT", 600_000, SECOND)
    for aid in ("a", "b"):
        engine.on_position_changed(aid)  # rows re-written with the ETH leg valued at its mark
    monitor = RiskMonitor(engine, MonitorConfig(map_levels=40, map_bin_ticks={"BTCUSDT": 500}))
    snapshot = monitor.sample(SECOND)
    risk = snapshot.symbols["BTCUSDT"]
    below = risk.liquidation_map.below
    for k, edge in enumerate(below.price_ticks):
        state = ledger.margin_state("a", {"BTCUSDT": edge, "ETHUSDT": 296_000}, lambda _i: tiers)
        assert (below.cumulative_lots[k] >= 2000) == state.liquidatable, edge
    assert sum(below.lots) == 2000  # the account is on the map, once


def test_book_sides_are_exact_lots_of_the_screen() -> None:
    inst, tiers = market(True, "stepped")
    accounts = [Account("long", 7, 600_000, 10.0), Account("short", 399, 601_000, 5.0, True),
                Account("short", 3, 590_000, 5.0)]
    engine = build(inst, tiers, accounts)
    sides = book_sides(engine.detector(inst.symbol), 600_500)
    assert (sides["long"].accounts, sides["long"].lots, sides["short"].accounts, sides["short"].lots) == (1, 7, 2, 402)
    assert (sides["long"].profitable_lots, sides["short"].profitable_lots) == (7, 399)  # the 590,000 short loses
    blind = book_sides(engine.detector(inst.symbol), None)
    assert blind["long"].profitable_accounts == blind["short"].profitable_accounts == 0


def test_level_arguments_are_checked() -> None:
    inst, tiers = market(False, "flat")
    engine = build(inst, tiers, [Account("long", 10, 600_000, 10.0)])
    det = engine.detector(inst.symbol)
    with pytest.raises(InvalidInput, match="strictly decreasing"):
        scan_levels(det, "long", [600_000, 600_100])
    with pytest.raises(InvalidInput, match="strictly increasing"):
        scan_levels(det, "short", [600_000, 600_000])
    with pytest.raises(InvalidInput, match="> 0 ticks"):
        scan_levels(det, "long", [5, 0])
    with pytest.raises(InvalidInput, match="side"):
        scan_levels(det, "both", [600_000])  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="tolerance"):
        scan_levels(det, "long", [600_000], tolerance=math.nan)
    assert nice_bin_ticks(600_000, 10) == 500  # 600 ticks → 5 × 10^2
    assert nice_bin_ticks(600_000, 3) == 100  # 180 → 1 × 10^2
    assert nice_bin_ticks(600_000, 8) == 200  # 480 → 2 × 10^2
    assert nice_bin_ticks(50, 1) == 1
    assert map_levels(600_000, 500, 3, "long") == [599_500, 599_000, 598_500]
    assert map_levels(600_250, 500, 2, "short") == [600_500, 601_000]
    assert map_levels(600, 500, 3, "long") == [500]  # no level at or below 0


@settings(max_examples=200)
@given(st.lists(st.integers(1, 5000), min_size=1, max_size=40, unique=True), st.booleans(),
       st.lists(st.one_of(st.floats(0, 6000, allow_nan=False), st.integers(0, 6000).map(float),
                          st.just(math.inf)), min_size=1, max_size=50))
def test_level_lookup_table_equals_binary_search(levels, long_side, keys) -> None:  # noqa: ANN001
    """The O(1) table gives the first level of every price exactly as the binary search does."""
    grid = np.array(sorted(levels, reverse=long_side), np.float64)
    lo, width, below, inside = _level_table(grid)
    for key in keys:
        expected = _first_level(grid, key, long_side)
        if below.shape[0]:
            assert _first_by_table(key, long_side, grid.shape[0], lo, width, below, inside) == expected, key
        # the first level is the first one at which the account is liquidatable
        if expected < grid.shape[0]:
            assert (grid[expected] <= key) if long_side else (grid[expected] >= key)
        if expected > 0:
            assert not ((grid[expected - 1] <= key) if long_side else (grid[expected - 1] >= key))


def test_spread_levels_fall_back_to_binary_search() -> None:
    inst, tiers = market(False, "flat")
    engine = build(inst, tiers, [Account("short", 10, 600_000, 20.0), Account("short", 20, 600_000, 1.2)])
    engine.on_mark(inst.symbol, 600_000, SECOND)
    det = engine.detector(inst.symbol)
    levels = [600_000, 600_001, 3_000_000]  # 2.4 M cells of width 1: no table
    assert _level_table(np.array(levels, np.float64))[2].shape[0] == 0
    scan = scan_levels(det, "short", levels, confirm=lambda a, p: engine.margin_at(a, inst.symbol, p).liquidatable)
    assert scan.lots == (0, 0, 30)
    for i, level in enumerate(levels):
        assert scan.lots[i] == liquidatable(engine.ledger, inst, tiers, level, "short")[1]


@settings(max_examples=25, deadline=None)
@given(books())
def test_float_liquidation_prices_are_far_more_accurate_than_the_tolerance(case) -> None:  # noqa: ANN001
    """What lets the float price decide outside the tolerance: it is within 1e-14 of core.margin's exact one."""
    from fractions import Fraction

    from deleverage.core import margin
    from deleverage.core.ledger import isolated_account_id

    inst, tiers, *_, accounts, _move, _batched, _tol = case
    engine = build(inst, tiers, [a for a in accounts if a.knife_ticks is None] or accounts[:1])
    det, ledger = engine.detector(inst.symbol), engine.ledger
    for aid, i in det.int_of.items():
        pos = ledger.position(aid, inst.symbol)
        wallet = isolated_account_id(aid, inst.symbol) if ledger.account(aid).margin_mode == "isolated" else aid
        exact = margin.liquidation_price_fraction(
            side="long" if pos.qty_lots > 0 else "short", qty=inst.lots_to_qty(abs(pos.qty_lots)) * inst.contract_size,
            entry_price=Fraction(pos.entry_price_ticks(inst)) * Fraction(inst.tick_size),
            wallet_balance=Fraction(ledger.balance(wallet, inst.settle.code), inst.settle.minor_per_unit),
            tiers=tiers, contract=inst.contract)
        key = float(det.index.keys[det.book.slot_of(i)])
        if 0 < float(exact) < math.inf:
            assert abs(key - float(exact)) <= 1e-14 * float(exact), (aid, key, float(exact))
