"""Snapshots: a restored state continues exactly like the original; restart = snapshot + tail; a
snapshot that does not verify is skipped; the published totals equal the ledger's own (exactly)."""

from __future__ import annotations

import pickle
import time
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from deleverage.service.core import Service
from deleverage.service.snapshot import dumps
from deleverage.service.state import ServiceState, StoreDivergence
from deleverage.testing import assert_conserved

from .service_kit import ManualClock, client, close, config, get, post, run_scenario


def _scenario_inputs(service: Service) -> None:
    for kind, body, account in [
        ("deposit", {"asset": "USDT", "amount": "6000", "ts_ns": 1}, "alice"),
        ("deposit", {"asset": "USDT", "amount": "500", "ts_ns": 1}, "bob"),
        ("fill", {"symbol": "BTCUSDT", "side": "buy", "qty": "1", "price": "60000", "ts_ns": 2}, "alice"),
        ("fill", {"symbol": "BTCUSDT", "side": "sell", "qty": "0.2", "price": "60000", "ts_ns": 2}, "bob"),
        ("book", {"symbol": "BTCUSDT", "bids": [["54150", "5"], ["54100", "5"]], "asks": [["54250", "5"]],
                  "ts_ns": 3}, None),
    ]:
        assert service.submit(kind, body, account_id=account).status == 200


MARKS = ["59000", "57000", "55000", "54300", "54200", "54100", "58000", "63000", "64000"]


def test_a_restored_state_continues_byte_for_byte_like_the_original(tmp_path):
    service = Service(config(tmp_path / "e.db", snapshot_every=0), clock_ns=ManualClock())
    _scenario_inputs(service)
    restored: ServiceState = pickle.loads(dumps(service.state))  # what a snapshot holds
    original = service.state
    for i, price in enumerate(MARKS):  # a liquidation of alice, then bob's short squeezed
        payload = {"ts_ns": 10 + i, "symbol": "BTCUSDT", "price_ticks": int(price) * 10}
        seq = original.seq + 1 + i
        a, b = original.apply(seq, "mark", payload), restored.apply(seq, "mark", payload)
        assert a.outputs == b.outputs
    assert original.ledger.digest() == restored.ledger.digest()
    assert original.liquidations == restored.liquidations >= 2
    service.close()


def test_restart_loads_the_latest_snapshot_and_replays_only_the_tail(tmp_path):
    cfg = config(tmp_path / "e.db", snapshot_every=5)
    service = Service(cfg, clock_ns=ManualClock())
    _scenario_inputs(service)
    for i, price in enumerate(MARKS):
        assert service.submit("mark", {"symbol": "BTCUSDT", "price": price, "ts_ns": 10 + i}).status == 200
    head = service.store.head
    assert head.seq == 14 and service.snapshot_seq == 10
    view = service.read.view
    service.store.close()  # a crash: no final snapshot
    restarted = Service(cfg, clock_ns=ManualClock())
    assert restarted.replayed == 4  # seq 11..14 after the snapshot at 10
    assert (restarted.state.seq, restarted.state.chain) == (head.seq, head.chain)
    assert restarted.read.view.totals == view.totals and restarted.read.view.engine == view.engine
    restarted.close()  # a clean stop snapshots the head: the next start replays nothing
    again = Service(cfg, clock_ns=ManualClock())
    assert again.replayed == 0 and again.read.snapshot.seq == 14
    again.close()


def test_a_damaged_or_foreign_snapshot_is_skipped(tmp_path):
    cfg = config(tmp_path / "e.db", snapshot_every=5, snapshots_kept=3)
    service = Service(cfg, clock_ns=ManualClock())
    _scenario_inputs(service)
    for i, price in enumerate(MARKS[:6]):
        service.submit("mark", {"symbol": "BTCUSDT", "price": price, "ts_ns": 10 + i})
    chain = service.state.chain
    service.store.close()
    snaps = service.snapshots.list()
    assert [s.seq for s in snaps] == [10, 5]
    newest = snaps[0].path.read_bytes()
    snaps[0].path.write_bytes(newest[:-10] + bytes(b ^ 0xFF for b in newest[-10:]))  # a flipped tail
    restarted = Service(cfg, clock_ns=ManualClock())
    assert restarted.replayed == 6 and restarted.state.chain == chain  # from the snapshot at 5
    restarted.store.close()
    # a snapshot of another history at the same seq (another store's) is not used either
    other = Service(config(tmp_path / "other.db", snapshot_every=0), clock_ns=ManualClock())
    for i in range(10):
        other.submit("deposit", {"asset": "USDT", "amount": "1", "ts_ns": i}, account_id="z")
    foreign = other.snapshots.write(other.state, other.state.seq, other.state.chain)
    other.close()
    snaps[0].path.write_bytes(foreign.path.read_bytes())
    restarted = Service(cfg, clock_ns=ManualClock())
    assert restarted.replayed == 6 and restarted.state.chain == chain
    restarted.close()


def test_a_tampered_input_after_the_snapshot_is_caught_at_start(tmp_path):
    import sqlite3  # noqa: PLC0415

    cfg = config(tmp_path / "e.db", snapshot_every=5)
    service = Service(cfg, clock_ns=ManualClock())
    _scenario_inputs(service)
    for i, price in enumerate(MARKS[:4]):
        service.submit("mark", {"symbol": "BTCUSDT", "price": price, "ts_ns": 10 + i})
    service.store.close()
    con = sqlite3.connect(tmp_path / "e.db")
    with con:
        con.execute("UPDATE inputs SET payload = replace(payload, '570000', '570010') WHERE seq = 7")
    con.close()
    try:
        Service(cfg, clock_ns=ManualClock())
    except StoreDivergence as exc:
        assert exc.seq == 7
    else:
        raise AssertionError("the tampered tail was not noticed")


def test_a_forked_child_writes_snapshots_while_the_server_runs(tmp_path):
    cfg = config(tmp_path / "e.db", snapshot_every=4, snapshot_fork=True)
    c = client(cfg)
    run_scenario(c)  # 9 inputs: snapshots due at 4 and 8
    deadline = time.monotonic() + 20
    while (get(c, "/v1/state")["snapshot"] or {}).get("seq", 0) < 8 and time.monotonic() < deadline:
        post(c, "/v1/advance", {"ts_ns": 20})  # the writer checks for a finished child between groups
        time.sleep(0.05)
    snapshot = get(c, "/v1/state")["snapshot"]
    assert snapshot["seq"] >= 8 and len(snapshot["ledger_digest"]) == 64
    service = c.app.state.service
    assert service.snapshots.list()[0].seq >= 8
    close(c)


_amount = st.integers(1, 10**6).map(lambda v: str(Decimal(v) / 100))
_step = st.one_of(
    st.tuples(st.just("deposit"), st.sampled_from(["a", "b", "c"]), _amount),
    st.tuples(st.just("withdraw"), st.sampled_from(["a", "b", "c"]), _amount),
    st.tuples(st.just("fill"), st.sampled_from(["a", "b", "c"]),
              st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 3000), st.integers(550_000, 650_000))),
    st.tuples(st.just("mark"), st.none(), st.integers(540_000, 660_000)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_step, min_size=1, max_size=30))
def test_published_totals_equal_the_ledger_total_values(tmp_path_factory, steps):
    """The running totals behind /v1/state (O(touched) per input) against a full ledger scan."""
    db = tmp_path_factory.mktemp("t") / "e.db"
    service = Service(config(db, snapshot_every=0), clock_ns=ManualClock())
    service.submit("book", {"symbol": "BTCUSDT", "bids": [["50000", "50"]], "asks": [["70000", "50"]], "ts_ns": 0})
    before = service.state.ledger.total_values({})
    requests = []
    for ts, (kind, account, value) in enumerate(steps, start=1):
        if kind in ("deposit", "withdraw"):
            requests.append(service.parse(kind, {"asset": "USDT", "amount": value, "ts_ns": ts}, "t", None, account))
        elif kind == "fill":
            side, lots, ticks = value
            requests.append(service.parse("fill", {"symbol": "BTCUSDT", "side": side,
                                                   "qty": str(Decimal(lots) / 1000), "price": str(Decimal(ticks) / 10),
                                                   "ts_ns": ts}, "t", None, account))
        else:
            requests.append(service.parse("mark", {"symbol": "BTCUSDT", "price": str(Decimal(value) / 10),
                                                   "ts_ns": ts}, "t", None))
    service.submit_many(requests)  # one group: refusals (overdrafts, unknown accounts) are part of it
    state = service.state
    marks = state.valuation_marks()
    truth = state.ledger.total_values(marks)
    mine = state.totals()
    assert {k: v for k, v in mine.items() if v != 0} == {k: v for k, v in truth.items() if v != 0}
    inflow = service.read.view.totals.inflow()
    assert_conserved(state.ledger, before, marks, inflow={k: v - 10_000_000_000_000 * (k == "USDT")
                                                          for k, v in inflow.items()})
    service.close()


def test_the_frozen_heap_is_given_back_on_rebuild_and_close(tmp_path):
    """``freeze_heap`` (the server does it once started) must not keep a dropped state alive: a
    rebuild thaws before loading and freezes the new state; close thaws."""
    import gc  # noqa: PLC0415
    import weakref  # noqa: PLC0415

    service = Service(config(tmp_path / "e.db", snapshot_every=0), clock_ns=ManualClock())
    _scenario_inputs(service)
    service.freeze_heap()
    assert gc.get_freeze_count() > 0
    old = weakref.ref(service.state.ledger)
    service.rebuild()
    assert service.heap_frozen and gc.get_freeze_count() > 0
    assert old() is None  # the replaced state was collected, not frozen
    assert service.submit("mark", {"symbol": "BTCUSDT", "price": "59000", "ts_ns": 50}).status == 200
    service.close()
    assert not service.heap_frozen and gc.get_freeze_count() == 0
