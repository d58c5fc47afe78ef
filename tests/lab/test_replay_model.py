"""The kline replay's market model: state-dependent book, footprint removal, market makers, feedback off."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deleverage.core.instruments import BTCUSDT
from deleverage.data.scenarios import get_scenario
from deleverage.errors import DataError, InvalidInput
from deleverage.lab.agents import MarketMaker
from deleverage.lab.calibration import DEFAULT_DEPTH_MODEL, day_model
from deleverage.lab.footprint import (
    DEFAULT_SHARE_OF_EXCESS,
    LiquidationFlow,
    estimate_flow,
    excess_adverse_volume,
    flow_from_prints,
    footprint_offsets,
    share_of_excess,
)
from deleverage.lab.impact_book import BarImpactLaw
from deleverage.lab.impact_fit import bar_state, bars_from_klines
from deleverage.lab.market import KlineReplayMarket, lots_per_base_unit, replay_market_makers
from deleverage.lab.setup import FEED_UNDERCOUNT

NS = 1_000_000_000
MIN = 60 * NS
DAY_2025 = 1_760_054_400_000_000_000


@pytest.fixture(scope="module")
def klines_2025():
    return get_scenario("2025-10-10").load().frame


def _window(hh: int, mm: int, minutes: int) -> tuple[int, int]:
    start = DAY_2025 + (hh * 60 + mm) * MIN
    return start, start + minutes * MIN


def test_book_depth_follows_the_state_of_each_minute(klines_2025) -> None:
    """Depth within 10 bps in the replay = the model's D(10) × the minute's factor, side by side."""
    model = DEFAULT_DEPTH_MODEL
    bars = bars_from_klines(klines_2025, source="x")
    state = bar_state(bars, model.state_half_life_min)
    for hh, mm in ((3, 0), (21, 20)):
        market = KlineReplayMarket(klines_2025, BTCUSDT, seed=1, window=_window(hh, mm, 2))
        minute = hh * 60 + mm
        bid_factor, ask_factor = model.side_factors(state.volume[minute], state.range[minute],
                                                    state.imbalance[minute])
        price = float(klines_2025["open"][minute])
        book = market.liquidity()
        for side, factor in (("bid", bid_factor), ("ask", ask_factor)):
            expected = model.depth_within_bps(10, state.volume[minute], state.range[minute]) / model.scale_factor(
                state.volume[minute], state.range[minute]) * factor * lots_per_base_unit(BTCUSDT, price)
            assert book.depth_within_bps(side, 10) == pytest.approx(expected, rel=0.02), (hh, side)
    calm = KlineReplayMarket(klines_2025, BTCUSDT, seed=1, window=_window(3, 0, 2)).liquidity()
    crash = KlineReplayMarket(klines_2025, BTCUSDT, seed=1, window=_window(21, 25, 2)).liquidity()
    assert crash.depth_within_bps("bid", 50) < 0.3 * calm.depth_within_bps("bid", 50)


def test_feedback_off_keeps_the_mark_on_the_reference(klines_2025) -> None:
    market = KlineReplayMarket(klines_2025, BTCUSDT, seed=2, window=_window(21, 10, 5), feedback=False,
                               market_makers=replay_market_makers(DEFAULT_DEPTH_MODEL, BTCUSDT, 1_130_000))
    for ts in market.times()[::7]:
        market.advance_to(int(ts))
        assert market.liquidity().take("sell", 50_000).filled_lots == 50_000
        assert market.mark_ticks() == market.reference_mark_ticks()
    on = KlineReplayMarket(klines_2025, BTCUSDT, seed=2, window=_window(21, 10, 5))
    on.advance_to(int(on.times()[3]))
    on.liquidity().take("sell", 50_000)
    assert on.mark_ticks() < on.reference_mark_ticks()


def test_impact_of_a_sell_stays_and_grows_with_stress(klines_2025) -> None:
    """The same 50 BTC sold moves the centre by the bar law: more in the crash minute than in a calm one
    (λ rises with volatility faster than it falls with volume; concavity on top of the crash flow damps it)."""
    moves = []
    for hh, mm in ((3, 0), (21, 18)):
        market = KlineReplayMarket(klines_2025, BTCUSDT, seed=3, window=_window(hh, mm, 3))
        t0 = int(market.times()[5])
        market.advance_to(t0)
        market.liquidity().take("sell", 50_000)
        market.advance_to(t0 + 40 * NS)  # the walked part has refilled; the permanent part is left
        moves.append(market.impact_ticks() / market.reference_mark_ticks())
    assert moves[0] < 0 and moves[1] < 1.5 * moves[0]


def test_estimated_flow_splits_the_published_total_over_adverse_minutes(klines_2025) -> None:
    bars = bars_from_klines(klines_2025, source="2025-10-10")
    flow = estimate_flow(bars, long_quote=6e8, short_quote=1e8, source="test")
    long_quote, short_quote = flow.total_quote(np.asarray(bars.close))
    assert long_quote == pytest.approx(6e8) and short_quote == pytest.approx(1e8)
    returns = bars.log_return
    assert np.all(flow.long_base[returns >= 0] == 0) and np.all(flow.short_base[returns <= 0] == 0)
    peak = int(np.argmax(flow.long_base * bars.close))
    assert 21 * 60 + 10 <= peak <= 21 * 60 + 20  # Amberdata: the peak minute was 21:15
    sell, buy = excess_adverse_volume(bars)
    assert np.all(sell >= 0) and np.all(buy >= 0)


def test_default_share_of_excess_is_the_bundled_days_mean() -> None:
    """Without prints or a published total a day gets the share of its excess adverse taker volume the two
    bundled days imply: (Binance's recorded liquidations × BTC's share × the undercount) / excess volume."""
    shares = []
    for name in ("2021-05-19", "2025-10-10"):
        scenario = get_scenario(name)
        facts = scenario.facts
        total = (facts["binance_liquidated_usd"] * facts["btc_liquidated_usd"] / facts["liquidated_usd_all_venues"]
                 * FEED_UNDERCOUNT)
        shares.append(share_of_excess(bars_from_klines(scenario.load().frame, source=name), total))
    assert DEFAULT_SHARE_OF_EXCESS == pytest.approx(float(np.mean(shares)), abs=0.0015)


def test_prints_are_summed_into_their_bars(klines_2025) -> None:
    bars = bars_from_klines(klines_2025.head(10), source="x")
    ts = np.array([bars.ts_ns[2] + 5 * NS, bars.ts_ns[2] + 59 * NS, bars.ts_ns[7], bars.ts_ns[9] + 61 * NS])
    flow = flow_from_prints(bars, ts, np.array(["long", "long", "short", "long"]), np.array([1.0, 2.0, 0.5, 9.0]),
                            source="prints")
    assert flow.long_base[2] == 3.0 and flow.short_base[7] == 0.5
    assert flow.long_base.sum() == 3.0  # the last print is after the last bar
    assert np.array_equal(flow.signed[[2, 7]], [-3.0, 0.5])
    with pytest.raises(DataError, match="position side"):
        flow_from_prints(bars, ts[:1], np.array(["up"]), np.array([1.0]), source="p")
    with pytest.raises(InvalidInput, match="long_base"):
        LiquidationFlow(np.array([-1.0]), np.array([0.0]), "x")


def test_footprint_offsets_ramp_in_their_bar_then_decay_by_g() -> None:
    law = BarImpactLaw(log_lambda=-7, flow_exponent=0.6, volume_coef=0, range_coef=0, flow_coef=0, volume_ref=1,
                       range_ref=1, floor=0.6, decay_per_s=0.02)
    starts = np.arange(4, dtype=np.int64) * MIN
    delta = np.array([0.0, -0.01, 0.0, 0.0])
    times = np.array([0, MIN, MIN + 30 * NS, 2 * MIN, 2 * MIN + 40 * NS, 3 * MIN + 50 * NS])
    got = footprint_offsets(times, starts, 60.0, delta, law)
    expected = [0.0, 0.0, -0.005, -0.01, -0.01 * (0.6 + 0.4 * math.exp(-0.8)), -0.01 * (0.6 + 0.4 * math.exp(-2.2))]
    assert np.allclose(got, expected)


def test_reference_path_is_the_recorded_path_without_the_footprint(klines_2025) -> None:
    bars = bars_from_klines(klines_2025, source="x")
    flow = estimate_flow(bars, long_quote=1.2e9, short_quote=2e8, source="test")
    market = KlineReplayMarket(klines_2025, BTCUSDT, seed=4, window=_window(20, 40, 50), footprint=flow)
    recorded, reference = market.recorded_path, market.path_ticks()
    assert np.array_equal(reference, np.maximum(np.rint(recorded * np.exp(-market.footprint_log)), 1).astype(np.int64))
    assert market.footprint_log[0] == 0.0  # only the window's liquidations are taken out
    assert market.footprint_log.min() < -0.002  # long liquidations pushed the recorded path down
    plain = KlineReplayMarket(klines_2025, BTCUSDT, seed=4, window=_window(20, 40, 50))
    assert np.array_equal(plain.path_ticks(), recorded)
    assert any("footprint" in line for line in market.description())


def test_day_model_fits_the_file_itself_and_falls_back_when_short(klines_2025) -> None:
    model, note = day_model(klines_2025, source="2025-10-10")
    assert model.bar_law is not None and model.bar_law != DEFAULT_DEPTH_MODEL.bar_law
    assert "fitted on this file" in note and model.depth_10bps == DEFAULT_DEPTH_MODEL.depth_10bps
    short, note = day_model(klines_2025.head(200), source="x")
    assert short is DEFAULT_DEPTH_MODEL and "default" in note


def test_market_makers_quote_when_calm_pull_under_stress_and_respect_inventory(klines_2025) -> None:
    makers = replay_market_makers(DEFAULT_DEPTH_MODEL, BTCUSDT, 1_215_000)
    calm = KlineReplayMarket(klines_2025, BTCUSDT, seed=5, window=_window(3, 0, 3), market_makers=makers)
    bare = KlineReplayMarket(klines_2025, BTCUSDT, seed=5, window=_window(3, 0, 3))
    assert calm.liquidity().depth_within_bps("bid", 5) > bare.liquidity().depth_within_bps("bid", 5)
    crash_makers = replay_market_makers(DEFAULT_DEPTH_MODEL, BTCUSDT, 1_050_000)
    crash = KlineReplayMarket(klines_2025, BTCUSDT, seed=5, window=_window(21, 22, 3), market_makers=crash_makers)
    plain = KlineReplayMarket(klines_2025, BTCUSDT, seed=5, window=_window(21, 22, 3))
    assert crash.makers.stress > max(mm.pull_stress for mm in crash_makers)  # the recorded stress pulls them
    assert crash.liquidity().depth_within_bps("bid", 5) == plain.liquidity().depth_within_bps("bid", 5)
    book = calm.liquidity()
    book.take("sell", 2_000_000)  # 2,000 BTC: more than the makers may hold
    for mm in makers:
        assert 0 < mm.inventory_lots <= mm.inventory_limit_lots
    calm.advance_to(int(calm.times()[30]))  # they lay inventory off at their rate
    assert all(mm.inventory_lots < mm.inventory_limit_lots for mm in makers)


def test_lay_off_follows_its_closed_form() -> None:
    mm = MarketMaker(levels=2, size_lots=10, inventory_limit_lots=1_000, lay_off_per_s=0.1)
    mm.on_fill("bid", 1_000, 500)
    assert mm.lay_off(2.0, 510) == int(1_000 * (1 - math.exp(-0.2)))
    assert mm.inventory_lots == 1_000 - int(1_000 * (1 - math.exp(-0.2)))
    with pytest.raises(InvalidInput, match="lay_off_per_s"):
        MarketMaker(lay_off_per_s=2.0)


def test_liquidation_prints_of_a_kline_day_replace_the_estimate(tmp_path) -> None:
    from deleverage.lab.config import RunConfig
    from deleverage.lab.setup import build_scene

    path = tmp_path / "BTCUSDT-liquidationSnapshot-2025-10-10.csv"
    start = DAY_2025 // 1_000_000 + (21 * 60 + 15) * 60_000
    rows = ["time,side,order_type,time_in_force,original_quantity,price,average_price,order_status,"
            "last_fill_quantity,accumulated_fill_quantity"]
    for k in range(40):  # 40 long liquidations of 5 BTC over 21:15–21:19, every row duplicated as Binance does
        row = f"{start + k * 6_000},SELL,LIMIT,IOC,5.0,104000,104100,FILLED,5.0,5.0"
        rows += [row, row]
    path.write_text("\n".join(rows) + "\n")
    scene = build_scene(RunConfig(accounts=200, window="21:10-21:25", liquidations=str(path)))
    market = scene.make_market()
    assert market.footprint.source.startswith("prints: ")
    assert market.liquidation_flow.sum() == pytest.approx(-200.0)  # 40 prints × 5 BTC, duplicates dropped
    assert market.footprint_log.min() < 0 and any("prints:" in note for note in scene.notes)
    with pytest.raises(InvalidInput) as info:
        build_scene(RunConfig(accounts=200, window="21:10-21:25",
                              liquidations=str(get_scenario("2025-10-10").path())))
    assert info.value.field == "liquidations"


def test_forceorder_prints_of_a_capture_come_out_of_its_reference() -> None:
    import dataclasses

    from deleverage.data.binance_stream import read_capture
    from deleverage.data.records import LIQUIDATION_DTYPE
    from deleverage.lab.market import CaptureReplayMarket
    from deleverage.lab.setup import _capture_footprint

    capture = read_capture(get_scenario("btcusdt-20240808-l2").path())
    plain, _ = _capture_footprint(capture, DEFAULT_DEPTH_MODEL, 1000)
    assert plain is None  # the bundled capture has no forceOrder prints
    prints = np.zeros(30, LIQUIDATION_DTYPE)
    t0 = int(capture.trades["ts_event"][0])
    prints["ts_event"] = t0 + np.arange(30) * 2 * NS
    prints["qty_lots"] = prints["filled_lots"] = 10_000  # 10 BTC each, longs liquidated
    prints["position_side"] = 1
    prints["avg_price"] = 61_000.0
    with_prints = dataclasses.replace(capture, liquidations=prints)
    log, note = _capture_footprint(with_prints, DEFAULT_DEPTH_MODEL, 1000)
    assert log is not None and log.min() < 0 and "30 forceOrder prints" in note
    market = CaptureReplayMarket(with_prints, step_ms=1000, footprint_log=log, footprint_note=note)
    bare = CaptureReplayMarket(capture, step_ms=1000)
    ts = int(market.times()[-1])
    market.advance_to(ts)
    bare.advance_to(ts)
    assert market.reference_mark_ticks() > bare.reference_mark_ticks()  # longs had pushed the recorded mid down
    assert market.liquidity().best_bid()[0] - market.reference_mark_ticks() == (
        bare.liquidity().best_bid()[0] - bare.reference_mark_ticks())  # the whole book moves, spread kept
