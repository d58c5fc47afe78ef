"""Populations of leveraged accounts: generated from documented distributions, or loaded from a file.

A population is a polars frame, one position per account::

    account_id Int64 | side "long"/"short" | qty Float64 (base, on the lot grid)
    entry_price Float64 (on the tick grid) | leverage Float64 | collateral Float64 (quote)
    margin_mode "cross"/"isolated"

``collateral`` is the isolated margin of the position, or the cross wallet backing it.

Defaults and their sources (the published crash-day figures collected in the project's CRASH_FACTS.md,
quoted in docs/data.md, unless marked *assumption*):

- ``long_share = 0.87``: longs were ≈ 87% of the notional liquidated on 2025-10-10 ($16.7–16.9 B of
  $19.1–19.4 B, CoinGlass) and ≈ 88% on 2021-05-19 ($7.56 B of $8–8.6 B, Cointelegraph). The default
  population is the *at-risk leveraged book* a crash meets, so it takes the liquidated mix; a venue's
  whole book is more balanced (fit it to its long/short account ratio, e.g. Binance ``metrics`` files).
- notional per account, lognormal with median $2,400 and σ = 1.8: mean = median·e^{σ²/2} ≈ $12,000,
  the liquidated notional per liquidated account on both days ($19.1 B / 1.6 M accounts ≈ $11,900 on
  2025-10-10; $8.6 B / 804,000 ≈ $10,700 on 2021-05-19). σ is an *assumption* (heavy right tail);
  ``size_distribution="pareto"`` (α = 1.5, minimum $4,000, also mean $12,000) gives a heavier one.
- ``target_open_interest_usd``: rescale the total notional, e.g. Binance BTC OI $16 B before the
  2025-10-10 crash (→ $12 B, −25%, CoinGlass/Glassnode/CoinDesk), or $2.93 B after the 2021-05-19 one
  (≈ $3.96 B before, −26%, Bybt). None keeps the drawn sizes.
- leverage: discrete mixture on 2x–125x (Binance's BTCUSDT maximum is 125x), weights an *assumption*
  (mode 5–10x, 20% of accounts at ≥ 25x) — no venue publishes the distribution; check it against the
  bundled days with :func:`approx_liquidation_price` and refit with the lab's calibration.
- entry prices: drawn from the last ``entry_window_bars`` klines before the crash, a bar chosen with
  probability ∝ its volume and a price uniform in [low, high] — positions are opened where volume
  traded, so long liquidation prices cluster below the recent prices, as on real venues.
- margin mode: 30% isolated (*assumption*); a cross account's wallet is its initial margin times
  1 + Exponential(mean 0.5) (*assumption*: cross accounts hold spare collateral).
- grid: BTCUSDT tick 0.1, lot 0.001 (instruments.BTCUSDT; 2021 prices had tick 0.01).

Check against the bundled 2025-10-10 day (entries from the 720 bars before 20:44, the day's low
101,516.5, :func:`approx_liquidation_price` at mmr 0.4%): ≈ 48% of long accounts and ≈ 41% of the
notional reach liquidation — more than the ≈ 9–25% of open interest that went (CoinGlass: $19 B
liquidated of $220 B OI; Binance BTC OI −25%). The default is deliberately a stressed book; lower
the leverage weights or the long share to fit a venue's whole book.
"""

from __future__ import annotations

import hashlib
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
POPULATION_COLUMNS = list(POPULATION_SCHEMA)


class PopulationConfig(BaseModel):
    """How to draw a leveraged population; every default documented in the module docstring."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_accounts: int = Field(default=100_000, ge=1, le=50_000_000)
    long_share: float = Field(default=0.87, ge=0.0, le=1.0)
    leverage_levels: tuple[float, ...] = DEFAULT_LEVERAGE_LEVELS
    leverage_weights: tuple[float, ...] = DEFAULT_LEVERAGE_WEIGHTS
    size_distribution: Literal["lognormal", "pareto"] = "lognormal"
    notional_median_usd: float = Field(default=2_400.0, gt=0)
    notional_sigma: float = Field(default=1.8, ge=0)
    pareto_alpha: float = Field(default=1.5, gt=1.0)
    pareto_min_usd: float = Field(default=4_000.0, gt=0)
    notional_cap_usd: float = Field(default=50_000_000.0, gt=0)
    target_open_interest_usd: float | None = Field(default=None, gt=0)
    entry_window_bars: int = Field(default=720, ge=1)
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


def _entry_prices(history: pl.DataFrame, config: PopulationConfig, n: int,
                  rng: np.random.Generator) -> np.ndarray:
    """A bar ∝ volume from the last window of ``history``, then uniform in [low, high], on tick."""
    missing = {"high", "low", "volume"} - set(history.columns)
    if missing:
        raise InvalidInput("price_history", sorted(missing), "needs kline columns high, low, volume")
    window = history.tail(config.entry_window_bars)
    if window.height == 0:
        raise InvalidInput("price_history", 0, "is empty")
    volume = window["volume"].to_numpy().astype(np.float64)
    weights = volume if volume.sum() > 0 else np.ones_like(volume)
    cumulative = np.cumsum(weights)
    bars = np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right")
    bars = np.minimum(bars, window.height - 1)
    low, high = window["low"].to_numpy()[bars], window["high"].to_numpy()[bars]
    price = low + (high - low) * rng.random(n)
    return np.round(price / config.tick_size) * config.tick_size


def _notionals(config: PopulationConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    if config.size_distribution == "lognormal":
        notional = config.notional_median_usd * rng.lognormal(0.0, config.notional_sigma, n)
    else:
        notional = config.pareto_min_usd * (1.0 + rng.pareto(config.pareto_alpha, n))
    notional = np.minimum(notional, config.notional_cap_usd)
    if config.target_open_interest_usd is not None:
        notional *= config.target_open_interest_usd / notional.sum()
    return notional


def generate_population(
    config: PopulationConfig, *, price_history: pl.DataFrame, rng: np.random.Generator | None = None
) -> pl.DataFrame:
    """Draw ``config.n_accounts`` positions (vectorised; same seed → identical frame).

    ``rng`` defaults to ``numpy.random.default_rng(config.seed)``; ``price_history`` is a kline frame
    (``high, low, volume``) ending where the scenario's crash starts.
    """
    rng = rng if rng is not None else np.random.default_rng(config.seed)
    n = config.n_accounts
    is_long = rng.random(n) < config.long_share
    weights = np.asarray(config.leverage_weights, dtype=np.float64)
    leverage = np.asarray(config.leverage_levels)[
        rng.choice(len(weights), size=n, p=weights / weights.sum())
    ]
    entry = _entry_prices(price_history, config, n, rng)
    lots = np.maximum(1.0, np.floor(_notionals(config, n, rng) / entry / config.lot_size))
    qty = np.round(lots * config.lot_size, 12)
    initial_margin = qty * entry / leverage
    isolated = rng.random(n) < config.isolated_share
    excess = rng.exponential(config.cross_excess_mean, n) if config.cross_excess_mean else 0.0
    collateral = np.where(isolated, initial_margin, initial_margin * (1.0 + excess))
    frame = pl.DataFrame({
        "account_id": np.arange(n, dtype=np.int64),
        "is_long": is_long, "qty": qty, "entry_price": entry,
        "leverage": leverage.astype(np.float64), "collateral": collateral, "is_isolated": isolated,
    })
    return frame.select(
        "account_id",
        pl.when("is_long").then(pl.lit("long")).otherwise(pl.lit("short")).alias("side"),
        "qty", "entry_price", "leverage", "collateral",
        pl.when("is_isolated").then(pl.lit("isolated")).otherwise(pl.lit("cross")).alias("margin_mode"),
    )


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
    "POPULATION_COLUMNS",
    "PopulationConfig",
    "approx_liquidation_price",
    "generate_population",
    "load_population",
    "population_digest",
]
