"""Hypothesis: random populations, books and price paths under every preset.

Checked after every engine call: (1) total value and every ledger invariant unchanged; (2) no account
is liquidated that was not liquidatable, exactly, at the price the policy uses for that call (a Dutch
sale kicked while it was liquidatable runs to its end, as in Maker: docs/engine.md step 7); (3) an
account that is liquidatable at that price after the call is an active case with an event written in
this call saying why it is not closed yet; (4) no trader's position grows or changes sign (reduce-only).
The second property runs the same checks, plus determinism, on awkward markets: inverse contracts,
odd ticks, lots and contract sizes, stepped tier tables, isolated accounts, two symbols sharing cross
accounts, and an oracle that diverges from the mark.
"""

from __future__ import annotations

import os

from hypothesis import event, given, settings
from hypothesis import strategies as st

from deleverage.engine import BackstopProvider, LiquidationEngine, get_policy
from deleverage.engine.presets import PRESETS
from deleverage.execution.book import ResilientBook
from deleverage.testing import assert_conserved
from deleverage.venues.liquidity import EmptyBook

from .engine_kit import INST, Driver, book, engine_for, ledger_with, provider, ticks
from .market_kit import Scenario, markets, scenario_args

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


def _kicked(engine, rec) -> bool:  # noqa: ANN001
    """A Dutch sale was started for the record's account on its symbol (while it was liquidatable)."""
    return any(str(e.kind) == "dutch_kicked" and e.symbol == rec.symbol for e in engine.audit.for_account(rec.account_id))


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
                elif rec.qty_lots and not (rec.venue == "dutch" and _kicked(d.engine, rec)):
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


# --- awkward markets ---------------------------------------------------------------------------------


def _in_force(engine, symbol: str) -> int:  # noqa: ANN001
    """The price the policy values ``symbol`` at now: the oracle for oracle policies, else the mark."""
    oracles, marks = engine._oracles, engine._marks  # noqa: SLF001
    if engine.policy.trigger.price_source == "oracle" and symbol in oracles:
        return oracles[symbol]
    return marks.get(symbol) or oracles[symbol]


def _liquidatable(ledger, sc: Scenario, engine, symbols) -> set[tuple[str, str]]:  # noqa: ANN001
    """(account, symbol) pairs exactly liquidatable at the prices in force (others valued at their mark)."""
    out = set()
    for symbol in symbols:
        if symbol not in engine._marks and symbol not in engine._oracles:  # noqa: SLF001
            continue
        marks = {**sc.base, **engine._marks, symbol: _in_force(engine, symbol)}  # noqa: SLF001
        unmarked = [s for s in sc.symbols if s != symbol and s not in engine._marks]  # noqa: SLF001
        for pos in ledger.positions(symbol):
            if any(ledger.position(pos.account_id, s).qty_lots for s in unmarked):
                continue  # an account holding a symbol without a mark cannot be valued: it waits (documented)
            if pos.account_id.startswith("t"):
                isolated = ledger.account(pos.account_id).margin_mode == "isolated"
                state = ledger.margin_state(pos.account_id, marks, lambda inst: sc.tiers[inst.symbol],
                                            symbol=symbol if isolated else None,
                                            asset_code=None if isolated else sc.insts[symbol].settle.code)
                if state.liquidatable:
                    out.add((pos.account_id, symbol))
    return out


def _run_awkward(preset: str, market, accounts, moves, divergence, fund, depth, with_backstop,  # noqa: ANN001
                 check: bool) -> tuple[str, str]:
    sc = Scenario(market, accounts, moves, fund_minor=fund)
    ledger = sc.ledger
    code = next(iter(sc.insts.values())).settle.code
    lps = []
    if with_backstop:
        ledger.open_account("lp", kind="backstop")
        ledger.deposit("lp", code, 10**6 * sc.insts[sc.symbols[0]].settle.minor_per_unit, 0)
        lps = [BackstopProvider("lp", 10**5 * sc.insts[sc.symbols[0]].settle.minor_per_unit, 30.0, 10**7)]
    books = {s: ResilientBook(mid_ticks=sc.base[s], half_spread_ticks=1, depth_lots_per_tick=depth,
                              resilience_per_s=0.0) if depth else EmptyBook() for s in sc.symbols}
    engine = LiquidationEngine(ledger, instruments=[sc.insts[s] for s in sc.symbols], policy=get_policy(preset),
                               liquidity=books, tiers_for=lambda inst: sc.tiers[inst.symbol], backstops=lps)
    engine.track_all()
    ts = 0
    for k, (symbol, at) in enumerate(sc.steps()):
        oracle = max(1, at[symbol] + at[symbol] * divergence[k % len(divergence)] // 1_000_000)
        for call in ("mark", "oracle", "advance"):
            ts += 300_000_000
            before_ledger = ledger.copy()
            if call == "mark":
                if isinstance(books[symbol], ResilientBook) and at[symbol] > 1:
                    books[symbol].advance(ts, mid_ticks=at[symbol])
                result = engine.on_mark(symbol, at[symbol], ts)
            elif call == "oracle":
                result = engine.on_oracle(symbol, oracle, ts)
            else:
                result = engine.advance(ts)
            if not check:
                continue
            valuation = {**sc.base, **engine._marks}  # noqa: SLF001
            assert_conserved(ledger, before_ledger.total_values(valuation), valuation)  # (1)
            events = list(engine.audit)[result.events_from:result.events_to]
            found = {(e.account_id, e.symbol) for e in events if str(e.kind) == "candidate_found"}
            was = _liquidatable(before_ledger, sc, engine, sc.symbols)
            for rec in result.actions:  # (2)
                if rec.action == "offload":  # the fund or a backstop selling what it took over
                    assert rec.account_id in ("insurance_fund", "lp") and rec.qty_lots > 0, (call, rec)
                elif rec.qty_lots and not (rec.venue == "dutch" and _kicked(engine, rec)):
                    assert (rec.account_id, rec.symbol) in was | found, (call, rec)
            for symbol_ in sc.symbols:  # (4) reduce-only
                for pos in before_ledger.positions(symbol_):
                    if pos.account_id.startswith("t"):
                        after = ledger.position(pos.account_id, symbol_).qty_lots
                        assert abs(after) <= abs(pos.qty_lots) and after * pos.qty_lots >= 0, (call, pos)
            touched = {e.account_id for e in events}
            dutch = engine._dutch  # noqa: SLF001
            # an oracle policy detects on oracle prints only (a mark moves the other symbols' valuation,
            # which the next print of this symbol's oracle picks up)
            oracle_driven = engine.policy.trigger.price_source == "oracle"
            detects = not oracle_driven or (call != "mark" and symbol in engine._oracles)  # noqa: SLF001
            detected = [symbol] if detects else []
            for aid, symbol_ in _liquidatable(ledger, sc, engine, detected):  # (3) the symbol just called
                case = engine._cases[symbol_].get(aid)  # noqa: SLF001
                assert case is not None, (call, aid, symbol_, "liquidatable but not an active case")
                waiting = case.waiting is not None or (dutch is not None and dutch.running(symbol_, aid))
                assert aid in touched or waiting, (call, aid, "liquidatable, no event and no announced wait")
    if check:  # shown by --hypothesis-show-statistics: how often a draw liquidates anything
        event(f"liquidation records: {min(len(engine.records), 3)}{'+' if len(engine.records) > 3 else ''}")
    return engine.audit.digest(), ledger.digest()


@settings(max_examples=max(10, EXAMPLES // 2), deadline=None)
@given(data=st.data(), preset=st.sampled_from(sorted(PRESETS)),
       divergence=st.lists(st.sampled_from([0, 0, 5_000, -5_000, 30_000, -30_000]), min_size=1, max_size=4),
       fund=st.sampled_from([0, 10**6, 10**13]), depth=st.sampled_from([0, 5, 200]), with_backstop=st.booleans(),
       **scenario_args)
def test_awkward_markets_conserve_reduce_only_liquidate_only_the_liquidatable_and_replay(
        data, preset, divergence, fund, depth, with_backstop, two_symbols, accounts, moves):
    market = data.draw(markets(2 if two_symbols else 1))
    args = (preset, market, accounts, moves, divergence, fund, depth, with_backstop)
    first = _run_awkward(*args, check=True)
    assert _run_awkward(*args, check=False) == first  # same inputs → the same decisions and ledger
