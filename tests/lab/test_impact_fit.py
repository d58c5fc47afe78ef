"""The impact fit: estimators recover known coefficients; the bundled days give plausible, crash-thin books."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deleverage.data.scenarios import get_scenario
from deleverage.errors import DataError, InvalidInput
from deleverage.lab.calibration import DEFAULT_DEPTH_MODEL
from deleverage.lab.impact_fit import (
    Bars,
    DecayFit,
    ImpactFit,
    bar_state,
    bars_from_klines,
    bars_from_trades,
    fit_decay,
    fit_impact,
    fit_impact_and_decay,
    previous_ewma,
    simulate_bars,
    weighted_nls,
)

TRUE = ImpactFit(log_lambda=-7.0, flow_exponent=0.6, volume_coef=-0.45, range_coef=0.9, flow_coef=-0.5,
                 volume_ref=200.0, range_ref=0.001, half_life_bars=2.0, bar_s=60.0, n=0, r2=0.0)


def test_previous_ewma_is_the_recursion_over_earlier_bars_only() -> None:
    x = np.array([4.0, 0.0, 8.0, 2.0])
    a = 1 - 0.5 ** (1 / 2.0)
    expected = [4.0, 4.0, 4.0 * (1 - a), 4.0 * (1 - a) ** 2 + 8 * a * (1 - a) + 0.0]
    expected[3] = (expected[2] + a * (8.0 - expected[2]))
    assert np.allclose(previous_ewma(x, 2.0), expected)
    with pytest.raises(InvalidInput, match="half_life"):
        previous_ewma(x, 0.0)


def test_weighted_nls_equals_weighted_least_squares_on_a_linear_model() -> None:
    rng = np.random.default_rng(3)
    x = np.column_stack([np.ones(500), rng.normal(size=500)])
    y = x @ np.array([1.0, -2.0]) + rng.normal(scale=0.3, size=500)
    w = rng.uniform(0.5, 2.0, 500)
    result = weighted_nls(lambda p: (x @ p, x), y, w, np.zeros(2), hac_lags=0)
    closed = np.linalg.solve(x.T @ (w[:, None] * x), x.T @ (w * y))  # the normal equations
    assert np.allclose(result.params, closed, atol=1e-9)
    assert np.all(result.stderr > 0) and 0.9 < result.r2 < 1.0


@pytest.mark.parametrize("seed", [1, 2])
def test_fit_recovers_known_coefficients_within_three_standard_errors(seed: int) -> None:
    bars = simulate_bars(TRUE, 4_000, np.random.default_rng(seed))
    fit = fit_impact(bars, half_life=2.0, volume_ref=200.0, range_ref=0.001)
    for name, value in TRUE.params.items():
        assert abs(fit.params[name] - value) < 3 * fit.stderr[name], (name, fit.params[name], fit.stderr[name])
        assert fit.stderr[name] < 0.25  # and the errors are informative
    assert fit.n == 4_000 and fit.r2 > 0.5


def test_half_life_is_picked_from_the_grid() -> None:
    true = ImpactFit(**{**TRUE.__dict__, "half_life_bars": 5.0})
    fit = fit_impact(simulate_bars(true, 4_000, np.random.default_rng(7), noise=0.15), volume_ref=200.0,
                     range_ref=0.001)
    assert fit.half_life_bars == 5.0


def test_joint_fit_recovers_impact_and_decay_within_three_standard_errors() -> None:
    decay = DecayFit(floor=0.6, decay_per_bar=0.3, bar_s=60.0, lags=30, n=0, r2=0.0)
    bars = simulate_bars(TRUE, 6_000, np.random.default_rng(11), decay=decay, noise=0.2)
    fit, got = fit_impact_and_decay(bars, half_life=2.0, volume_ref=200.0, range_ref=0.001)
    assert abs(got.floor - 0.6) < 3 * got.stderr["floor"]
    assert abs(got.decay_per_bar - 0.3) < 3 * got.stderr["decay_per_bar"]
    for name, value in TRUE.params.items():
        assert abs(fit.params[name] - value) < 3 * fit.stderr[name], name
    assert got.decay_per_s == pytest.approx(got.decay_per_bar / 60)
    # fitted apart, reverting past impact masquerades as a lower impact of continuing flow (θ_ι biased)
    apart = fit_impact(bars, half_life=2.0, volume_ref=200.0, range_ref=0.001)
    assert apart.flow_coef < TRUE.flow_coef - 3 * apart.stderr["flow_coef"]
    assert fit_decay(TRUE, bars).floor == pytest.approx(0.6, abs=0.1)  # with the true impacts, apart works
    # closed form of the law
    assert got.response(0) == pytest.approx(1.0)
    assert got.response(10) == pytest.approx(got.floor + (1 - got.floor) * math.exp(-10 * got.decay_per_bar))


def test_bars_from_trades_match_a_brute_force_aggregation() -> None:
    rng = np.random.default_rng(5)
    ts = np.sort(rng.integers(0, 300 * 10**9, 400))
    price = 100 + np.cumsum(rng.normal(0, 0.01, 400))
    qty = rng.uniform(0.1, 2.0, 400)
    buy = rng.random(400) < 0.5
    bars = bars_from_trades(ts, price, qty, buy, bar_s=60.0, source="t")
    for b in range(len(bars)):
        inside = (ts >= bars.ts_ns[b]) & (ts < bars.ts_ns[b] + 60 * 10**9)
        assert bars.open[b] == price[inside][0] and bars.close[b] == price[inside][-1]
        assert bars.high[b] == price[inside].max() and bars.low[b] == price[inside].min()
        assert bars.volume[b] == pytest.approx(qty[inside].sum())
        assert bars.taker_buy_volume[b] == pytest.approx(qty[inside & buy].sum())
    with pytest.raises(DataError, match="time order"):
        bars_from_trades(ts[::-1], price, qty, buy, source="t")


def test_bars_refuse_inconsistent_input() -> None:
    with pytest.raises(InvalidInput, match="taker_buy_volume"):
        Bars(ts_ns=np.arange(2), open=np.ones(2), high=np.ones(2), low=np.ones(2), close=np.ones(2),
             volume=np.ones(2), taker_buy_volume=np.full(2, 2.0), bar_s=60, source="x", digest="")
    with pytest.raises(DataError, match="needs >= 30"):
        fit_impact(simulate_bars(TRUE, 10, np.random.default_rng(0)))


@pytest.fixture(scope="module")
def days() -> dict[str, Bars]:
    return {name: bars_from_klines(get_scenario(name).load().frame, source=name)
            for name in ("2021-05-19", "2025-10-10")}


def test_bundled_days_give_plausible_coefficients(days) -> None:
    """Plausible ranges, and why: δ between ½ (the square-root law) and 1 (Kyle's linear λ) — metaorder
    studies find 0.4–0.7; impact falls with activity (θ_V < 0) and rises with volatility (θ_σ > 0); a
    one-sided minute of the reference volume moves BTC by a few to tens of bps (e^θ₀); the fit explains
    a large part of minute returns (R² > 0.4); most of a minute's impact is still there half an hour later."""
    for name, bars in days.items():
        fit = fit_impact(bars, volume_ref=DEFAULT_DEPTH_MODEL.volume_ref, range_ref=DEFAULT_DEPTH_MODEL.range_ref)
        assert 0.4 < fit.flow_exponent < 0.8, name
        assert fit.volume_coef < 0 < fit.range_coef, name
        assert 2e-4 < math.exp(fit.log_lambda) < 5e-3, name
        assert fit.r2 > 0.4, name
    pooled, decay = fit_impact_and_decay(list(days.values()), volume_ref=DEFAULT_DEPTH_MODEL.volume_ref,
                                         range_ref=DEFAULT_DEPTH_MODEL.range_ref)
    assert 0.5 < decay.floor <= 1.0  # most of a minute's impact stays (pooled)
    assert pooled.n == 2_880 - 2 * decay.lags
    alone, decay_2025 = fit_impact_and_decay(days["2025-10-10"], volume_ref=DEFAULT_DEPTH_MODEL.volume_ref,
                                             range_ref=DEFAULT_DEPTH_MODEL.range_ref)
    assert 0.2 < decay_2025.floor < 0.7 and 1.0 < math.log(2) / decay_2025.decay_per_bar < 15.0  # minutes


def _factors(bars: Bars) -> np.ndarray:
    model = DEFAULT_DEPTH_MODEL
    state = bar_state(bars, model.state_half_life_min)
    return np.array([model.side_factors(v, r, i)[0] for v, r, i in
                     zip(state.volume, state.range, state.imbalance, strict=True)])


def test_depth_factor_in_crash_minutes_is_far_below_calm_minutes(days) -> None:
    """On 2025-10-10 the bid depth factor over the crash (21:15–21:25 UTC) is a fraction of the calm hours'
    (00:00–12:00) — books "appeared empty" (Kaiko) — and likewise on 2021-05-19 (12:40–13:10 vs 00:00–10:00)."""
    f25 = _factors(days["2025-10-10"])
    assert np.median(f25[21 * 60 + 15: 21 * 60 + 26]) < 0.3 * np.median(f25[: 12 * 60])
    f21 = _factors(days["2021-05-19"])
    assert np.median(f21[12 * 60 + 40: 13 * 60 + 11]) < 0.5 * np.median(f21[: 10 * 60])
    assert f25.min() >= DEFAULT_DEPTH_MODEL.min_factor
