"""Bundled scenarios (shipped in ``deleverage/datasets/``) and any user file given by path.

``--scenario`` accepts a bundled name or a path; :func:`get_scenario` resolves both. Bundled data is
read with ``importlib.resources`` so a pip install runs the demo; each folder has a ``SOURCE.md``.

=====================  ======  =========  =====  ==========================================================
name                   kind    symbol     tick   what
=====================  ======  =========  =====  ==========================================================
2021-05-19             klines  BTCUSDT    0.01   Black Wednesday: −26% 12:19 → 13:10 UTC, low 28,688.00
2025-10-10             klines  BTCUSDT    0.1    tariff shock: −13% from 20:44, low 101,516.50 at 21:20 UTC
btcusdt-20240808-l2    l2      BTCUSDT    0.1    5 min 45 s raw depth/trade capture, rebound after 08-05
=====================  ======  =========  =====  ==========================================================
"""

from __future__ import annotations

import atexit
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl

from deleverage.data.detect import detect_format, load
from deleverage.data.quality import LoadedData
from deleverage.errors import InvalidInput

_KIND_OF_FORMAT = {
    "binance_klines": "klines",
    "binance_capture": "l2",
    "tardis_incremental_book_L2": "l2",
    "tardis_book_snapshot": "l2",
}
_EXTRACTED = contextlib.ExitStack()
atexit.register(_EXTRACTED.close)


def _utc_ns(text: str) -> int:
    """``"2021-05-19 12:19"`` (UTC) → ns since epoch."""
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000


@dataclass(frozen=True)
class Scenario:
    """A market data set to replay: bundled (``resource``) or a user's file (``file_path``)."""

    name: str
    kind: str
    symbol: str | None
    tick_size: Decimal | None
    description: str
    source: str
    resource: str | None = None
    file_path: Path | None = None
    format: str | None = None
    crash_start_ns: int | None = None
    crash_low_ns: int | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    open_interest_usd: float | None = None  # default open interest of a replay (quote units)
    open_interest_source: str = ""

    @property
    def bundled(self) -> bool:
        """True for data shipped inside the package."""
        return self.resource is not None

    def path(self) -> Path:
        """A filesystem path to the data (bundled files extracted once if the package is zipped)."""
        if self.file_path is not None:
            return self.file_path
        traversable = resources.files("deleverage.datasets").joinpath(self.resource or "")
        if isinstance(traversable, Path):
            return traversable
        return _EXTRACTED.enter_context(resources.as_file(traversable))

    def load(self, **options: Any) -> LoadedData:
        """Read the data (format detected, CSV formats via the parquet cache)."""
        return load(self.path(), **options)

    def price_history(self, **options: Any) -> pl.DataFrame:
        """Kline bars before the crash (all bars when no crash time is known) — the window that
        population entry prices are drawn from."""
        if self.kind != "klines":
            raise InvalidInput("scenario", self.name, f"is {self.kind}, price history needs klines")
        frame = self.load(**options).frame
        if self.crash_start_ns is None:
            return frame
        return frame.filter(pl.col("ts_ns") < self.crash_start_ns)


_BUNDLED = (
    Scenario(
        name="2021-05-19", kind="klines", symbol="BTCUSDT", tick_size=Decimal("0.01"),
        description="Binance BTCUSDT perpetual 1m klines, 2021-05-19 ('Black Wednesday'): open "
        "42,882.54, low 28,688.00 at 13:10 UTC (-26% in 51 min from 12:19), close 36,689.14.",
        source="Binance public data (USDⓈ-M monthly klines) via github.com/owlacar-dotcom/isda; "
        "see datasets/klines/SOURCE.md",
        resource="klines/BTCUSDT-1m-2021-05-19.csv", format="binance_klines",
        crash_start_ns=_utc_ns("2021-05-19 12:19"), crash_low_ns=_utc_ns("2021-05-19 13:10"),
        facts={"liquidated_usd_all_venues": 8.6e9, "long_share": 0.88,
               "btc_liquidated_usd": 3.57e9, "btc_long_liquidated_usd": 3.19e9,
               "binance_liquidated_usd": 1.0e9, "binance_btc_oi_after_usd": 2.93e9, "btc_oi_change": -0.26,
               "crash_window": ("12:19", "13:10"),
               "insurance_fund_before_usd": 291_853_183.0, "insurance_fund_after_usd": 288_718_799.0,
               "insurance_fund_source": "Binance BTC/ETH USDⓈ-M fund 19 → 20 May 2021, as quoted from "
                                        "coalexander.com (C. Alexander) on bitcointalk.org; secondary source"},
        open_interest_usd=2.93e9 / (1 - 0.26),
        open_interest_source="Binance BTC open interest before the day: $2.93 B after a −26% day (Bybt, "
                             "CRASH_FACTS) → 2.93 / 0.74 = $3.96 B",
    ),
    Scenario(
        name="2025-10-10", kind="klines", symbol="BTCUSDT", tick_size=Decimal("0.1"),
        description="Binance BTCUSDT perpetual 1m klines, 2025-10-10 (tariff shock, largest "
        "liquidation day on record): open 121,579.40, low 101,516.50 at 21:20 UTC (-13% in 36 min "
        "from 20:44), close 112,714.90.",
        source="Binance public data (USDⓈ-M monthly klines) via github.com/owlacar-dotcom/isda; "
        "see datasets/klines/SOURCE.md",
        resource="klines/BTCUSDT-1m-2025-10-10.csv", format="binance_klines",
        crash_start_ns=_utc_ns("2025-10-10 20:44"), crash_low_ns=_utc_ns("2025-10-10 21:20"),
        facts={"liquidated_usd_all_venues": 19.1e9, "long_share": 0.87,
               "btc_liquidated_usd": 5.39e9, "btc_long_liquidated_usd": 4.69e9,
               "binance_liquidated_usd": 2.41e9,
               "binance_btc_oi_before_usd": 16e9, "binance_btc_oi_after_usd": 12e9,
               "peak_minute": "21:15", "peak_minute_source": "Amberdata: peak minute 21:15 UTC, $3.21 B",
               "insurance_fund_before_usd": 1.23e9, "insurance_fund_after_usd": 1.04e9,
               "insurance_fund_source": "Binance BTC/ETH/BNB USDⓈ-M fund $1.23 B → $1.04 B (Binance Square "
                                        "posts, CRASH_FACTS)"},
        open_interest_usd=16e9,
        open_interest_source="Binance BTC open interest before the crash: $16 B (→ $12 B; CoinGlass, "
                             "Glassnode, CoinDesk via CRASH_FACTS)",
    ),
    Scenario(
        name="btcusdt-20240808-l2", kind="l2", symbol="BTCUSDT", tick_size=Decimal("0.1"),
        description="Binance USDⓈ-M BTCUSDT raw websocket capture 2024-08-08 23:54:15 -> 23:59:59 "
        "UTC: REST snapshot, depth@0ms diffs, bookTicker, trades (rebound after the 08-05 crash).",
        source="hftbacktest example data (github.com/nkaz001/hftbacktest, MIT), examples/usdm/, "
        "commit 5f3ec40b2afb; see datasets/l2/SOURCE.md",
        resource="l2/btcusdt_20240808.gz", format="binance_capture",
    ),
)
_BY_NAME = {s.name: s for s in _BUNDLED}


def list_scenarios() -> list[Scenario]:
    """The bundled scenarios, in the table's order."""
    return list(_BUNDLED)


def scenario_names() -> list[str]:
    """Names accepted by ``--scenario`` besides paths."""
    return [s.name for s in _BUNDLED]


def get_scenario(name_or_path: str | Path) -> Scenario:
    """A bundled scenario by name, or a user file by path (format detected).

    Anything that is neither a bundled name nor an existing file → InvalidInput listing the names.
    """
    key = str(name_or_path)
    if key in _BY_NAME:
        return _BY_NAME[key]
    path = Path(key).expanduser()
    if not path.is_file():
        raise InvalidInput("scenario", key, "is neither a bundled scenario nor an existing file; "
                           f"bundled: {', '.join(scenario_names())}")
    fmt = detect_format(path)
    from deleverage.data.instruments import symbol_from_name

    symbol = symbol_from_name(path.name)  # what the name says; the replay decides (data/instruments.py)
    return Scenario(
        name=path.name, kind=_KIND_OF_FORMAT.get(fmt, fmt), symbol=symbol, tick_size=None,
        description=f"user file ({fmt})", source=str(path), file_path=path, format=fmt,
    )


def load_scenario(name_or_path: str | Path, **options: Any) -> LoadedData:
    """Resolve and read in one call."""
    return get_scenario(name_or_path).load(**options)


__all__ = [
    "Scenario",
    "get_scenario",
    "list_scenarios",
    "load_scenario",
    "scenario_names",
]
