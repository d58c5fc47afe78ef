"""Event store: restart reproduces state and digest, tampering is named by seq, no half-written inputs."""

from __future__ import annotations

import importlib.util
import json
import sqlite3

import pytest

from deleverage.errors import DataError, InvalidInput
from deleverage.service.state import StoreDivergence
from deleverage.service.store import EventStore

from .service_kit import FEED, MARKS, client, close, config, get, post, run_scenario


def _snapshot(c):  # noqa: ANN001, ANN202
    return (get(c, "/v1/state"), get(c, "/v1/accounts/alice"), get(c, "/v1/liquidations"),
            get(c, "/v1/events"), get(c, "/v1/inputs"))


@pytest.fixture
def stored(tmp_path):  # noqa: ANN001, ANN201
    """A store holding the whole scenario, closed; returns (config, db path, snapshot before closing)."""
    cfg = config(tmp_path / "events.db")
    c = client(cfg)
    run_scenario(c)
    snap = _snapshot(c)
    close(c)
    return cfg, tmp_path / "events.db", snap


def _tamper(db, sql, *params) -> None:  # noqa: ANN001
    con = sqlite3.connect(db)
    with con:
        assert con.execute(sql, params).rowcount == 1
    con.close()


def test_restart_reproduces_identical_state_and_digest(stored):
    cfg, _, before = stored
    c = client(cfg)
    after = _snapshot(c)
    assert after == before
    assert before[0]["digest"] != "0" * 64 and before[2]["items"]  # a real liquidation was replayed
    # the restarted service carries on from the next seq
    r = post(c, "/v1/marks", {"symbol": "BTCUSDT", "price": "54000", "ts_ns": 100})
    assert r["seq"] == before[0]["last_seq"] + 1
    close(c)
    c = client(cfg)
    assert get(c, "/v1/state")["digest"] == r["digest"]
    close(c)


def test_tampered_input_refuses_to_start_naming_the_seq(stored):
    cfg, db, _ = stored
    seq = 5  # the second mark (57000): a quiet input, only the digest chain commits to it
    _tamper(db, "UPDATE inputs SET payload = replace(payload, '570000', '570010') WHERE seq = ?", seq)
    with pytest.raises(StoreDivergence, match=f"seq {seq}:") as info:
        client(cfg)
    assert info.value.seq == seq


def test_tampered_liquidation_output_refuses_to_start_naming_the_seq(stored):
    cfg, db, snap = stored
    liq = snap[2]["items"][0]
    data = dict(liq["data"], fee_minor=liq["data"]["fee_minor"] - 1)
    _tamper(db, "UPDATE outputs SET payload = ? WHERE id = ?", json.dumps(data, sort_keys=True,
                                                                         separators=(",", ":")), liq["id"])
    with pytest.raises(StoreDivergence, match=f"seq {liq['seq']}:.*differs") as info:
        client(cfg)
    assert info.value.seq == liq["seq"]


def test_tampered_deposit_amount_is_caught_at_its_own_seq(stored):
    cfg, db, _ = stored
    _tamper(db, "UPDATE inputs SET payload = replace(payload, '600000000000', '700000000000') WHERE seq = 1")
    with pytest.raises(StoreDivergence) as info:
        client(cfg)
    assert info.value.seq == 1  # its posting no longer matches, before any later consequence


def test_deleted_input_is_a_gap(stored):
    cfg, db, _ = stored
    con = sqlite3.connect(db)
    with con:
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("DELETE FROM outputs WHERE input_seq = 6")
        con.execute("DELETE FROM inputs WHERE seq = 6")
    con.close()
    with pytest.raises(StoreDivergence, match="seq 7:"):
        client(cfg)


def test_other_configuration_refuses_the_store(stored):
    cfg, db, _ = stored
    with pytest.raises(DataError, match="policy"):
        client(config(db, policy="bybit"))
    with pytest.raises(DataError, match="insurance_fund"):
        client(config(db, insurance_fund={"USDT": "1"}))


def test_failing_input_leaves_nothing_half_written(tmp_path):
    cfg = config(tmp_path / "events.db")
    c = client(cfg, raise_server_exceptions=False)
    post(c, "/v1/accounts/alice/deposit", {"asset": "USDT", "amount": "6000", "ts_ns": 1})
    service = c.app.state.service
    before = get(c, "/v1/state")
    engine = service.state.engine

    def broken_on_mark(symbol, price, ts_ns):  # noqa: ANN001, ANN202
        # change the ledger (and the engine's clock) and then fail, like a bug mid-step would
        engine.ledger.deposit("alice", "USDT", 1, ts_ns)
        raise RuntimeError("engine bug")

    engine.on_mark = broken_on_mark
    r = c.post("/v1/marks", json={"symbol": "BTCUSDT", "price": "60000", "ts_ns": 5}, headers=FEED)
    assert r.status_code == 500
    after = get(c, "/v1/state")
    assert after["rows"] == before["rows"]  # no input row, no output row
    assert (after["ledger_digest"], after["digest"]) == (before["ledger_digest"], before["digest"])
    assert service.state.engine is not engine  # rebuilt from the store
    assert get(c, "/v1/accounts/alice")["balances"]["USDT"] == "6000.00000000"
    post(c, "/v1/marks", {"symbol": "BTCUSDT", "price": "60000", "ts_ns": 5})  # the same input now applies
    close(c)
    c = client(cfg)  # and the store still replays
    assert get(c, "/v1/state")["last_seq"] == 2
    close(c)


def test_refused_inputs_change_no_row_count(tmp_path):
    c = client(config(tmp_path / "events.db"))
    run_scenario(c)
    before = get(c, "/v1/state")
    bad = [("/v1/accounts/alice/withdraw", {"asset": "USDT", "amount": "1000000"}),
           ("/v1/marks", {"symbol": "BTCUSDT", "price": MARKS[0], "ts_ns": 1}),
           ("/v1/book", {"symbol": "BTCUSDT", "bids": [["2", "1"]], "asks": [["1", "1"]]})]
    for url, body in bad:
        assert c.post(url, json=body, headers=FEED).status_code in (409, 422)
    after = get(c, "/v1/state")
    assert after["rows"] == before["rows"] and after["digest"] == before["digest"]
    close(c)


def test_store_schema_and_wal_mode(tmp_path):
    db = tmp_path / "events.db"
    store = EventStore(f"sqlite:///{db}")
    store.close()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()[0] == "1"
    con.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(DataError, match="schema version 99"):
        EventStore(f"sqlite:///{db}")


@pytest.mark.skipif(importlib.util.find_spec("psycopg") is not None, reason="psycopg is installed")
def test_postgresql_without_driver_is_a_clear_error():
    with pytest.raises(InvalidInput, match="psycopg"):
        EventStore("postgresql://user:pw@localhost/deleverage")
