"""A synthetic market for stress tests: a seeded crash path and a closed impact loop.

Why: a replay can only show the crash that happened; a stress test needs one where our own flow feeds
back — liquidation → price move → more liquidations — and where liquidity leaves when it is needed most.

Reference path (seeded, one ``numpy`` Generator): log returns on the ``step_ms`` grid =
GARCH(1,1) shocks (volatility clustering; unconditional per-step variance ``σ_min² · step/60 s``) +
Merton jumps (Poisson ``jump_intensity`` per minute, sizes N(``jump_mean``, ``jump_std``)) + a constant
drift chosen so the path ends exactly at ``start_price × (1 − drop)``.

Closed loop: the book is the Obizhaeva–Wang :class:`~deleverage.lab.market.ImpactBook`; its ladder per
side is the calibrated depth model thinned by stress (``× stress^−depth_vol_elasticity``, stress =
realised σ of the *impacted* mark over ``vol_window`` steps ÷ the calm σ) plus the market makers'
quotes, which widen, shrink and finally pull as stress rises and as their inventory fills. Takes move
the mark (permanent share φ, transient refilling at ρ); the mark feeds realised volatility, which
thins the book further. With ``impact_feedback=False`` takes fill but never move the mark.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from deleverage.core.instruments import Instrument
from deleverage.errors import InvalidInput, SimulationError
from deleverage.lab.agents import MarketMaker
from deleverage.lab.calibration import DEFAULT_DEPTH_MODEL, DepthModel
from deleverage.lab.market import (
    BookWalk,
    ImpactBook,
    Ladder,
    PathMarket,
    allocate_maker_fills,
    model_ladder,
    spread_from_model,
)

NS_PER_MS = 1_000_000


def crash_path(start_price: float, *, n_steps: int, step_s: float, drop: float, sigma_per_minute: float,
               jump_intensity: float, jump_mean: float, jump_std: float, garch_alpha: float,
               garch_beta: float, rng: np.random.Generator) -> np.ndarray:
    """``n_steps + 1`` prices from ``start_price`` to exactly ``start_price·(1 − drop)``."""
    from deleverage.data.synthetic import garch_path

    if not 0 <= drop < 1:
        raise InvalidInput("drop", drop, "must be in [0, 1)")
    var_step = sigma_per_minute**2 * step_s / 60.0
    noise = garch_path(1.0, n_steps=n_steps, omega=var_step * (1 - garch_alpha - garch_beta),
                       alpha=garch_alpha, beta=garch_beta, rng=rng).returns
    counts = rng.poisson(jump_intensity * step_s / 60.0, n_steps)
    jumps = counts * jump_mean + np.sqrt(counts) * jump_std * rng.standard_normal(n_steps)
    r = noise + jumps
    r += (math.log1p(-drop) - r.sum()) / n_steps
    return start_price * np.exp(np.concatenate(([0.0], np.cumsum(r))))


class SyntheticMarket(PathMarket):
    """Stress market: seeded crash reference, depth thinning with volatility, market makers, feedback."""

    def __init__(self, instrument: Instrument, *, seed: int, start_price: float, minutes: int = 60,
                 drop: float = 0.15, step_ms: int = 1000, sigma_per_minute: float = 0.002,
                 jump_intensity: float = 0.05, jump_mean: float = -0.01, jump_std: float = 0.005,
                 garch_alpha: float = 0.08, garch_beta: float = 0.9,
                 depth_model: DepthModel = DEFAULT_DEPTH_MODEL, depth_vol_elasticity: float = 1.0,
                 min_depth_factor: float = 0.02, vol_window: int = 60,
                 market_makers: Sequence[MarketMaker] = (), agents: Sequence[Any] = (),
                 impact_feedback: bool = True, max_bps: float = 2000.0) -> None:
        if minutes < 1 or step_ms <= 0 or (60_000 * minutes) % step_ms:
            raise InvalidInput("minutes/step_ms", (minutes, step_ms), "need whole steps in the run")
        if vol_window < 2:
            raise InvalidInput("vol_window", vol_window, "must be >= 2")
        self.instrument, self.symbol, self.seed = instrument, instrument.symbol, seed
        self.minutes, self.drop, self.step_ms = minutes, drop, step_ms
        self.params = dict(sigma_per_minute=sigma_per_minute, jump_intensity=jump_intensity,
                           jump_mean=jump_mean, jump_std=jump_std, garch_alpha=garch_alpha,
                           garch_beta=garch_beta)
        n_steps = 60_000 * minutes // step_ms
        rng = np.random.default_rng(seed)
        prices = crash_path(start_price, n_steps=n_steps, step_s=step_ms / 1000, drop=drop, rng=rng,
                            **self.params)
        self._path = np.maximum(np.rint(prices / float(instrument.tick_size)).astype(np.int64), 1)
        self._times = np.arange(n_steps + 1, dtype=np.int64) * step_ms * NS_PER_MS
        self.start_ns, self.end_ns = 0, int(self._times[-1])
        self.depth_model, self.depth_vol_elasticity = depth_model, depth_vol_elasticity
        self.min_depth_factor, self.vol_window, self.max_bps = min_depth_factor, vol_window, max_bps
        self.calm_sigma_step = sigma_per_minute * math.sqrt(step_ms / 60_000)
        self.market_makers = list(market_makers)
        self.agents = list(agents)
        self._marks: list[int] = [int(self._path[0])]
        self._index = 0
        self.stress = 1.0
        self.book = ImpactBook(reference_ticks=int(self._path[0]), bid=Ladder(0.0, 1.0, 0),
                               ask=Ladder(0.0, 1.0, 0), spread_ticks=1,
                               resilience_per_s=depth_model.resilience_per_s,
                               permanent_share=depth_model.permanent_share, ts_ns=0,
                               feedback=impact_feedback, permanent_floor=depth_model.permanent_floor,
                               permanent_decay_per_s=depth_model.permanent_decay_per_s)
        self.book.listeners.append(self._on_take)
        self._requote()

    # --- the loop -----------------------------------------------------------------------------------
    def _realised_sigma(self) -> float:
        marks = np.asarray(self._marks[-(self.vol_window + 1):], dtype=np.float64)
        if marks.size < 3:
            return self.calm_sigma_step
        return float(np.std(np.diff(np.log(marks))))

    def _requote(self) -> None:
        """Rebuild both ladders from the thinned depth model plus the market makers' quotes."""
        center = self.book.reference_ticks
        factor = max(self.min_depth_factor, max(1.0, self.stress) ** (-self.depth_vol_elasticity))
        ladders = []
        for side in ("bid", "ask"):
            quotes = [mm.quotes(side, self.stress) for mm in self.market_makers]
            size = max((q.size for q in quotes), default=0)
            extra = np.zeros(size, np.int64)
            for q in quotes:
                extra[: q.size] += q
            ladders.append(model_ladder(self.depth_model, self.instrument, center, factor=factor,
                                        max_bps=self.max_bps, extra_lots=extra))
        spread = max(1, round(spread_from_model(self.depth_model, self.instrument, center)
                              * max(1.0, self.stress)))
        self.book.set_reference(center, ladders[0], ladders[1], spread)

    def _on_take(self, side: str, walk: BookWalk) -> None:
        """Share the fill among market makers by their quoted lots on the walked levels (room-capped)."""
        book_side = "bid" if side == "sell" else "ask"
        allocate_maker_fills(self.market_makers, self.book.bid if book_side == "bid" else self.book.ask, walk,
                             book_side, self.stress)
        if self.market_makers:
            self._requote()

    # --- Market protocol ----------------------------------------------------------------------------
    def times(self) -> np.ndarray:
        return self._times

    def advance_to(self, ts_ns: int) -> None:
        if ts_ns < self.book.ts_ns:
            raise SimulationError(f"advance_to({ts_ns}) is before the market clock {self.book.ts_ns}")
        index = int(np.searchsorted(self._times, ts_ns, side="right") - 1)
        for _ in range(self._index + 1, index + 1):
            self._marks.append(self.book.mark_ticks())  # the impacted mark feeds realised volatility
        self._index = index
        self.book.decay_to(ts_ns)
        self.book.set_reference(int(self._path[index]))
        self.stress = self._realised_sigma() / self.calm_sigma_step
        self._requote()
        for agent in self.agents:
            if hasattr(agent, "on_advance"):
                agent.on_advance(ts_ns, self)

    def description(self) -> list[str]:
        p = self.params
        lines = [
            f"{self.symbol}: synthetic stress market, {self.minutes} min on a {self.step_ms} ms grid, "
            f"seed {self.seed}",
            f"modelled: reference path — GARCH(1,1) (α {p['garch_alpha']}, β {p['garch_beta']}, calm σ "
            f"{p['sigma_per_minute']:.4g}/min) + Merton jumps ({p['jump_intensity']}/min, mean "
            f"{p['jump_mean']}, sd {p['jump_std']}), drift so it ends {self.drop:.1%} below the start",
            f"modelled: depth — the depth model × stress^−{self.depth_vol_elasticity} (floor "
            f"{self.min_depth_factor}), stress = realised σ of the impacted mark over {self.vol_window} "
            "steps ÷ calm σ; spread × stress",
            *self.depth_model.describe(),
            f"modelled: impact feedback {'on' if self.book.feedback else 'off'} (closed loop: our takes "
            "move the mark, the mark moves volatility, volatility thins the book)",
        ]
        for mm in self.market_makers:
            lines.append(f"agent {mm.name}: {mm.levels} levels × {mm.size_lots} lots from level "
                         f"{mm.first_level_ticks}, inventory limit {mm.inventory_limit_lots} lots, widens "
                         f"^{mm.widen_elasticity}, shrinks ^{mm.size_elasticity}, pulls at stress "
                         f"{mm.pull_stress}")
        return lines


def crash_day_klines(*, seed: int, start_price: float = 60_000.0, crash_start_min: int = 1_200,
                     crash_minutes: int = 30, drop: float = 0.15, rebound: float = 0.4,
                     calm_sigma: float = 0.0008, calm_volume: float = 150.0, tick_size: float = 0.1,
                     lot_size: float = 0.001, day_start_ns: int = 1_893_456_000_000_000_000,
                     direction: str = "down") -> pl.DataFrame:
    """A seeded day of Binance-style 1-minute klines with a crash the project has never seen.

    ``direction="up"`` mirrors the move: a squeeze of the same size (the price rises by ``drop`` in log
    terms, then gives back ``rebound`` of it).

    Calm minutes: returns N(0, σ), volume lognormal around ``calm_volume``. From ``crash_start_min`` the
    price falls by ``drop`` over ``crash_minutes`` (drift plus 4σ noise), then wins back ``rebound`` of the
    fall over the next hour. Volume rises with |return|/σ; the taker split leans with the return
    (imbalance ½·tanh(r/3σ_m)); highs and lows reach half a minute's σ beyond open and close. The frame has
    the columns of :func:`deleverage.data.klines.read_klines`; :func:`write_klines_csv` writes the file.
    """
    if not 0 < drop < 0.9:
        raise InvalidInput("drop", drop, "must be in (0, 0.9)")
    if not 0 <= rebound <= 1:
        raise InvalidInput("rebound", rebound, "must be in [0, 1]")
    if direction not in ("down", "up"):
        raise InvalidInput("direction", direction, "must be 'down' or 'up'")
    if not 0 <= crash_start_min and crash_start_min + crash_minutes + 60 <= 1_440 and crash_minutes >= 1:
        raise InvalidInput("crash_start_min", crash_start_min, "the crash and its hour of rebound must fit in the day")
    rng = np.random.default_rng([seed, 20])
    n = 1_440
    sigma = np.full(n, calm_sigma)
    drift = np.zeros(n)
    crash = slice(crash_start_min, crash_start_min + crash_minutes)
    after = slice(crash.stop, crash.stop + 60)
    sigma[crash] = 4 * calm_sigma
    sigma[after] = 2 * calm_sigma
    sign = 1.0 if direction == "down" else -1.0
    drift[crash] = sign * math.log1p(-drop) / crash_minutes
    drift[after] = -sign * math.log1p(-drop) * rebound / 60
    r = drift + sigma * rng.standard_normal(n)
    closes = start_price * np.exp(np.cumsum(r))
    opens = np.r_[start_price, closes[:-1]]
    wick = np.abs(rng.normal(0, 0.5, (2, n))) * sigma
    high = np.maximum(opens, closes) * np.exp(wick[0])
    low = np.minimum(opens, closes) * np.exp(-wick[1])
    decimals = max(0, -int(math.floor(math.log10(tick_size) + 1e-9)))
    on_tick = [np.round(np.round(x / tick_size) * tick_size, decimals) for x in (opens, high, low, closes)]
    opens, high, low, closes = on_tick
    high = np.maximum.reduce([high, opens, closes])
    low = np.minimum.reduce([low, opens, closes])
    lot_decimals = max(0, -int(math.floor(math.log10(lot_size) + 1e-9)))
    volume = np.round(calm_volume * rng.lognormal(-0.125, 0.5, n) * (1 + np.abs(r) / calm_sigma), lot_decimals)
    volume = np.maximum(volume, lot_size)
    imbalance = 0.5 * np.tanh(r / (3 * sigma))
    buy = np.clip(np.round(volume * (1 + imbalance) / 2, lot_decimals), 0.0, volume)
    vwap = (high + low + opens + closes) / 4
    ts = day_start_ns + np.arange(n, dtype=np.int64) * 60_000_000_000
    return pl.DataFrame({
        "ts_ns": ts, "close_ts_ns": ts + 59_999_000_000, "open": opens, "high": high, "low": low,
        "close": closes, "volume": volume, "quote_volume": volume * vwap,
        "trade_count": np.maximum(1, (volume * 20).astype(np.int64)), "taker_buy_volume": buy,
        "taker_buy_quote_volume": buy * vwap,
    })


def write_klines_csv(frame: pl.DataFrame, path: Any) -> None:
    """Write a kline frame in the Binance public-data CSV layout (header row, ms times)."""
    out = frame.select(
        (pl.col("ts_ns") // 1_000_000).alias("open_time"), "open", "high", "low", "close", "volume",
        (pl.col("close_ts_ns") // 1_000_000).alias("close_time"), "quote_volume",
        pl.col("trade_count").alias("count"), "taker_buy_volume", "taker_buy_quote_volume",
        pl.lit(0).alias("ignore"),
    )
    out.write_csv(path)


__all__ = ["SyntheticMarket", "crash_day_klines", "crash_path", "write_klines_csv"]
