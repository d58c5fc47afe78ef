"""The lab hook: the recorder samples on its grid and its frames say what the snapshots said."""

from __future__ import annotations

import polars as pl

from deleverage.engine.alerts import AlertRule
from deleverage.engine.events import EventKind
from deleverage.engine.monitor import MonitorConfig
from deleverage.engine.monitor_series import (
    ALERT_COLUMNS,
    HEATMAP_COLUMNS,
    MonitorRecorder,
    replay_snapshots,
)
from tests.engine.monitor_kit import crash, drive

SECOND = 10**9
RULES = [AlertRule(name="liq-1m", metric="liquidation_ratio", window="1m", threshold=0.05, clear_threshold=0.01)]


def test_recorder_samples_on_its_grid_and_keeps_the_series() -> None:
    engine, path = crash(11)
    recorder = MonitorRecorder(engine, MonitorConfig(windows=("1m", "5m"), map_levels=40), RULES, every_ms=15_000,
                               keep_snapshots=True)
    drive(engine, path, recorder.on_tick)  # ticks every 5 s
    snapshots = recorder.snapshots
    times = [s.ts_ns for s in snapshots]
    assert times[0] == path[0][0] and all(t % (15 * SECOND) == 0 for t in times[1:])
    assert times == sorted(set(times)) and len(times) == 1 + path[-1][0] // (15 * SECOND)
    frames = recorder.frames()
    series = frames.series
    assert series.height == len(snapshots)
    assert series["ts_ns"].to_list() == times
    for snap, row in zip(snapshots, series.iter_rows(named=True), strict=True):
        risk = snap.symbols["BTCUSDT"]
        assert row["open_interest"] == risk.open_interest.notional
        assert row["liquidation_ratio_1m"] == risk.liquidations["1m"].ratio
        assert row["notional_at_risk_2%"] == risk.at_risk["2%"].notional
        assert row["insurance_fund"] == snap.insurance_fund["USDT"].balance
    heat = frames.heatmap
    assert tuple(heat.columns) == HEATMAP_COLUMNS and heat.height > 0
    for snap in snapshots:
        liq_map = snap.symbols["BTCUSDT"].liquidation_map
        rows = heat.filter(pl.col("ts_ns") == snap.ts_ns)
        assert rows.filter(pl.col("side") == "long")["lots"].sum() == sum(liq_map.below.lots)
        assert rows.filter(pl.col("side") == "short")["lots"].sum() == sum(liq_map.above.lots)
        assert rows.height == sum(1 for a in liq_map.below.accounts + liq_map.above.accounts if a)
    assert (heat["price_high"] - heat["price_low"]).round(6).unique().to_list() == [liq_map.bin_ticks * 0.1]
    alerts = frames.alerts
    assert tuple(alerts.columns) == ALERT_COLUMNS
    assert alerts.filter(pl.col("kind") == "alert_fired").height >= 1
    assert alerts["rule"].unique().to_list() == ["liq-1m"]
    fired = alerts.filter(pl.col("kind") == "alert_fired").height
    assert recorder.audit.count(EventKind.ALERT_FIRED) == fired


def test_replay_snapshots_drives_and_samples() -> None:
    engine, path = crash(3)
    recorder = MonitorRecorder(engine, every_ms=60_000)
    book = engine._liquidity["BTCUSDT"]  # noqa: SLF001
    marks = dict(path)

    def feed(ts: int) -> None:
        book.advance(ts, mid_ticks=marks[ts])
        engine.on_mark("BTCUSDT", marks[ts], ts)

    snaps = list(replay_snapshots(recorder, [ts for ts, _ in path], feed))
    assert [s.ts_ns for s in snaps][1:] == [t for t, _ in path if t % (60 * SECOND) == 0]
    assert recorder.last is snaps[-1]
    assert recorder.frames().series.height == len(snaps)


def test_empty_recorder_gives_typed_empty_frames() -> None:
    engine, _ = crash(3, n=3)
    frames = MonitorRecorder(engine).frames()
    assert frames.series.height == frames.heatmap.height == frames.alerts.height == 0
    assert frames.series.schema["ts_ns"] == pl.Int64 and "liquidation_ratio_5m" in frames.series.columns
