"""Listing an instrument on a running store (``POST /v1/instruments``, input kind ``instrument_listed``).

Independent truth: a store that *lists* ETHUSDT after its genesis must produce, for the same ETH
inputs, exactly the outputs of a store whose genesis already holds ETHUSDT with the same sizes and
tier table — and keep doing so after a restart (replay), a snapshot load and an offline verify."""

from __future__ import annotations

from typing import Any

import pytest

from deleverage.service.core import Service
from deleverage.service.listing import KIND
from deleverage.service.state import ServiceState
from deleverage.service.verify import verify_store
from deleverage.testing import assert_conserved

from .service_kit import ManualClock, client, close, config, get, post

ETH = {"symbol": "ETHUSDT", "contract": "linear", "base": "ETH", "quote": "USDT", "settle": "USDT",
       "tick_size": "0.01", "lot_size": "0.001", "contract_size": "1", "tiers": "flat:0.005"}


def _eth_inputs(first_ts: int) -> list[tuple[str, dict[str, Any], str | None]]:
    ts = first_ts
    steps: list[tuple[str, dict[str, Any], str | None]] = [
        ("deposit", {"asset": "USDT", "amount": "400"}, "alice"),
        ("fill", {"symbol": "ETHUSDT", "side": "buy", "qty": "1", "price": "3000"}, "alice"),
        ("book", {"symbol": "ETHUSDT", "bids": [["2590", "5"], ["2580", "5"]], "asks": [["2610", "5"]]}, None),
    ]
    steps += [("mark", {"symbol": "ETHUSDT", "price": p}, None) for p in ("2950", "2800", "2600", "2595", "2590", "3100")]
    out = []
    for kind, body, account in steps:
        out.append((kind, {**body, "ts_ns": ts}, account))
        ts += 1
    return out


def _run(service: Service, steps: list[tuple[str, dict[str, Any], str | None]]) -> None:
    for kind, body, account in steps:
        answer = service.submit(kind, body, account_id=account)
        assert answer.status == 200, (kind, body, answer.body)


def _eth_outputs(service: Service) -> list[Any]:
    rows = service.store.outputs_between(0, service.store.head.seq)
    return [r for seq in sorted(rows) for r in rows[seq] if r.symbol in ("ETHUSDT", None)]


def test_a_listed_instrument_trades_and_liquidates_exactly_like_one_in_the_genesis(tmp_path):
    listed = Service(config(tmp_path / "listed.db", snapshot_every=0), clock_ns=ManualClock())
    assert listed.submit(KIND, {**ETH, "ts_ns": 1}).status == 200
    born = Service(config(tmp_path / "born.db", snapshot_every=0, instruments=["BTCUSDT", "ETHUSDT"],
                          maintenance_tiers={"BTCUSDT": "flat:0.004", "ETHUSDT": "flat:0.005"}),
                   clock_ns=ManualClock())
    assert born.submit("advance", {"ts_ns": 1}).status == 200  # so both stores number the ETH inputs alike
    before = listed.state.ledger.total_values({})
    _run(listed, _eth_inputs(2))
    _run(born, _eth_inputs(2))
    assert listed.state.liquidations == born.state.liquidations >= 1
    assert _eth_outputs(listed) == _eth_outputs(born)
    assert listed.state.ledger.digest() == born.state.ledger.digest()
    marks = listed.state.valuation_marks()
    assert_conserved(listed.state.ledger, before, marks, inflow={"USDT": 400 * 10**8})
    listed.close()
    born.close()


@pytest.mark.parametrize("snapshot_every", [0, 3])
def test_a_listing_survives_restart_snapshot_and_offline_verify(tmp_path, snapshot_every):
    cfg = config(tmp_path / "e.db", snapshot_every=snapshot_every)
    service = Service(cfg, clock_ns=ManualClock())
    assert service.submit(KIND, {**ETH, "ts_ns": 1}).status == 200
    _run(service, _eth_inputs(2))
    digest, head, liquidations = service.state.ledger.digest(), service.store.head, service.state.liquidations
    service.store.close()  # a crash: no final snapshot
    again = Service(cfg, clock_ns=ManualClock())
    assert (again.store.head, again.state.ledger.digest(), again.state.liquidations) == (head, digest, liquidations)
    assert (again.snapshot_seq > 0) == (snapshot_every > 0)
    assert "ETHUSDT" in again.state.instruments and "ETHUSDT" in again.catalogue.instruments
    assert again.submit("mark", {"symbol": "ETHUSDT", "price": "3000", "ts_ns": 100}).status == 200
    again.close()
    report = verify_store(cfg, replay=True)
    assert report.ok, report.text()


def test_listing_over_http_then_posting_on_the_new_symbol(tmp_path):
    c = client(config(tmp_path / "e.db"))
    post(c, "/v1/marks", {"symbol": "ETHUSDT", "price": "3000", "ts_ns": 1}, expect=422)
    post(c, "/v1/instruments", {**ETH, "ts_ns": 1})
    post(c, "/v1/accounts/alice/deposit", {"asset": "USDT", "amount": "400", "ts_ns": 2})
    post(c, "/v1/accounts/alice/fills", {"symbol": "ETHUSDT", "side": "buy", "qty": "1", "price": "3000", "ts_ns": 3})
    post(c, "/v1/marks", {"symbol": "ETHUSDT", "price": "3000.5", "ts_ns": 4})
    account = get(c, "/v1/accounts/alice")
    assert [p["symbol"] for p in account["positions"]] == ["ETHUSDT"]
    close(c)


def test_a_retried_listing_is_applied_once(tmp_path):
    c = client(config(tmp_path / "e.db"))
    first = post(c, "/v1/instruments", {**ETH, "ts_ns": 1}, **{"Idempotency-Key": "list-eth"})
    r = c.post("/v1/instruments", json={**ETH, "ts_ns": 1}, headers={**_feed(), "Idempotency-Key": "list-eth"})
    assert r.status_code == 200 and r.json() == first and r.headers.get("idempotent-replayed") == "true"
    r = c.post("/v1/instruments", json={**ETH, "ts_ns": 2}, headers=_feed())
    assert r.status_code == 422 and r.json()["field"] == "symbol"
    close(c)


def _feed() -> dict[str, str]:
    from .service_kit import FEED  # noqa: PLC0415

    return dict(FEED)


@pytest.mark.parametrize(("change", "field"), [
    ({"symbol": "BTCUSDT"}, "symbol"),  # in the genesis
    ({"symbol": "eth usdt"}, "symbol"),
    ({"contract": "future"}, "contract"),
    ({"settle": "EUR"}, "settle"),
    ({"tick_size": "0"}, "tick_size"),
    ({"tick_size": "1e-2"}, "tick_size"),
    ({"lot_size": 0.001}, "lot_size"),  # a JSON number
    ({"contract_size": "1" + "0" * 30}, "contract_size"),
    ({"tiers": "flat:1.5"}, "tiers"),
    ({"tiers": "flat:-0.1"}, "tiers"),
    ({"tiers": "no-such-table"}, "tiers"),
    ({"tiers": None}, "tiers"),
    ({"colour": "red"}, "colour"),
])
def test_a_bad_listing_is_refused_by_field_and_nothing_is_written(tmp_path, change, field):
    service = Service(config(tmp_path / "e.db", snapshot_every=0), clock_ns=ManualClock())
    answer = service.submit(KIND, {**ETH, **change, "ts_ns": 1})
    assert answer.status == 422 and answer.body["field"] == field, answer.body
    assert service.store.head.seq == 0 and "ETHUSDT" not in service.state.instruments
    service.close()


def test_a_listing_reaches_every_per_symbol_table_of_the_engine(tmp_path):
    """Whatever the engine keys by symbol (a dict holding every genesis symbol) also holds the new one."""
    state = ServiceState(config(tmp_path / "e.db"))
    genesis = set(state.instruments)
    payload = state.parser.parse(KIND, {**ETH, "ts_ns": 1}, 0)
    state.check(1, KIND, payload)
    state.apply(1, KIND, payload)
    objects = [state.engine, state.engine._settler, state.engine._links]  # noqa: SLF001
    if state.engine._dutch is not None:  # noqa: SLF001
        objects.append(state.engine._dutch)  # noqa: SLF001
    for obj in objects:
        slots = getattr(type(obj), "__slots__", ())
        names = list(vars(obj)) if hasattr(obj, "__dict__") else list(slots)
        for name in names:
            value = getattr(obj, name, None)
            if isinstance(value, dict) and value and genesis <= set(value) and set(value) <= genesis | {"ETHUSDT"}:
                assert "ETHUSDT" in value, f"{type(obj).__name__}.{name} lacks the listed symbol"
