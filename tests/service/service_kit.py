"""Shared set-up for the service tests: a config on a temporary SQLite file, keys, one liquidation scenario.

Scenario (BTCUSDT, flat maintenance rate 0.4%, Binance preset): alice deposits 6000 USDT and buys 1 BTC
at 60000 from the market. Her liquidation price solves 6000 + (p − 60000) = 0.004·p, i.e.
p = 54000 / 0.996 = 54216.87 (closed form), so a mark of 54300 leaves her alone and 54200 liquidates her.
The book's best bid is 54150 with 5 BTC, above her bankruptcy price 54000, so the IOC closes the whole
BTC there. The fee is 0.5% of 54150 = 270.75 USDT, capped by what is left of her margin,
6000 − (60000 − 54150) = 150 USDT, which goes to the insurance fund (100000 → 100150).

The services here run on a manual clock at 0 ns, so the scenario's small timestamps (1, 2, 3 ns...)
lie inside the default time window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from deleverage.service import ServiceConfig
from deleverage.service.app import create_app
from deleverage.service.auth import hash_key

FEEDER_KEY = "feeder-secret-key"
READER_KEY = "reader-secret-key"
ALICE_KEY = "alice-only-key"
FEED = {"Authorization": f"Bearer {FEEDER_KEY}"}
READ = {"Authorization": f"Bearer {READER_KEY}"}
ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}


class ManualClock:
    """The server clock of a test: ns, moved by hand."""

    def __init__(self, now_ns: int = 0) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


def keys() -> list[dict[str, Any]]:
    return [
        {"name": "feed-1", "role": "feeder", "sha256": hash_key(FEEDER_KEY)},
        {"name": "dash", "role": "reader", "sha256": hash_key(READER_KEY)},
        {"name": "alice-desk", "role": "reader", "sha256": hash_key(ALICE_KEY), "accounts": ["alice"]},
    ]


def config(db: Path, **overrides: Any) -> ServiceConfig:
    data = {
        "database_url": f"sqlite:///{db}",
        "policy": "binance",
        "instruments": ["BTCUSDT"],
        "insurance_fund": {"USDT": "100000"},
        "maintenance_tiers": {"BTCUSDT": "flat:0.004"},
        "api_keys": keys(),
        "snapshot_fork": False,
    }
    data.update(overrides)
    return ServiceConfig.from_dict(data)


def client(cfg: ServiceConfig, clock: ManualClock | None = None, **kwargs: Any) -> TestClient:
    """A started TestClient (lifespan run: the writer is up); close it with :func:`close`."""
    c = TestClient(create_app(cfg, clock_ns=clock or ManualClock()), **kwargs)
    c.__enter__()
    return c


def post(c: TestClient, url: str, body: dict[str, Any], expect: int = 200, **headers: str) -> dict[str, Any]:
    r = c.post(url, json=body, headers={**FEED, **headers})
    assert r.status_code == expect, (url, body, r.status_code, r.text)
    return r.json()


def get(c: TestClient, url: str, headers: dict[str, str] | None = None, **params: Any) -> dict[str, Any]:
    r = c.get(url, headers=headers or READ, params=params)
    assert r.status_code == 200, (url, r.status_code, r.text)
    return r.json()


def open_alice(c: TestClient) -> None:
    post(c, "/v1/accounts/alice/deposit", {"asset": "USDT", "amount": "6000", "ts_ns": 1})
    post(c, "/v1/accounts/alice/fills", {"symbol": "BTCUSDT", "side": "buy", "qty": "1", "price": "60000",
                                         "ts_ns": 2})
    post(c, "/v1/book", {"symbol": "BTCUSDT", "bids": [["54150", "5"], ["54100", "5"]],
                         "asks": [["54250", "5"]], "ts_ns": 3})


MARKS = ["59000", "57000", "55000", "54300", "54200", "54100"]


def run_scenario(c: TestClient) -> list[dict[str, Any]]:
    """Open alice, then post the falling marks; returns each mark's response."""
    open_alice(c)
    return [post(c, "/v1/marks", {"symbol": "BTCUSDT", "price": p, "ts_ns": 10 + i}) for i, p in enumerate(MARKS)]


def close(c: TestClient) -> None:
    c.__exit__(None, None, None)
