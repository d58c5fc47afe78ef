"""L2 replay throughput: deleverage's numba array path against hftbacktest 2.4 on the same events.

1. Synthetic BTCUSDT-like depth updates (seeded): rows/s of ``L2Book.apply_depth_arrays`` (goal ≥ 3 M/s).
2. The real capture ``binance-usdm/btcusdt_20240808.gz`` tiled ×20 (snapshot re-applied per tile, update
   ids shifted so each tile continues the chain): wall time of the replay.
3. The peer: hftbacktest 2.4 in its own venv ``.venv-hbt`` (it pins older numpy/numba), a no-op strategy
   elapsing until the end of the same events — synthetic ones written to an npz, and the real file
   converted with hftbacktest's own converter. Figures are printed as deleverage/hftbacktest ratios
   (goal ≥ 1.0). Nothing here asserts a time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from deleverage.data.binance_stream import Capture, read_capture
from deleverage.data.records import ASK, BID, DEPTH_EVENT_DTYPE
from deleverage.venues.l2 import L2Book

ROOT = Path(__file__).resolve().parents[1]
HBT_VENV = ROOT / ".venv-hbt"
HBT_REQUIREMENT = "hftbacktest>=2.4,<2.5"
REAL_FILE = ROOT.parent / "shared" / "data" / "binance-usdm" / "btcusdt_20240808.gz"
TILES = 20
SYNTHETIC_ROWS = 5_000_000
SEED = 20240808
MID0_TICKS = 618_000  # BTCUSDT at 61,800.0 with tick 0.1


# --- synthetic BTCUSDT-like updates ---------------------------------------------------------------------
def synthetic_updates(rng: np.random.Generator, n_rows: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Depth rows around a random-walk mid (bids ≤ mid−1, asks ≥ mid+1) and the initial snapshot.

    Each event carries ~Poisson(20) level updates, distances from the mid geometric (most within a few
    dozen ticks, 1% far away), 25% of updates remove a level; when the mid moves one tick the event also
    removes the level the move would cross, as the venue does. Returns (rows, snapshot levels, snap u).
    """
    per_event = 1 + rng.poisson(20, size=n_rows // 20 + 1)
    n_events = int(np.searchsorted(np.cumsum(per_event), n_rows)) + 1
    per_event = per_event[:n_events]
    step = rng.choice(np.array([-1, 0, 1]), size=n_events, p=[0.05, 0.9, 0.05])
    mid = MID0_TICKS + np.cumsum(step)
    counts = per_event + (step != 0)
    total = int(counts.sum())
    event = np.repeat(np.arange(n_events), counts)
    first_row = np.cumsum(counts) - counts
    rows = np.zeros(total, dtype=DEPTH_EVENT_DTYPE)
    side = np.where(rng.random(total) < 0.5, BID, ASK).astype(np.int8)
    distance = rng.geometric(0.08, size=total)
    far = rng.random(total) < 0.01
    distance[far] = rng.integers(100, 20_000, size=int(far.sum()))
    mid_row = mid[event]
    price = np.where(side == BID, mid_row - distance, mid_row + distance)
    qty = np.rint(rng.lognormal(mean=4.0, sigma=1.5, size=total)).astype(np.int64) + 1
    qty[rng.random(total) < 0.25] = 0
    moved = np.flatnonzero(step != 0)  # the cleanup row is the event's first row
    cleanup = first_row[moved]
    side[cleanup] = np.where(step[moved] < 0, BID, ASK)
    price[cleanup] = mid[moved]  # the price that the move put on the wrong side
    qty[cleanup] = 0
    base_u = 7_000_000_000
    last_u = base_u + 10 * (np.arange(n_events) + 1)
    rows["first_update_id"] = np.repeat(last_u - 9, counts)
    rows["last_update_id"] = np.repeat(last_u, counts)
    rows["prev_update_id"] = np.repeat(np.concatenate([[base_u], last_u[:-1]]), counts)
    rows["side"], rows["price_ticks"], rows["qty_lots"] = side, price, qty
    ts_event = 1_723_161_256_000_000_000 + event.astype(np.int64) * 1_000_000
    rows["ts_event"] = rows["ts_transact"] = ts_event
    rows["ts_local"] = ts_event + 5_000_000
    snapshot = np.zeros(2000, dtype=[("side", np.int8), ("price_ticks", np.int64), ("qty_lots", np.int64)])
    snapshot["side"][:1000], snapshot["side"][1000:] = BID, ASK
    snapshot["price_ticks"][:1000] = MID0_TICKS - 1 - np.arange(1000)
    snapshot["price_ticks"][1000:] = MID0_TICKS + 1 + np.arange(1000)
    snapshot["qty_lots"] = np.rint(rng.lognormal(4.0, 1.5, size=2000)).astype(np.int64) + 1
    return rows, snapshot, base_u + 5


def fresh_book(snapshot: np.ndarray, snapshot_u: int) -> L2Book:
    book = L2Book()
    bids = snapshot[snapshot["side"] == BID][["price_ticks", "qty_lots"]]
    asks = snapshot[snapshot["side"] == ASK][["price_ticks", "qty_lots"]]
    book.apply_snapshot([tuple(map(int, r)) for r in bids], [tuple(map(int, r)) for r in asks], snapshot_u)
    return book


def time_synthetic(rows: np.ndarray, snapshot: np.ndarray, snapshot_u: int) -> dict[str, float]:
    fresh_book(snapshot, snapshot_u).apply_depth_arrays(rows[:10_000])  # compile / load the cache
    best = float("inf")
    for _ in range(3):
        book = fresh_book(snapshot, snapshot_u)
        started = time.perf_counter()
        stats = book.apply_depth_arrays(rows)
        best = min(best, time.perf_counter() - started)
    return {"rows": len(rows), "seconds": best, "rows_per_s": len(rows) / best,
            "crossed_events": stats.crossed_events, "gaps": stats.gaps}


def write_peer_events(path: Path, rows: np.ndarray, snapshot: np.ndarray) -> None:
    """The synthetic events as plain float arrays that the hftbacktest side can read with any numpy."""
    np.savez(
        path, side=rows["side"], price=rows["price_ticks"] * 0.1, qty=rows["qty_lots"] * 0.001,
        ts_event=rows["ts_event"], ts_local=rows["ts_local"], snapshot_side=snapshot["side"],
        snapshot_price=snapshot["price_ticks"] * 0.1, snapshot_qty=snapshot["qty_lots"] * 0.001,
    )


# --- the real capture tiled ------------------------------------------------------------------------------
def time_real_tiled(capture: Capture, tiles: int) -> dict[str, float]:
    """Replay the capture ``tiles`` times; each tile re-applies the snapshot (as hftbacktest's file does)."""
    snap, depth = capture.snapshot, capture.depth
    if snap is None:
        raise SystemExit("the benchmark file must start with a snapshot")
    shift = int(depth["last_update_id"][-1] - depth["prev_update_id"][0])
    parts = []
    for index in range(tiles):
        part = depth.copy()
        for name in ("first_update_id", "last_update_id", "prev_update_id"):
            part[name] += index * shift
        parts.append(part)
    L2Book().apply_snapshot(snap.bids, snap.asks, snap.last_update_id)  # warm the kernels
    best = float("inf")
    for _ in range(3):
        book = L2Book()
        started = time.perf_counter()
        applied = 0
        for index, part in enumerate(parts):
            book.apply_snapshot(snap.bids, snap.asks, snap.last_update_id + index * shift)
            applied += book.apply_depth_arrays(part).rows_applied
        best = min(best, time.perf_counter() - started)
    rows = len(depth) * tiles + (len(snap.bids) + len(snap.asks)) * tiles
    return {"rows": rows, "rows_applied": applied, "seconds": best, "rows_per_s": rows / best}


# --- the peer --------------------------------------------------------------------------------------------
def hbt_python() -> tuple[Path | None, str]:
    """``.venv-hbt/bin/python`` with hftbacktest importable (created once, then reused), or why not."""
    python = HBT_VENV / "bin" / "python"
    check = [str(python), "-c", "import hftbacktest, numba"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python, "reused"
    print(f"creating {HBT_VENV} and installing '{HBT_REQUIREMENT}' (once)...", flush=True)
    made = subprocess.run([sys.executable, "-m", "venv", str(HBT_VENV)], capture_output=True, text=True)
    if made.returncode != 0:
        return None, f"python -m venv failed: {made.stderr.strip()[-300:]}"
    pip = subprocess.run([str(HBT_VENV / "bin" / "pip"), "install", "-q", HBT_REQUIREMENT],
                         capture_output=True, text=True)
    if pip.returncode != 0 or subprocess.run(check, capture_output=True).returncode != 0:
        return None, f"pip install '{HBT_REQUIREMENT}' failed: {pip.stderr.strip()[-300:]}"
    return python, "installed"


def run_peer(python: Path, args: list[str]) -> dict[str, float] | str:
    script = ROOT / "benchmarks" / "hbt_replay.py"
    result = subprocess.run([str(python), str(script), *args], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": ""})
    if result.returncode != 0:
        return f"hbt_replay.py failed: {result.stderr.strip()[-400:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def report(name: str, ours: dict[str, float], peer: dict[str, float] | str) -> None:
    print(f"[{name}] deleverage: {ours['rows']:,} rows in {ours['seconds']:.3f} s = "
          f"{ours['rows_per_s'] / 1e6:.1f} M rows/s")
    if isinstance(peer, str):
        print(f"[{name}] hftbacktest: unavailable — {peer}")
        return
    print(f"[{name}] hftbacktest 2.4 no-op: {peer['events']:,} events in {peer['replay_s']:.3f} s = "
          f"{peer['events_per_s'] / 1e6:.1f} M events/s (conversion {peer['convert_s']:.1f} s, not timed)")
    print(f"[{name}] ratio deleverage/hftbacktest throughput = "
          f"{ours['rows_per_s'] / peer['events_per_s']:.2f}; wall-time ratio hftbacktest/deleverage = "
          f"{peer['replay_s'] / ours['seconds']:.2f} (goal >= 1.0)")


def main() -> int:
    rng = np.random.default_rng(SEED)
    rows, snapshot, snapshot_u = synthetic_updates(rng, SYNTHETIC_ROWS)
    synthetic = time_synthetic(rows, snapshot, snapshot_u)
    print(f"[synthetic] goal >= 3.0 M rows/s: {synthetic['rows_per_s'] / 3e6:.1f}x the goal "
          f"(crossed events {synthetic['crossed_events']}, gaps {synthetic['gaps']})")
    real = None
    if REAL_FILE.exists():
        started = time.perf_counter()
        capture = read_capture(REAL_FILE)
        print(f"[real] parsed {REAL_FILE.name}: {len(capture.depth):,} depth rows in "
              f"{time.perf_counter() - started:.2f} s (read_capture, not part of the replay time)")
        real = time_real_tiled(capture, TILES)
    else:
        print(f"[real] {REAL_FILE} absent: real-file replay skipped")
    python, how = hbt_python()
    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / "synthetic_events.npz"
        write_peer_events(events, rows, snapshot)
        peer_syn = run_peer(python, ["--events", str(events)]) if python else how
    report("synthetic", synthetic, peer_syn)
    if real is not None:
        peer_real = run_peer(python, ["--raw", str(REAL_FILE), "--tile", str(TILES)]) if python else how
        report(f"real x{TILES}", real, peer_real)
    if python:
        print(f"(hftbacktest venv {how}: {HBT_VENV})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
