"""RiskMonitor over a seeded crash: windows, open interest, ADL depth, fund, safeguards vs naive truth."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
from pydantic import ValidationError

from deleverage.core.instruments import BTCUSDT
from deleverage.engine.monitor import (
    LIQUIDATION_ACTIONS,
    MONITOR_SCHEMA,
    MonitorConfig,
    RiskMonitor,
)
from deleverage.errors import InvalidInput, SimulationError
from tests.engine.monitor_kit import Account, build, crash, drive, market

SECOND = 10**9
WINDOWS = ("30s", "2m", "10m")
SPANS = {"30s": 30 * SECOND, "2m": 120 * SECOND, "10m": 600 * SECOND}
INST = BTCUSDT


def sampled_crash(seed: int, every_s: int = 10, **overrides):  # noqa: ANN003, ANN201
    """The crash driven to its end with a sample every ``every_s``; also the ledger's truth at each sample."""
    engine, path = crash(seed, **overrides)
    monitor = RiskMonitor(engine, MonitorConfig(windows=WINDOWS, map_levels=30))
    snapshots, truth = [], []

    def on_tick(ts: int) -> None:
        if ts % (every_s * SECOND):
            return
        snapshots.append(monitor.sample(ts))
        truth.append(ledger_truth(engine, ts))

    drive(engine, path, on_tick)
    return engine, snapshots, truth


def ledger_truth(engine, ts: int) -> dict:  # noqa: ANN001
    """Open interest per side and the ADL queue, read position by position from the ledger."""
    ledger, mark = engine.ledger, engine.mark_ticks(INST.symbol)
    sides = {"long": [0, 0], "short": [0, 0]}
    profitable = {"long": [0, 0, 0.0], "short": [0, 0, 0.0]}
    for pos in ledger.positions(INST.symbol):
        if ledger.account(pos.account_id).kind != "trader":
            continue
        side = "long" if pos.qty_lots > 0 else "short"
        sides[side][0] += 1
        sides[side][1] += abs(pos.qty_lots)
        pnl = ledger.unrealized_pnl_exact(pos.account_id, INST.symbol, mark)
        if pnl > 0:
            profitable[side][0] += 1
            profitable[side][1] += abs(pos.qty_lots)
            profitable[side][2] += float(pnl) / INST.settle.minor_per_unit
    return {"ts": ts, "mark": mark, "sides": sides, "profitable": profitable,
            "fund": ledger.balance("insurance_fund", "USDT")}


@pytest.fixture(scope="module")
def run():  # noqa: ANN201
    """A thin book and no liquidation fee: partials, full closes, fund takeovers and ADL; the fund draws down."""
    return sampled_crash(11, depth_lots=4, fees={"liquidation_fee_rate": 0.0})


def test_the_crash_liquidates_in_several_windows(run) -> None:  # noqa: ANN001
    engine, snapshots, _ = run
    liquidations = [r for r in engine.records if r.action in LIQUIDATION_ACTIONS and r.qty_lots > 0]
    assert len(liquidations) >= 10
    assert len({r.ts_ns // (120 * SECOND) for r in liquidations}) >= 3  # spread over several 2-minute spans
    assert max(s.symbols[INST.symbol].liquidations["2m"].ratio for s in snapshots) > 0.01
    assert {"partial", "full", "takeover", "adl"} <= {r.action for r in engine.records}
    assert max(s.symbols[INST.symbol].liquidations["10m"].adl_lots for s in snapshots) > 0


def test_liquidation_windows_equal_a_naive_recomputation(run) -> None:  # noqa: ANN001
    engine, snapshots, _ = run
    records = engine.records
    oi = [(s.ts_ns, s.symbols[INST.symbol].open_interest.lots, s.symbols[INST.symbol].mark_ticks) for s in snapshots]
    for snap in snapshots:
        t = snap.ts_ns
        risk = snap.symbols[INST.symbol]
        for label, w in SPANS.items():
            inside = [r for r in records if t - w < r.ts_ns <= t and r.qty_lots > 0]
            liq = [r for r in inside if r.action in LIQUIDATION_ACTIONS]
            adl = [r for r in inside if r.action == "adl"]
            minor = sum(round(abs(INST.notional(r.trigger_mark_ticks, r.qty_lots))) for r in liq)
            adl_minor = sum(round(abs(INST.notional(r.trigger_mark_ticks, r.qty_lots))) for r in adl)
            got = risk.liquidations[label]
            assert (got.count, got.lots) == (len(liq), sum(r.qty_lots for r in liq)), (t, label)
            assert got.notional == minor / 10**8
            assert (got.adl_lots, got.adl_notional) == (sum(r.qty_lots for r in adl), adl_minor / 10**8)
            old = [row for row in oi if row[0] <= t - w]
            base_ts, base_lots, base_mark = old[-1] if old else oi[0]
            assert got.base_ts_ns == base_ts
            base_minor = round(abs(INST.notional(base_mark, base_lots)))
            assert got.ratio == (minor / base_minor if base_minor else None)
            change = risk.open_interest_change[label]
            assert change.base_ts_ns == base_ts
            assert change.lots == risk.open_interest.lots - base_lots
            assert change.fraction == (change.lots / base_lots if base_lots else None)
            now_minor = round(abs(INST.notional(risk.mark_ticks, risk.open_interest.lots)))
            assert change.notional == (now_minor - base_minor) / 10**8


def test_open_interest_adl_queue_and_fund_equal_the_ledger(run) -> None:  # noqa: ANN001
    _, snapshots, truth = run
    peak = None
    for snap, true in zip(snapshots, truth, strict=True):
        risk = snap.symbols[INST.symbol]
        oi = risk.open_interest
        for side in ("long", "short"):
            totals = getattr(oi, side)
            assert [totals.accounts, totals.lots] == true["sides"][side]
            assert totals.notional == round(abs(INST.notional(true["mark"], totals.lots))) / 10**8
            assert totals.qty == totals.lots * 0.001 or math.isclose(totals.qty, totals.lots * 0.001)
            depth = getattr(risk.adl_queue, side)
            count, lots, pnl = true["profitable"][side]
            assert (depth.accounts, depth.lots) == (count, lots), (snap.ts_ns, side)
            assert math.isclose(depth.unrealized_pnl, pnl, rel_tol=1e-9, abs_tol=1e-6)
        assert oi.lots == max(oi.long.lots, oi.short.lots)
        fund = snap.insurance_fund["USDT"]
        peak = true["fund"] if peak is None else max(peak, true["fund"])
        assert (fund.balance_minor, fund.peak_minor, fund.drawdown_minor) == (true["fund"], peak, peak - true["fund"])
        assert fund.drawdown == (peak - true["fund"]) / peak
    assert max(s.insurance_fund["USDT"].drawdown for s in snapshots) > 0.01


def test_monitoring_changes_nothing_in_the_engine() -> None:
    watched, path = crash(5)
    monitor = RiskMonitor(watched)
    drive(watched, path, lambda ts: monitor.sample(ts))
    alone, path2 = crash(5)
    drive(alone, path2)
    assert watched.ledger.digest() == alone.ledger.digest()
    assert watched.audit.digest() == alone.audit.digest()
    assert len(watched.records) == len(alone.records) > 0


def test_same_inputs_give_byte_identical_snapshots() -> None:
    digests = set()
    for _ in range(3):
        _, snapshots, _ = sampled_crash(3, every_s=30)
        h = hashlib.sha256()
        for snap in snapshots:
            h.update(snap.to_json().encode())
        digests.add(h.hexdigest())
    assert len(digests) == 1


def test_snapshot_json_shape(run) -> None:  # noqa: ANN001
    _, snapshots, _ = run
    doc = json.loads(snapshots[-1].to_json())
    assert doc == snapshots[-1].as_dict()
    assert doc["schema"] == MONITOR_SCHEMA
    assert set(doc) == {"schema", "ts_ns", "seq", "policy", "windows", "bands", "symbols", "insurance_fund",
                        "engine"}
    assert (doc["windows"], doc["bands"]) == (list(WINDOWS), ["1%", "2%", "5%"])
    sym = doc["symbols"]["BTCUSDT"]
    assert set(sym) == {"symbol", "contract", "settle", "mark_ticks", "mark", "screened", "accounts", "open_interest",
                        "open_interest_change", "liquidations", "liquidatable_now", "at_risk", "liquidation_map",
                        "adl_queue", "safeguards", "exact_checks"}
    assert set(sym["liquidations"]) == set(sym["open_interest_change"]) == set(WINDOWS)
    assert set(sym["at_risk"]) == {"1%", "2%", "5%"}
    assert set(sym["liquidation_map"]) == {"bin_ticks", "mark_ticks", "tick_size", "below", "above"}
    assert len(sym["liquidation_map"]["below"]["price_ticks"]) == 30
    assert [s.seq for s in snapshots] == list(range(len(snapshots)))


def test_prometheus_samples_carry_the_issue_names(run) -> None:  # noqa: ANN001
    _, snapshots, _ = run
    samples = {(m.name, m.labels): m.value for m in snapshots[-1].metrics()}
    risk = snapshots[-1].symbols["BTCUSDT"]
    assert samples[("deleverage_open_interest", (("symbol", "BTCUSDT"),))] == risk.open_interest.notional
    for w in WINDOWS:
        key = ("deleverage_liquidation_ratio", (("symbol", "BTCUSDT"), ("window", w)))
        assert samples[key] == risk.liquidations[w].ratio
    for band in ("1%", "2%", "5%"):
        key = ("deleverage_notional_at_risk", (("band", band), ("symbol", "BTCUSDT")))
        assert samples[key] == risk.at_risk[band].notional
    assert samples[("deleverage_insurance_fund", (("asset", "USDT"),))] == snapshots[-1].insurance_fund["USDT"].balance
    assert all(math.isfinite(v) for v in samples.values())


def test_price_band_halt_and_invalid_oracle_show_in_the_snapshot() -> None:
    engine, path = crash(11, safeguards={"price_band_bps": 150, "band_window_ms": 60_000,
                                         "oracle_max_divergence_bps": 100})
    monitor = RiskMonitor(engine)
    seen = []
    drive(engine, path[:80], lambda ts: seen.append(monitor.sample(ts)))
    halted = [s for s in seen if s.symbols["BTCUSDT"].safeguards.halted]
    assert halted, "a 6 % fall in ten minutes trips a 1.5 %/minute band"
    sg = halted[0].symbols["BTCUSDT"].safeguards
    assert sg.price_band_halted and not sg.execution_allowed and sg.halted_since_ns is not None
    assert sg.band_bps == 150.0
    ts, mark = path[80]
    engine.on_oracle("BTCUSDT", int(mark * 1.05), ts)  # 5 % away from the mark: invalid
    snap = monitor.sample(ts)
    sg = snap.symbols["BTCUSDT"].safeguards
    state = engine.safeguards_state()["symbols"]["BTCUSDT"]
    assert not sg.oracle_valid and sg.oracle_invalid_reason == state["oracle_invalid_reason"] is not None
    metrics = {(m.name, m.labels): m.value for m in snap.metrics()}
    assert metrics[("deleverage_oracle_valid", (("symbol", "BTCUSDT"),))] == 0.0


def test_before_the_first_mark_only_sizes_are_known() -> None:
    inst, tiers = market(False, "flat")
    engine = build(inst, tiers, [Account("long", 10, 600_000, 10.0), Account("short", 4, 600_000, 10.0)])
    snap = RiskMonitor(engine).sample(0)
    risk = snap.symbols[inst.symbol]
    assert risk.screened
    assert risk.mark_ticks is None and risk.liquidation_map is None and risk.at_risk is None
    assert (risk.open_interest.long.lots, risk.open_interest.short.lots, risk.open_interest.notional) == (10, 4, None)
    assert risk.liquidations["5m"].ratio is None
    json.loads(snap.to_json())


def test_bad_input_is_refused_before_anything_changes() -> None:
    inst, tiers = market(False, "flat")
    engine = build(inst, tiers, [Account("long", 10, 600_000, 10.0)])
    monitor = RiskMonitor(engine)
    monitor.sample(5 * SECOND)
    with pytest.raises(SimulationError, match="older than the previous sample"):
        monitor.sample(4 * SECOND)
    for bad in (1.5, True, "7", -1):
        with pytest.raises(InvalidInput, match="ts_ns"):
            monitor.sample(bad)  # type: ignore[arg-type]
    assert monitor.sample(5 * SECOND).seq == 1  # the refused calls took no sample
    for kwargs, field in (({"windows": ("5x",)}, "windows"), ({"windows": ("1m", "60s")}, "windows"),
                          ({"windows": ()}, "windows"), ({"bands_pct": (0,)}, "bands_pct"),
                          ({"bands_pct": (1, 1)}, "bands_pct"), ({"map_levels": 0}, "map_levels"),
                          ({"map_bin_ticks": {"BTCUSDT": 0}}, "map_bin_ticks"), ({"unknown": 1}, "unknown"),
                          ({"exact_tolerance": math.nan}, "exact_tolerance"),
                          ({"exact_tolerance": 0.5}, "exact_tolerance"), ({"map_bin_bps": 0}, "map_bin_bps")):
        with pytest.raises(ValidationError, match=field):
            MonitorConfig(**kwargs)
    with pytest.raises(InvalidInput, match="ETHUSDT"):
        RiskMonitor(engine, MonitorConfig(map_bin_ticks={"ETHUSDT": 10}))


def test_config_from_toml(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "monitor.toml"
    path.write_text('[monitor]\nwindows = ["1m", "15m"]\nbands_pct = [0.5, 1, 3]\nmap_levels = 50\n')
    config = MonitorConfig.from_toml(path)
    assert config.windows == ("1m", "15m") and config.band_labels == ("0.5%", "1%", "3%")
    assert config.windows_ns == (60 * SECOND, 900 * SECOND)
    path.write_text('[monitor]\nwindows = ["1m", "fortnight"]\n')
    with pytest.raises(InvalidInput, match=r"monitor.toml:windows"):
        MonitorConfig.from_toml(path)
    path.write_text('[monitor\nwindows = 3')
    with pytest.raises(InvalidInput, match="not valid TOML"):
        MonitorConfig.from_toml(path)
    with pytest.raises(InvalidInput, match="cannot read"):
        MonitorConfig.from_toml(tmp_path / "missing.toml")


def test_an_engine_not_yet_screening_says_so() -> None:
    from deleverage.engine import LiquidationEngine, get_policy
    from deleverage.testing import make_ledger
    from tests.engine.monitor_kit import open_account

    inst, tiers = market(False, "flat")
    ledger = make_ledger(insurance_fund={"USDT": 10**12})
    open_account(ledger, "a", inst, tiers, Account("long", 10, 600_000, 10.0))
    engine = LiquidationEngine(ledger, instruments=[inst], policy=get_policy("binance"), tiers_for=lambda _i: tiers)
    monitor = RiskMonitor(engine)
    before = monitor.sample(0).symbols[inst.symbol]
    assert not before.screened and before.accounts == 0
    engine.on_mark(inst.symbol, 600_000, SECOND)  # the first mark builds the screen
    after = monitor.sample(SECOND).symbols[inst.symbol]
    assert after.screened and after.open_interest.long.lots == 10
