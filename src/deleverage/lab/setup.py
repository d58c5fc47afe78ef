"""Build the scene of a run: market data, instrument, population, seeded ledger, agents' factories.

The scene is built once per run and shared by every policy: each policy gets ``ledger.copy()``, a new
market from the same seed, and new backstop providers, so the only difference between two policies'
results is what the policies did.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from deleverage.core.instruments import BTCUSDT, Instrument, InstrumentChoice
from deleverage.core.ledger import Ledger
from deleverage.core.tiers import MarginTiers
from deleverage.data.population import (
    PopulationConfig,
    generate_population,
    load_population,
    population_digest,
)
from deleverage.errors import InvalidInput
from deleverage.lab.seeding import SeedReport, seed_ledger
from deleverage.lab.window import NS_PER_DAY
from deleverage.lab.window import parse_window as _parse_window

if TYPE_CHECKING:
    from deleverage.lab.runner import RunConfig

NS_PER_MINUTE = 60_000_000_000
STRESS_START_PRICE = 60_000.0  # synthetic BTC-like market; any level works, liquidations scale with it
START_BUFFER = 0.01  # accounts within 1% of liquidation at the first mark are treated as already closed


@dataclass
class Scene:
    """Everything a policy run needs, prepared once."""

    title: str
    instrument: Instrument
    tiers: MarginTiers
    ledger: Ledger
    seed_report: SeedReport
    times: np.ndarray
    make_market: Callable[[], Any]
    make_backstops: Callable[[], list[Any]]
    make_frontrunner: Callable[[Ledger, Any], Any]
    data_digest: str
    population_digest: str
    notes: list[str] = field(default_factory=list)
    published: dict[str, float] | None = None
    liquidation_prices: dict[str, float] = field(default_factory=dict)
    reference_low_ticks: int = 0
    reference_high_ticks: int = 0
    instrument_info: dict[str, Any] = field(default_factory=dict)  # summary.json's "instrument"

    def subtitle(self, config: RunConfig) -> str:
        start = datetime.fromtimestamp(int(self.times[0]) / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        end = datetime.fromtimestamp(int(self.times[-1]) / 1e9, tz=UTC).strftime("%H:%M:%S UTC")
        return (
            f"{self.seed_report.accounts:,} accounts (seed {config.seed}), open interest "
            f"{self.seed_report.open_interest_notional:,.0f} {self.instrument.settle.code}, "
            f"{len(self.times):,} marks every {config.step_ms} ms, {start} → {end}"
        )


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _screen_underwater(population: pl.DataFrame, start_price: float, tiers: MarginTiers) -> list[int]:
    """Population ids already within ``START_BUFFER`` of liquidation at the first mark (float screen)."""
    qty = population["qty"].to_numpy()
    entry = population["entry_price"].to_numpy()
    collateral = population["collateral"].to_numpy()
    long = (population["side"] == "long").to_numpy()
    notional = qty * start_price
    floors, rates, cums = tiers.arrays()
    bracket = np.clip(np.searchsorted(floors, notional, side="right") - 1, 0, len(floors) - 1)
    maintenance = notional * rates[bracket] - cums[bracket]
    pnl = np.where(long, start_price - entry, entry - start_price) * qty
    equity = collateral + pnl
    near = equity <= maintenance * (1.0 + START_BUFFER) + notional * START_BUFFER * 0.1
    return population["account_id"].filter(pl.Series(near)).to_list()


def _population(config: RunConfig, history: pl.DataFrame, instrument: Instrument,
                population_path: str | Path | None) -> pl.DataFrame:
    if population_path is not None:
        if config.open_interest is not None:
            raise InvalidInput("open_interest", config.open_interest,
                               "scales a generated population; a loaded population keeps its own sizes")
        return load_population(population_path)
    pop_config = PopulationConfig(
        n_accounts=config.accounts, seed=config.seed, tick_size=float(instrument.tick_size),
        lot_size=float(instrument.lot_size), target_open_interest_usd=config.open_interest,
    )
    return generate_population(pop_config, price_history=history)


def build_scene(config: RunConfig, *, population_path: str | Path | None = None) -> Scene:
    """The scene for ``config.kind`` ("replay" of a bundled name or a file, or "stress")."""
    if config.kind == "stress":
        return _stress_scene(config, population_path)
    from deleverage.data.scenarios import get_scenario

    scenario = get_scenario(config.scenario)
    if scenario.kind == "klines":
        return _kline_scene(config, scenario, population_path)
    if scenario.kind == "l2":
        return _capture_scene(config, scenario, population_path)
    raise InvalidInput("scenario", config.scenario, f"kind {scenario.kind!r} cannot drive a replay")


def _kline_scene(config: RunConfig, scenario: Any, population_path: str | Path | None) -> Scene:
    from deleverage.lab.market import KlineReplayMarket

    loaded = scenario.load()
    klines = loaded.frame
    if klines.height == 0:
        raise InvalidInput("scenario", config.scenario, "has no kline rows")
    first_ns = int(klines["ts_ns"][0])
    day_start = first_ns - first_ns % NS_PER_DAY
    if config.window is not None:
        window = _parse_window(config.window, day_start, cross_midnight=config.cross_midnight)
        _check_window_in_data(config.window, window, klines, int(loaded.meta.get("interval_ns", NS_PER_MINUTE)))
    elif scenario.crash_start_ns is not None and scenario.crash_low_ns is not None:
        window = (scenario.crash_start_ns - 20 * NS_PER_MINUTE, scenario.crash_low_ns + 40 * NS_PER_MINUTE)
    else:
        window = (first_ns, int(klines["ts_ns"][-1]) + NS_PER_MINUTE)
    from deleverage.data.instruments import instrument_for, registry_for

    choice = instrument_for(loaded, symbol=config.symbol, registry=registry_for(config.instruments))
    instrument, tiers = _instrument_and_tiers(config, choice)
    history = klines.filter(pl.col("ts_ns") < window[0])
    if history.height == 0:
        history = klines.head(60)

    def make_market() -> Any:
        return KlineReplayMarket(klines, instrument, step_ms=config.step_ms, seed=config.seed, window=window)

    probe = make_market()
    notes = [f"scenario: {scenario.description}", f"source: {scenario.source}", *_instrument_notes(choice, tiers),
             *probe.description()]
    published = _published(scenario)
    scene = _finish(config, f"replay of {scenario.name}", instrument, tiers, probe, make_market, history,
                    population_path, _file_digest(scenario.path()), notes, published)
    scene.instrument_info = _instrument_info(choice, tiers)
    return scene


def _capture_scene(config: RunConfig, scenario: Any, population_path: str | Path | None) -> Scene:
    from deleverage.data.binance_stream import read_capture, replay_problems
    from deleverage.data.instruments import registry_for
    from deleverage.lab.market import CaptureReplayMarket

    if config.window is not None:
        raise InvalidInput("window", config.window, "applies to kline scenarios; a capture is replayed whole")
    capture = read_capture(scenario.path(), config.symbol, registry=registry_for(config.instruments))
    problems = replay_problems(capture)
    if problems:
        raise InvalidInput("scenario", config.scenario, f"cannot be replayed: {problems[0]}")
    instrument, tiers = _instrument_and_tiers(config, capture.choice)
    trades = capture.trades
    tick = float(instrument.tick_size)
    lot = float(instrument.lot_size)
    frame = pl.DataFrame({
        "ts_ns": trades["ts_event"].astype(np.int64) // 1_000_000_000 * 1_000_000_000,
        "price": trades["price_ticks"].astype(np.float64) * tick,
        "qty": trades["qty_lots"].astype(np.float64) * lot,
    })
    history = frame.group_by("ts_ns").agg(
        pl.col("price").max().alias("high"), pl.col("price").min().alias("low"), pl.col("qty").sum().alias("volume"),
    ).sort("ts_ns")

    def make_market() -> Any:
        return CaptureReplayMarket(capture, instrument, step_ms=config.step_ms)

    probe = make_market()
    notes = [f"scenario: {scenario.description}", f"source: {scenario.source}",
             *_instrument_notes(capture.choice, tiers), *probe.description()]
    scene = _finish(config, f"replay of {scenario.name}", instrument, tiers, probe, make_market, history,
                    population_path, _file_digest(scenario.path()), notes, None)
    scene.instrument_info = _instrument_info(capture.choice, tiers)
    return scene


def _stress_scene(config: RunConfig, population_path: str | Path | None) -> Scene:
    from deleverage.lab.synthetic_market import SyntheticMarket

    if not 0 < config.drop < 0.9:
        raise InvalidInput("drop", config.drop, "must be between 0 and 0.9")
    if config.minutes < 5:
        raise InvalidInput("minutes", config.minutes, "must be >= 5")
    if config.window is not None:
        raise InvalidInput("window", config.window, "applies to replays; a stress runs its whole synthetic day")
    if config.symbol is not None or config.instruments is not None:
        raise InvalidInput("symbol", config.symbol or config.instruments,
                           "a stress runs a synthetic BTC-like market (BTCUSDT); --symbol and --instruments "
                           "apply to replays of data files")
    choice = InstrumentChoice(BTCUSDT, {"symbol": "synthetic stress (a BTC-like market)",
                                        "contract": "registry (core/instruments.py)",
                                        "tick_size": "registry (current tick)", "lot_size": "registry",
                                        "tiers": "registry (core/instruments.py)"})
    instrument, tiers = _instrument_and_tiers(config, choice)

    def make_market() -> Any:
        from deleverage.lab.agents import MarketMaker

        # Three market makers of different sizes and risk appetites (assumptions): they widen their quotes
        # as volatility rises, shrink them, pull them past their stress limit, and stop at inventory limits.
        makers = [
            MarketMaker(name="mm-large", levels=10, size_lots=2_000, inventory_limit_lots=60_000, pull_stress=8.0),
            MarketMaker(name="mm-medium", levels=6, size_lots=800, first_level_ticks=1,
                        inventory_limit_lots=20_000, pull_stress=5.0),
            MarketMaker(name="mm-small", levels=4, size_lots=300, first_level_ticks=2,
                        inventory_limit_lots=5_000, widen_elasticity=1.5, pull_stress=3.0),
        ]
        return SyntheticMarket(instrument, seed=config.seed, start_price=STRESS_START_PRICE,
                               minutes=config.minutes, drop=config.drop, step_ms=config.step_ms,
                               market_makers=makers)

    probe = make_market()
    start = float(instrument.ticks_to_price(probe.reference_mark_ticks()))
    rng = np.random.default_rng([config.seed, 1])
    closes = start * np.exp(np.cumsum(rng.normal(0, 0.0015, 720)))[::-1]
    history = pl.DataFrame({
        "ts_ns": np.arange(720, dtype=np.int64) * NS_PER_MINUTE,
        "high": closes * 1.001, "low": closes * 0.999, "volume": rng.lognormal(3, 0.5, 720),
    })
    notes = [*_instrument_notes(choice, tiers), *probe.description()]
    digest = hashlib.sha256(f"synthetic:{config.seed}:{config.minutes}:{config.drop}".encode()).hexdigest()
    scene = _finish(config, f"synthetic crash −{config.drop:.0%} over {config.minutes} min", instrument, tiers,
                    probe, make_market, history, population_path, digest, notes, None)
    scene.instrument_info = _instrument_info(choice, tiers)
    return scene


# --- the instrument and its tiers (docs/data.md, "Which instrument a file is") -----------------------------


def _instrument_and_tiers(config: RunConfig, choice: InstrumentChoice) -> tuple[Instrument, MarginTiers]:
    """The run's instrument (from the data and the user) and its tier table (``--tiers`` or the shipped one)."""
    from deleverage.data.instruments import resolve_tiers

    instrument = choice.instrument
    if instrument.contract == "inverse":
        raise InvalidInput("scenario", config.scenario,
                           f"is {instrument.symbol}, a coin-margined (inverse) contract: quantities in contracts of "
                           f"{instrument.contract_size} {instrument.quote}, margin in {instrument.settle.code}; the lab's "
                           "populations are sized in quote units of linear contracts, so it does not replay inverse "
                           "contracts yet (`deleverage data inspect` reads the file)")
    return instrument, resolve_tiers(config.tiers, instrument)


def _instrument_notes(choice: InstrumentChoice, tiers: MarginTiers) -> list[str]:
    i = choice.instrument
    return [
        f"instrument: {i.symbol} ({i.contract}, settled in {i.settle.code}), tick {i.tick_size} "
        f"({choice.sources.get('tick_size', '?')}), lot {i.lot_size} ({choice.sources.get('lot_size', '?')}), "
        f"margin tiers {tiers.name}",
        *choice.notes,
    ]


def _instrument_info(choice: InstrumentChoice, tiers: MarginTiers) -> dict[str, Any]:
    """summary.json's ``instrument``: the choice plus the tier table actually used and its digest."""
    rows = [[str(b.floor), str(b.rate), None if b.max_leverage is None else str(b.max_leverage)]
            for b in tiers.brackets]
    info = choice.as_dict()
    info["tiers"] = tiers.name
    info["tiers_digest"] = hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]
    return info


def _check_window_in_data(text: str, window: tuple[int, int], klines: pl.DataFrame, interval_ns: int) -> None:
    """A window must lie inside the data: replaying less than asked for, silently, is not an answer."""
    stamps = klines["ts_ns"]
    first, last = int(stamps[0]), int(stamps[-1]) + interval_ns  # the reader sorted them
    if window[0] < first or window[1] > last:
        span = (f"{datetime.fromtimestamp(first / 1e9, tz=UTC):%Y-%m-%d %H:%M} → "
                f"{datetime.fromtimestamp(last / 1e9, tz=UTC):%Y-%m-%d %H:%M} UTC")
        chosen = (f"{datetime.fromtimestamp(window[0] / 1e9, tz=UTC):%Y-%m-%d %H:%M} → "
                  f"{datetime.fromtimestamp(window[1] / 1e9, tz=UTC):%Y-%m-%d %H:%M} UTC")
        raise InvalidInput("window", text, f"is {chosen}, outside the data ({span})")


def _published(scenario: Any) -> dict[str, float] | None:
    facts = scenario.facts or {}
    out: dict[str, float] = {}
    if "long_share" in facts:
        out["long_share"] = float(facts["long_share"])
    before, after = facts.get("binance_btc_oi_before_usd"), facts.get("binance_btc_oi_after_usd")
    if before and after:
        out["liquidated_share_of_oi"] = 1.0 - float(after) / float(before)
    return out or None


def _finish(config: RunConfig, title: str, instrument: Instrument, tiers: MarginTiers, probe: Any,
            make_market: Callable[[], Any], history: pl.DataFrame, population_path: str | Path | None,
            data_digest: str, notes: list[str], published: dict[str, float] | None) -> Scene:
    population = _population(config, history, instrument, population_path)
    start_ticks = probe.reference_mark_ticks()
    start_price = float(instrument.ticks_to_price(start_ticks))
    underwater = _screen_underwater(population, start_price, tiers)
    kept_oi = float(
        population.filter(~pl.col("account_id").is_in(underwater)).select(pl.col("qty").sum()).item() or 0.0
    ) * start_price
    fund = config.insurance_fund_share * kept_oi
    backstop_capital = config.backstop_share * kept_oi / max(config.backstops, 1)
    backstop_ids = [f"backstop{i}" for i in range(config.backstops)]
    ledger, report = seed_ledger(
        population, instrument, start_mark_ticks=start_ticks, insurance_fund=fund,
        backstops=[(b, backstop_capital) for b in backstop_ids], drop_liquidatable=underwater,
    )
    settle = instrument.settle

    def make_backstops() -> list[Any]:
        from deleverage.engine.backstop import BackstopProvider

        leverage = 5
        capacity_minor = settle.to_minor(backstop_capital * leverage, rounding="down")
        max_lots = int(backstop_capital * leverage / start_price / float(instrument.lot_size))
        return [BackstopProvider(b, capacity_minor, config.backstop_discount_bps, max_lots) for b in backstop_ids]

    def make_frontrunner(ledger: Ledger, market: Any) -> Any:
        from deleverage.lab.agents import FrontRunner

        # The front-runner trades on the simulated book, outside the ledger: it is part of "the market".
        return FrontRunner(market, instrument, capital=config.frontrunner_capital)

    kept = population.filter(~pl.col("account_id").is_in(underwater))
    liquidation_prices = _initial_liquidation_prices(kept, instrument, tiers)
    low, high = _reference_extremes(make_market())
    notes = notes + [
        f"population: {report.accounts:,} accounts generated with seed {config.seed} "
        f"({len(underwater):,} already within {START_BUFFER:.0%} of liquidation at the first mark left out); "
        "sizes, leverage and side mix from data/population.py defaults (sources in its docstring)",
        f"insurance fund {fund:,.0f} {settle.code} ({config.insurance_fund_share:.0%} of open interest, assumption); "
        f"{config.backstops} backstop providers with {backstop_capital:,.0f} {settle.code} each "
        f"(discount {config.backstop_discount_bps:.0f} bps, assumption)",
        f"oracle: heartbeat {config.oracle_heartbeat_ms / 1000:.0f} s, deviation {config.oracle_deviation:.1%}, "
        f"latency {config.oracle_latency_ms / 1000:.1f} s (modelled from the reference path)",
    ]
    return Scene(
        title=title, instrument=instrument, tiers=tiers, ledger=ledger, seed_report=report,
        times=probe.times(), make_market=make_market, make_backstops=make_backstops,
        make_frontrunner=make_frontrunner, data_digest=data_digest,
        population_digest=population_digest(population), notes=notes, published=published,
        liquidation_prices=liquidation_prices, reference_low_ticks=low, reference_high_ticks=high,
    )


def _initial_liquidation_prices(population: pl.DataFrame, instrument: Instrument,
                                tiers: MarginTiers) -> dict[str, float]:
    """Each seeded account's liquidation price at the start (float screen; used to classify waves)."""
    from deleverage.core.book import AccountBook
    from deleverage.lab.seeding import trader_id

    if population.height == 0:
        return {}
    book = AccountBook(instrument, tiers, capacity=population.height)
    ids = population["account_id"].to_numpy().astype(np.int64)
    sign = np.where((population["side"] == "long").to_numpy(), 1.0, -1.0)
    book.load(ids, population["qty"].to_numpy() * sign, population["entry_price"].to_numpy(),
              population["collateral"].to_numpy())
    prices = book.liquidation_prices()[: population.height]
    return {trader_id(i): float(p) for i, p in zip(book.account_ids[: population.height].tolist(), prices.tolist(), strict=True)}


def _reference_extremes(market: Any) -> tuple[int, int]:
    """Lowest and highest reference mark over the run (the path without any simulated impact)."""
    low = high = market.reference_mark_ticks()
    for ts in market.times():
        market.advance_to(int(ts))
        ref = market.reference_mark_ticks()
        low, high = min(low, ref), max(high, ref)
    return low, high


__all__ = ["Scene", "build_scene"]
