"""The yardstick on lab runs: hand-worked cases, the cascade counterfactual, and exactness over random runs.

* one fill worked by hand: the shortfall equals the slippage (no waiting, no impact, one venue);
* a scene built to cascade: the feedback-off run liquidates only the account the reference path reaches,
  so ``cascade_notional`` and ``induced_notional`` are exactly the notional of the two accounts our own
  flow pushed over; with the feedback off in the run itself both are 0;
* Hypothesis: for random lots with random paths through the fund and the backstops, the yardstick equals
  the lot-by-lot truth; for random engine runs its decomposition adds up exactly and its inventories are
  the ledger's.
"""

from __future__ import annotations

from fractions import Fraction

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deleverage.config.policy import get_policy
from deleverage.lab.config import RunConfig
from deleverage.lab.runner import _run_seed, run_policy
from deleverage.report.metrics import (
    COMPONENTS,
    DYADIC_QUANTUM,
    RECORD_SCHEMA,
    SERIES_SCHEMA,
    PolicyRun,
    compute_metrics,
    decomposition,
    dyadic_split,
    yardstick,
)

from .scene_kit import scene

CONFIG = RunConfig(frontrunner=False)
FULL = {"partial": {"mode": "full"}, "fees": {"liquidation_fee_rate": 0.0}}


def test_one_fill_worked_by_hand_shortfall_equals_slippage() -> None:
    """1 BTC long sold at once into 50 lots per tick from 541,999: 20 levels, VWAP 541,989.5 ticks.

    Reference = mark = 542,000 throughout: shortfall = (542,000 − 541,989.5) × 1,000 lots = 10,500
    tick-lots × 0.0001 USDT = 1.05 USDT, in bps 10,500 / 542,000,000 × 10⁴ — the slippage, exactly.
    """
    sc = scene([542_000] * 3, [("alice", "long", "1", "60000", "6000")], lots_per_tick=50)
    run, _ = run_policy(get_policy("binance").with_overrides(**FULL), sc, CONFIG)
    liq = run.liquidations
    assert liq.height == 1 and liq["fill_price"][0] == pytest.approx(54_198.95)
    stick = yardstick(run)
    assert stick.shortfall_quote == Fraction(105, 100)
    assert stick.components["book_walk"] == Fraction(105, 100)
    assert stick.shortfall_bps == pytest.approx(10_500 / 542_000_000 * 1e4, rel=1e-15)
    assert stick.shortfall_bps == pytest.approx(liq["slippage_bps"][0], rel=1e-12)
    metrics = compute_metrics(run)
    assert metrics["shortfall_bps"] == pytest.approx(metrics["avg_slippage_bps"], rel=1e-12)
    assert abs(metrics["shortfall_quote"] - 1.05) <= float(DYADIC_QUANTUM)


# A flat 60,000 reference that dips to 59,400 for four seconds. A (liquidation price 59,500) is reached
# by the reference; B (59,395) and C (59,387.98) only by the mark our flow pushes down: A's 10 BTC walk
# 100 ticks of 100 lots (permanent share 1: the mark stays 9.9 lower), B's 5 BTC 49 more.
CASCADE = [600_000] * 5 + [594_000] * 4 + [600_000] * 4
ACCOUNTS = [("A", "long", "10", "60000", "7380"), ("B", "long", "5", "60000", "4212.90"),
            ("C", "long", "2", "60000", "1699.10")]


def test_a_scene_built_to_cascade_has_the_cascade_of_the_accounts_our_flow_pushed_over() -> None:
    sc = scene(CASCADE, ACCOUNTS, lots_per_tick=100)
    policy = get_policy("binance").with_overrides(**FULL)
    runs, _ = _run_seed([policy], sc, CONFIG, None, 1, False)
    run = runs["binance"]
    on = run.liquidations.group_by("account_id").agg(pl.col("notional").sum(), pl.col("ts_ns").min())
    off = run.counterfactual.liquidations
    assert sorted(on["account_id"].to_list()) == ["A", "B", "C"]
    assert off["account_id"].unique().to_list() == ["A"]
    assert on.filter(pl.col("account_id") == "B")["ts_ns"][0] == 6 * 10**9  # the tick after A's sale
    pushed = on.filter(pl.col("account_id") != "A")["notional"].sum()
    metrics = compute_metrics(run)
    assert metrics["induced_notional"] == pytest.approx(pushed, rel=1e-12) and pushed > 0
    assert metrics["cascade_notional"] == pytest.approx(pushed, rel=1e-9)  # A's own sale is the same in both


def test_with_the_feedback_off_the_cascade_is_zero() -> None:
    sc = scene(CASCADE, ACCOUNTS, lots_per_tick=100)
    config = RunConfig(frontrunner=False, feedback=False)
    runs, _ = _run_seed([get_policy("binance").with_overrides(**FULL)], sc, config, None, 1, False)
    metrics = compute_metrics(runs["binance"])
    assert metrics["cascade_notional"] == 0.0 and metrics["induced_notional"] == 0.0
    assert runs["binance"].liquidations["account_id"].to_list() == ["A"]


# --- exactness --------------------------------------------------------------------------------------

VALUE = Fraction(1, 10_000)  # BTCUSDT: 0.1 USDT × 0.001 BTC per tick × lot
END = 500_000

lot = st.fixed_dictionaries({
    "side": st.sampled_from(["long", "short"]),
    "arrival": st.integers(400_000, 600_000),
    "ref": st.integers(400_000, 600_000),
    "mark": st.integers(400_000, 600_000),
    "price": st.integers(400_000, 600_000),
    "route": st.sampled_from(["book", "auction", "netting", "dutch", "adl", "fund", "backstop", "auction_backstop"]),
    "offload": st.one_of(st.none(), st.integers(400_000, 600_000)),
    "offload_cp": st.sampled_from(["market", "peer", "backstop"]),
})

ROUTES = {"book": ("book", "market", "partial"), "auction": ("auction", "market", "partial"),
          "netting": ("netting", "peer", "partial"), "dutch": ("dutch", "market", "full"),
          "adl": ("adl", "peer", "adl"), "fund": ("takeover", "fund", "takeover"),
          "backstop": ("backstop", "backstop", "takeover"), "auction_backstop": ("auction", "backstop", "partial")}


def _row(side: str, q: int, ptl: int, mark: int, ref: int, arrival: int | None, venue: str, cp: str, action: str,
         holder: str | None = None) -> dict:
    return {"ts_ns": 0, "account_id": holder or "acct", "side": side, "qty": q / 1000, "notional": ptl / 10_000,
            "trigger_mark": mark / 10, "fill_price": ptl / q / 10, "slippage_bps": 0.0, "venue": venue,
            "policy": "p", "action": action, "fee": 0.0, "bad_debt": 0.0, "wave": 0, "qty_lots": q,
            "price_tick_lots": ptl, "mark_ticks": mark, "reference_ticks": ref, "arrival_reference_ticks": arrival,
            "counterparty": cp, "holder": holder}


@settings(max_examples=150, deadline=None)
@given(lots=st.lists(lot, min_size=1, max_size=30), sizes=st.lists(st.integers(1, 5_000), min_size=30, max_size=30))
def test_the_yardstick_equals_the_lot_by_lot_truth(lots, sizes) -> None:
    """Each lot followed by hand: leaves at its price, or via the fund / a backstop at their resale price
    (to the market, a peer, or — the fund's lots — on to a backstop), or is valued at the end reference."""
    rows, truth = [], Fraction(0)
    for spec, q in zip(lots, sizes, strict=False):
        s = 1 if spec["side"] == "long" else -1
        venue, cp, action = ROUTES[spec["route"]]
        rows.append(_row(spec["side"], q, q * spec["price"], spec["mark"], spec["ref"], spec["arrival"],
                         venue, cp, action))
        final = spec["price"]
        if cp in ("fund", "backstop"):
            final = END
            if spec["offload"] is not None:
                resale_cp = spec["offload_cp"] if cp == "fund" else "market"
                rows.append(_row(spec["side"], q, q * spec["offload"], spec["mark"], spec["ref"], None,
                                 "auction", resale_cp, "offload", holder=cp))
                final = spec["offload"] if resale_cp != "backstop" else END  # on to a backstop that holds it
        truth += s * q * (spec["arrival"] - final) * VALUE
    series = pl.DataFrame({"ts_ns": [0], "reference_mark": [END / 10], "mark": [END / 10],
                           "insurance_fund": [0.0], "halted": [False], "reference_ticks": [END]},
                          schema={**SERIES_SCHEMA, "reference_ticks": pl.Int64})
    run = PolicyRun("p", pl.DataFrame(rows, schema=RECORD_SCHEMA), series, tick_lot_value=VALUE)
    stick = yardstick(run)
    assert stick.shortfall_quote == truth
    assert sum(stick.components.values(), Fraction(0)) == truth
    total, parts = dyadic_split(stick.components)
    assert sum(parts.values()) == total  # as floats, exactly
    assert abs(Fraction(total) - truth) <= DYADIC_QUANTUM / 2
    assert list(decomposition(run)) == list(COMPONENTS)


@settings(max_examples=20, deadline=None)
@given(
    preset=st.sampled_from(["binance", "okx", "hyperliquid", "dydx", "fba", "hybrid", "maker", "deribit", "drift"]),
    moves=st.lists(st.integers(-900, 400), min_size=5, max_size=12),
    sizes=st.lists(st.tuples(st.sampled_from(["long", "short"]), st.integers(1, 4_000), st.floats(8.0, 40.0)),
                   min_size=2, max_size=6),
    depth=st.sampled_from([5, 60, 400]),
)
def test_the_decomposition_adds_up_exactly_over_random_runs(preset, moves, sizes, depth) -> None:
    path = [600_000]
    for m in moves:
        path.append(max(100_000, path[-1] + m * 10))
    path += [path[-1]] * 3
    positions = [(f"t{i}", side, f"{lots / 1000:.3f}", "60000", f"{max(1.0, round(lots * 0.06 / lev, 2)):.2f}")
                 for i, (side, lots, lev) in enumerate(sizes)]
    sc = scene(path, positions, lots_per_tick=depth, permanent_share=0.5, resilience_per_s=0.5,
               backstops=("bs0",))
    run, _ = run_policy(get_policy(preset), sc, RunConfig(frontrunner=False))  # raises if inventories disagree
    stick = yardstick(run)
    assert stick.exact
    assert sum(stick.components.values(), Fraction(0)) == stick.shortfall_quote
    total, parts = dyadic_split(stick.components)
    assert sum(parts.values()) == total and set(parts) == set(COMPONENTS)
    exits = run.records.filter(pl.col("action").is_in(["partial", "full", "takeover", "adl"]))
    direct = exits.filter(~pl.col("counterparty").is_in(["fund", "backstop"]))
    if direct.height == exits.height and not run.records.filter(pl.col("action") == "unfinished").height:
        # nothing went through an intermediary: the shortfall is the plain sum over the exits
        plain = sum(((1 if s == "long" else -1) * (q * a - p) for s, q, a, p in zip(
            exits["side"], exits["qty_lots"], exits["arrival_reference_ticks"], exits["price_tick_lots"],
            strict=True)), 0)
        assert stick.shortfall_quote == plain * run.tick_lot_value
