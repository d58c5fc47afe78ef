"""The service on a real PostgreSQL: round trip and restart, one writer (advisory lock), and a
database restart under the running server — /v1/health stays up, /v1/ready and writes say 503 while
the database is away, and the server reconnects by itself and carries on from the same sequence."""

from __future__ import annotations

import time

import httpx
import pytest

from deleverage.service.app import create_app
from deleverage.service.core import Service
from deleverage.service.store import StoreLocked

from .live import serving
from .pg_cluster import Cluster
from .service_kit import FEED, READ, ManualClock, client, close, config, get, post, run_scenario


def _pg_config(url: str, tmp_path, **extra):  # noqa: ANN001, ANN003, ANN202
    return config(tmp_path / "unused.db", database_url=url, state_dir=str(tmp_path / "state"), **extra)


def test_postgresql_store_round_trip_and_restart(pg_url, tmp_path):
    cfg = _pg_config(pg_url, tmp_path, snapshot_every=4)
    c = client(cfg)
    responses = run_scenario(c)
    assert any(r["liquidations"] for r in responses)
    key = {"Idempotency-Key": "pg-dep"}
    first = post(c, "/v1/accounts/bob/deposit", {"asset": "USDT", "amount": "7", "ts_ns": 20}, **key)
    before = get(c, "/v1/state")
    close(c)
    c = client(cfg)
    after = get(c, "/v1/state")
    assert (after["last_seq"], after["digest"], after["rows"]) == (before["last_seq"], before["digest"], before["rows"])
    again = c.post("/v1/accounts/bob/deposit", json={"asset": "USDT", "amount": "7", "ts_ns": 20},
                   headers={**FEED, **key})
    assert again.json() == first and again.headers["idempotent-replayed"] == "true"
    assert get(c, "/v1/accounts/bob")["balances"]["USDT"] == "7.00000000"
    close(c)


def test_a_second_server_on_the_same_database_refuses_to_start(pg_url, tmp_path):
    first = Service(_pg_config(pg_url, tmp_path), clock_ns=ManualClock())
    with pytest.raises(StoreLocked, match="holds this database's writer lock"):
        Service(_pg_config(pg_url, tmp_path / "other"), clock_ns=ManualClock())
    first.close()
    Service(_pg_config(pg_url, tmp_path), clock_ns=ManualClock()).close()  # released with the session


def test_the_server_reconnects_after_the_database_restarts(private_pg: Cluster, tmp_path):
    pg_cluster = private_pg
    with pg_cluster.database() as pg_url:
        _reconnects(pg_cluster, pg_url, tmp_path)


def _reconnects(pg_cluster: Cluster, pg_url: str, tmp_path) -> None:  # noqa: ANN001
    cfg = _pg_config(pg_url, tmp_path, store_retry_s=0.1)
    with serving(create_app(cfg, clock_ns=ManualClock())) as url, httpx.Client(base_url=url, timeout=10) as http:
        for i in range(5):
            r = http.post("/v1/accounts/bob/deposit", json={"asset": "USDT", "amount": "1", "ts_ns": i}, headers=FEED)
            assert r.status_code == 200
        assert http.get("/v1/ready").status_code == 200
        pg_cluster.restart(down_s=1.5)  # every connection of the server is cut; the database is back after
        # the first write after the restart finds a dead connection: 503, the documented JSON, a retry hint
        r = http.post("/v1/accounts/bob/deposit", json={"asset": "USDT", "amount": "1", "ts_ns": 10}, headers=FEED)
        if r.status_code != 200:  # (the heartbeat may have reconnected already)
            assert r.status_code == 503 and set(r.json()) == {"error", "field"} and "retry-after" in r.headers
        assert http.get("/v1/health").status_code == 200  # liveness throughout
        deadline = time.monotonic() + 20
        while http.get("/v1/ready").status_code != 200:
            assert time.monotonic() < deadline, http.get("/v1/ready").text
            time.sleep(0.1)
        for i in range(11, 14):
            r = http.post("/v1/accounts/bob/deposit", json={"asset": "USDT", "amount": "1", "ts_ns": i}, headers=FEED)
            assert r.status_code == 200, r.text
        state = http.get("/v1/state", headers=READ).json()
        balance = http.get("/v1/accounts/bob", headers=READ).json()["balances"]["USDT"]
        assert state["rows"]["inputs"] == state["last_seq"] == int(float(balance))  # nothing lost, nothing doubled
    c = client(cfg)
    assert get(c, "/v1/state")["digest"] == state["digest"]  # and the store replays to the same head
    close(c)


def test_ready_tells_the_truth_while_the_database_is_down(private_pg: Cluster, tmp_path):
    with private_pg.database() as pg_url:
        _ready_while_down(private_pg, pg_url, tmp_path)


def _ready_while_down(pg_cluster: Cluster, pg_url: str, tmp_path) -> None:  # noqa: ANN001
    import subprocess  # noqa: PLC0415

    from .pg_cluster import _as_owner  # noqa: PLC0415

    assert pg_cluster.bindir is not None and pg_cluster.data is not None
    cfg = _pg_config(pg_url, tmp_path, store_retry_s=0.1)
    pg_ctl = str(pg_cluster.bindir / "pg_ctl")
    with serving(create_app(cfg, clock_ns=ManualClock())) as url, httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/v1/ready").json()["ready"] is True
        subprocess.run(_as_owner([pg_ctl, "-D", str(pg_cluster.data), "-m", "fast", "-w", "stop"]), check=True,
                       capture_output=True, timeout=60)
        try:
            r = http.get("/v1/ready")  # no write happened: the check itself finds the database gone
            assert r.status_code == 503 and r.json()["ready"] is False
            assert r.json()["checks"]["store"] != "reachable"
            assert http.get("/v1/health").json()["status"] == "ok"
            r = http.post("/v1/marks", json={"symbol": "BTCUSDT", "price": "60000", "ts_ns": 1}, headers=FEED)
            assert r.status_code == 503 and r.json()["field"] is None
        finally:
            subprocess.run(_as_owner([pg_ctl, "-D", str(pg_cluster.data), "-w", "-l", str(pg_cluster.data / "log"),
                                      "start"]), check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 20
        while http.get("/v1/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert http.post("/v1/marks", json={"symbol": "BTCUSDT", "price": "60000", "ts_ns": 1},
                         headers=FEED).status_code == 200
