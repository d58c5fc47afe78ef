"""The service at load (group commit) and its restart after 1,000,000 inputs, as ratios to baselines.

**Load.** ``deleverage serve`` (uvicorn with uvloop + httptools, SQLite in WAL mode with
``synchronous=FULL``: every acknowledged input is fsynced) on a store holding 10,000 accounts with
positions, driven by a bounded load generator of this file: 8 HTTP/1.1 keep-alive connections, each
posting marks (each with its own ``Idempotency-Key``) one after the other for ``--seconds``; the first
second is not counted. Baseline, same generator, same run: a no-op ASGI endpoint under the same
uvicorn settings that reads the body and answers a fixed JSON (what HTTP alone costs here). Printed:
accepted inputs/s, p50/p99 latency, the ratio to the no-op, the mean group size and commit time
from the service's own ``/metrics``, and this disk's fdatasync median measured in the same run.
The writer prepares what arrives while a group's fsync runs into the next group, but with one
request in flight per connection a group holds at most 8 inputs, so throughput is bounded by
8 / commit time — the line "bound" prints it. Then the same with ``POST /v1/inputs`` carrying 10 marks per request (a feed's
batches): up to 80 inputs share a commit, bound 80 / commit time.

**Restart.** A store of ``--inputs`` inputs (10,000 accounts opened, then marks on a random walk with
book snapshots every 500 marks, a few liquidations), written in groups through the service's own
validation and apply path with a snapshot every 20,000 inputs, then a tail of 19,999 inputs after the
last snapshot (the worst case) and a crash (no final snapshot). Restart = open + check the head + load the latest
verified snapshot + replay the tail (with every output compared). Baseline, same run, same store:
the restart the old service did — a full replay from the genesis.

Usage: ``python benchmarks/bench_service.py [--inputs 1000000] [--seconds 5] [--skip-restart]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from deleverage.service import ServiceConfig
from deleverage.service.auth import hash_key
from deleverage.service.core import Request, Service

KEY = "bench-feeder-key"
ACCOUNTS = 10_000
CONNECTIONS = 8
PER_REQUEST = 10


def config(db: Path, **extra: object) -> ServiceConfig:
    return ServiceConfig.from_dict({
        "database_url": f"sqlite:///{db}", "policy": "binance", "instruments": ["BTCUSDT"],
        "insurance_fund": {"USDT": "1000000"}, "maintenance_tiers": {"BTCUSDT": "flat:0.004"},
        "api_keys": [{"name": "bench", "role": "feeder", "sha256": hash_key(KEY)}],
        "ts_window_ahead_s": float("inf"), "ts_window_behind_s": float("inf"), **extra})


def toml(path: Path, db: Path, **extra: object) -> Path:
    lines = [f'database_url = "sqlite:///{db}"', 'policy = "binance"', 'instruments = ["BTCUSDT"]',
             'insurance_fund = { USDT = "1000000" }', 'maintenance_tiers = { BTCUSDT = "flat:0.004" }',
             "ts_window_ahead_s = inf", "ts_window_behind_s = inf",
             *(f"{k} = {v}" for k, v in extra.items()),
             "", "[[api_keys]]", 'name = "bench"', 'role = "feeder"', f'sha256 = "{hash_key(KEY)}"']
    path.write_text("\n".join(lines) + "\n")
    return path


# --- building stores ---------------------------------------------------------------------------------------
def open_accounts(service: Service, n: int, rng: np.random.Generator) -> int:
    """n accounts with collateral and a position (long/short pairs at 2-20x), and a deep book."""
    reqs: list[Request] = []
    book = {"symbol": "BTCUSDT", "bids": [[str(60_000 - i), "50"] for i in range(1, 200)],
            "asks": [[str(60_000 + i), "50"] for i in range(1, 200)], "ts_ns": 1}
    reqs.append(service.parse("book", book, "bench", None))
    for i in range(n):
        qty = max(1, int(rng.lognormal(2.5, 1.0)))  # lots of 0.001 BTC
        lev = float(rng.uniform(2, 20))
        collateral = qty * 60 / lev + 1
        reqs.append(service.parse("deposit", {"asset": "USDT", "amount": f"{collateral:.2f}", "ts_ns": 1},
                                  "bench", None, f"a{i}"))
        reqs.append(service.parse("fill", {"symbol": "BTCUSDT", "side": "buy" if i % 2 else "sell",
                                           "qty": f"{qty / 1000:.3f}", "price": "60000", "ts_ns": 1},
                                  "bench", None, f"a{i}"))
    for at in range(0, len(reqs), 1_000):
        service.submit_many(reqs[at:at + 1_000])
    return len(reqs)


def write_inputs(service: Service, n: int, rng: np.random.Generator, start_ts: int) -> int:
    """``n`` more inputs: marks on a random walk with a 7% dip every 200,000 inputs (liquidations of
    the most levered), a book around the mark every 500 marks."""
    done, ts, price = 0, start_ts, 600_000
    steps = rng.normal(0, 6, n).astype(int)
    group: list[Request] = []
    while done < n:
        ts += 1_000_000
        phase = done % 200_000
        drift = -14 if 100_000 <= phase < 103_000 else 14 if 103_000 <= phase < 106_000 else 0
        price = int(min(max(price + steps[done] + drift, 520_000), 680_000))
        if done % 500 == 499:
            mid = price // 10
            book = {"symbol": "BTCUSDT", "bids": [[str(mid - i), "50"] for i in range(1, 50)],
                    "asks": [[str(mid + i), "50"] for i in range(1, 50)], "ts_ns": ts}
            group.append(service.parse("book", book, "bench", None))
        else:
            group.append(service.parse("mark", {"symbol": "BTCUSDT", "price": f"{price / 10:.1f}", "ts_ns": ts},
                                       "bench", None))
        done += 1
        if len(group) == 2_000:
            service.submit_many(group)
            group = []
    if group:
        service.submit_many(group)
    return ts


def bench_restart(inputs: int, root: Path) -> None:
    rng = np.random.default_rng(20_260_101)
    db = root / "restart.db"
    cfg = config(db, snapshot_every=20_000, snapshot_fork=False)
    service = Service(cfg)
    t0 = time.perf_counter()
    opened = open_accounts(service, ACCOUNTS, rng)
    tail = 19_999  # the worst case: one input short of the next snapshot
    ts = write_inputs(service, max(0, inputs - opened - tail), rng, 1)
    body = service.state.seq
    service.snapshot_seq = service.state.seq
    service.write_snapshot()  # the last scheduled snapshot; then a tail it does not cover
    write_inputs(service, tail, rng, ts)
    written = time.perf_counter() - t0
    head = service.store.head
    liquidations = service.state.liquidations
    service.writer.shutdown()
    service.store.close()  # a crash: no final snapshot
    size = sum(f.stat().st_size for f in root.glob("restart.db*") if f.is_file())
    print(f"store: {head.seq:,} inputs ({liquidations} liquidations) written in {written:.0f} s "
          f"through validate + apply + group commit ({head.seq / written:,.0f} inputs/s in-process), "
          f"{size / 2**20:,.0f} MB; latest snapshot at seq {body:,}")

    started = time.perf_counter()
    restarted = Service(cfg)
    restart_s = time.perf_counter() - started
    assert (restarted.state.seq, restarted.state.chain) == (head.seq, head.chain)
    replayed = restarted.replayed
    restarted.writer.shutdown()
    restarted.store.close()

    snaps = root / "restart.db.snapshots"
    snaps.rename(root / "hidden.snapshots")
    started = time.perf_counter()
    full = Service(cfg)
    full_s = time.perf_counter() - started
    assert (full.state.seq, full.state.chain) == (head.seq, head.chain)
    full.writer.shutdown()
    full.store.close()
    (root / "hidden.snapshots").rename(snaps)
    print(f"restart after {head.seq:,} inputs: {restart_s:.2f} s (snapshot at {body:,} + {replayed:,} replayed, "
          f"every output compared; target <= 2 s)")
    print(f"baseline full replay from the genesis (the old restart): {full_s:.1f} s -> restart is "
          f"{full_s / restart_s:,.0f}x faster ({restart_s / full_s:.4f} of the baseline)")


# --- load ---------------------------------------------------------------------------------------------------
def _mark(i: int, idx: int) -> str:
    return f'{{"symbol":"BTCUSDT","price":"{60_000 + ((i * 8 + idx) % 40) / 10:.1f}"}}'


async def _connection(port: int, path: str, deadline: float, warm: float, lat: list[float], idx: int,
                      keyed: bool, per_request: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    i, errors = 0, 0
    while time.perf_counter() < deadline:
        if per_request == 1:
            body = _mark(i, idx).encode()
            key = f"idempotency-key: load-{idx}-{i}\r\n" if keyed else ""
        else:
            items = ",".join(f'{{"kind":"mark","body":{_mark(i * per_request + j, idx)},'
                             f'"idempotency_key":"load-{idx}-{i}-{j}"}}' for j in range(per_request))
            body, key = f'{{"inputs":[{items}]}}'.encode(), ""
        head = (f"POST {path} HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {KEY}\r\n{key}"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n").encode()
        t = time.perf_counter()
        writer.write(head + body)
        response = await reader.readuntil(b"\r\n\r\n")
        at = response.lower().index(b"content-length:")
        await reader.readexactly(int(response[at + 15:response.index(b"\r\n", at)]))
        if not response.startswith(b"HTTP/1.1 200"):
            errors += 1
        elif t >= warm:
            lat.extend([time.perf_counter() - t] * per_request)
        i += 1
    writer.close()
    return errors


async def load(port: int, path: str, seconds: float, keyed: bool,
               per_request: int = 1) -> tuple[float, float, float, int]:
    """(inputs/s, p50 ms, p99 ms, non-200 answers) of 8 connections posting for ``seconds``."""
    lat: list[float] = []
    start = time.perf_counter()
    warm, deadline = start + 1.0, start + 1.0 + seconds
    errors = await asyncio.gather(*[_connection(port, path, deadline, warm, lat, i, keyed, per_request)
                                    for i in range(CONNECTIONS)])
    lat.sort()
    elapsed = time.perf_counter() - warm
    return len(lat) / elapsed, lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3, sum(errors)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not start")


async def noop_app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def, type-arg]
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    body = b'{"seq":0,"digest":"","outputs":{},"liquidations":[]}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def fsync_median_ms(directory: Path, n: int = 200) -> float:
    path = directory / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    times = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 4096)
            t = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times) * 1e3


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


def bench_load(seconds: float, root: Path) -> None:
    import urllib.request  # noqa: PLC0415

    db = root / "load.db"
    service = Service(config(db, snapshot_fork=False))
    open_accounts(service, ACCOUNTS, np.random.default_rng(7))
    service.close()  # a snapshot: the server starts from it
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    noop_port = free_port()
    noop = subprocess.Popen([sys.executable, __file__, "--noop-server", str(noop_port)], env=env,
                            start_new_session=True)
    try:
        wait_port(noop_port, noop)
        base_rps, base_p50, base_p99, _ = asyncio.run(load(noop_port, "/v1/marks", seconds, keyed=True))
    finally:
        os.killpg(noop.pid, signal.SIGTERM)
        noop.wait(20)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "deleverage", "serve", "--config",
                               str(toml(root / "load.toml", db)), "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_port(port, server)
        rps, p50, p99, errors = asyncio.run(load(port, "/v1/marks", seconds, keyed=True))
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {KEY}"})
        text = urllib.request.urlopen(request, timeout=10).read().decode()  # of the single-input phase
        many = asyncio.run(load(port, "/v1/inputs", seconds, keyed=True, per_request=PER_REQUEST))
        after = urllib.request.urlopen(request, timeout=10).read().decode()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    disk = fsync_median_ms(root)
    group, commit_ms = group_figures(text)
    many_group, many_commit_ms = group_figures(after, text)
    print(f"load: {CONNECTIONS} connections, {seconds:.0f} s, marks with an Idempotency-Key each, "
          f"{ACCOUNTS:,} accounts with positions")
    print(f"no-op endpoint (baseline, same uvicorn):  {base_rps:8,.0f} req/s   p50 {base_p50:6.2f} ms   "
          f"p99 {base_p99:6.2f} ms")
    print(f"service, accepted inputs (fsynced):       {rps:8,.0f} inputs/s  p50 {p50:6.2f} ms   "
          f"p99 {p99:6.2f} ms   ({errors} not 200)")
    print(f"ratio service / no-op: {rps / base_rps:.2f} (throughput), p99 x{p99 / base_p99:.1f}; "
          f"target >= 5,000 inputs/s with p99 <= 50 ms")
    print(f"group commit: {group:.1f} inputs per commit on average, commit {commit_ms:.2f} ms mean "
          f"(transaction + fsync); this disk's fdatasync median now {disk:.2f} ms; "
          f"bound {CONNECTIONS} in flight / commit = {CONNECTIONS / commit_ms * 1e3:,.0f} inputs/s")
    print(f"POST /v1/inputs, {PER_REQUEST} marks per request: {many[0]:8,.0f} inputs/s  p50 {many[1]:6.2f} ms   "
          f"p99 {many[2]:6.2f} ms per request ({many[3]} not 200); ratio to the no-op's requests/s "
          f"{many[0] / base_rps:.2f}")
    print(f"  group commit: {many_group:.1f} inputs per commit, commit {many_commit_ms:.2f} ms mean; bound "
          f"{CONNECTIONS * PER_REQUEST} in flight / commit = {CONNECTIONS * PER_REQUEST / many_commit_ms * 1e3:,.0f}"
          f" inputs/s; target >= 5,000 inputs/s with p99 <= 50 ms")


def group_figures(text: str, before: str = "") -> tuple[float, float]:
    """(mean inputs per commit, mean commit ms) from /metrics, of the span since ``before``."""
    def delta(name: str) -> float:
        return metric(text, name) - (metric(before, name) if before else 0.0)

    group = delta("deleverage_commit_group_inputs_sum") / delta("deleverage_commit_group_inputs_count")
    return group, delta("deleverage_commit_seconds_sum") / delta("deleverage_commit_seconds_count") * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inputs", type=int, default=int(os.environ.get("BENCH_SERVICE_INPUTS", 1_000_000)))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--skip-restart", action="store_true")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--noop-server", type=int, default=None)
    args = parser.parse_args()
    if args.noop_server is not None:
        import uvicorn  # noqa: PLC0415

        from deleverage.service import server_options  # noqa: PLC0415

        options = server_options()
        options["log_level"] = "warning"
        uvicorn.run(noop_app, host="127.0.0.1", port=args.noop_server, **options)
        return
    root = Path(tempfile.mkdtemp(prefix="deleverage-bench-service-", dir=os.environ.get("BENCH_DIR")))
    try:
        if not args.skip_load:
            bench_load(args.seconds, root)
        if not args.skip_restart:
            bench_restart(args.inputs, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
