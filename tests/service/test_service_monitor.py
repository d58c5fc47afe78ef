"""The service's risk monitor: samples off the write path, /metrics names, the stream channel, alerts.

Scenario (service_kit's, on second-spaced event times): alice deposits 6000 USDT and buys 1 BTC at
60000; her liquidation price is 54000 / 0.996 = 54216.87 (closed form). Marks 59000, 57000, 55000,
54300, 54200 (she is liquidated: 1 BTC at the trigger mark 54200, the fee 150 USDT to the fund), 54100,
one a second. The monitor samples every second of event time: one sample after each input.
Hand-computed truths:

* open interest at the 10 s sample: 1 BTC at 59000 = 59000 USDT; 0 after the liquidation;
* liquidated notional over 5 s at 15 s: 54200 USDT (one record, 1000 lots); the window's base is the
  latest sample at or before 10 s — the 10 s one, 59000 USDT — so the ratio is 54200 / 59000;
* within 1 % of the mark 54300 (13 s) the band's long level is ⌈54300 × 0.99⌉ = 53757 ≤ 54216.87:
  alice (54300 USDT) is at risk; at 55000 (12 s) the 1 % level 54450 is above her price, the 2 % one
  (53900) below it;
* the fund: 100000 + 150 = 100150 USDT.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from deleverage.engine.monitor import MonitorConfig, RiskMonitor
from deleverage.errors import InvalidInput
from deleverage.service import ServiceConfig
from deleverage.service.follower import monitor_root
from deleverage.service.state import ServiceState

from . import service_kit as kit
from .webhook import Receiver, closed_port_url

S = 1_000_000_000
NOW = 3_000 * S  # the manual server clock: every input below is within its time window
STEPS: list[tuple[str, str | None, dict[str, Any]]] = [
    ("deposit", "alice", {"asset": "USDT", "amount": "6000", "ts_ns": 1 * S}),
    ("fill", "alice", {"symbol": "BTCUSDT", "side": "buy", "qty": "1", "price": "60000", "ts_ns": 2 * S}),
    ("book", None, {"symbol": "BTCUSDT", "bids": [["54150", "5"], ["54100", "5"]], "asks": [["54250", "5"]],
                    "ts_ns": 3 * S}),
    *[("mark", None, {"symbol": "BTCUSDT", "price": p, "ts_ns": (10 + i) * S})
      for i, p in enumerate(["59000", "57000", "55000", "54300", "54200", "54100"])],
]
ROUTES = {"deposit": "/v1/accounts/{a}/deposit", "fill": "/v1/accounts/{a}/fills", "book": "/v1/book",
          "mark": "/v1/marks"}
MONITOR = {"windows": ["5s", "1m"], "bands_pct": [1, 2], "sample_every_ms": 1000, "map_levels": 20}
RULES = [
    {"name": "liquidations-5s", "metric": "liquidation_ratio", "window": "5s", "threshold": 0.5,
     "clear_threshold": 0.1, "severity": "critical"},
    {"name": "near-the-mark", "metric": "notional_at_risk", "band": "1%", "threshold": 50_000},
]


def monitored(db: Path, monitor: dict[str, Any] | None = None, rules: list[dict[str, Any]] | None = None,
              **overrides: Any) -> ServiceConfig:
    return kit.config(db, monitor={**MONITOR, **(monitor or {})}, alerts=RULES if rules is None else rules,
                      **overrides)


def start(cfg: ServiceConfig) -> Any:
    return kit.client(cfg, kit.ManualClock(NOW))


def run(c: Any, steps: list[tuple[str, str | None, dict[str, Any]]] = STEPS) -> None:
    for kind, account, body in steps:
        kit.post(c, ROUTES[kind].format(a=account), body)


def caught_up(c: Any, seq: int, timeout: float = 180.0) -> dict[str, Any]:
    """/v1/monitor once the follower applied ``seq`` and reported a sample after it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = kit.get(c, "/v1/monitor")
        latest = body["latest"]
        if body["monitor"]["seq"] >= seq and latest is not None and latest["seq"] >= seq:
            return body
        assert body["monitor"]["error"] is None, body["monitor"]["error"]
        time.sleep(0.05)
    raise AssertionError(f"the monitor did not reach seq {seq}: {kit.get(c, '/v1/monitor')['monitor']}")


def samples(c: Any) -> list[dict[str, Any]]:
    return [json.loads(s.text) for s in c.app.state.monitor.samples]


def metrics(c: Any) -> dict[str, float]:
    out = {}
    for line in c.get("/metrics", headers=kit.READ).text.splitlines():
        if line.startswith("deleverage_") and " " in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def alert_rows(cfg: ServiceConfig) -> list[dict[str, Any]]:
    db = sqlite3.connect(monitor_root(cfg) / "alerts.db")
    try:
        cols = ("id", "seq", "kind", "alert_id", "sink", "rule", "delivery", "attempts", "status", "error")
        return [dict(zip(cols, r, strict=True)) for r in db.execute(f"SELECT {', '.join(cols)} FROM alerts ORDER BY id")]
    finally:
        db.close()


def wait_for(predicate: Any, timeout: float = 90.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --- the numbers ---------------------------------------------------------------------------------------------
def test_samples_on_event_time_match_closed_forms_and_metrics(tmp_path: Path) -> None:
    c = start(monitored(tmp_path / "e.db"))
    try:
        run(c)
        caught_up(c, len(STEPS))
        got = samples(c)
        assert [m["seq"] for m in got] == list(range(1, len(STEPS) + 1))  # one sample after each input
        assert [m["sample"] for m in got] == list(range(len(STEPS)))
        by_ts = {m["ts_ns"] // S: m["snapshot"] for m in got}
        btc = {t: snap["symbols"]["BTCUSDT"] for t, snap in by_ts.items()}
        assert btc[10]["open_interest"]["notional"] == 59_000.0
        assert btc[10]["open_interest"]["lots"] == 1000
        assert btc[12]["at_risk"]["1%"]["accounts"] == 0 and btc[12]["at_risk"]["2%"]["accounts"] == 1
        assert btc[13]["at_risk"]["1%"]["long"]["notional"] == 54_300.0
        assert btc[13]["at_risk"]["1%"]["long_level_ticks"] == 537_570  # ⌈54300 × 0.99⌉ in 0.1 ticks
        five = btc[15]["liquidations"]["5s"]
        assert (five["count"], five["lots"], five["notional"]) == (1, 1000, 54_200.0)
        assert five["base_ts_ns"] == 10 * S and five["ratio"] == 54_200 / 59_000
        assert btc[15]["open_interest"]["lots"] == 0
        assert by_ts[15]["insurance_fund"]["USDT"]["balance"] == 100_150.0
        assert by_ts[15]["engine"]["liquidations"] == 1  # counted although the service drains engine.records
        # /metrics exports the latest sample under these exact names
        m = metrics(c)
        assert m['deleverage_liquidation_ratio{symbol="BTCUSDT",window="5s"}'] == 54_200 / 59_000
        assert m['deleverage_open_interest{symbol="BTCUSDT"}'] == 0.0
        assert m['deleverage_notional_at_risk{band="1%",symbol="BTCUSDT"}'] == 0.0
        assert m['deleverage_insurance_fund{asset="USDT"}'] == 100_150.0
        assert m['deleverage_mark_price{symbol="BTCUSDT"}'] == 54_100.0
        assert m["deleverage_monitor_seq"] == len(STEPS) and m["deleverage_monitor_lag_inputs"] == 0
        assert m["deleverage_monitor_up"] == 1.0
    finally:
        kit.close(c)


def test_the_follower_equals_a_monitor_on_the_undrained_engine(tmp_path: Path) -> None:
    """Independent path: the same inputs driven into a ServiceState's engine directly (its record list
    never drained), sampled by a plain RiskMonitor that reads engine.records. Byte-identical snapshots."""
    cfg = monitored(tmp_path / "e.db")
    c = start(cfg)
    try:
        run(c)
        caught_up(c, len(STEPS))
        served = [m["snapshot"] for m in samples(c)]
    finally:
        kit.close(c)
    state = ServiceState(cfg)
    engine, ledger = state.engine, state.ledger
    monitor = RiskMonitor(engine, MonitorConfig(**MONITOR))
    local = []
    inst = state.instruments["BTCUSDT"]
    for kind, account, body in STEPS:
        ts = body["ts_ns"]
        if kind == "deposit":
            ledger.open_account(account)
            ledger.deposit(account, "USDT", inst.settle.to_minor(body["amount"]), ts, reason="deposit")
            engine.on_position_changed(account)
        elif kind == "fill":
            ledger.apply_fill(buyer=account, seller="market", instrument=inst, price_ticks=600_000, qty_lots=1000,
                              ts_ns=ts, reason="fill")
            engine.on_position_changed(account)
        elif kind == "book":
            state.books["BTCUSDT"].apply_snapshot([[541_500, 5000], [541_000, 5000]], [[542_500, 5000]],
                                                  last_update_id=1)
        else:
            engine.on_mark("BTCUSDT", inst.price_to_ticks(body["price"]), ts)
        local.append(json.loads(monitor.sample(ts).to_json()))
    assert len(engine.records) == 1  # this engine kept its record: the monitor read it there
    assert served == local


def test_stream_channel_resumes_without_gaps_or_repeats(tmp_path: Path) -> None:
    c = start(monitored(tmp_path / "e.db"))
    try:
        run(c, STEPS[:5])
        caught_up(c, 5)
        with c.websocket_connect("/v1/stream?channels=monitor&since=0", headers={**kit.READ}) as ws:
            assert ws.receive_json()["channel"] == "hello"
            first = [ws.receive_json() for _ in range(5)]
            assert [m["seq"] for m in first] == [1, 2, 3, 4, 5]
        with c.websocket_connect("/v1/stream?channels=monitor&since=3", headers={**kit.READ}) as ws:
            ws.receive_json()
            resumed = [ws.receive_json() for _ in range(2)]
            run(c, STEPS[5:])
            resumed += [ws.receive_json() for _ in range(len(STEPS) - 5)]
        assert [m["seq"] for m in resumed] == list(range(4, len(STEPS) + 1))
        assert [m["sample"] for m in resumed] == list(range(3, len(STEPS)))
        assert resumed[:2] == first[3:]
        with c.websocket_connect("/v1/stream?channels=monitor", headers={**kit.READ}) as ws:  # no since: the latest
            ws.receive_json()
            assert ws.receive_json()["seq"] == len(STEPS)
        with pytest.raises(Exception):  # noqa: B017 — a scoped key: venue-wide channels refused
            with c.websocket_connect("/v1/stream?channels=monitor", headers={**kit.ALICE}) as ws:
                ws.receive_json()
    finally:
        kit.close(c)


def test_on_demand_sample_changes_nothing_later(tmp_path: Path) -> None:
    cfg = monitored(tmp_path / "e.db")
    c = start(cfg)
    try:
        run(c, STEPS[:6])
        caught_up(c, 6)
        peeked = c.post("/v1/monitor/sample", headers=kit.READ).json()
        assert peeked["on_demand"] is True and peeked["seq"] == 6
        assert peeked["snapshot"]["ts_ns"] == 12 * S  # the last input's event time
        run(c, STEPS[6:])
        caught_up(c, len(STEPS))
        with_peek = [m["snapshot"] for m in samples(c)]
    finally:
        kit.close(c)
    c = start(monitored(tmp_path / "f.db"))
    try:
        run(c)
        caught_up(c, len(STEPS))
        without = [m["snapshot"] for m in samples(c)]
    finally:
        kit.close(c)
    assert with_peek == without


# --- alerts ---------------------------------------------------------------------------------------------
def test_alerts_go_to_the_log_and_the_webhook_once_across_restarts(tmp_path: Path) -> None:
    receiver = Receiver()
    cfg = monitored(tmp_path / "e.db", monitor={"webhooks": [receiver.url]})
    try:
        c = start(cfg)
        try:
            run(c)
            caught_up(c, len(STEPS))
            wait_for(lambda: len(receiver.received()) == 3, what="three webhook POSTs")
            wait_for(lambda: all(r["delivery"] == "delivered" for r in alert_rows(cfg)), what="delivered")
            listed = kit.get(c, "/v1/alerts")
        finally:
            kit.close(c)
        got = receiver.received()
        assert [(b["event"], b["rule"], b["ts_ns"]) for b in got] == [  # at 14 s alice is gone: near-the-mark clears
            ("alert_fired", "near-the-mark", 13 * S), ("alert_cleared", "near-the-mark", 14 * S),
            ("alert_fired", "liquidations-5s", 15 * S)]
        assert got[0]["value"] == 54_300.0 and got[0]["labels"] == {"band": "1%", "symbol": "BTCUSDT"}
        assert got[2]["value"] == 54_200 / 59_000 and got[2]["labels"] == {"symbol": "BTCUSDT", "window": "5s"}
        assert got[2]["alert_id"] == "liquidations-5s{symbol=BTCUSDT,window=5s}@15000000000"
        assert got[2]["severity"] == "critical"
        assert [i["kind"] for i in listed["items"]] == ["alert_fired", "alert_cleared", "alert_fired"]
        rows = alert_rows(cfg)
        assert [(r["seq"], r["rule"], r["delivery"], r["attempts"]) for r in rows] == [
            (7, "near-the-mark", "delivered", 1), (8, "near-the-mark", "delivered", 1),
            (9, "liquidations-5s", "delivered", 1)]
        # a restart recomputes the same transitions (from the monitor's snapshot) and sends nothing again
        c = start(cfg)
        try:
            caught_up(c, len(STEPS))
            kit.post(c, "/v1/marks", {"symbol": "BTCUSDT", "price": "54000", "ts_ns": 16 * S})
            caught_up(c, len(STEPS) + 1)
            time.sleep(0.5)
        finally:
            kit.close(c)
        assert len(receiver.received()) == 3
        assert alert_rows(cfg) == rows
        # without its snapshot the monitor replays from the genesis: the same again
        for snapshot in (monitor_root(cfg) / "snapshots").glob("snapshot-*.bin"):
            snapshot.unlink()
        c = start(cfg)
        try:
            caught_up(c, len(STEPS) + 1)
            time.sleep(0.5)
        finally:
            kit.close(c)
        assert len(receiver.received()) == 3 and alert_rows(cfg) == rows
    finally:
        receiver.close()


def test_a_pending_alert_is_redelivered_marked_and_new_rules_do_not_rewrite_history(tmp_path: Path) -> None:
    receiver = Receiver()
    cfg = monitored(tmp_path / "e.db", monitor={"webhooks": [receiver.url]})
    try:
        c = start(cfg)
        try:
            run(c)
            caught_up(c, len(STEPS))
            wait_for(lambda: len(receiver.received()) == 3, what="three webhook POSTs")
            wait_for(lambda: all(r["delivery"] == "delivered" for r in alert_rows(cfg)), what="delivered")
        finally:
            kit.close(c)
        db = sqlite3.connect(monitor_root(cfg) / "alerts.db")  # as if the process died before delivering
        db.execute("UPDATE alerts SET delivery = 'pending' WHERE rule = 'liquidations-5s'")
        db.commit()
        db.close()
        stricter = [*RULES, {"name": "any-liquidation", "metric": "liquidated_notional", "window": "1m",
                             "threshold": 0}]
        cfg2 = monitored(tmp_path / "e.db", monitor={"webhooks": [receiver.url]}, rules=stricter)
        c = start(cfg2)
        try:
            wait_for(lambda: len(receiver.received()) == 4, what="the redelivery")
            caught_up(c, len(STEPS))
            time.sleep(0.5)
        finally:
            kit.close(c)
        again = receiver.received()[3]
        assert again["redelivery"] is True and again["rule"] == "liquidations-5s"
        rows = alert_rows(cfg2)
        new = [r for r in rows if r["rule"] == "any-liquidation"]
        assert [(r["seq"], r["delivery"]) for r in new] == [(8, "suppressed")]  # history under the new rule
        assert len(receiver.received()) == 4  # the suppressed one was not sent
    finally:
        receiver.close()


def test_a_webhook_that_is_down_is_alert_undelivered_and_the_service_goes_on(tmp_path: Path) -> None:
    cfg = monitored(tmp_path / "e.db", monitor={"webhooks": [{"url": closed_port_url(), "attempts": 2,
                                                              "backoff_s": 0.01, "timeout_s": 1}]})
    c = start(cfg)
    try:
        run(c)
        caught_up(c, len(STEPS))
        wait_for(lambda: sum(r["kind"] == "alert_undelivered" for r in alert_rows(cfg)) == 3, what="undelivered")
        rows = alert_rows(cfg)
        fired = [r for r in rows if r["kind"] in ("alert_fired", "alert_cleared")]
        assert [r["delivery"] for r in fired] == ["undelivered"] * 3
        lost = [r for r in rows if r["kind"] == "alert_undelivered"]
        assert all(r["attempts"] == 2 and "connection failed" in r["error"] for r in lost)
        assert sorted(r["alert_id"] for r in lost) == sorted(r["alert_id"] for r in fired)
        assert lost[0]["sink"].startswith("http://127.0.0.1:") and "/hooks/down" in lost[0]["sink"]
        answer = kit.post(c, "/v1/marks", {"symbol": "BTCUSDT", "price": "54000", "ts_ns": 16 * S})
        assert answer["seq"] == len(STEPS) + 1
        caught_up(c, len(STEPS) + 1)
        assert metrics(c)['deleverage_alerts_total{kind="alert_undelivered"}'] == 3.0
        assert kit.get(c, "/v1/health")["status"] == "ok"
    finally:
        kit.close(c)


# --- configuration -------------------------------------------------------------------------------------
def test_monitor_config_from_toml_and_its_refusals(tmp_path: Path) -> None:
    path = tmp_path / "service.toml"
    path.write_text('[monitor]\nwindows = ["1m", "5m"]\nbands_pct = [1, 2.5]\nsample_every_ms = 500\n'
                    'webhooks = ["http://127.0.0.1:9/hook"]\n\n[[alerts]]\nname = "r"\nmetric = "liquidation_ratio"\n'
                    'window = "5m"\nthreshold = 0.02\n')
    cfg = ServiceConfig.load(path, env={})
    assert cfg.monitor is not None and cfg.monitor_on
    assert cfg.monitor.band_labels == ("1%", "2.5%") and cfg.monitor.sample_every_ms == 500
    assert cfg.monitor.webhooks[0].url == "http://127.0.0.1:9/hook" and cfg.alerts[0].window == "5m"
    env = {"DELEVERAGE_ALERT_WEBHOOKS": "https://a.example/x?token=s3cret,https://b.example/y"}
    hooked = ServiceConfig.load(path, env=env)
    assert [w.label() for w in hooked.monitor.webhooks] == ["https://a.example/x", "https://b.example/y"]  # type: ignore[union-attr]
    assert ServiceConfig.load(None, env={}).monitor is None  # no [monitor] table: no monitor
    bad = [
        ({"monitor": {}, "alerts": [{"name": "r", "metric": "liquidation_ratio", "window": "2h", "threshold": 1}]},
         "alerts[r].window"),
        ({"alerts": [{"name": "r", "metric": "open_interest", "threshold": 1}]}, "alerts"),
        ({"monitor": {"webhooks": ["ftp://x"]}}, "monitor.webhooks.0.url"),
        ({"monitor": {"windows": ["5 minutes"]}}, "monitor.windows"),
        ({"monitor": {"history": 0}}, "monitor.history"),
        ({"monitor": {}, "alerts": [{"name": "r", "metric": "nope", "threshold": 1}]}, "alerts.0.metric"),
    ]
    for data, field in bad:
        with pytest.raises(InvalidInput) as info:
            ServiceConfig.from_dict({"database_url": f"sqlite:///{tmp_path}/x.db", **data})
        assert info.value.field == field, (data, info.value)
    with pytest.raises(InvalidInput) as info:
        ServiceConfig.load(None, env=env)
    assert info.value.field == "DELEVERAGE_ALERT_WEBHOOKS"


def test_metrics_refuse_missing_wrong_and_scoped_keys(tmp_path: Path) -> None:
    c = start(monitored(tmp_path / "e.db"))
    try:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer not-a-key"}).status_code == 401
        assert c.get("/metrics", headers=kit.ALICE).status_code == 403
        assert c.get("/v1/monitor").status_code == 401
        assert c.get("/v1/monitor", headers=kit.ALICE).status_code == 403
        assert c.get("/v1/alerts", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/v1/monitor/sample").status_code == 401
        assert c.get("/metrics", headers=kit.READ).status_code == 200
    finally:
        kit.close(c)


def test_without_a_monitor_table_nothing_runs(tmp_path: Path) -> None:
    c = kit.client(kit.config(tmp_path / "e.db"))
    try:
        assert c.app.state.monitor is None
        assert kit.get(c, "/v1/monitor") == {"monitor": {"enabled": False}, "latest": None}
        assert c.post("/v1/monitor/sample", headers=kit.READ).status_code == 404
        assert "deleverage_open_interest" not in c.get("/metrics", headers=kit.READ).text
    finally:
        kit.close(c)


def test_the_monitor_process_is_restarted_when_it_dies(tmp_path: Path) -> None:
    c = start(monitored(tmp_path / "e.db"))
    try:
        run(c, STEPS[:4])
        caught_up(c, 4)
        hub = c.app.state.monitor
        hub._proc.kill()  # noqa: SLF001 — the child dies (OOM, a bug): the service must go on
        wait_for(lambda: hub.restarts == 1 and hub.up, what="a restarted monitor")
        run(c, STEPS[4:])
        caught_up(c, len(STEPS))
        assert hub.latest.seq == len(STEPS)
    finally:
        kit.close(c)
