"""Impact models: pricing of schedules against closed forms; fits recover known parameters."""

from __future__ import annotations

import numpy as np
import pytest

from deleverage.execution import (
    LinearImpact,
    ObizhaevaWangImpact,
    PropagatorImpact,
    SquareRootImpact,
    schedule_cost,
)
from deleverage.execution.impact import bin_trades


def test_linear_schedule_cost_is_the_almgren_chriss_expectation():
    rng = np.random.default_rng(3)
    q = -rng.uniform(1, 10, size=8)  # a sale in 8 children
    model = LinearImpact(gamma=0.02, eta=0.5, epsilon=0.1, interval_s=2.0)
    result = model.schedule_impact(np.arange(8) * 2.0, q, 100.0)
    holdings = np.concatenate(([-q.sum()], -q.sum() + np.cumsum(q)))
    e, _ = schedule_cost(holdings, horizon=16.0, sigma=1.0, eta=0.5, gamma=0.02, epsilon=0.1)
    assert result.expected_cost == pytest.approx(e, rel=1e-12)
    assert result.mid_after == pytest.approx(100.0 + 0.02 * q.sum())


def test_square_root_cost_is_path_independent_closed_form():
    model = SquareRootImpact(y=0.8, sigma=0.03, daily_volume=1e4, delta=0.5)
    k = 0.8 * 0.03 / 1e4**0.5
    for pieces in (1, 3, 17):
        q = -np.full(pieces, 300.0 / pieces)
        r = model.schedule_impact(np.arange(pieces, dtype=float), q, 50_000.0)
        assert r.expected_cost == pytest.approx(50_000 * k * 300**1.5 / 1.5, rel=1e-9)
    assert model.peak_impact(300.0) == pytest.approx(k * 300**0.5)


def test_propagator_single_trade_and_decay():
    model = PropagatorImpact(g_transient=0.01, decay=0.5, g_permanent=0.002, half_spread=0.05)
    r = model.schedule_impact(np.array([0.0, 4.0]), np.array([10.0, 10.0]), 100.0)
    assert r.mid_before[0] == 100.0
    assert r.mid_before[1] == pytest.approx(100 + 10 * (0.002 + 0.01 * np.exp(-2.0)))
    assert r.exec_price[0] == pytest.approx(100 + 0.05 + 0.5 * 0.012 * 10)


def test_ow_model_equals_its_propagator_and_blocks_save():
    ow = ObizhaevaWangImpact(depth_per_price=50.0, resilience=0.1, half_spread=0.0)
    times = np.linspace(0, 60, 61)
    twap = -np.full(61, 1000 / 61)
    cost_twap = ow.schedule_impact(times, twap, 0.0).expected_cost
    from deleverage.execution import obizhaeva_wang_optimum

    opt = -obizhaeva_wang_optimum(shares=1000, horizon=60, resilience=0.1, periods=60).trades
    assert ow.schedule_impact(times, opt, 0.0).expected_cost < cost_twap
    sweep = ow.schedule_impact(np.zeros(1), np.array([-1000.0]), 0.0).expected_cost
    assert sweep == pytest.approx(1000**2 / (2 * 50.0))


def _within(fit, truth, sigmas=4.0):
    for name, value in truth.items():
        assert abs(fit.params[name] - value) <= sigmas * fit.stderr[name] + 1e-12, (name, fit.params, fit.stderr)
        assert fit.stderr[name] > 0


def test_linear_fit_recovers_parameters():
    rng = np.random.default_rng(11)
    n, tau, gamma, eta, eps = 4000, 1.0, 0.01, 0.05, 0.2
    q = rng.normal(0, 20, n)
    dm = gamma * q + rng.normal(0, 0.3, n)
    slip = eps * np.sign(q) + (eta / tau + 0.5 * gamma) * q + rng.normal(0, 0.3, n)
    fit = LinearImpact.fit(q, dm, slip, tau)
    _within(fit, {"gamma": gamma, "eta": eta, "epsilon": eps})
    assert fit.r_squared == pytest.approx(0.04 / (0.04 + 0.09), abs=0.05)  # signal/(signal+noise)


def test_square_root_fit_recovers_parameters():
    rng = np.random.default_rng(12)
    n = 3000
    q = rng.uniform(10, 5000, n)
    sigma = rng.uniform(0.01, 0.05, n)
    impact = 0.7 * sigma * (q / 1e5) ** 0.5 * (1 + rng.normal(0, 0.3, n))
    fit = SquareRootImpact.fit(q, 1e5, sigma, impact)
    _within(fit, {"y": 0.7, "delta": 0.5})


@pytest.mark.parametrize("kind", ["exponential", "power_law"])
def test_propagator_fit_recovers_parameters(kind):
    rng = np.random.default_rng(13)
    truth = PropagatorImpact(g_transient=0.02, decay=0.2 if kind == "exponential" else 0.8, kind=kind,
                             g_permanent=0.004, scale_s=2.0)
    q = rng.normal(0, 10, 2000)
    dm = truth.predicted_mid_changes(q, 1.0) + rng.normal(0, 0.05, len(q))
    fit = PropagatorImpact.fit(q, dm, 1.0, kind=kind, scale_s=2.0)
    _within(fit, {"g_transient": 0.02, "decay": truth.decay, "g_permanent": 0.004})
    assert fit.r_squared > 0.5


def test_ow_fit_recovers_depth_and_resilience():
    rng = np.random.default_rng(14)
    depth = rng.normal(500, 40, 200)  # quantity within 10 price units of the touch
    truth = ObizhaevaWangImpact(depth_per_price=50.0, resilience=0.3, permanent=0.002)
    q = rng.normal(0, 10, 2000)
    dm = truth.as_propagator().predicted_mid_changes(q, 1.0) + rng.normal(0, 0.05, len(q))
    fit = ObizhaevaWangImpact.fit(depth, 10.0, q, dm, 1.0)
    _within(fit, {"depth_per_price": 50.0, "resilience": 0.3, "permanent": 0.002})


def test_bin_trades_sums_volume_and_mid_changes():
    q, dm = bin_trades(np.array([0.1, 0.5, 1.2, 2.9]), np.array([1.0, -2.0, 3.0, 4.0]),
                       np.array([0.0, 0.9, 2.5]), np.array([10.0, 11.0, 9.0]), 1.0)
    np.testing.assert_allclose(q, [-1.0, 3.0, 4.0])
    np.testing.assert_allclose(dm, [1.0, 0.0, -2.0])


@pytest.mark.realdata
def test_real_capture_calibration(shared_data):
    """BTCUSDT 2024-08-08 capture: trades + bookTicker mid, 1 s bins. Reports explained variance."""
    from deleverage.data.binance_stream import read_capture

    cap = read_capture(shared_data / "binance-usdm" / "btcusdt_20240808.gz")
    tick, lot = float(cap.instrument.tick_size), float(cap.instrument.lot_size)
    tr, bt = cap.trades, cap.book_tickers
    t_tr = tr["ts_event"] / 1e9
    signed = tr["taker_side"] * tr["qty_lots"] * lot
    t_bt = bt["ts_event"] / 1e9
    order = np.argsort(t_bt, kind="stable")
    mid = (bt["bid_price_ticks"] + bt["ask_price_ticks"])[order] * tick / 2
    q, dm = bin_trades(t_tr, signed, t_bt[order], mid, 1.0)
    prop = PropagatorImpact.fit(q, dm, 1.0, kind="exponential")
    power = PropagatorImpact.fit(q, dm, 1.0, kind="power_law")
    snap = cap.snapshot
    mid0 = (snap.bids["price_ticks"][0] + snap.asks["price_ticks"][0]) * tick / 2
    band = mid0 * 10 / 1e4  # 10 bps
    depth = [float(snap.bids["qty_lots"][snap.bids["price_ticks"] * tick >= mid0 - band].sum() * lot),
             float(snap.asks["qty_lots"][snap.asks["price_ticks"] * tick <= mid0 + band].sum() * lot)]
    ow = ObizhaevaWangImpact.fit(np.array(depth), band, q, dm, 1.0)
    print(f"\nexp propagator {prop.params} se {prop.stderr} R2 {prop.r_squared:.3f}")
    print(f"power propagator {power.params} R2 {power.r_squared:.3f}")
    print(f"OW {ow.params} se {ow.stderr} R2 {ow.r_squared:.3f}")
    # buying pushes the price up: the instantaneous kernel is positive and many SEs from zero
    assert prop.params["g_permanent"] > 3 * prop.stderr["g_permanent"] > 0
    assert prop.params["g_transient"] + prop.params["g_permanent"] > 0
    assert 0.05 < prop.r_squared < 1 and 0.05 < power.r_squared < 1
    assert ow.params["depth_per_price"] > 0 and np.isfinite(ow.r_squared)
