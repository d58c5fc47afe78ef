"""The run's configuration: everything that defines a run besides the data (part of the run key).

It lives below both :mod:`deleverage.lab.setup` (which builds a scene from it) and
:mod:`deleverage.lab.runner` (which runs the scene), so neither imports the other to know its shape;
``deleverage.lab.runner.RunConfig`` stays importable.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run besides the data; part of the run key."""

    kind: str = "replay"
    scenario: str = "2025-10-10"
    accounts: int = 20_000
    seed: int = 7
    step_ms: int = 1_000
    window: str | None = None
    insurance_fund_share: float = 0.01
    backstop_share: float = 0.05
    backstops: int = 3
    backstop_discount_bps: float = 50.0
    backstop_offload_half_life_s: float | None = 60.0
    backstop_offload_band_bps: float | None = 50.0  # resale limited to this far from the mark (None: at market)
    backstop_offload_depth_share: float | None = 0.01  # per step, at most this share of the depth in the band
    frontrunner: bool = True
    frontrunner_capital: float = 2_000_000.0
    oracle_heartbeat_ms: int = 60_000
    oracle_deviation: float = 0.005
    oracle_latency_ms: int = 2_000
    drop: float = 0.15
    minutes: int = 60
    open_interest: float | None = None  # overrides the scenario's default and a metrics file
    symbol: str | None = None  # --symbol: the file's instrument when its name does not say
    instruments: str | None = None  # --instruments: exchangeInfo / ccxt markets JSON declaring tick and lot
    tiers: str | None = None  # --tiers: bundled table, flat:<rate> or a leverage-bracket JSON
    cross_midnight: bool = False  # --cross-midnight: a window whose end is on the next day
    market: str | None = None  # a market model file (``deleverage calibrate --json``)
    metrics: str | None = None  # a Binance ``metrics`` file: open interest and long/short ratio at the start
    liquidations: str | None = None  # liquidation prints (liquidationSnapshot / Tardis liquidations) of a kline day
    feedback: bool = True  # the simulated flow's impact moves the mark (False: the cascade counterfactual)


@dataclass(frozen=True)
class StressShape:
    """The shape of a synthetic crash beyond its drop and length: what ``deleverage tune`` draws from ranges
    to make many stress scenarios (``build_scene(config, shape=...)``). Not part of ``RunConfig`` (a stress
    run without a shape keeps its key); a shape enters the scene's data digest. Defaults are the stress
    market's and the population's own."""

    jump_mean: float = -0.01  # mean log size of a Merton jump of the reference path
    jump_intensity: float = 0.05  # jumps per minute
    depth_vol_elasticity: float = 1.0  # the book thins as (realised σ / calm σ)^−this
    leverage_tilt: float = 1.0  # γ of the population's leverage weights w·L^−γ (data/population.py)


__all__ = ["RunConfig", "StressShape"]
