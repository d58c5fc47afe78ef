"""Peer replay for bench_l2_replay: hftbacktest 2.4 with a do-nothing strategy, run inside ``.venv-hbt``.

hftbacktest pins older numpy/numba than deleverage, so this script never imports deleverage; the parent
benchmark runs it with ``.venv-hbt/bin/python`` and reads one JSON object per measurement from stdout.

Inputs (the same event files deleverage replays):
  --raw PATH      a Binance raw capture, converted with hftbacktest's own converter
                  (``hftbacktest.data.utils.binancefutures.convert``), then tiled ``--tile`` times;
  --events PATH   an ``.npz`` of level updates written by bench_l2_replay (snapshot + synthetic updates),
                  turned into hftbacktest events with hftbacktest's own ordering/validation helpers.
Only depth events (snapshot, clear, update) are replayed by default — the events deleverage replays;
``--with-trades`` keeps the converter's trade events too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
from hftbacktest import (
    BUY_EVENT,
    DEPTH_CLEAR_EVENT,
    DEPTH_EVENT,
    DEPTH_SNAPSHOT_EVENT,
    SELL_EVENT,
    BacktestAsset,
    HashMapMarketDepthBacktest,
)
from hftbacktest.binding import event_dtype
from hftbacktest.data.utils import binancefutures
from hftbacktest.data.validation import correct_event_order, validate_event_order
from numba import njit

HOUR_NS = 3_600_000_000_000


@njit
def noop_strategy(hbt):
    """Advance the clock an hour at a time until the data ends; read nothing, send nothing."""
    steps = 0
    while hbt.elapse(HOUR_NS) == 0:
        steps += 1
    return steps


def depth_only(data: np.ndarray) -> np.ndarray:
    kind = data["ev"] & 0xFF
    keep = (kind == DEPTH_EVENT) | (kind == DEPTH_CLEAR_EVENT) | (kind == DEPTH_SNAPSHOT_EVENT)
    return data[keep]


def tile(data: np.ndarray, times: int) -> np.ndarray:
    """The same events ``times`` over, each copy shifted past the previous one in time."""
    span = int(max(data["exch_ts"].max(), data["local_ts"].max()) - data["exch_ts"].min()) + 1_000_000_000
    parts = []
    for index in range(times):
        part = data.copy()
        part["exch_ts"] += index * span
        part["local_ts"] += index * span
        parts.append(part)
    return np.concatenate(parts)


def from_level_updates(path: str) -> np.ndarray:
    """hftbacktest events from bench_l2_replay's npz (float prices/qty, int sides, ns times)."""
    src = np.load(path)
    snap_side, snap_px, snap_qty = src["snapshot_side"], src["snapshot_price"], src["snapshot_qty"]
    ts0 = int(src["ts_local"][0]) - 1
    n_snap = len(snap_side)
    out = np.zeros(n_snap + len(src["side"]), dtype=event_dtype)
    out["ev"][:n_snap] = DEPTH_SNAPSHOT_EVENT | np.where(snap_side > 0, BUY_EVENT, SELL_EVENT)
    out["exch_ts"][:n_snap] = out["local_ts"][:n_snap] = ts0
    out["px"][:n_snap], out["qty"][:n_snap] = snap_px, snap_qty
    body = out[n_snap:]
    body["ev"] = DEPTH_EVENT | np.where(src["side"] > 0, BUY_EVENT, SELL_EVENT)
    body["exch_ts"], body["local_ts"] = src["ts_event"], src["ts_local"]
    body["px"], body["qty"] = src["price"], src["qty"]
    ordered = correct_event_order(out, np.argsort(out["exch_ts"], kind="mergesort"),
                                  np.argsort(out["local_ts"], kind="mergesort"))
    validate_event_order(ordered)
    return ordered


def replay(data: np.ndarray, tick: float, lot: float) -> dict[str, float]:
    """Wall time of the no-op strategy over ``data`` (the JIT is warmed on a small slice first)."""
    def build(events: np.ndarray):
        asset = (
            BacktestAsset().data(events).linear_asset(1.0).constant_order_latency(0, 0)
            .risk_adverse_queue_model().no_partial_fill_exchange().trading_value_fee_model(0.0, 0.0)
            .tick_size(tick).lot_size(lot).last_trades_capacity(0)
        )
        return HashMapMarketDepthBacktest([asset])

    warm = build(np.ascontiguousarray(data[:1000]))
    noop_strategy(warm)
    warm.close()
    started = time.perf_counter()
    hbt = build(np.ascontiguousarray(data))
    built = time.perf_counter()
    noop_strategy(hbt)
    finished = time.perf_counter()
    hbt.close()
    return {"events": int(len(data)), "build_s": built - started, "replay_s": finished - built,
            "total_s": finished - started, "events_per_s": len(data) / (finished - built)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw")
    parser.add_argument("--events")
    parser.add_argument("--tile", type=int, default=1)
    parser.add_argument("--tick", type=float, default=0.1)
    parser.add_argument("--lot", type=float, default=0.001)
    parser.add_argument("--with-trades", action="store_true")
    args = parser.parse_args()
    if args.raw:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as quiet:
            stdout, sys.stdout = sys.stdout, quiet  # the converter prints progress lines
            try:
                data = binancefutures.convert(args.raw, os.path.join(tmp, "x.npz"), buffer_size=5_000_000)
            finally:
                sys.stdout = stdout
        convert_s = time.perf_counter() - started
        if not args.with_trades:
            data = depth_only(data)
    else:
        started = time.perf_counter()
        data = from_level_updates(args.events)
        convert_s = time.perf_counter() - started
    data = tile(data, args.tile) if args.tile > 1 else data
    result = replay(data, args.tick, args.lot)
    result["convert_s"] = convert_s
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
