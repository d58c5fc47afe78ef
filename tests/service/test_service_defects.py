"""Every defect issue 15 measured, as a test that failed on the code before the fix.

Capacity (the 1,025th position of a symbol), hostile numbers and timestamps, bodies read before auth,
reads blocking writers, retries applying twice, text/plain 500s.
"""

from __future__ import annotations

import concurrent.futures
import socket
import threading
import time
from decimal import Decimal

import httpx
import pytest

from deleverage.service.app import create_app
from deleverage.service.core import Service

from .live import serving
from .service_kit import (
    ALICE,
    FEED,
    READ,
    ManualClock,
    client,
    close,
    config,
    get,
    open_alice,
    post,
)


def _open_accounts(service: Service, n: int, start: int = 0, ts: int = 1) -> None:
    """n accounts with 1000 USDT, half long half short 0.01 BTC at 60000: committed in groups of 200."""
    reqs = []
    for i in range(start, start + n):
        reqs.append(service.parse("deposit", {"asset": "USDT", "amount": "1000", "ts_ns": ts}, "t", None, f"a{i}"))
        reqs.append(service.parse("fill", {"symbol": "BTCUSDT", "side": "buy" if i % 2 else "sell",
                                           "qty": "0.01", "price": "60000", "ts_ns": ts}, "t", None, f"a{i}"))
    for at in range(0, len(reqs), 200):
        answers = service.submit_many(reqs[at:at + 200])
        assert {a.status for a in answers} == {200}, [a.body for a in answers if a.status != 200][:2]


def test_a_symbol_holds_more_than_1024_positions_also_after_restart(tmp_path):
    cfg = config(tmp_path / "e.db", snapshot_every=0)
    service = Service(cfg, clock_ns=ManualClock())
    _open_accounts(service, 1_100)  # the old screen refused the 1,025th: "capacity=1024: book is full"
    assert service.submit("mark", {"symbol": "BTCUSDT", "price": "60000", "ts_ns": 2}).status == 200
    detector = service.state.engine._detectors["BTCUSDT"]  # noqa: SLF001
    assert len(detector.book) == 1_100 and detector.book.capacity >= 1_100
    service.close()
    service = Service(cfg, clock_ns=ManualClock())  # restart: the replay re-opens all 1,100 (and more)
    _open_accounts(service, 100, start=1_100, ts=2)
    # a 1% drop liquidates nobody at 100x-safe margin (1000 USDT on 600 notional): exactly checked
    answer = service.submit("mark", {"symbol": "BTCUSDT", "price": "59400", "ts_ns": 3})
    assert answer.status == 200 and answer.body["liquidations"] == []
    assert len(service.state.engine._detectors["BTCUSDT"].book) == 1_200  # noqa: SLF001
    service.close()


@pytest.fixture
def svc(tmp_path):  # noqa: ANN001, ANN201
    c = client(config(tmp_path / "events.db"))
    yield c
    close(c)


@pytest.mark.parametrize("price", [
    "1e10000000",  # froze the process 7-12 s, then 500
    "1E3", "+60000", "-1", " 60000", "60000 ", "6_0000", "0x10", "Infinity", "NaN", ".5", "5.", "00.5",
    "١٢٣",  # Arabic-Indic digits: Decimal reads them, the grammar does not
    "1" * 41,
])
def test_numbers_outside_the_strict_grammar_are_refused_naming_the_field(svc, price):
    started = time.perf_counter()
    r = svc.post("/v1/marks", json={"symbol": "BTCUSDT", "price": price}, headers=FEED)
    assert r.status_code == 422 and r.json()["field"] == "price", r.text
    assert time.perf_counter() - started < 5  # sanity bound only: a length check, not a bignum
    assert get(svc, "/v1/state")["rows"]["inputs"] == 0


def test_a_size_the_kernels_cannot_hold_is_refused_and_later_marks_still_work(svc):
    open_alice(svc)
    # qty 1e16 BTC = 1e19 lots: past int64 sums of the L2 walk (the old code accepted it; every later
    # mark on the symbol then failed with an overflow in a numba kernel)
    r = svc.post("/v1/accounts/alice/fills", json={"symbol": "BTCUSDT", "side": "buy",
                                                   "qty": "10000000000000000", "price": "60000"}, headers=FEED)
    assert r.status_code == 422 and r.json()["field"] == "qty" and "largest size" in r.json()["error"]
    # the bound is min(2**53, (2**63 - 1) // (max_book_levels + 1)) lots = 2**53 lots at 1000 levels
    limit = Decimal(2**53) * Decimal("0.001")
    post(svc, "/v1/accounts/alice/fills", {"symbol": "BTCUSDT", "side": "buy", "qty": f"{limit - 1:f}",
                                           "price": "60000"})
    # a second fill within the per-fill bound would take the position past it: refused too
    r = svc.post("/v1/accounts/alice/fills", json={"symbol": "BTCUSDT", "side": "buy", "qty": "2",
                                                   "price": "60000"}, headers=FEED)
    assert r.status_code == 422 and r.json()["field"] == "qty" and "position" in r.json()["error"]
    r = svc.post("/v1/marks", json={"symbol": "BTCUSDT", "price": "60000"}, headers=FEED)
    assert r.status_code == 200, r.text
    r = svc.post("/v1/marks", json={"symbol": "BTCUSDT", "price": str(Decimal(2**53 + 1) / 10)}, headers=FEED)
    assert r.status_code == 422 and r.json()["field"] == "price"


def test_timestamps_outside_the_window_of_the_server_clock_are_refused(tmp_path):
    clock = ManualClock(1_700_000_000 * 10**9)
    c = client(config(tmp_path / "e.db", ts_window_ahead_s=60, ts_window_behind_s=3600), clock)
    r = c.post("/v1/advance", json={"ts_ns": 2**63 - 1}, headers=FEED)  # the old code accepted this, and
    assert r.status_code == 422 and r.json()["field"] == "ts_ns"  # every later timestamped input got 409
    r = c.post("/v1/advance", json={"ts_ns": 2**63}, headers=FEED)
    assert r.status_code == 422 and r.json()["field"] == "ts_ns"
    for ts in (clock.now_ns + 61 * 10**9, clock.now_ns - 3601 * 10**9, 1_700_000_000_000):  # the last in ms
        r = c.post("/v1/marks", json={"symbol": "BTCUSDT", "price": "60000", "ts_ns": ts}, headers=FEED)
        assert r.status_code == 422 and r.json()["field"] == "ts_ns", ts
    post(c, "/v1/marks", {"symbol": "BTCUSDT", "price": "60000", "ts_ns": clock.now_ns + 59 * 10**9})
    post(c, "/v1/advance", {"ts_ns": clock.now_ns + 60 * 10**9})
    close(c)


def test_an_unauthenticated_body_is_refused_before_it_is_read_or_parsed(svc):
    r = svc.post("/v1/marks", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 401  # the old code parsed first: 422
    r = svc.post("/v1/marks", content=b"{not json", headers={**FEED, "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body"
    r = svc.post("/v1/marks", content=b"[" * 200_000 + b"]" * 200_000, headers=FEED)
    assert r.status_code == 422 and r.json()["field"] == "body"  # deep nesting: refused, no RecursionError 500


def test_a_100_mb_body_is_refused_from_its_headers_without_reading_it(tmp_path):
    """Only the headers are sent: the answer comes at once (the old server read and parsed 100 MB)."""
    with serving(create_app(config(tmp_path / "e.db"), clock_ns=ManualClock())) as url:
        host, port = url.removeprefix("http://").split(":")
        for auth in ("", f"authorization: {FEED['Authorization']}\r\n"):
            with socket.create_connection((host, int(port)), timeout=5) as sock:
                sock.sendall(f"POST /v1/marks HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\n"
                             f"content-length: {100 * 2**20}\r\n\r\n".encode())
                answer = b""
                while b'"field":"body"' not in answer:  # would time out if the server waited for the body
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 413"), answer
            assert b'"field":"body"' in answer and b"application/json" in answer
        # a chunked body (no Content-Length) is cut at max_body_bytes: a 413 (or, when the client is
        # still sending as the server answers and closes, a connection closed under it)
        try:
            r = httpx.post(url + "/v1/marks", headers=FEED, content=iter([b" " * 65_536] * 40), timeout=10)
        except httpx.TransportError:
            pass
        else:
            assert r.status_code == 413 and r.json()["field"] == "body"


@pytest.mark.parametrize("commit_thread", [False, True])
def test_a_read_does_not_wait_for_a_commit_in_progress(tmp_path, commit_thread):
    """The old /v1/state took the writers' lock (435 ms each, throughput 252 → 56 req/s). The COMMIT
    (the fsync) runs on the commit thread in both modes, so a read is answered while a commit is
    held, from the last committed state."""
    c = client(config(tmp_path / "e.db", commit_thread=commit_thread))
    open_alice(c)
    service = c.app.state.service
    release, entered = threading.Event(), threading.Event()
    finish = service.store.finish

    def slow_commit(staged):  # noqa: ANN001, ANN202
        entered.set()
        release.wait(10)
        return finish(staged)

    service.store.finish = slow_commit
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        writing = pool.submit(c.post, "/v1/marks", json={"symbol": "BTCUSDT", "price": "59000", "ts_ns": 9},
                              headers=FEED)
        assert entered.wait(5)
        reading = pool.submit(get, c, "/v1/state")
        state = reading.result(timeout=5)  # answered while the commit is held
        assert state["last_seq"] == 3  # the committed state: the mark is not acknowledged yet
        account = pool.submit(get, c, "/v1/accounts/alice").result(timeout=5)
        assert account["positions"][0]["mark_price"] == "60000.0"  # valued at the last committed price
        assert not writing.done()  # ... and not answered before its commit
        release.set()
        assert writing.result(timeout=10).json()["seq"] == 4
    assert get(c, "/v1/state")["marks"] == {"BTCUSDT": "59000.0"}
    close(c)


def test_reads_come_from_the_published_state_not_the_writers(tmp_path):
    """A read that runs while a group is applied but not committed — here: from inside the
    commit — sees the committed state."""
    from deleverage.service.app import state_view  # noqa: PLC0415
    from deleverage.service.views import account_view  # noqa: PLC0415

    c = client(config(tmp_path / "e.db"))
    open_alice(c)
    service = c.app.state.service
    seen = {}
    finish = service.store.finish

    def observing(staged):  # noqa: ANN001, ANN202
        read = service.read
        seen["state"] = state_view(service)
        seen["alice"] = account_view(service.catalogue, read.accounts["alice"], read.view.marks)
        seen["applied_seq"] = service.state.seq
        return finish(staged)

    service.store.finish = observing
    post(c, "/v1/marks", {"symbol": "BTCUSDT", "price": "59000", "ts_ns": 9})
    assert seen["applied_seq"] == 4 and seen["state"]["last_seq"] == 3  # applied, not yet published
    assert seen["state"]["marks"] == {} and seen["alice"]["positions"][0]["mark_price"] is None
    assert get(c, "/v1/state")["marks"] == {"BTCUSDT": "59000.0"}
    close(c)


def test_a_retried_deposit_with_the_same_key_is_applied_once(tmp_path):
    cfg = config(tmp_path / "e.db")
    c = client(cfg)
    body = {"asset": "USDT", "amount": "100", "ts_ns": 1}
    first = c.post("/v1/accounts/bob/deposit", json=body, headers={**FEED, "Idempotency-Key": "dep-1"})
    again = c.post("/v1/accounts/bob/deposit", json=body, headers={**FEED, "Idempotency-Key": "dep-1"})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert get(c, "/v1/accounts/bob")["balances"]["USDT"] == "100.00000000"  # the old code: 200
    r = c.post("/v1/accounts/bob/deposit", json={**body, "amount": "101"}, headers={**FEED, "Idempotency-Key": "dep-1"})
    assert r.status_code == 422 and r.json()["field"] == "Idempotency-Key"
    r = c.post("/v1/accounts/bob/deposit", json=body, headers={**FEED, "Idempotency-Key": "bad key"})
    assert r.status_code == 422 and r.json()["field"] == "Idempotency-Key"
    close(c)
    c = client(cfg)  # across a restart the key is still known (the store keeps it)
    again = c.post("/v1/accounts/bob/deposit", json=body, headers={**FEED, "Idempotency-Key": "dep-1"})
    assert again.status_code == 200 and again.json() == first.json()
    assert get(c, "/v1/accounts/bob")["balances"]["USDT"] == "100.00000000"
    assert get(c, "/v1/inputs")["items"][0]["idempotency_key"] == "dep-1"
    close(c)


def test_concurrent_duplicates_share_the_first_answer(tmp_path):
    """Ten copies of one keyed request in flight at once: one input, ten identical answers."""
    c = client(config(tmp_path / "e.db"))
    headers = {**FEED, "Idempotency-Key": "same"}
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: c.post("/v1/accounts/bob/deposit", headers=headers,
                                                 json={"asset": "USDT", "amount": "5"}), range(10)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["seq"] for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 9
    assert get(c, "/v1/accounts/bob")["balances"]["USDT"] == "5.00000000"
    assert get(c, "/v1/state")["rows"]["inputs"] == 1
    close(c)


@pytest.mark.parametrize("commit_thread", [False, True])
def test_concurrent_inputs_share_one_commit_and_are_answered_after_it(tmp_path, commit_thread):
    c = client(config(tmp_path / "e.db", commit_thread=commit_thread))
    service = c.app.state.service
    groups, stage, finish = [], service.store.stage, service.store.finish

    def counting(batch):  # noqa: ANN001, ANN202
        groups.append(len(batch))
        return stage(batch)

    def slow(staged):  # noqa: ANN001, ANN202
        time.sleep(0.05)  # a slow disk: the next inputs queue up behind this group
        return finish(staged)

    service.store.stage, service.store.finish = counting, slow
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: c.post("/v1/accounts/bob/deposit", headers=FEED,
                                                 json={"asset": "USDT", "amount": str(i + 1)}), range(48)))
    assert {a.status_code for a in answers} == {200}
    assert sum(groups) == 48 and len(groups) < 24 and max(groups) > 1  # groups of several inputs
    assert sorted(a.json()["seq"] for a in answers) == list(range(1, 49))
    assert Decimal(get(c, "/v1/accounts/bob")["balances"]["USDT"]) == sum(range(1, 49))
    close(c)


def _hold_the_first_commit(service):  # noqa: ANN001, ANN202
    """Count each group's size as it is staged and hold the first group's commit (its fsync) until
    ``release`` is set; ``entered`` is set once that commit is being held."""
    groups, stage, finish = [], service.store.stage, service.store.finish
    release, entered = threading.Event(), threading.Event()

    def counting(batch):  # noqa: ANN001, ANN202
        groups.append(len(batch))
        return stage(batch)

    def held(staged):  # noqa: ANN001, ANN202
        if len(groups) == 1:
            entered.set()
            release.wait(10)
        return finish(staged)

    service.store.stage, service.store.finish = counting, held
    return groups, entered, release


def _wait_for_seq(service, seq: int) -> None:  # noqa: ANN001
    """Poll (up to 5 s) until the service has applied ``seq`` inputs in memory."""
    for _ in range(500):
        if service.state.seq == seq:
            return
        time.sleep(0.01)


@pytest.mark.parametrize("commit_thread", [False, True])
def test_everything_that_arrives_during_a_commit_shares_the_next_one(tmp_path, commit_thread):
    """Group commit as the issue asks: while one group's fsync runs (held here), the inputs that
    arrive are prepared into one next group — one transaction, one fsync — and none is answered
    before it commits. (Before: the next group was taken as soon as its first input arrived, and
    with the commit on the event loop nothing was even read during the fsync.)"""
    c = client(config(tmp_path / "e.db", commit_thread=commit_thread))
    service = c.app.state.service
    groups, entered, release = _hold_the_first_commit(service)
    deposit = {"asset": "USDT", "amount": "1"}
    with concurrent.futures.ThreadPoolExecutor(11) as pool:
        first = pool.submit(c.post, "/v1/accounts/bob/deposit", headers=FEED, json=deposit)
        assert entered.wait(5)
        rest = [pool.submit(c.post, f"/v1/accounts/a{i}/deposit", headers=FEED, json=deposit) for i in range(10)]
        _wait_for_seq(service, 11)  # all ten read, checked and applied in memory (not committed)
        assert service.state.seq == 11 and service.read.view.seq == 0
        assert not first.done() and not any(r.done() for r in rest)
        release.set()
        answers = [first.result(timeout=10), *(r.result(timeout=10) for r in rest)]
    assert [a.status_code for a in answers] == [200] * 11
    assert groups == [1, 10]
    assert get(c, "/v1/state")["rows"]["inputs"] == 11
    close(c)


def test_commit_delay_holds_the_next_group_for_the_clients_just_answered(tmp_path):
    """``commit_delay_s``: after a commit the next group waits (here up to 1 s, not reached) until
    as many inputs joined as that commit answered, so a client answered by it shares the next fsync."""
    c = client(config(tmp_path / "e.db", commit_delay_s=1.0))
    service = c.app.state.service
    groups, entered, release = _hold_the_first_commit(service)
    deposit = {"asset": "USDT", "amount": "1"}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(c.post, "/v1/accounts/a/deposit", headers=FEED, json=deposit)
        assert entered.wait(5)
        second = pool.submit(c.post, "/v1/accounts/b/deposit", headers=FEED, json=deposit)
        _wait_for_seq(service, 2)  # b is applied in memory, behind the held commit
        release.set()
        assert first.result(timeout=10).status_code == 200
        third = c.post("/v1/accounts/a/deposit", headers=FEED, json=deposit)  # a's next input
        assert third.status_code == second.result(timeout=10).status_code == 200
    assert groups == [1, 2]  # without the delay: [1, 1, 1]
    close(c)


def test_scoped_reader_sees_only_its_accounts(svc):
    open_alice(svc)
    post(svc, "/v1/accounts/bob/deposit", {"asset": "USDT", "amount": "5", "ts_ns": 4})
    assert get(svc, "/v1/accounts/alice", ALICE)["account_id"] == "alice"
    assert svc.get("/v1/accounts/bob", headers=ALICE).status_code == 403
    for url in ("/v1/state", "/v1/inputs", "/metrics"):
        assert svc.get(url, headers=ALICE).status_code == 403, url
    postings = get(svc, "/v1/events", ALICE, stream="posting")["items"]
    assert postings == []  # postings carry no account id: nothing for a scoped key
    assert svc.get("/v1/events", headers=ALICE, params={"account_id": "bob"}).status_code == 422
    assert svc.post("/v1/marks", json={"symbol": "BTCUSDT", "price": "1"}, headers=ALICE).status_code == 403
    assert svc.get("/v1/state", headers=READ).status_code == 200
