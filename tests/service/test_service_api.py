"""HTTP API: auth by role, the liquidation scenario end to end, error mapping, exact decimal inputs."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pytest

from deleverage.errors import InvalidInput
from deleverage.service import ServiceConfig
from deleverage.service.auth import KeyRing, hash_key

from .service_kit import FEED, READ, client, close, config, get, open_alice, post, run_scenario


@pytest.fixture
def svc(tmp_path):  # noqa: ANN001, ANN201
    c = client(config(tmp_path / "events.db"))
    yield c
    close(c)


# --- auth ----------------------------------------------------------------------------------------
def test_hash_key_is_sha256_published_vector():
    # FIPS 180-2 example: SHA-256("abc")
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_keyring_identifies_only_exact_keys():
    cfg = config_keys = ServiceConfig.from_dict({"api_keys": [
        {"name": "a", "role": "feeder", "sha256": hash_key("k1")},
        {"name": "b", "role": "reader", "sha256": hashlib.sha256(b"k2").hexdigest().upper()}]})
    ring = KeyRing(cfg.api_keys)
    assert ring.identify("k1").name == "a" and ring.identify("k2").role == "reader"
    assert ring.identify("k1 ") is None and ring.identify("K1") is None and ring.identify("") is None
    assert config_keys.api_keys[1].sha256 == hashlib.sha256(b"k2").hexdigest()


def test_config_refuses_a_clear_text_key_in_place_of_its_hash():
    with pytest.raises(InvalidInput, match="api_keys"):
        ServiceConfig.from_dict({"api_keys": [{"name": "a", "role": "feeder", "sha256": "my-secret"}]})


def test_env_keys_and_database_url_override_the_file(tmp_path):
    path = tmp_path / "svc.toml"
    path.write_text('policy = "bybit"\ninstruments = ["BTCUSDT"]\n')
    env = {"DELEVERAGE_API_KEYS": f"feed:feeder:{hash_key('x')},dash:reader:{hash_key('y')}",
           "DELEVERAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'e.db'}"}
    cfg = ServiceConfig.load(path, env=env)
    assert cfg.policy == "bybit" and cfg.database_url.endswith("e.db")
    assert [(k.name, k.role) for k in cfg.api_keys] == [("feed", "feeder"), ("dash", "reader")]


def test_auth_by_role(svc):
    assert svc.get("/v1/health").status_code == 200  # no auth
    r = svc.get("/v1/state")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert svc.get("/v1/state", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert svc.get("/v1/state", headers={"Authorization": "Basic abc"}).status_code == 401
    assert svc.get("/v1/state", headers=READ).status_code == 200
    assert svc.get("/v1/state", headers=FEED).status_code == 200
    body = {"symbol": "BTCUSDT", "price": "60000", "ts_ns": 1}
    assert svc.post("/v1/marks", json=body).status_code == 401
    r = svc.post("/v1/marks", json=body, headers=READ)
    assert r.status_code == 403 and "reader" in r.json()["error"]
    assert get(svc, "/v1/state")["last_seq"] == 0  # the refused post stored nothing
    assert svc.post("/v1/marks", json=body, headers=FEED).status_code == 200
    assert get(svc, "/v1/inputs")["items"][0]["client"] == "feed-1"


# --- scenario ------------------------------------------------------------------------------------
def test_liquidation_scenario_end_to_end(svc):
    open_alice(svc)
    post(svc, "/v1/marks", {"symbol": "BTCUSDT", "price": "55000", "ts_ns": 10})
    alice = get(svc, "/v1/accounts/alice")
    assert alice["positions"][0]["qty"] == "1.000" and Decimal(alice["positions"][0]["entry_price"]) == 60000
    m = alice["margin"]["USDT"]
    # equity 6000 − 5000 = 1000; maintenance 0.4% × 55000 = 220
    assert Decimal(m["equity"]) == 1000 and Decimal(m["maintenance_margin"]) == 220 and not m["liquidatable"]
    quiet = post(svc, "/v1/marks", {"symbol": "BTCUSDT", "price": "54300", "ts_ns": 11})
    assert quiet["liquidations"] == []  # above the closed-form liquidation price 54216.87
    assert get(svc, "/v1/liquidations")["items"] == []
    hit = post(svc, "/v1/marks", {"symbol": "BTCUSDT", "price": "54200", "ts_ns": 12})
    [liq] = hit["liquidations"]
    assert (liq["account_id"], liq["qty"], liq["trigger_mark"]) == ("alice", "1.000", "54200.0")
    assert Decimal(liq["fill_vwap"]) == 54150 and liq["data"]["venue"] == "book"
    assert Decimal(liq["fee"]) == 150  # min(0.5% × 54150, 6000 − 5850)
    listed = get(svc, "/v1/liquidations")["items"]
    assert [i["id"] for i in listed] == [liq_id := listed[0]["id"]] and listed[0]["seq"] == hit["seq"]
    assert get(svc, "/v1/liquidations", since=liq_id)["items"] == []
    state = get(svc, "/v1/state")
    assert Decimal(state["engine"]["fund_balance"]["USDT"]) == Decimal("100150")
    usdt = state["totals"]["USDT"]
    assert usdt["conserved"] and Decimal(usdt["total_value"]) == Decimal("106000")  # fund seed + deposit
    assert get(svc, "/v1/accounts/alice")["positions"] == []
    kinds = [e["kind"] for e in get(svc, "/v1/events", account_id="alice")["items"]]
    assert "candidate_found" in kinds and "order_filled" in kinds
    assert all(e["kind"] == "order_filled" for e in get(svc, "/v1/events", kind="order_filled")["items"])


def test_every_output_names_the_input_that_caused_it(svc):
    responses = run_scenario(svc)
    liq_seq = next(r["seq"] for r in responses if r["liquidations"])
    events = get(svc, "/v1/events")["items"]
    assert events and {e["seq"] for e in events} == {liq_seq}
    postings = get(svc, "/v1/events", stream="posting")["items"]
    assert [p["seq"] for p in postings][:2] == [1, 2]  # the deposit and the opening fill


# --- errors --------------------------------------------------------------------------------------
def test_out_of_order_mark_is_409_and_stores_nothing(svc):
    post(svc, "/v1/marks", {"symbol": "BTCUSDT", "price": "60000", "ts_ns": 100})
    before = get(svc, "/v1/state")
    r = svc.post("/v1/marks", json={"symbol": "BTCUSDT", "price": "59000", "ts_ns": 99}, headers=FEED)
    assert r.status_code == 409 and "older than" in r.json()["error"] and "99" in r.json()["error"]
    after = get(svc, "/v1/state")
    assert after["rows"] == before["rows"] and after["digest"] == before["digest"]


@pytest.mark.parametrize(("url", "body", "field"), [
    ("/v1/marks", {"symbol": "BTCUSDT", "price": "abc"}, "price"),
    ("/v1/marks", {"symbol": "BTCUSDT", "price": "60000.05"}, "price"),  # off the 0.1 tick
    ("/v1/marks", {"symbol": "BTCUSDT", "price": 60000.0}, "price"),  # a JSON float is refused
    ("/v1/marks", {"symbol": "BTCUSDT", "price": "-1"}, "price"),
    ("/v1/marks", {"symbol": "DOGEUSDT", "price": "1"}, "symbol"),
    ("/v1/accounts/bob/deposit", {"asset": "USDT", "amount": "1e-9"}, "amount"),  # below 1e-8
    ("/v1/accounts/bob/deposit", {"asset": "USDT", "amount": "NaN"}, "amount"),
    ("/v1/accounts/bob/deposit", {"asset": "EUR", "amount": "1"}, "asset"),
    ("/v1/book", {"symbol": "BTCUSDT", "bids": [["54000", "1.0005"]], "asks": []}, "bids[0].qty"),
])
def test_bad_values_are_422_naming_the_field(svc, url, body, field):
    r = svc.post(url, json=body, headers=FEED)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert get(svc, "/v1/state")["rows"]["inputs"] == 0


def test_fill_with_bad_qty_names_qty_and_unknown_account_is_404(svc):
    open_alice(svc)
    r = svc.post("/v1/accounts/alice/fills", json={"symbol": "BTCUSDT", "side": "buy", "qty": "0.0005",
                                                   "price": "60000"}, headers=FEED)
    assert r.status_code == 422 and r.json()["field"] == "qty"
    assert svc.get("/v1/accounts/nobody", headers=READ).status_code == 404
    r = svc.post("/v1/accounts/nobody/fills", json={"symbol": "BTCUSDT", "side": "buy", "qty": "1",
                                                    "price": "60000"}, headers=FEED)
    assert r.status_code == 404 and r.json()["field"] == "account_id"


def test_withdrawals_are_limited_by_balance_and_maintenance(svc):
    open_alice(svc)
    post(svc, "/v1/marks", {"symbol": "BTCUSDT", "price": "60000", "ts_ns": 10})
    # equity 6000, maintenance 240: at most 5760 (exclusive) may leave
    r = svc.post("/v1/accounts/alice/withdraw", json={"asset": "USDT", "amount": "5760"}, headers=FEED)
    assert r.status_code == 422 and r.json()["field"] == "amount"
    post(svc, "/v1/accounts/alice/withdraw", {"asset": "USDT", "amount": "5759.99999999"})
    assert Decimal(get(svc, "/v1/accounts/alice")["balances"]["USDT"]) == Decimal("240.00000001")
    state = get(svc, "/v1/state")["totals"]["USDT"]
    assert state["conserved"] and Decimal(state["external_inflow"]) == Decimal("100240.00000001")


def test_crossed_book_snapshot_is_refused(svc):
    r = svc.post("/v1/book", json={"symbol": "BTCUSDT", "bids": [["60000", "1"]], "asks": [["59999", "1"]]},
                 headers=FEED)
    assert r.status_code == 422 and "crossed" in r.json()["error"]
    assert get(svc, "/v1/state")["rows"]["inputs"] == 0


def test_config_file_path_and_server_clock(tmp_path):
    path = tmp_path / "service.toml"
    path.write_text(
        f'database_url = "sqlite:///{tmp_path / "e.db"}"\npolicy = "binance"\ninstruments = ["BTCUSDT"]\n'
        f'maintenance_tiers = {{ BTCUSDT = "flat:0.004" }}\n\n[[api_keys]]\nname = "f"\nrole = "feeder"\n'
        f'sha256 = "{hash_key("k")}"\n')
    from fastapi.testclient import TestClient  # noqa: PLC0415

    from deleverage.service.app import create_app  # noqa: PLC0415

    app = create_app(path, clock_ns=lambda: 1_000)
    c, auth = TestClient(app), {"Authorization": "Bearer k"}
    assert c.post("/v1/marks", json={"symbol": "BTCUSDT", "price": "60000"}, headers=auth).status_code == 200
    assert c.get("/v1/inputs", headers=auth).json()["items"][0]["ts_ns"] == 1_000  # omitted → server clock
    r = c.post("/v1/oracle", json={"symbol": "BTCUSDT", "price": "60000", "ts_ns": 999}, headers=auth)
    assert r.status_code == 409 and r.json()["field"] == "ts_ns"
    assert c.post("/v1/oracle", json={"symbol": "BTCUSDT", "price": "60000.1", "ts_ns": 2_000},
                  headers=auth).status_code == 200
    assert c.post("/v1/advance", json={"ts_ns": 3_000}, headers=auth).status_code == 200
    assert [i["kind"] for i in c.get("/v1/inputs", headers=auth).json()["items"]] == ["mark", "oracle", "advance"]
    app.state.service.close()


def test_serve_runs_uvicorn_with_one_worker_on_the_configured_app(tmp_path, monkeypatch):
    import uvicorn  # noqa: PLC0415

    from deleverage.service import serve  # noqa: PLC0415

    path = tmp_path / "service.toml"
    path.write_text(f'database_url = "sqlite:///{tmp_path / "e.db"}"\n'
                    'maintenance_tiers = { BTCUSDT = "flat:0.004" }\n')
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    serve(path, "127.0.0.1", 8123)
    assert (seen["host"], seen["port"], seen["workers"]) == ("127.0.0.1", 8123, 1)
    assert seen["app"].state.service.config.database_url.endswith("e.db")
    seen["app"].state.service.close()


def test_many_inputs_in_one_request_are_answered_each_and_committed_together(svc):
    service = svc.app.state.service
    sizes, stage = [], service.store.stage

    def counting(batch):  # noqa: ANN001, ANN202
        sizes.append(len(batch))
        return stage(batch)

    service.store.stage = counting
    items = [{"kind": "deposit", "account_id": "alice", "body": {"asset": "USDT", "amount": "6000", "ts_ns": 1}},
             {"kind": "fill", "account_id": "alice", "body": {"symbol": "BTCUSDT", "side": "buy", "qty": "1",
                                                              "price": "60000", "ts_ns": 2}},
             {"kind": "mark", "body": {"symbol": "BTCUSDT", "price": "1e9", "ts_ns": 3}},  # refused: grammar
             {"kind": "mark", "body": {"symbol": "BTCUSDT", "price": "59000", "ts_ns": 3}, "idempotency_key": "m1"},
             {"kind": "mark", "body": {"symbol": "BTCUSDT", "price": "59000", "ts_ns": 3}, "idempotency_key": "m1"},
             {"kind": "withdraw", "account_id": "alice", "body": {"asset": "USDT", "amount": "9999", "ts_ns": 4}},
             {"kind": "mark", "account_id": "alice", "body": {"symbol": "BTCUSDT", "price": "1"}}]
    r = svc.post("/v1/inputs", json={"inputs": items}, headers=FEED)
    assert r.status_code == 200, r.text
    answers = r.json()["answers"]
    assert [a["status"] for a in answers] == [200, 200, 422, 200, 200, 422, 422]
    assert answers[2]["body"]["field"] == "price" and answers[5]["body"]["field"] == "amount"
    assert answers[6]["body"]["field"] == "inputs[6].account_id"
    assert answers[4] == {**answers[3], "replayed": True}  # the same key twice in one request: applied once
    assert [a["body"]["seq"] for a in answers if a["status"] == 200] == [1, 2, 3, 3]
    assert sizes == [3]  # one group, one commit
    assert get(svc, "/v1/accounts/alice")["balances"]["USDT"] == "6000.00000000"
    r = svc.post("/v1/inputs", json={"inputs": []}, headers=FEED)
    assert r.status_code == 422 and r.json()["field"] == "inputs"
    assert svc.post("/v1/inputs", json={"inputs": items}).status_code == 401
