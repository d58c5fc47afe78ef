"""``/v1/stream`` over a real websocket (uvicorn + the websockets client) and ``/metrics``."""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from deleverage.service.app import create_app

from .live import serving
from .service_kit import ALICE, FEED, READ, ManualClock, config


def _post(http: httpx.Client, url: str, body: dict) -> dict:  # type: ignore[type-arg]
    r = http.post(url, json=body, headers=FEED)
    assert r.status_code == 200, r.text
    return r.json()


def _scenario(http: httpx.Client) -> list[dict]:  # type: ignore[type-arg]
    out = [_post(http, "/v1/accounts/alice/deposit", {"asset": "USDT", "amount": "6000", "ts_ns": 1}),
           _post(http, "/v1/accounts/bob/deposit", {"asset": "USDT", "amount": "9000", "ts_ns": 1}),
           _post(http, "/v1/accounts/alice/fills", {"symbol": "BTCUSDT", "side": "buy", "qty": "1", "price": "60000",
                                                    "ts_ns": 2}),
           _post(http, "/v1/accounts/bob/fills", {"symbol": "BTCUSDT", "side": "sell", "qty": "1", "price": "60000",
                                                  "ts_ns": 2}),
           _post(http, "/v1/book", {"symbol": "BTCUSDT", "bids": [["54150", "5"]], "asks": [["54250", "5"]],
                                    "ts_ns": 3})]
    for i, price in enumerate(["57000", "54200", "54300"]):
        out.append(_post(http, "/v1/marks", {"symbol": "BTCUSDT", "price": price, "ts_ns": 10 + i}))
    return out


def _read_until(ws, seq: int, limit: int = 500) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    """Messages up to and including those of input ``seq`` (the last message of the stream then is
    a ``commit`` of that seq when that channel is on, else a message of ``seq``)."""
    got = []
    while len(got) < limit:
        try:
            message = json.loads(ws.recv(timeout=5))
        except TimeoutError:
            break
        got.append(message)
        if message.get("channel") == "commit" and message["seq"] >= seq:
            break
    return got


@pytest.fixture
def live(tmp_path):  # noqa: ANN001, ANN201
    with serving(create_app(config(tmp_path / "e.db"), clock_ns=ManualClock())) as url:
        with httpx.Client(base_url=url, timeout=10) as http:
            yield url.replace("http://", "ws://"), http


def test_decisions_are_pushed_live_and_a_resume_from_a_seq_replays_the_rest(live):
    ws_url, http = live
    with pytest.raises(InvalidStatus) as refused:  # no key: the handshake is answered 401
        connect(ws_url + "/v1/stream")
    assert refused.value.response.status_code == 401
    with connect(ws_url + "/v1/stream?channels=audit,liquidation,commit",
                 additional_headers=READ) as ws:
        hello = json.loads(ws.recv(timeout=5))
        assert hello == {"channel": "hello", "seq": 0, "since": None, "channels": ["audit", "commit", "liquidation"]}
        answers = _scenario(http)
        live_messages = _read_until(ws, answers[-1]["seq"])
    hit = answers[6]  # the mark at 54200 liquidates alice
    liquidations = [m for m in live_messages if m["channel"] == "liquidation"]
    assert [m["seq"] for m in liquidations] == [hit["seq"]]
    assert liquidations[0]["data"] == hit["liquidations"][0]["data"]  # the record, as the input answered
    stored = http.get("/v1/events", headers=READ).json()["items"]
    decisions = [m for m in live_messages if m["channel"] == "audit"]
    assert [(m["seq"], m["kind"], m["data"]) for m in decisions] == [(e["seq"], e["kind"], e["data"]) for e in stored]
    # a client that saw everything up to the input before the liquidation resumes from there
    since = hit["seq"] - 1
    with connect(f"{ws_url}/v1/stream?since={since}&channels=audit,liquidation", additional_headers=READ) as ws:
        hello = json.loads(ws.recv(timeout=5))
        assert (hello["seq"], hello["since"]) == (answers[-1]["seq"], since)
        resumed = [json.loads(ws.recv(timeout=5)) for _ in range(len(decisions) + len(liquidations))]
        _post(http, "/v1/marks", {"symbol": "BTCUSDT", "price": "53000", "ts_ns": 30})  # then live again
    expected = [m for m in live_messages if m["channel"] != "commit" and m["seq"] > since]
    assert resumed == expected


def test_a_scoped_reader_streams_only_its_accounts(live):
    ws_url, http = live
    with connect(f"{ws_url}/v1/stream?channels=audit,liquidation,input", additional_headers=ALICE) as ws:
        json.loads(ws.recv(timeout=5))
        answers = _scenario(http)
        got = []
        while True:
            try:
                got.append(json.loads(ws.recv(timeout=2)))
            except TimeoutError:
                break
    assert got and {m["account_id"] for m in got} == {"alice"}
    assert {m["channel"] for m in got} == {"audit", "liquidation", "input"}
    assert max(m["seq"] for m in got) <= answers[-1]["seq"]
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{ws_url}/v1/stream?channels=nonsense", additional_headers=READ)
    assert refused.value.response.status_code == 422


def test_metrics_report_inputs_commits_and_the_store_seq(live):
    _, http = live
    answers = _scenario(http)
    http.post("/v1/marks", json={"symbol": "BTCUSDT", "price": "-1"}, headers=FEED)  # refused
    assert http.get("/metrics").status_code == 401
    assert http.get("/metrics", headers=ALICE).status_code == 403
    r = http.get("/metrics", headers=READ)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line and not line.startswith("#")}
    assert samples['deleverage_inputs_total{kind="mark",outcome="accepted"}'] == 3
    assert samples['deleverage_inputs_total{kind="mark",outcome="refused"}'] == 1
    assert samples["deleverage_store_seq"] == answers[-1]["seq"]
    assert samples["deleverage_commit_seconds_count"] >= 1
    assert samples["deleverage_commit_group_inputs_sum"] == answers[-1]["seq"]
    assert samples["deleverage_ready"] == 1
    for name in ("deleverage_input_latency_seconds_bucket", "deleverage_input_lag_seconds",
                 "deleverage_pending_inputs", "deleverage_snapshot_seq", "deleverage_stream_subscribers"):
        assert name in text
