"""Leveraged populations: determinism (pinned digest), documented defaults, liquidation clustering,
loading from CSV/parquet/ccxt JSON with errors that name the line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from deleverage.data.population import (
    POPULATION_COLUMNS,
    PopulationConfig,
    approx_liquidation_price,
    generate_population,
    load_population,
    population_digest,
)
from deleverage.errors import DataError


def history(n: int = 120, start: float = 50_000.0) -> pl.DataFrame:
    """Synthetic kline history: a gentle rise with volume concentrated in the last 20 bars."""
    close = start + 10.0 * np.arange(n)
    volume = np.where(np.arange(n) >= n - 20, 100.0, 1.0)
    return pl.DataFrame({"ts_ns": np.arange(n) * 60_000_000_000, "open": close - 5, "high": close + 20,
                         "low": close - 20, "close": close, "volume": volume})


def test_same_seed_same_frame_pinned_digest() -> None:
    config = PopulationConfig(n_accounts=500, seed=42)
    digests = {population_digest(generate_population(config, price_history=history())) for _ in range(5)}
    assert len(digests) == 1
    other = population_digest(generate_population(config.model_copy(update={"seed": 43}),
                                                  price_history=history()))
    assert other not in digests
    # Pinned: a change here means populations (and every run keyed on them) changed.
    assert digests.pop() == PINNED_DIGEST


PINNED_DIGEST = "66719ba27774167453fe9bbcd61e50432ff166e947136aba7a909f1405905009"


def test_defaults_shape_and_grids() -> None:
    frame = generate_population(PopulationConfig(n_accounts=200_000, seed=1), price_history=history())
    assert frame.columns == POPULATION_COLUMNS and frame.height == 200_000
    assert (frame["side"] == "long").mean() == pytest.approx(0.87, abs=0.005)
    assert (frame["margin_mode"] == "isolated").mean() == pytest.approx(0.30, abs=0.005)
    lots = frame["qty"].to_numpy() / 0.001
    assert np.allclose(lots, np.round(lots)) and lots.min() >= 1
    ticks = frame["entry_price"].to_numpy() / 0.1
    assert np.allclose(ticks, np.round(ticks), atol=1e-6)
    assert set(frame["leverage"].unique().to_list()) <= {2, 3, 5, 10, 20, 25, 50, 75, 100, 125}
    notional = (frame["qty"] * frame["entry_price"]).to_numpy()
    assert notional.mean() == pytest.approx(12_000, rel=0.1)  # CRASH_FACTS: ≈ $12k per account
    isolated = (frame["margin_mode"] == "isolated").to_numpy()
    margin = notional / frame["leverage"].to_numpy()
    assert np.allclose(frame["collateral"].to_numpy()[isolated], margin[isolated])
    assert (frame["collateral"].to_numpy()[~isolated] >= margin[~isolated]).all()


def test_entries_follow_volume_and_long_liquidations_sit_below() -> None:
    hist = history()
    frame = generate_population(PopulationConfig(n_accounts=50_000, seed=2), price_history=hist)
    recent_low = hist.tail(20)["low"].min()
    share_recent = (frame["entry_price"] >= recent_low).mean()
    assert share_recent == pytest.approx(2000 / 2100, abs=0.01)  # 20 bars × 100 of 2,100 volume
    liq = approx_liquidation_price(frame)
    longs = (frame["side"] == "long").to_numpy()
    entry = frame["entry_price"].to_numpy()
    assert (liq[longs] < entry[longs]).all() and (liq[~longs] > entry[~longs]).all()
    # liquidation prices cluster just below the recent prices: ≥10x longs within 10% of entry
    lev = frame["leverage"].to_numpy()
    isolated = (frame["margin_mode"] == "isolated").to_numpy()
    sel = longs & isolated & (lev >= 10)
    assert np.all(liq[sel] > entry[sel] * 0.9)


def test_target_open_interest_rescales_total_notional() -> None:
    config = PopulationConfig(n_accounts=100_000, target_open_interest_usd=16e9, seed=3)
    frame = generate_population(config, price_history=history())
    assert (frame["qty"] * frame["entry_price"]).sum() == pytest.approx(16e9, rel=1e-3)


def test_config_validation() -> None:
    with pytest.raises(ValidationError):
        PopulationConfig(leverage_levels=(2.0, 3.0), leverage_weights=(1.0,))
    with pytest.raises(ValidationError):
        PopulationConfig(long_share=1.5)
    with pytest.raises(ValidationError):
        PopulationConfig(n_accounts=0)


def test_load_csv_parquet_and_ccxt(tmp_path: Path) -> None:
    frame = generate_population(PopulationConfig(n_accounts=50, seed=5), price_history=history())
    frame.write_csv(tmp_path / "pop.csv")
    frame.write_parquet(tmp_path / "pop.parquet")
    from_csv = load_population(tmp_path / "pop.csv")
    from_parquet = load_population(tmp_path / "pop.parquet")
    assert from_parquet.equals(frame)
    assert np.allclose(from_csv["collateral"].to_numpy(), frame["collateral"].to_numpy())
    (tmp_path / "pos.json").write_text(json.dumps(
        [{"contracts": 2, "contractSize": 0.001, "side": "short", "entryPrice": "60000",
          "leverage": "10", "marginMode": "cross"}]))
    ccxt = load_population(tmp_path / "pos.json")
    assert ccxt.row(0, named=True)["collateral"] == pytest.approx(12.0)


def test_load_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("side,qty,entry_price,leverage\nlong,1,100,10\nshort,1,100,10\nlong,x,100,10\n")
    with pytest.raises(DataError) as info:
        load_population(path)
    assert (info.value.line, info.value.field) == (4, "qty")
    path.write_text("side,qty,entry_price,leverage\nlong,1,100,10\nflat,1,100,10\n")
    with pytest.raises(DataError) as info:
        load_population(path)
    assert (info.value.line, info.value.field) == (3, "side")
    path.write_text("side,qty\nlong,1\n")
    with pytest.raises(DataError, match="entry_price"):
        load_population(path)
    with pytest.raises(DataError, match="not found"):
        load_population(tmp_path / "missing.csv")
