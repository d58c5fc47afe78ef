"""Hypothesis: random populations, books and price paths under every preset.

Checked after every engine call: (1) total value and every ledger invariant unchanged; (2) no account
is liquidated that was not liquidatable, exactly, at the price the policy uses for that call; (3) an
account that is liquidatable at that price after the call is an active case with an event written in
this call saying why it is not closed yet; (4) no trader's position grows or changes sign (reduce-only).
"""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from deleverage.engine.presets import PRESETS
from deleverage.venues.liquidity import EmptyBook

from .engine_kit import INST, Driver, book, engine_for, ledger_with, provider, ticks

account = st.tuples(
    st.sampled_from(["long", "short"]),
    st.integers(1, 3000),  # lots
    st.integers(-300, 300),  # entry offset from 60,000 in USDT
    st.floats(2.0, 60.0),  # leverage
)


def _trigger_liquidatable(d: Driver, price_ticks: int) -> set[str]:
    marks = {INST.symbol: price_ticks}
    tiers = d.engine._tiers[INST.symbol]  # noqa: SLF001
    out = set()
    for pos in d.ledger.positions(INST.symbol):
        if pos.account_id.startswith("t"):
            if d.ledger.margin_state(pos.account_id, marks, lambda _i: tiers).liquidatable:
                out.add(pos.account_id)
    return out


EXAMPLES = int(os.environ.get("DELEVERAGE_ENGINE_EXAMPLES", "40"))


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    preset=st.sampled_from(sorted(PRESETS)),
    accounts=st.lists(account, min_size=2, max_size=7),
    moves=st.lists(st.integers(-400, 300), min_size=4, max_size=14),
    fund=st.sampled_from([0, 200, 100_000]),
    depth=st.sampled_from([0, 5, 200]),
    with_backstop=st.booleans(),
)
def test_random_paths_conserve_and_only_liquidate_liquidatable(preset, accounts, moves, fund, depth,
                                                                with_backstop):
    rows = []
    for i, (side, lots, offset, lev) in enumerate(accounts):
        entry = 60_000 + offset
        collateral = max(1.0, round(lots * 0.001 * entry / lev, 2))
        rows.append((f"t{i}", side, f"{lots / 1000:.3f}", f"{entry}", f"{collateral}"))
    ledger = ledger_with(rows, fund_usdt=fund, backstops=("lp",) if with_backstop else ())
    lps = [provider("lp", capacity_usdt=50_000, discount_bps=30, max_lots=2000)] if with_backstop else []
    liquidity = book(depth_lots=depth) if depth else EmptyBook()
    d = Driver(engine_for(preset, ledger, liquidity=liquidity, backstops=lps))

    oracle_driven = d.engine.policy.trigger.price_source == "oracle"
    price = 60_000.0
    prev_t = ticks(price)
    for step, move in enumerate(moves):
        price = max(1_000.0, price + move * 10)
        t = ticks(price)
        for call in ("mark", "oracle", "advance"):
            # the price the policy uses in this call: an oracle policy still sees the last oracle
            trigger = prev_t if (oracle_driven and call == "mark") else t
            liquidatable_before = _trigger_liquidatable(d, trigger)
            sizes_before = {p.account_id: p.qty_lots for p in d.ledger.positions(INST.symbol)
                            if p.account_id.startswith("t")}
            ts = step * 0.7 + {"mark": 0.0, "oracle": 0.1, "advance": 0.2}[call]
            if call == "mark":
                result = d.mark(price, ts)
            elif call == "oracle":
                result = d.oracle(price, ts)
            else:
                result = d.advance(ts)
            found = {e.account_id for e in list(d.engine.audit)[result.events_from:result.events_to]
                     if str(e.kind) == "candidate_found"}
            for rec in result.actions:
                if rec.action == "offload":  # the fund or a backstop selling what it took over
                    assert rec.account_id in ("insurance_fund", "lp") and rec.qty_lots > 0, (call, rec)
                elif rec.qty_lots:
                    assert rec.account_id in liquidatable_before | found, (call, rec)
            # (4) reduce-only: no trader's position grows or flips (liquidations and ADL only close)
            for aid, before_lots in sizes_before.items():
                after_lots = d.qty(aid)
                assert abs(after_lots) <= abs(before_lots) and after_lots * before_lots >= 0, (call, aid)
            still = _trigger_liquidatable(d, trigger)
            active = set(d.engine.active_accounts(INST.symbol))
            touched = {e.account_id for e in list(d.engine.audit)[result.events_from:result.events_to]}
            cases = d.engine._cases[INST.symbol]  # noqa: SLF001
            dutch = d.engine._dutch  # noqa: SLF001
            for aid in still:
                assert aid in active, (call, aid, "liquidatable but not an active case")
                # each call either decides something for the account (an event) or the account is in a
                # wait announced earlier (one ``skipped`` event per wait) or in a running Dutch sale
                waiting = cases[aid].waiting is not None or (dutch is not None and dutch.running(INST.symbol, aid))
                assert aid in touched or waiting, (call, aid, "liquidatable, no event and no announced wait")
        prev_t = t


def test_property_runs_liquidate_something():
    """The random paths above are not vacuous: a fixed, fully liquidating path produces records."""
    rows = [("t0", "long", "1.000", "60000", "3000"), ("t1", "short", "1.000", "60000", "3000")]
    for preset in sorted(PRESETS):
        ledger = ledger_with(rows, fund_usdt=100_000)
        d = Driver(engine_for(preset, ledger, liquidity=book(depth_lots=200)))
        for step, price in enumerate([60_000, 58_000, 56_000, 55_000, 54_000]):
            d.mark(price, step * 100.0)
            d.oracle(price, step * 100.0 + 1)
            d.advance(step * 100.0 + 5)
        for k in range(40):  # Dutch prices fall by 1% per 90 s
            d.advance(600.0 + 90 * k)
        assert d.engine.records, preset
