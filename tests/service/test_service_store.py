"""Event store: restart reproduces state and digest, tampering is named by seq, no half-written inputs.

These stores run without snapshots (``snapshot_every = 0``): every start replays the whole store and
compares each input's regenerated outputs with the stored ones. Snapshot restarts are in
test_service_snapshots.py; truncation, lost WAL and second writers in test_service_faults.py.
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3

import pytest

from deleverage.errors import InvalidInput
from deleverage.service.state import StoreDivergence
from deleverage.service.store import EventStore, StoreError

from .service_kit import FEED, MARKS, READ, client, close, config, get, post, run_scenario


def _snapshot(c):  # noqa: ANN001, ANN202
    state = get(c, "/v1/state")
    state.pop("snapshot")
    return (state, get(c, "/v1/accounts/alice"), get(c, "/v1/liquidations"), get(c, "/v1/events"),
            get(c, "/v1/inputs"))


@pytest.fixture
def stored(tmp_path):  # noqa: ANN001, ANN201
    """A store holding the whole scenario, closed; returns (config, db path, snapshot before closing)."""
    cfg = config(tmp_path / "events.db", snapshot_every=0)
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
    assert c.app.state.service.replayed == before[0]["last_seq"]  # no snapshot: a full replay
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


def test_deleted_input_in_the_middle_is_a_gap(stored):
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
    with pytest.raises(StoreError, match="policy"):
        client(config(db, policy="bybit", snapshot_every=0))
    with pytest.raises(StoreError, match="insurance_fund"):
        client(config(db, insurance_fund={"USDT": "1"}, snapshot_every=0))


def test_failing_input_is_a_json_500_and_leaves_nothing_half_written(tmp_path):
    """A bug mid-apply: the answer is the documented JSON error, nothing is stored, the state is
    rebuilt from the store (it was never written, so nothing stored is undone)."""
    cfg = config(tmp_path / "events.db", snapshot_every=0)
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
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert set(r.json()) == {"error", "field"} and "nothing of it was stored" in r.json()["error"]
    after = get(c, "/v1/state")
    assert after["rows"] == before["rows"]  # no input row, no output row
    assert after["digest"] == before["digest"]
    assert service.state.engine is not engine  # rebuilt from the store
    assert service.state.ledger.balance("alice", "USDT") == 600_000_000_000
    assert get(c, "/v1/accounts/alice")["balances"]["USDT"] == "6000.00000000"
    post(c, "/v1/marks", {"symbol": "BTCUSDT", "price": "60000", "ts_ns": 5})  # the same input now applies
    close(c)
    c = client(cfg)  # and the store still replays
    assert get(c, "/v1/state")["last_seq"] == 2
    close(c)


def test_refused_inputs_change_no_row_and_replay_nothing(tmp_path):
    """Issue 15: an input that failed after it was written replayed the whole store under the lock.
    Now every refusal happens before writing: no row, no rebuild, the same state object."""
    c = client(config(tmp_path / "events.db", snapshot_every=0))
    run_scenario(c)
    service = c.app.state.service
    state, replayed = service.state, service.replayed
    before = get(c, "/v1/state")
    bad = [("/v1/accounts/alice/withdraw", {"asset": "USDT", "amount": "1000000"}),
           ("/v1/marks", {"symbol": "BTCUSDT", "price": MARKS[0], "ts_ns": 1}),
           ("/v1/book", {"symbol": "BTCUSDT", "bids": [["2", "1"]], "asks": [["1", "1"]]}),
           ("/v1/book", {"symbol": "BTCUSDT", "bids": [["1", "1"]], "asks": [["900000", "1"]]}),  # too wide
           ("/v1/book", {"symbol": "BTCUSDT", "bids": [["5", "1"], ["5", "2"]], "asks": []})]
    for url, body in bad:
        r = c.post(url, json=body, headers=FEED)
        assert r.status_code in (409, 422), (url, r.text)
        assert r.json()["field"] is not None
    after = get(c, "/v1/state")
    assert after["rows"] == before["rows"] and after["digest"] == before["digest"]
    assert service.state is state and service.replayed == replayed
    close(c)


def test_store_schema_and_wal_mode(tmp_path):
    db = tmp_path / "events.db"
    store = EventStore(f"sqlite:///{db}")
    store.close()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()[0] == "2"
    assert con.execute("SELECT value FROM meta WHERE name = 'head'").fetchone()[0] == "0 " + "0" * 64
    con.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="schema version 99"):
        EventStore(f"sqlite:///{db}")


def test_a_version_1_store_is_migrated_and_replays_to_the_same_digest(stored, tmp_path):
    """Stores written before group commit (schema 1: no head, no idempotency keys) still open."""
    cfg, db, before = stored
    old = tmp_path / "v1.db"
    con = sqlite3.connect(old)
    con.executescript(
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE inputs (seq BIGINT PRIMARY KEY, ts_ns BIGINT NOT NULL, kind TEXT NOT NULL, symbol TEXT,"
        " account_id TEXT, payload TEXT NOT NULL, client TEXT NOT NULL, output_digest TEXT, chain_digest TEXT);"
        "CREATE TABLE outputs (id BIGINT PRIMARY KEY, input_seq BIGINT NOT NULL REFERENCES inputs(seq),"
        " stream TEXT NOT NULL, kind TEXT NOT NULL, ts_ns BIGINT NOT NULL, symbol TEXT, account_id TEXT,"
        " payload TEXT NOT NULL);")
    con.execute(f"ATTACH DATABASE '{db}' AS new")
    con.execute("INSERT INTO meta SELECT * FROM new.meta WHERE name = 'genesis'")
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.execute("INSERT INTO inputs SELECT seq, ts_ns, kind, symbol, account_id, payload, client, output_digest,"
                " chain_digest FROM new.inputs")
    con.execute("INSERT INTO outputs SELECT * FROM new.outputs")
    con.commit()
    con.close()
    c = client(config(old, snapshot_every=0))
    state = get(c, "/v1/state")
    assert (state["last_seq"], state["digest"]) == (before[0]["last_seq"], before[0]["digest"])
    assert state["rows"] == before[0]["rows"]
    close(c)


@pytest.mark.skipif(importlib.util.find_spec("psycopg") is not None, reason="psycopg is installed")
def test_postgresql_without_driver_is_a_clear_error():
    with pytest.raises(InvalidInput, match="psycopg"):
        EventStore("postgresql://user:pw@localhost/deleverage")


def test_an_unexpected_error_on_a_read_or_before_the_writer_is_a_json_500(tmp_path):
    """Issue 15: 500s were text/plain. A bug in a read route (FastAPI) and one in the write gate before
    the input reaches the writer both answer ``{"error", "field"}`` as JSON, and nothing is stored."""
    c = client(config(tmp_path / "events.db"), raise_server_exceptions=False)
    service = c.app.state.service

    def broken(*_, **__):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("store bug")

    service.store.outputs = broken
    r = c.get("/v1/events", headers=READ)
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert set(r.json()) == {"error", "field"} and "RuntimeError" in r.json()["error"]
    service.parser.parse = broken
    r = c.post("/v1/marks", json={"symbol": "BTCUSDT", "price": "60000", "ts_ns": 5}, headers=FEED)
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert set(r.json()) == {"error", "field"} and "nothing of this input was stored" in r.json()["error"]
    assert service.store.head.seq == 0
    close(c)
