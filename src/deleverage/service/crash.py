"""Replay a bundled crash day into a running service: a population first, then the kline feed.

The 2025-10-10 crash is bundled as 1-minute klines. :func:`replay_crash` draws a leveraged population
with the lab's generator (:func:`deleverage.data.population.generate_population`, entry prices from
the bars before the window), opens it in the service (``POST /v1/inputs``: a deposit and a fill per
account, with idempotency keys, so a second run applies nothing twice), and then serves the window
through :class:`~deleverage.service.feed.KlineFeedServer` — a real local websocket speaking Binance
futures messages — to :class:`~deleverage.service.feed.BinanceFeedConnector`, which posts the marks
and the book to the service like it does for a live feed. The service needs ``ts_window_behind_s =
inf`` (the inputs carry 2025 event times).

    DELEVERAGE_FEED_KEY=<a feeder key> python -m deleverage.service.crash --service http://127.0.0.1:8000 \\
        --window 20:50-21:30 --speed 120 --accounts 2000

Accounts already within 1 % of liquidation at the window's first price are left out (the lab's
``START_BUFFER`` rule: a venue would have closed them before). Deterministic: the same seed, window and
sizes give the same inputs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from deleverage.core.instruments import Instrument, get_instrument
from deleverage.errors import DeleverageError, InvalidInput
from deleverage.service.feed import (
    BinanceFeedConnector,
    FeedStats,
    KlineFeedServer,
    population_inputs,
    post_inputs,
)

NS_PER_MINUTE = 60_000_000_000
NS_PER_DAY = 86_400_000_000_000


@dataclass(frozen=True)
class CrashReplay:
    """What to replay and with whom."""

    scenario: str = "2025-10-10"
    window: str = "20:50-21:30"  # UTC, within the scenario's day
    accounts: int = 2_000
    seed: int = 1
    open_interest: float = 60e6  # quote units, the population's open interest at the start
    step_ms: int = 1_000  # mark every second of event time
    speed: float | None = 120.0  # event seconds per wall second
    book_every_ms: int = 5_000
    book_levels: int = 20
    level_ticks: int = 50
    level_qty: str = "2"
    mark_interval_ms: int = 1_000
    oracle_every_ms: int | None = None  # post the feed's index price as the oracle (None: no oracle)
    maintenance_rate: float = 0.004  # for the 1 % screen only (the service's tiers decide liquidations)


def window_ns(day_start_ns: int, window: str) -> tuple[int, int]:
    """``"20:50-21:30"`` within the day starting at ``day_start_ns`` → (start, end) ns."""
    try:
        first, second = (part.strip() for part in window.split("-"))
        (h0, m0), (h1, m1) = (tuple(int(x) for x in p.split(":")) for p in (first, second))
    except ValueError:
        raise InvalidInput("window", window, "expected HH:MM-HH:MM (UTC)") from None
    start = day_start_ns + (h0 * 60 + m0) * NS_PER_MINUTE
    end = day_start_ns + (h1 * 60 + m1) * NS_PER_MINUTE
    if end <= start:
        raise InvalidInput("window", window, "must end after it starts (within one day)")
    return start, end


def prepare(replay: CrashReplay, instrument: Instrument | None = None) -> tuple[Any, Any, KlineFeedServer, int]:
    """(population frame, kline frame, the feed server, start ns) of a replay — no I/O but reading data."""
    import numpy as np  # noqa: PLC0415
    import polars as pl  # noqa: PLC0415

    from deleverage.data.population import (  # noqa: PLC0415
        PopulationConfig,
        approx_liquidation_price,
        generate_population,
    )
    from deleverage.data.scenarios import get_scenario  # noqa: PLC0415

    scenario = get_scenario(replay.scenario)
    klines = scenario.load().frame
    inst = instrument or get_instrument(scenario.symbol or "BTCUSDT")
    first = int(klines["ts_ns"][0])
    start, end = window_ns(first - first % NS_PER_DAY, replay.window)
    history = klines.filter(pl.col("ts_ns") < start)
    if history.height == 0:
        raise InvalidInput("window", replay.window, "starts before the data: no history to draw entries from")
    config = PopulationConfig(n_accounts=replay.accounts, seed=replay.seed, tick_size=float(inst.tick_size),
                              lot_size=float(inst.lot_size), target_open_interest_usd=replay.open_interest)
    population = generate_population(config, price_history=history)
    server = KlineFeedServer(klines, inst, start_ns=start, end_ns=end, step_ms=replay.step_ms, speed=replay.speed,
                             seed=replay.seed, book_every_ms=replay.book_every_ms, book_levels=replay.book_levels,
                             level_ticks=replay.level_ticks, level_qty=replay.level_qty)
    first_price = server.prices[0] * float(inst.tick_size)
    liq = approx_liquidation_price(population, replay.maintenance_rate)
    long = (population["side"] == "long").to_numpy()
    safe = np.where(long, liq < first_price * 0.99, liq > first_price * 1.01)
    return population.filter(pl.Series(safe)), klines, server, start


async def replay_crash(service_url: str, api_key: str, replay: CrashReplay | None = None, *,
                       http: httpx.AsyncClient | None = None) -> dict[str, Any]:
    """Open the population in the service, then feed it the window; returns what was posted."""
    replay = replay or CrashReplay()
    population, _, server, start = prepare(replay)
    inst = server.instrument
    own = http is None
    client = http or httpx.AsyncClient(timeout=60)
    try:
        items = population_inputs(population, inst, ts_ns=start - 1_000_000)
        opened = await post_inputs(client, service_url, api_key, items)
        connector = BinanceFeedConnector(inst, service_url, api_key, mark_interval_ms=replay.mark_interval_ms,
                                         book_interval_ms=replay.book_every_ms, book_levels=replay.book_levels,
                                         oracle_interval_ms=replay.oracle_every_ms,
                                         key_prefix=f"crash-{replay.scenario}-{replay.seed}", http=client)
        async with server.serving() as url:
            stats: FeedStats = await connector.run(url)
    finally:
        if own:
            await client.aclose()
    return {"accounts": population.height, "population_inputs": opened, "marks_posted": stats.marks_posted,
            "oracles_posted": stats.oracles_posted, "books_posted": stats.books_posted, "replayed": stats.replayed, "refused": stats.refused[:5],
            "liquidations": stats.liquidations, "klines": stats.klines, "messages": stats.messages,
            "start": datetime.fromtimestamp(start / 1e9, tz=UTC).isoformat()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deleverage.service.crash", description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", default="http://127.0.0.1:8000")
    parser.add_argument("--key-env", default="DELEVERAGE_FEED_KEY", help="environment variable holding a feeder key")
    defaults = CrashReplay()
    parser.add_argument("--scenario", default=defaults.scenario)
    parser.add_argument("--window", default=defaults.window, help="HH:MM-HH:MM UTC")
    parser.add_argument("--accounts", type=int, default=defaults.accounts)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--open-interest", type=float, default=defaults.open_interest)
    parser.add_argument("--speed", type=float, default=defaults.speed, help="event seconds per wall second")
    parser.add_argument("--oracle-every-ms", type=int, default=None,
                        help="also post the feed's index price as the oracle, at most this often")
    args = parser.parse_args(argv)
    key = os.environ.get(args.key_env)
    if not key:
        print(f"Error: set {args.key_env} to a feeder key (kept out of the command line)", file=sys.stderr)
        return 1
    replay = CrashReplay(scenario=args.scenario, window=args.window, accounts=args.accounts, seed=args.seed,
                         open_interest=args.open_interest, speed=args.speed,
                         oracle_every_ms=args.oracle_every_ms)
    try:
        result = asyncio.run(replay_crash(args.service, key, replay))
    except (DeleverageError, httpx.HTTPError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    for name, value in result.items():
        print(f"{name}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["CrashReplay", "prepare", "replay_crash", "window_ns"]
