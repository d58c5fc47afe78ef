"""Populations of leveraged accounts: generated from documented distributions, or loaded from a file.

A population is a polars frame, one position per account::

    account_id Int64 | side "long"/"short" | qty Float64 (base, on the lot grid)
    entry_price Float64 (on the tick grid) | leverage Float64 | collateral Float64 (quote)
    margin_mode "cross"/"isolated" [| opened_ns Int64 (generated populations: when it was opened)]

``collateral`` is the isolated margin of the position, or the cross wallet backing it. A generated
population also says when each position was opened (``opened_ns``); positions opened after a run starts
are opened by the lab at that time, at the market price of that moment (their ``entry_price`` is a
placeholder until then).

How a population is drawn (sources in the project's CRASH_FACTS.md, quoted in docs/lab.md; *assumption*
where no source exists):

- **both sides leveraged**, one leverage distribution for both (*assumption*: discrete mixture on 2x–125x,
  mode 5–10x, 20% of accounts at ≥ 25x; 125x is Binance's BTCUSDT maximum). A ``leverage_cap`` (the lab
  passes the tier table's maximum leverage at each account's notional) lowers what a venue would refuse.
- **when positions were opened**: open interest is opened at a rate proportional to traded volume and
  held for ``holding_days`` days of calm volume on average (exponential ages, *assumption* 3 days; the
  calm day's volume is 1,440 × the median minute volume of the history). ``opening_volume_cap`` (off by
  default) lets only that many median minutes' volume of a minute open positions. So of the open interest at the
  run's start a share ``1 − e^{−V_hist/(H·V_day)}`` was opened during the history bars — a bar weighted by
  its volume times the survival ``e^{−u/(H·V_day)}`` of positions opened u units of volume ago — and the
  rest over the days before (the *build-up*), at prices ``first open × e^{σ_d √a Z − σ_d² a / 2}`` for an
  age a days (σ_d = ``prior_daily_vol``, 3%/day, *assumption*: BTC's long-run daily volatility; there is
  no price data before the file). During the run itself ``OI_start × V_run / (H·V_day)`` more is opened.
- **which side**: longs open with taker buys, shorts with taker sells: a bar's chance to open a long is
  ∝ ``long_share × taker_buy_volume``, a short ∝ ``(1 − long_share) × taker_sell_volume`` — so shorts are
  opened into the falls and longs bought on the dips, and the long share of *liquidations* is what the
  path makes of it, not an input. ``long_share`` (default 0.6, *assumption*: Binance's published BTCUSDT
  long/short account ratio is usually above 1 — read the day's own from a ``metrics`` file with
  :func:`long_share_from_metrics`) is the prior; entries before the data take it as the long
  probability. Klines without ``taker_buy_volume`` count half the volume on each side.
- entry prices within a bar: uniform in [low, high], on the tick grid.
- notional per account, lognormal with median $2,400 and σ = 1.8: mean ≈ $12,000, the liquidated notional
  per liquidated account on both days ($19.1 B / 1.6 M accounts ≈ $11,900 on 2025-10-10; $8.6 B /
  804,000 ≈ $10,700 on 2021-05-19). σ is an *assumption*; ``size_distribution="pareto"`` (α = 1.5,
  minimum $4,000, same mean) gives a heavier tail.
- ``target_open_interest_usd``: the total notional of the positions open at the start (the lab's default
  per bundled day comes from the published open interest, :mod:`deleverage.data.scenarios`); positions
  opened during the run are scaled by the same factor. None keeps the drawn sizes.
- margin mode: 30% isolated (*assumption*); a cross account's wallet is its initial margin times
  1 + Exponential(mean 0.5) (*assumption*: cross accounts hold spare collateral).
- grid: BTCUSDT tick 0.1, lot 0.001 (instruments.BTCUSDT; 2021 prices had tick 0.01).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from deleverage.data import _csvio as io
from deleverage.data.ccxt import POPULATION_SCHEMA, read_ccxt_positions
from deleverage.errors import DataError, InvalidInput

DEFAULT_LEVERAGE_LEVELS = (2.0, 3.0, 5.0, 10.0, 20.0, 25.0, 50.0, 75.0, 100.0, 125.0)
DEFAULT_LEVERAGE_WEIGHTS = (0.12, 0.14, 0.20, 0.22, 0.12, 0.06, 0.08, 0.03, 0.02, 0.01)
#: γ of the weights' tilt w·L^−γ: calibrated on the two bundled days (see :func:`reach_share` and
#: tests/data/test_population.py), so that the open interest the reference path reaches matches the
#: published liquidated share of open interest (geometric middle of its bounds) on both days.
DEFAULT_LEVERAGE_TILT = 1.0
POPULATION_COLUMNS = list(POPULATION_SCHEMA)
GENERATED_COLUMNS = [*POPULATION_COLUMNS, "opened_ns"]
NS_PER_DAY = 86_400_000_000_000


class PopulationConfig(BaseModel):
    """How to draw a leveraged population; every default documented in the module docstring."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_accounts: int = Field(default=100_000, ge=1, le=50_000_000)
    long_share: float = Field(default=0.6, ge=0.0, le=1.0)
    leverage_levels: tuple[float, ...] = DEFAULT_LEVERAGE_LEVELS
    leverage_weights: tuple[float, ...] = DEFAULT_LEVERAGE_WEIGHTS
    leverage_tilt: float = Field(default=DEFAULT_LEVERAGE_TILT, ge=0.0, le=5.0)
    size_distribution: Literal["lognormal", "pareto"] = "lognormal"
    notional_median_usd: float = Field(default=2_400.0, gt=0)
    notional_sigma: float = Field(default=1.8, ge=0)
    pareto_alpha: float = Field(default=1.5, gt=1.0)
    pareto_min_usd: float = Field(default=4_000.0, gt=0)
    notional_cap_usd: float = Field(default=50_000_000.0, gt=0)
    target_open_interest_usd: float | None = Field(default=None, gt=0)
    entry_window_bars: int | None = Field(default=None, ge=1)
    holding_days: float = Field(default=3.0, gt=0, le=365)
    opening_volume_cap: float | None = Field(default=None, gt=0)
    prior_daily_vol: float = Field(default=0.03, ge=0, le=1)
    isolated_share: float = Field(default=0.30, ge=0.0, le=1.0)
    cross_excess_mean: float = Field(default=0.5, ge=0.0)
    tick_size: float = Field(default=0.1, gt=0)
    lot_size: float = Field(default=0.001, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _check_leverage(self) -> PopulationConfig:
        levels, weights = self.leverage_levels, self.leverage_weights
        if len(levels) != len(weights) or not levels:
            raise ValueError("leverage_levels and leverage_weights must have the same, non-zero length")
        if any(lv < 1 for lv in levels) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("leverage levels must be >= 1 and weights >= 0 with a positive sum")
        return self


def _bars(frame: pl.DataFrame, name: str) -> dict[str, np.ndarray]:
    """ts, low, high, open, volume, taker buys of a kline frame (half the volume when not recorded)."""
    missing = {"high", "low", "volume"} - set(frame.columns)
    if missing:
        raise InvalidInput(name, sorted(missing), "needs kline columns high, low, volume")
    n = frame.height
    volume = frame["volume"].to_numpy().astype(np.float64)
    if not np.all(np.isfinite(volume)) or np.any(volume < 0):
        raise InvalidInput(name, "volume", "must be finite and >= 0")
    buy = (frame["taker_buy_volume"].to_numpy().astype(np.float64) if "taker_buy_volume" in frame.columns
           else volume / 2)
    ts = frame["ts_ns"].to_numpy().astype(np.int64) if "ts_ns" in frame.columns else np.arange(n) * 60 * 10**9
    low, high = frame["low"].to_numpy().astype(np.float64), frame["high"].to_numpy().astype(np.float64)
    opens = frame["open"].to_numpy().astype(np.float64) if "open" in frame.columns else (low + high) / 2
    return {"ts": ts, "low": low, "high": high, "open": opens, "volume": volume,
            "buy": np.clip(buy, 0.0, volume), "sell": volume - np.clip(buy, 0.0, volume)}


def _opening(bars: dict[str, np.ndarray], cap: float) -> dict[str, np.ndarray]:
    """The volume of each bar that opens positions: at most ``cap`` (the rest is forced, hedging or
    market-making flow); taker buys and sells scaled alike."""
    share = np.minimum(1.0, np.divide(cap, bars["volume"], out=np.ones_like(bars["volume"]),
                                      where=bars["volume"] > 0))
    return {**bars, "volume": bars["volume"] * share, "buy": bars["buy"] * share, "sell": bars["sell"] * share}


def _bar_seconds(ts: np.ndarray) -> float:
    return float(np.median(np.diff(ts)) / 1e9) if ts.size > 1 else 60.0


def _pick(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    cumulative = np.cumsum(weights)
    return np.minimum(np.searchsorted(cumulative, u * cumulative[-1], side="right"), len(weights) - 1)


def _draw_entries(config: PopulationConfig, hist: dict[str, np.ndarray], run: dict[str, np.ndarray] | None,
                  rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """(is_long, entry price, opened_ns, opened_in_run) for every account (module docstring)."""
    n = config.n_accounts
    bar_s = _bar_seconds(hist["ts"])
    positive = hist["volume"][hist["volume"] > 0]
    calm = float(np.median(positive)) if positive.size else 1.0
    day_volume = calm * 86_400 / bar_s
    scale = config.holding_days * day_volume  # volume over a mean holding time
    if config.opening_volume_cap is not None:
        hist = _opening(hist, config.opening_volume_cap * calm)
        run = _opening(run, config.opening_volume_cap * calm) if run is not None else None
    run_share = float(run["volume"].sum()) / scale if run is not None and run["volume"].size else 0.0
    n_run = int(round(n * run_share / (1.0 + run_share))) if run is not None else 0
    n_start = n - n_run
    pi = config.long_share
    # --- positions open at the start: history bars (volume × survival) or the build-up before them
    since = np.cumsum(hist["volume"][::-1])[::-1] - hist["volume"]  # volume traded after each bar
    survival = np.exp(-since / scale)
    in_history = 1.0 - math.exp(-float(hist["volume"].sum()) / scale)
    long_w, short_w = pi * hist["buy"] * survival, (1 - pi) * hist["sell"] * survival
    if long_w.sum() + short_w.sum() <= 0:
        long_w, short_w = pi * survival, (1 - pi) * survival
    from_history = rng.random(n_start) < in_history
    is_long = np.empty(n, dtype=bool)
    entry = np.empty(n)
    opened = np.empty(n, dtype=np.int64)
    joint = np.concatenate([long_w, short_w])
    picks = _pick(joint, rng.random(n_start))
    bar = picks % len(long_w)
    u_price, u_time = rng.random(n_start), rng.random(n_start)
    hist_long = picks < len(long_w)
    hist_price = hist["low"][bar] + (hist["high"][bar] - hist["low"][bar]) * u_price
    hist_time = hist["ts"][bar] + (u_time * bar_s * 1e9).astype(np.int64)
    age_days = float(hist["volume"].sum()) / day_volume + rng.exponential(config.holding_days, n_start)
    z = rng.standard_normal(n_start)
    sd = config.prior_daily_vol * np.sqrt(age_days)
    prior_price = float(hist["open"][0]) * np.exp(sd * z - sd**2 / 2)
    prior_time = int(hist["ts"][0]) - ((age_days - float(hist["volume"].sum()) / day_volume)
                                       * NS_PER_DAY).astype(np.int64)
    prior_long = rng.random(n_start) < pi
    is_long[:n_start] = np.where(from_history, hist_long, prior_long)
    entry[:n_start] = np.where(from_history, hist_price, prior_price)
    opened[:n_start] = np.where(from_history, hist_time, prior_time)
    # --- positions opened during the run (by the lab, at that moment's price)
    if n_run and run is not None:
        run_long_w, run_short_w = pi * run["buy"], (1 - pi) * run["sell"]
        picks = _pick(np.concatenate([run_long_w, run_short_w]), rng.random(n_run))
        bar = picks % len(run_long_w)
        is_long[n_start:] = picks < len(run_long_w)
        entry[n_start:] = run["open"][bar]
        opened[n_start:] = run["ts"][bar] + (rng.random(n_run) * _bar_seconds(run["ts"]) * 1e9).astype(np.int64)
    in_run = np.zeros(n, dtype=bool)
    in_run[n_start:] = True
    return is_long, np.round(entry / config.tick_size) * config.tick_size, opened, in_run


def _notionals(config: PopulationConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    if config.size_distribution == "lognormal":
        notional = config.notional_median_usd * rng.lognormal(0.0, config.notional_sigma, n)
    else:
        notional = config.pareto_min_usd * (1.0 + rng.pareto(config.pareto_alpha, n))
    return np.minimum(notional, config.notional_cap_usd)


def generate_population(
    config: PopulationConfig, *, price_history: pl.DataFrame, rng: np.random.Generator | None = None,
    run_bars: pl.DataFrame | None = None, leverage_cap: Callable[[np.ndarray], np.ndarray] | None = None,
) -> pl.DataFrame:
    """Draw ``config.n_accounts`` positions (vectorised; same seed → identical frame).

    ``price_history`` is a kline frame (``ts_ns, open, high, low, volume`` and, when recorded,
    ``taker_buy_volume``) ending where the run starts; ``run_bars`` (optional) are the run's own bars,
    during which a share of the accounts is opened (module docstring). ``leverage_cap(notional)`` gives
    the highest leverage allowed at each notional (quote units). ``rng`` defaults to
    ``numpy.random.default_rng(config.seed)``.
    """
    rng = rng if rng is not None else np.random.default_rng(config.seed)
    n = config.n_accounts
    history = price_history if config.entry_window_bars is None else price_history.tail(config.entry_window_bars)
    if history.height == 0:
        raise InvalidInput("price_history", 0, "is empty")
    hist = _bars(history, "price_history")
    run = _bars(run_bars, "run_bars") if run_bars is not None and run_bars.height else None
    levels = np.asarray(config.leverage_levels, dtype=np.float64)
    weights = np.asarray(config.leverage_weights, dtype=np.float64) * levels ** -config.leverage_tilt
    leverage = levels[rng.choice(len(weights), size=n, p=weights / weights.sum())]
    is_long, entry, opened, in_run = _draw_entries(config, hist, run, rng)
    notional = _notionals(config, n, rng)
    if config.target_open_interest_usd is not None and (~in_run).any():
        notional *= config.target_open_interest_usd / notional[~in_run].sum()
    if leverage_cap is not None:
        leverage = np.minimum(leverage, np.maximum(np.asarray(leverage_cap(notional), dtype=np.float64), 1.0))
    lots = np.maximum(1.0, np.floor(notional / entry / config.lot_size))
    qty = np.round(lots * config.lot_size, 12)
    initial_margin = qty * entry / leverage
    isolated = rng.random(n) < config.isolated_share
    excess = rng.exponential(config.cross_excess_mean, n) if config.cross_excess_mean else 0.0
    collateral = np.where(isolated, initial_margin, initial_margin * (1.0 + excess))
    frame = pl.DataFrame({
        "account_id": np.arange(n, dtype=np.int64),
        "is_long": is_long, "qty": qty, "entry_price": entry,
        "leverage": leverage, "collateral": collateral, "is_isolated": isolated, "opened_ns": opened,
    })
    return frame.select(
        "account_id",
        pl.when("is_long").then(pl.lit("long")).otherwise(pl.lit("short")).alias("side"),
        "qty", "entry_price", "leverage", "collateral",
        pl.when("is_isolated").then(pl.lit("isolated")).otherwise(pl.lit("cross")).alias("margin_mode"),
        "opened_ns",
    )


def long_share_from_metrics(metrics: pl.DataFrame, at_ns: int) -> float:
    """The long share of accounts implied by Binance ``metrics``' ``count_long_short_ratio`` at a time.

    The ratio r is long accounts / short accounts, so the long share is r / (1 + r); the last row at or
    before ``at_ns`` (else the first row) is used.
    """
    return _metrics_row(metrics, at_ns, "count_long_short_ratio", lambda r: r / (1.0 + r))


def open_interest_from_metrics(metrics: pl.DataFrame, at_ns: int) -> float:
    """``sum_open_interest_value`` (quote units) of the last ``metrics`` row at or before ``at_ns``."""
    return _metrics_row(metrics, at_ns, "open_interest_value", lambda v: v)


def _metrics_row(metrics: pl.DataFrame, at_ns: int, column: str, transform: Callable[[float], float]) -> float:
    if column not in metrics.columns or "ts_ns" not in metrics.columns:
        raise InvalidInput("metrics", sorted(metrics.columns), f"has no {column!r} column")
    rows = metrics.filter(pl.col(column).is_not_null() & (pl.col(column) > 0)).sort("ts_ns")
    if rows.height == 0:
        raise InvalidInput("metrics", column, "has no positive value")
    before = rows.filter(pl.col("ts_ns") <= at_ns)
    value = float((before if before.height else rows.head(1))[column][-1])
    return float(transform(value))


def approx_liquidation_price(frame: pl.DataFrame, maintenance_margin_rate: float = 0.004) -> np.ndarray:
    """Float screen of each position's liquidation price (linear, one position per collateral).

    Long: ``(entry − collateral/qty) / (1 − mmr)``; short: ``(entry + collateral/qty) / (1 + mmr)``.
    Exact prices (tiers, ticks) are core.margin's job; this is for plots and sanity checks.
    """
    entry = frame["entry_price"].to_numpy()
    per_unit = frame["collateral"].to_numpy() / frame["qty"].to_numpy()
    long = (frame["side"] == "long").to_numpy()
    mmr = maintenance_margin_rate
    return np.where(long, (entry - per_unit) / (1 - mmr), (entry + per_unit) / (1 + mmr))


def _validate(frame: pl.DataFrame, path: str, line_of: np.ndarray) -> pl.DataFrame:
    """Check values; errors name the line (CSV) or row (parquet) and the field."""
    def fail(mask: np.ndarray, field: str, problem: str) -> None:
        if mask.any():
            row = int(np.argmax(mask))
            raise DataError(f"{frame[field][row]!r} {problem}", path=path, line=int(line_of[row]),
                            field=field)

    for field in ("qty", "entry_price", "leverage", "collateral"):
        values = frame[field].to_numpy()
        fail(~(np.isfinite(values) & (values > 0)), field, "must be a finite number > 0")
    fail(~frame["side"].is_in(["long", "short"]).fill_null(False).to_numpy(), "side",
         "is not 'long' or 'short'")
    fail(~frame["margin_mode"].is_in(["cross", "isolated"]).fill_null(False).to_numpy(), "margin_mode",
         "is not 'cross' or 'isolated'")
    fail(frame["account_id"].is_null().to_numpy(), "account_id", "is missing")
    # one row per account: a second row would reopen the same ledger account mid-run
    fail(frame["account_id"].is_duplicated().to_numpy() & ~frame["account_id"].is_first_distinct().to_numpy(),
         "account_id", "appears twice (one row per account)")
    return frame


def _from_table(frame: pl.DataFrame, path: str, line_of: np.ndarray) -> pl.DataFrame:
    columns = set(frame.columns)
    needed = {"side", "qty", "entry_price"}
    if not needed <= columns or not ({"leverage", "collateral"} & columns):
        raise DataError(f"columns {sorted(columns)} lack {sorted(needed - columns)} or "
                        "leverage/collateral", path=path, line=1)
    n = frame.height
    for column in ("qty", "entry_price", "leverage", "collateral"):
        if column in columns:
            frame = frame.with_columns(pl.col(column).cast(pl.Float64))
    notional = pl.col("qty") * pl.col("entry_price")
    if "leverage" not in columns:
        frame = frame.with_columns((notional / pl.col("collateral")).alias("leverage"))
    if "collateral" not in columns:
        frame = frame.with_columns((notional / pl.col("leverage")).alias("collateral"))
    if "account_id" not in columns:
        frame = frame.with_columns(pl.Series("account_id", np.arange(n, dtype=np.int64)))
    if "margin_mode" not in columns:
        frame = frame.with_columns(pl.lit("cross").alias("margin_mode"))
    frame = frame.with_columns(
        pl.col("account_id").cast(pl.Int64),
        pl.col("side").cast(pl.String).str.strip_chars().str.to_lowercase(),
        pl.col("margin_mode").cast(pl.String).str.strip_chars().str.to_lowercase(),
    ).select(POPULATION_COLUMNS)
    return _validate(frame, path, line_of)


def _read_csv(path: Path) -> pl.DataFrame:
    name = str(path)
    data = io.read_bytes(path)
    header = [f.strip() for f in io.first_fields(data)]
    text = io.text_frame(data, name, header, header=True, by_name=True)
    parsed = [text[c] for c in header]
    for index, column in enumerate(header):
        if column in ("qty", "entry_price", "leverage", "collateral"):
            parsed[index] = io.parse_float(text, column, name)
        elif column == "account_id":
            parsed[index] = io.parse_int(text, column, name)
    return _from_table(pl.DataFrame(parsed), name, text[io.LINE].to_numpy())


def load_population(path: str | Path) -> pl.DataFrame:
    """A population from CSV (header row), parquet, or a JSON list of ccxt Position structures."""
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", path=str(p))
    with p.open("rb") as handle:
        magic = handle.read(4)
    if magic == b"PAR1":
        frame = pl.read_parquet(p)
        return _from_table(frame, str(p), np.arange(frame.height))
    head = io.first_line(io.read_bytes(p)[:4096])
    if head[:1] in "[{":
        return read_ccxt_positions(p)
    return _read_csv(p)


def population_digest(frame: pl.DataFrame) -> str:
    """SHA-256 of the frame's CSV text: a stable fingerprint for reproducibility checks."""
    return hashlib.sha256(frame.write_csv().encode()).hexdigest()


__all__ = [
    "DEFAULT_LEVERAGE_LEVELS",
    "DEFAULT_LEVERAGE_WEIGHTS",
    "GENERATED_COLUMNS",
    "POPULATION_COLUMNS",
    "PopulationConfig",
    "approx_liquidation_price",
    "generate_population",
    "load_population",
    "long_share_from_metrics",
    "open_interest_from_metrics",
    "population_digest",
]
