"""Store damage and concurrency faults: truncation, a lost WAL, a forked history, a corrupt file, a
second writer, kill -9 under load with retries — each noticed at start in one line, or survived."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from deleverage.service.core import Service
from deleverage.service.store import StoreError, StoreLocked

from .live import ServerProcess
from .service_kit import FEEDER_KEY, ManualClock, config, keys


def _fill_store(db: Path, n: int, **overrides) -> Service:  # noqa: ANN003
    """A service with ``n`` deposits committed one group each (``n`` commits); left open."""
    service = Service(config(db, **overrides), clock_ns=ManualClock())
    for i in range(n):
        assert service.submit("deposit", {"asset": "USDT", "amount": "1", "ts_ns": i},
                              account_id=f"a{i % 7}").status == 200
    return service


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deleverage", *args], capture_output=True, text=True, timeout=120)


def test_deleting_the_last_inputs_is_noticed_at_start(tmp_path):
    db = tmp_path / "e.db"
    _fill_store(db, 30, snapshot_every=0).close()
    con = sqlite3.connect(db)
    with con:  # the old store did not notice: it started at seq 20
        con.execute("DELETE FROM outputs WHERE input_seq > 20")
        con.execute("DELETE FROM inputs WHERE seq > 20")
    con.close()
    with pytest.raises(StoreError, match="truncated: its head record says seq 30, the inputs end at seq 20"):
        Service(config(db, snapshot_every=0))


def test_a_lost_wal_is_noticed_at_start(tmp_path):
    """A crash leaves committed groups in events.db-wal; deleting it used to fork history."""
    db = tmp_path / "e.db"
    service = _fill_store(db, 20, snapshot_every=0)
    shutil.copy(db, tmp_path / "base.db")  # the main file without the WAL (no checkpoint yet)
    for i in range(20, 40):
        assert service.submit("deposit", {"asset": "USDT", "amount": "1", "ts_ns": i}, account_id="b").status == 200
    service.store.head_file.sync()
    head = (tmp_path / "e.db.head").read_bytes()
    # what a crash followed by `rm events.db-wal` leaves: the main file as of the last checkpoint
    # (here: before any commit reached it) and the head file of the last commit
    service.store._db.raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # noqa: SLF001 — so close() adds nothing
    service.close()
    shutil.copy(tmp_path / "base.db", db)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    (tmp_path / "e.db.head").write_bytes(head)
    with pytest.raises(StoreError, match="ends at seq 0 but the head file .* recorded seq 40: acknowledged"):
        Service(config(db, snapshot_every=0))
    r = _cli("serve", "--config", str(_toml(tmp_path, db)))
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr
    assert r.stdout.strip().count("\n") == 0 and "recorded seq 40" in r.stdout  # one line


def test_an_older_copy_of_the_store_with_a_different_tail_is_a_fork(tmp_path):
    db = tmp_path / "e.db"
    service = _fill_store(db, 10, snapshot_every=0)
    service.close()
    shutil.copy(db, tmp_path / "old.db")
    service = _fill_store(db, 0, snapshot_every=0)
    for i in range(10, 15):
        service.submit("deposit", {"asset": "USDT", "amount": "1", "ts_ns": i}, account_id="x")
    service.close()
    head = (tmp_path / "e.db.head").read_bytes()
    # the old copy goes on with other inputs up to seq 15: same length, another chain
    shutil.copy(tmp_path / "old.db", db)
    (tmp_path / "e.db.head").unlink()
    service = Service(config(db, snapshot_every=0), clock_ns=ManualClock())
    for i in range(10, 15):
        service.submit("deposit", {"asset": "USDT", "amount": "2", "ts_ns": i}, account_id="y")
    service.close()
    (tmp_path / "e.db.head").write_bytes(head)
    with pytest.raises(StoreError, match="forked history: at seq 15"):
        Service(config(db, snapshot_every=0))


def test_a_corrupt_file_is_one_line_not_a_traceback(tmp_path):
    db = tmp_path / "e.db"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open the store .*: file is not a database"):
        Service(config(db))
    r = _cli("serve", "--config", str(_toml(tmp_path, db)))
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr
    assert r.stdout.startswith("Error:") and "file is not a database" in r.stdout


def test_a_second_server_on_the_same_store_refuses_to_start(tmp_path):
    db = tmp_path / "e.db"
    first = _fill_store(db, 3)
    with pytest.raises(StoreLocked, match=f"another deleverage server \\(pid {os.getpid()}\\) is writing"):
        Service(config(db))
    r = _cli("serve", "--config", str(_toml(tmp_path, db)))  # the old code started a second writer
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr and "another deleverage server" in r.stdout
    first.close()
    Service(config(db), clock_ns=ManualClock()).close()  # the lock is released with the first


def test_store_verify_passes_a_good_store_and_names_a_changed_input(tmp_path):
    db = tmp_path / "e.db"
    _fill_store(db, 12, snapshot_every=5).close()
    toml = _toml(tmp_path, db)
    r = _cli("store", "verify", "--config", str(toml), "--replay")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert [line.split()[1] for line in lines] == ["open", "integrity", "head", "chain", "counts", "snapshots",
                                                   "snapshots", "replay"]
    assert "12 inputs, every output and chain digest recomputed" in r.stdout and "verified" in r.stdout
    con = sqlite3.connect(db)
    with con:  # behind the latest snapshot (seq 12): a start would not replay it, verify finds it
        con.execute("UPDATE inputs SET payload = replace(payload, '100000000', '200000000') WHERE seq = 4")
    con.close()
    r = _cli("store", "verify", "--database-url", f"sqlite:///{db}")
    assert r.returncode == 1 and "FAIL chain" in r.stdout and "seq 4: chain digest differs" in r.stdout


def test_kill_9_under_load_with_idempotent_retries_loses_nothing_and_applies_nothing_twice(tmp_path):
    """8 clients post keyed deposits; the server is killed -9 mid-load and restarted; clients retry
    whatever got no answer (and some that did). Every acknowledged deposit is there exactly once and
    the balances equal the sum of distinct deposits."""
    _kill_9_under_load(_toml(tmp_path, tmp_path / "e.db", snapshot_every=150), tmp_path)


def test_kill_9_under_load_with_idempotent_retries_on_postgresql(pg_url, tmp_path):
    """The same on PostgreSQL: the killed server's session (its advisory lock, its open transaction)
    ends with the process, and the restarted server finds every acknowledged input exactly once."""
    toml = _toml(tmp_path, tmp_path / "unused.db", url=pg_url, snapshot_every=150,
                 state_dir=f'"{tmp_path / "state"}"')
    _kill_9_under_load(toml, tmp_path)


def _kill_9_under_load(toml: Path, tmp_path: Path) -> None:
    server = ServerProcess(toml, tmp_path / "server.log")
    server.start()
    total, acked = 600, {}
    amounts = {f"k{i}": (i % 9) + 1 for i in range(total)}

    http = httpx.Client(timeout=5, limits=httpx.Limits(max_connections=8))

    def send(key: str, url: str) -> int | None:
        i = int(key[1:])
        try:
            r = http.post(f"{url}/v1/accounts/c{i % 8}/deposit", json={"asset": "USDT", "amount": str(amounts[key])},
                          headers={"Authorization": f"Bearer {FEEDER_KEY}", "Idempotency-Key": key})
        except httpx.HTTPError:
            return None
        return r.json()["seq"] if r.status_code == 200 else None

    keys_ = list(amounts)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = {pool.submit(send, k, server.url): k for k in keys_}
        deadline = time.monotonic() + 30
        while sum(f.done() for f in futures) < total // 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill9()  # mid-load: some requests in flight, some groups maybe half-written
        for f, k in futures.items():
            seq = f.result()
            if seq is not None:
                acked[k] = seq
    assert 0 < len(acked) < total
    server = ServerProcess(toml, tmp_path / "server2.log")
    server.start()
    try:
        retry = [k for k in keys_ if k not in acked] + keys_[:50]  # and some already acknowledged
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            seqs = dict(zip(retry, pool.map(lambda k: send(k, server.url), retry), strict=True))
        assert all(s is not None for s in seqs.values())
        for k in keys_[:50]:
            if k in acked:
                assert seqs[k] == acked[k]  # a retry of an acknowledged input answers its first seq
        headers = {"Authorization": f"Bearer {FEEDER_KEY}"}
        state = http.get(server.url + "/v1/state", headers=headers).json()
        assert state["rows"]["inputs"] == total  # each key applied exactly once
        balances = {f"c{j}": http.get(f"{server.url}/v1/accounts/c{j}", headers=headers).json()["balances"]["USDT"]
                    for j in range(8)}
        for j in range(8):
            expected = sum(a for k, a in amounts.items() if int(k[1:]) % 8 == j)
            assert balances[f"c{j}"] == f"{expected}.00000000"
        assert state["totals"]["USDT"]["conserved"] is True
    finally:
        server.stop()
        http.close()
    r = _cli("store", "verify", "--config", str(toml))
    assert r.returncode == 0, r.stdout


def _toml(tmp_path: Path, db: Path, url: str | None = None, **extra: object) -> Path:
    lines = [f'database_url = "{url or f"sqlite:///{db}"}"', 'policy = "binance"', 'instruments = ["BTCUSDT"]',
             'insurance_fund = { USDT = "100000" }', 'maintenance_tiers = { BTCUSDT = "flat:0.004" }',
             "ts_window_behind_s = inf"]
    lines += [f"{k} = {str(v).lower() if isinstance(v, bool) else v}" for k, v in extra.items()]
    for key in keys():
        lines += ["", "[[api_keys]]", f'name = "{key["name"]}"', f'role = "{key["role"]}"', f'sha256 = "{key["sha256"]}"']
        if "accounts" in key:
            lines.append(f"accounts = {key['accounts']!r}".replace("'", '"'))
    path = tmp_path / "service.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
