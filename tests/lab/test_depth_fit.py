"""Depth profiles from bookDepth and Tardis book_snapshot files recover the profile they were written with."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from deleverage.lab.calibration import calibrate_sources
from deleverage.lab.synthetic_market import crash_day_klines, write_klines_csv

DAY = 1_893_456_000  # 2030-01-01 00:00 UTC, s


def _book_depth_csv(path, *, a: float, alpha: float, state_factor=None, minutes: int = 120) -> None:
    """Binance bookDepth rows every 30 s: depth within p % = A·(100p/10)^α × factor (both sides), ±1 % noise."""
    rng = np.random.default_rng(0)
    lines = ["timestamp,percentage,depth,notional"]
    for k in range(minutes * 2):
        t = DAY + 30 * k
        factor = 1.0 if state_factor is None else state_factor(k // 2)
        stamp = datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        for pct in (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5):
            depth = a * (abs(pct) * 100 / 10) ** alpha * factor * math.exp(rng.normal(0, 0.01))
            lines.append(f"{stamp},{pct},{depth:.3f},{depth * 60000:.1f}")
    path.write_text("\n".join(lines) + "\n")


def test_book_depth_alone_recovers_level_and_profile(tmp_path) -> None:
    path = tmp_path / "BTCUSDT-bookDepth-2030-01-01.csv"
    _book_depth_csv(path, a=50.0, alpha=1.2)
    result = calibrate_sources([str(path)])
    fit = result.fits[-1]
    assert fit.component == "depth_profile" and fit.n == 2_400
    assert fit.parameters["depth_10bps"] == pytest.approx(50.0, rel=0.02)
    assert fit.parameters["profile_exponent"] == pytest.approx(1.2, abs=0.01)
    assert abs(fit.parameters["profile_exponent"] - 1.2) < 4 * fit.stderr["profile_exponent"] + 1e-3
    assert result.model.depth_10bps == fit.parameters["depth_10bps"]


def test_book_depth_with_klines_of_the_day_recovers_the_state_elasticities(tmp_path) -> None:
    klines = crash_day_klines(seed=3, day_start_ns=DAY * 10**9)
    kline_path = tmp_path / "BTCUSDT-1m-2030-01-01.csv"
    write_klines_csv(klines, kline_path)
    from deleverage.lab.impact_fit import bar_state, bars_from_klines

    state = bar_state(bars_from_klines(klines, source="k"), 5.0)
    b, c = 0.5, -1.0
    v_ref, r_ref = 176.892, 0.0007894850658581865

    def factor(minute: int) -> float:
        return (state.volume[minute] / v_ref) ** b * (state.range[minute] / r_ref) ** c

    depth_path = tmp_path / "BTCUSDT-bookDepth-2030-01-01.csv"
    _book_depth_csv(depth_path, a=80.0, alpha=1.3, state_factor=factor, minutes=1_440)
    result = calibrate_sources([str(kline_path), str(depth_path)], half_life=5.0)
    profile = next(f for f in result.fits if f.component == "depth_profile")
    assert profile.parameters["volume_elasticity"] == pytest.approx(b, abs=0.02)
    assert profile.parameters["range_elasticity"] == pytest.approx(c, abs=0.02)
    assert profile.parameters["depth_10bps"] == pytest.approx(80.0, rel=0.03)
    assert result.model.volume_elasticity == profile.parameters["volume_elasticity"]


def test_tardis_snapshots_give_the_profile_and_the_spread(tmp_path) -> None:
    path = tmp_path / "binance-futures_book_snapshot_25_2030-01-01_BTCUSDT.csv"
    header = ["exchange", "symbol", "timestamp", "local_timestamp"]
    for i in range(25):
        header += [f"asks[{i}].price", f"asks[{i}].amount", f"bids[{i}].price", f"bids[{i}].amount"]
    rows = [",".join(header)]
    mid, half = 60_000.0, 0.5  # half spread 0.5 USDT
    for k in range(50):
        ts = (DAY + k) * 1_000_000
        cells = ["binance-futures", "BTCUSDT", str(ts), str(ts + 5)]
        for i in range(25):
            # level i sits i·12 USDT (2 bps) from the touch and holds the increment of 3·(N/10)^1.5 BTC
            dist_bps = (half + 12.0 * i) / mid * 1e4
            prev_bps = (half + 12.0 * (i - 1)) / mid * 1e4 if i else 0.0
            qty = 3.0 * ((dist_bps / 10) ** 1.5 - (prev_bps / 10) ** 1.5)
            cells += [f"{mid + half + 12.0 * i:.1f}", f"{qty:.4f}", f"{mid - half - 12.0 * i:.1f}", f"{qty:.4f}"]
        rows.append(",".join(cells))
    path.write_text("\n".join(rows) + "\n")
    result = calibrate_sources([str(path)])
    fit = result.fits[-1]
    assert fit.component == "depth_profile"
    assert fit.parameters["half_spread_bps"] == pytest.approx(half / mid * 1e4, rel=1e-3)
    assert fit.parameters["profile_exponent"] == pytest.approx(1.5, abs=0.1)
    assert fit.parameters["depth_10bps"] == pytest.approx(3.0, rel=0.2)


def test_agg_trades_are_cut_into_minutes_and_fitted_like_klines(tmp_path) -> None:
    """aggTrades of a synthetic day with a known impact law: the calibration's impact fit recovers δ."""
    from deleverage.lab.impact_fit import ImpactFit, simulate_bars

    true = ImpactFit(log_lambda=-7.0, flow_exponent=0.6, volume_coef=-0.45, range_coef=0.9, flow_coef=0.0,
                     volume_ref=176.892, range_ref=0.0007894850658581865, half_life_bars=2.0, bar_s=60.0, n=0,
                     r2=0.0)
    bars = simulate_bars(true, 1_440, np.random.default_rng(9), start_price=60_000.0)
    lines = ["agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"]
    trade = 0
    for m in range(len(bars)):
        t = DAY * 1000 + m * 60_000
        sell = bars.volume[m] - bars.taker_buy_volume[m]
        # four trades a minute: open, high, low (the sells), close; quantities carry the taker split
        for k, (price, qty, maker) in enumerate(((bars.open[m], bars.taker_buy_volume[m] / 2, "false"),
                                                 (bars.high[m], bars.taker_buy_volume[m] / 2, "false"),
                                                 (bars.low[m], sell / 2, "true"),
                                                 (bars.close[m], sell / 2, "true"))):
            lines.append(f"{trade},{price:.6f},{qty:.6f},{trade},{trade},{t + 1 + k * 10_000},{maker}")
            trade += 1
    path = tmp_path / "BTCUSDT-aggTrades-2030-01-01.csv"
    path.write_text("\n".join(lines) + "\n")
    result = calibrate_sources([str(path)], half_life=2.0)
    impact = next(f for f in result.fits if f.component == "impact")
    assert impact.n > 1_300
    assert abs(impact.parameters["flow_exponent"] - 0.6) < 4 * impact.stderr["flow_exponent"] + 0.03
    assert result.model.bar_law is not None
