"""Issue 7: replay a real L2 capture at full resolution with the engine on 1,000,000 accounts, beside hftbacktest.

What is timed (deleverage): the bundled capture ``btcusdt_20240808.gz`` tiled ×20 in time (each tile
re-applies the REST snapshot, update ids and timestamps shifted so the chain and the clock continue).
Every depth event goes through the L2 book (``L2Book.apply_depth_arrays``, the numba array replay); the
mark is floor((best bid + best ask) / 2) after each event, and the LiquidationEngine (binance preset,
1,000,000 accounts) gets ``on_mark`` whenever that mark changes. The engine takes from a second copy of
the book that is brought up to the current event (same rows, same kernel) whenever the engine reads
it, so a liquidation walks the depth the venue had at that event; our takes remove lots from it until
the venue overwrites the level. The mark itself is the recorded mid (the exogenous path of a replay).

The peer, in the same run: hftbacktest 2.4 (``.venv-hbt``, see bench_l2_replay.py) converts the same
raw file with its own converter (``hftbacktest.data.utils.binancefutures.convert``), tiles it ×20 and
replays it with a no-op strategy. Printed: events/s of both, the wall-time ratio hftbacktest/deleverage
(goal ≥ 1.0: at least as fast), build times separately, peak memory. Nothing asserts a time.
Usage: ``python benchmarks/bench_replay.py [n_accounts] [tiles]``.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import numpy as np

from deleverage.core.instruments import BTCUSDT
from deleverage.core.tiers import MarginTiers
from deleverage.data.binance_stream import Capture, read_capture
from deleverage.engine import LiquidationEngine, get_policy
from deleverage.engine.detect import bulk_open_positions
from deleverage.testing import make_ledger
from deleverage.venues.l2 import L2Book

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_l2_replay import hbt_python, run_peer  # noqa: E402 — sibling benchmark, same folder

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "src" / "deleverage" / "datasets" / "l2" / "btcusdt_20240808.gz"
N_ACCOUNTS = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
TILES = int(sys.argv[2]) if len(sys.argv) > 2 else 20
SEED = 20240808
SYMBOL = "BTCUSDT"
TIERS = MarginTiers.from_brackets([(0, "0.004"), (50_000, "0.005"), (250_000, "0.01"),
                                   (1_000_000, "0.025"), (10_000_000, "0.05")])
MINOR_PER_TICK_LOT = 10_000  # 0.1 USDT × 0.001 BTC × 1e8 minor units per USDT


# --- the tiled events -------------------------------------------------------------------------------------
def tiled_parts(capture: Capture, tiles: int) -> tuple[list[np.ndarray], int, int]:
    """The depth rows ``tiles`` times: update ids shifted to continue the chain, times shifted by the span."""
    depth = capture.depth
    id_shift = int(depth["last_update_id"][-1] - depth["prev_update_id"][0])
    span_ns = int(depth["ts_event"][-1] - depth["ts_event"][0]) + 1_000_000_000
    parts = []
    for index in range(tiles):
        part = depth.copy()
        for name in ("first_update_id", "last_update_id", "prev_update_id"):
            part[name] += index * id_shift
        for name in ("ts_event", "ts_local", "ts_transact"):
            part[name] += index * span_ns
        parts.append(part)
    return parts, id_shift, span_ns


def event_index(part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """End row (exclusive) and venue time of every event (rows sharing an update id) of one tile."""
    last_u = part["last_update_id"]
    ends = np.append(np.flatnonzero(last_u[1:] != last_u[:-1]) + 1, len(part))
    ts = np.maximum.accumulate(part["ts_event"][ends - 1])  # the engine's clock never goes back
    return ends, ts


# --- the population ---------------------------------------------------------------------------------------
def population(rng: np.random.Generator, mid_ticks: int, low_ticks: int, high_ticks: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Long/short pairs opened against each other around the capture's first mid (signed lots, entry
    ticks, collateral minor units). Leverage 2–100×; accounts already within 2 bps of liquidation at the
    first mid get 10× leverage instead, so the liquidations are the ones the recorded path causes."""
    pairs = N_ACCOUNTS // 2
    lots = np.maximum(1, np.round(rng.lognormal(2.5, 1.0, pairs))).astype(np.int64)
    entry = np.round(mid_ticks * np.exp(rng.normal(0, 0.002, pairs))).astype(np.int64)
    qty = np.empty(2 * pairs, np.int64)
    qty[0::2], qty[1::2] = lots, -lots
    entry_ticks = np.repeat(entry, 2)
    leverage = np.clip(rng.lognormal(np.log(20), 0.7, 2 * pairs), 2.0, 100.0)
    notional = np.abs(qty) * entry_ticks * MINOR_PER_TICK_LOT
    collateral = np.ceil(notional / leverage)
    rate = 0.004  # every position here is below the first bracket's 50,000 USDT
    sign = np.sign(qty)
    liq = (entry_ticks - sign * collateral / (np.abs(qty) * MINOR_PER_TICK_LOT)) / (1 - sign * rate)
    near = np.where(sign > 0, liq >= mid_ticks * (1 - 2e-4), liq <= mid_ticks * (1 + 2e-4))
    collateral[near] = np.ceil(notional[near] / 10.0)
    return qty, entry_ticks, collateral.astype(np.int64)


def build_engine(book: SyncedBook, mid_ticks: int, low: int, high: int) -> tuple[LiquidationEngine, dict]:
    rng = np.random.default_rng(SEED)
    qty, entry, collateral = population(rng, mid_ticks, low, high)
    ids = [f"u{i}" for i in range(qty.size)]
    timings = {}
    ledger = make_ledger(insurance_fund={"USDT": 50_000_000 * 10**8})
    started = time.perf_counter()
    bulk_open_positions(ledger, ids, BTCUSDT, np.zeros(qty.size, np.int64), entry, collateral)
    for i in range(0, qty.size, 2):  # long i buys from short i+1: one fill opens both
        ledger.apply_fill(buyer=ids[i], seller=ids[i + 1], instrument=BTCUSDT, price_ticks=int(entry[i]),
                          qty_lots=int(qty[i]), ts_ns=0, reason="open")
    timings["ledger_s"] = time.perf_counter() - started
    engine = LiquidationEngine(ledger, instruments=[BTCUSDT], policy=get_policy("binance"),
                               liquidity={SYMBOL: book}, tiers_for=lambda _i: TIERS)
    started = time.perf_counter()
    engine.load_arrays(SYMBOL, ids, qty * 0.001, entry * 0.1, collateral / 1e8)
    timings["index_s"] = time.perf_counter() - started
    price = mid_ticks * 0.1
    lo, hi = low * 0.1, high * 0.1
    det = engine._detectors[SYMBOL]  # noqa: SLF001 — a count for the report only
    prices = det.book.liquidation_prices()[: qty.size]
    timings["in_range"] = int(((qty > 0) & (prices >= lo) & (prices < price)).sum()
                              + ((qty < 0) & (prices <= hi) & (prices > price)).sum())
    return engine, timings


# --- the replay -------------------------------------------------------------------------------------------
class SyncedBook:
    """The engine's liquidity: an L2Book brought up to the replay's current event whenever it is read."""

    def __init__(self, capture: Capture) -> None:
        self.snapshot = capture.snapshot
        self.syncs = 0

    def start_tile(self, part: np.ndarray, snapshot_u: int) -> None:
        self.book = L2Book(on_gap="report")
        self.book.apply_snapshot(self.snapshot.bids, self.snapshot.asks, snapshot_u)
        self.part, self.cursor, self.target = part, 0, 0

    def _sync(self) -> L2Book:
        if self.target > self.cursor:
            self.book.apply_depth_arrays(self.part[self.cursor:self.target])
            self.cursor = self.target
            self.syncs += 1
        return self.book

    def best_bid(self):  # noqa: ANN201
        return self._sync().best_bid()

    def best_ask(self):  # noqa: ANN201
        return self._sync().best_ask()

    def walk(self, side, qty_lots, limit_price_ticks=None):  # noqa: ANN001, ANN201
        return self._sync().walk(side, qty_lots, limit_price_ticks)

    def take(self, side, qty_lots, limit_price_ticks=None):  # noqa: ANN001, ANN201
        return self._sync().take(side, qty_lots, limit_price_ticks)

    def levels(self, side, n):  # noqa: ANN001, ANN201
        return self._sync().levels(side, n)


def replay(engine: LiquidationEngine, synced: SyncedBook, parts: list[np.ndarray], capture: Capture,
           id_shift: int) -> dict[str, float]:
    snap = capture.snapshot
    marks = actions = rows = events = 0
    started = time.perf_counter()
    for index, part in enumerate(parts):
        snapshot_u = snap.last_update_id + index * id_shift
        scan = L2Book(on_gap="report")
        scan.apply_snapshot(snap.bids, snap.asks, snapshot_u)
        top = scan.apply_depth_arrays(part, record_top=True).top  # every event through the book
        rows += len(part)
        events += len(top)
        ends, ts = event_index(part)
        bid, ask = top["bid_price_ticks"], top["ask_price_ticks"]
        mid = np.where((bid > 0) & (ask > 0), (bid + ask) // 2, 0)
        changed = np.flatnonzero((mid != np.concatenate(([-1], mid[:-1]))) & (mid > 0))
        synced.start_tile(part, snapshot_u)
        end_list, ts_list, mid_list = ends.tolist(), ts.tolist(), mid.tolist()
        on_mark = engine.on_mark
        for i in changed.tolist():
            synced.target = end_list[i]
            result = on_mark(SYMBOL, mid_list[i], ts_list[i])
            actions += len(result.actions)
        marks += len(changed)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows, "events": events, "marks": marks, "actions": actions,
            "events_per_s": rows / seconds, "syncs": synced.syncs}


def main() -> int:
    path = BUNDLED if BUNDLED.exists() else ROOT.parent / "shared" / "data" / "binance-usdm" / BUNDLED.name
    started = time.perf_counter()
    capture = read_capture(path)
    read_s = time.perf_counter() - started
    parts, id_shift, _ = tiled_parts(capture, TILES)
    scan = L2Book(on_gap="report")
    scan.apply_snapshot(capture.snapshot.bids, capture.snapshot.asks, capture.snapshot.last_update_id)
    top = scan.apply_depth_arrays(capture.depth, record_top=True).top  # also warms the kernels
    live = (top["bid_price_ticks"] > 0) & (top["ask_price_ticks"] > 0)
    mids = (top["bid_price_ticks"][live] + top["ask_price_ticks"][live]) // 2
    print(f"capture {path.name}: {len(capture.depth):,} depth rows, {len(top):,} events, mid "
          f"{mids.min() / 10:,.1f}–{mids.max() / 10:,.1f} (read_capture {read_s:.2f} s, not timed); ×{TILES} tiles")
    synced = SyncedBook(capture)
    started = time.perf_counter()
    engine, build = build_engine(synced, int(mids[0]), int(mids.min()), int(mids.max()))
    build_s = time.perf_counter() - started
    print(f"engine build, {N_ACCOUNTS:,} accounts: {build_s:.1f} s total (ledger {build['ledger_s']:.1f} s, "
          f"account book + liquidation-price index {build['index_s']:.2f} s); "
          f"{build['in_range']:,} accounts have their liquidation price inside the capture's mid range")
    ours = replay(engine, synced, parts, capture, id_shift)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"deleverage: {ours['rows']:,} level rows ({ours['events']:,} events) in {ours['seconds']:.3f} s = "
          f"{ours['events_per_s'] / 1e6:.2f} M rows/s; {ours['marks']:,} engine marks, {ours['actions']:,} "
          f"liquidation actions, {ours['syncs']:,} book syncs; peak RSS {rss_mb:,.0f} MB")
    python, how = hbt_python()
    if python is None:
        print(f"hftbacktest: unavailable — {how}")
        return 0
    peer = run_peer(python, ["--raw", str(path), "--tile", str(TILES)])
    if isinstance(peer, str):
        print(f"hftbacktest: unavailable — {peer}")
        return 0
    print(f"hftbacktest 2.4 no-op: {peer['events']:,} events in {peer['replay_s']:.3f} s = "
          f"{peer['events_per_s'] / 1e6:.2f} M events/s (its conversion {peer['convert_s']:.1f} s and "
          f"build {peer['build_s']:.2f} s not timed)")
    print(f"wall-time ratio hftbacktest/deleverage = {peer['replay_s'] / ours['seconds']:.2f} (goal >= 1.0); "
          f"throughput ratio (rows/s ÷ events/s) = {ours['events_per_s'] / peer['events_per_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
