"""Scale: the bulk ledger load, the cost of a liquidation action and how a crash replay grows in accounts.

Printed, each against a baseline measured in this process (no timed assertion anywhere):

* **load** — ``Ledger.load_traders`` of 1 M accounts (10 M with ``DELEVERAGE_BENCH_10M=1``) as a ratio
  to a numpy pass that writes the same columns (signed qty, signed cost, balances, the world's and the
  market's side), the bytes per account the ledger holds, and the one-by-one path (``open_account`` +
  ``deposit`` + ``apply_fill``) on a slice of the same rows, per account. The accounts stay numpy columns
  (core/bulk.py) until a write touches one. Measured (2 shared cores, load ≈ 3.5): 1 M in 1.06 s (53x
  the numpy pass), 10 M in 5.08 s (21x), 57 B/account; before the columns: 2.7 s, 51.7 s, 651 B/account;
* **per action** — a 10 % crash over ``MARKS`` marks on the largest replay size: µs per liquidation
  action (ticks with actions / actions, as in bench_engine) against one exact ``apply_fill`` (the
  one-by-one settlement primitive) timed in the same run; then, on the smallest size, the integer
  settlement path against the reference (Fraction) path in the same run (ratio new/reference, and
  whether their audit digests are identical);
* **growth** — wall time of load + index + crash replay at 1e5 → 3e5 → 1e6 accounts (1e7 with
  ``DELEVERAGE_BENCH_10M=1``) and the fitted exponent of time in accounts (1.0 = linear).

Usage: ``make bench BENCH=scale`` (a few minutes on 2 shared cores).
"""

from __future__ import annotations

import gc
import os
import time
import tracemalloc

import numpy as np

from deleverage.core.columns import TraderColumns
from deleverage.core.instruments import BTCUSDT
from deleverage.core.tiers import MarginTiers
from deleverage.engine import LiquidationEngine, get_policy
from deleverage.engine.exact_fast import reference_settlement
from deleverage.execution.book import ResilientBook
from deleverage.testing import make_ledger

BIG = os.environ.get("DELEVERAGE_BENCH_10M") == "1"
LOAD_SIZES = [1_000_000, 10_000_000] if BIG else [1_000_000]
REPLAY_SIZES = [100_000, 300_000, 1_000_000] + ([10_000_000] if BIG else [])
MARKS = 500
PER_LOT_TICK = 10_000  # BTCUSDT: 0.1 × 0.001 × 1e8 minor units per tick·lot
TIERS = MarginTiers.from_brackets([(0, "0.004"), (50_000, "0.005"), (250_000, "0.01"),
                                   (1_000_000, "0.025"), (10_000_000, "0.05")])


def columns(n: int, seed: int = 7) -> TraderColumns:
    """n cross/isolated traders, half long, entries near 60,000, leverage 1.5–25x, against the market."""
    rng = np.random.default_rng(seed)
    lots = np.maximum(1, np.round(rng.lognormal(3.0, 1.2, n))).astype(np.int64)
    qty = np.where(rng.random(n) < 0.5, lots, -lots)
    entry = np.round(600_000 * np.exp(rng.normal(0, 0.01, n))).astype(np.int64)
    leverage = np.clip(rng.lognormal(1.2, 0.6, n), 1.5, 25.0)
    deposit = np.ceil(lots * entry * PER_LOT_TICK / leverage).astype(np.int64)
    return TraderColumns([f"u{i}" for i in range(n)], rng.random(n) < 0.1, deposit, qty, entry)


def numpy_pass(cols: TraderColumns) -> tuple[np.ndarray, ...]:
    """The columns a load writes, written by numpy alone: the floor for any columnar ledger."""
    qty = cols.qty_lots.copy()
    value = PER_LOT_TICK * cols.price_ticks * np.abs(qty)
    cost = np.where(qty > 0, value, -value)
    wallet = np.where(cols.isolated, 0, cols.deposit_minor)
    pocket = np.where(cols.isolated, cols.deposit_minor, 0)
    world = -cols.deposit_minor.sum()
    market = np.array([-qty.sum(), -cost.sum(), world])
    return qty, cost, wallet, pocket, market


def best_of(fn, repeats: int = 3) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def held_bytes(cols: TraderColumns, rows: int) -> float:
    """Bytes per account the ledger keeps after loading ``rows`` accounts (tracemalloc, timed apart)."""
    part = TraderColumns(list(cols.account_ids[:rows]), cols.isolated[:rows].copy(), cols.deposit_minor[:rows].copy(),
                         cols.qty_lots[:rows].copy(), cols.price_ticks[:rows].copy())
    gc.collect()
    tracemalloc.start()
    ledger = make_ledger()
    ledger.load_traders(part, instrument=BTCUSDT, counterparty="market")
    held, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del ledger
    return held / rows


def one_by_one(cols: TraderColumns, rows: int) -> float:
    """Seconds per account opening the first ``rows`` traders with the per-account calls."""
    ledger = make_ledger()
    t = time.perf_counter()
    for i in range(rows):
        aid, qty = cols.account_ids[i], int(cols.qty_lots[i])
        ledger.open_account(aid, margin_mode="isolated" if cols.isolated[i] else "cross")
        ledger.deposit(aid, "USDT", int(cols.deposit_minor[i]), 0)
        if cols.isolated[i]:
            ledger.add_isolated_margin(aid, BTCUSDT, int(cols.deposit_minor[i]), ts_ns=0)
        buyer, seller = (aid, "market") if qty > 0 else ("market", aid)
        ledger.apply_fill(buyer=buyer, seller=seller, instrument=BTCUSDT, price_ticks=int(cols.price_ticks[i]),
                          qty_lots=abs(qty), ts_ns=0, reason="open position")
    return (time.perf_counter() - t) / rows


def bench_load() -> None:
    for n in LOAD_SIZES:
        cols = columns(n)
        numpy_s = best_of(lambda c=cols: numpy_pass(c))
        gc.collect()
        t = time.perf_counter()
        ledger = make_ledger()
        ledger.load_traders(cols, instrument=BTCUSDT, counterparty="market")
        load_s = time.perf_counter() - t
        del ledger
        held = held_bytes(cols, min(n, 200_000)) * n
        per_one = one_by_one(cols, min(n, 50_000))
        print(f"load {n:,} accounts: {load_s:.2f} s ({load_s / n * 1e6:.2f} µs/account, {held / n:,.0f} B/account "
              f"held by the ledger); numpy pass over the same columns {numpy_s * 1e3:.0f} ms → ratio "
              f"{load_s / numpy_s:,.0f}x; one-by-one {per_one * 1e6:.1f} µs/account → bulk is "
              f"{per_one * n / load_s:.1f}x faster")
        del cols
        gc.collect()
    if not BIG:
        print("load 10,000,000 accounts: not run (≈ 10 GB; DELEVERAGE_BENCH_10M=1 runs it)")


def crash_replay(n: int, *, reference: bool = False) -> dict[str, float]:
    """Load n traders, index them, and drive a 10% crash over MARKS marks; wall times and actions.

    ``reference``: the reference (Fraction) settlement arithmetic (``exact_fast.reference_settlement``),
    the path the integer one must match byte for byte; the audit digest is returned to show it does.
    """
    if reference:
        with reference_settlement():
            return crash_replay(n)
    cols = columns(n, seed=11)
    t0 = time.perf_counter()
    ledger = make_ledger(insurance_fund={"USDT": 10_000_000 * 10**8})
    ledger.load_traders(cols, instrument=BTCUSDT, counterparty="market")
    load_s = time.perf_counter() - t0
    book = ResilientBook(mid_ticks=600_000, half_spread_ticks=1, depth_lots_per_tick=50, resilience_per_s=1.0)
    engine = LiquidationEngine(ledger, instruments=[BTCUSDT], policy=get_policy("binance"),
                               liquidity={"BTCUSDT": book}, tiers_for=lambda _i: TIERS)
    balance = np.asarray(cols.deposit_minor, dtype=np.float64) / 1e8
    engine.load_arrays("BTCUSDT", list(cols.account_ids), cols.qty_lots * 0.001, cols.price_ticks * 0.1, balance)
    path = np.round(np.linspace(600_000, 540_000, MARKS)).astype(np.int64)
    acting_s = 0.0
    for k, mark in enumerate(path.tolist()):
        ts = (k + 1) * 1_000_000_000
        book.advance(ts, mid_ticks=mark)
        t = time.perf_counter()
        result = engine.on_mark("BTCUSDT", mark, ts)
        if result.actions:
            acting_s += time.perf_counter() - t
    total_s = time.perf_counter() - t0
    return {"n": n, "load_s": load_s, "total_s": total_s, "actions": len(engine.records), "acting_s": acting_s,
            "audit": engine.audit.digest()}


def apply_fill_cost(fills: int = 2_000) -> float:
    """Seconds of one exact one-by-one fill (a trader reducing against the market), the baseline."""
    ledger = make_ledger()
    ids = [f"b{i}" for i in range(fills)]
    for aid in ids:
        ledger.open_account(aid)
        ledger.deposit(aid, "USDT", 10**12, 0)
        ledger.apply_fill(buyer=aid, seller="market", instrument=BTCUSDT, price_ticks=600_000, qty_lots=20,
                          ts_ns=0, reason="open position")
    t = time.perf_counter()
    for aid in ids:
        ledger.apply_fill(buyer="market", seller=aid, instrument=BTCUSDT, price_ticks=590_000, qty_lots=10,
                          ts_ns=1, reason="liquidation")
    return (time.perf_counter() - t) / fills


def bench_replay() -> None:
    crash_replay(4_000)  # warm up: the numba kernels load from their cache on first use (~2 s)
    runs = []
    for n in REPLAY_SIZES:
        run = crash_replay(n)
        runs.append(run)
        per = run["acting_s"] / run["actions"] * 1e6 if run["actions"] else float("nan")
        print(f"crash replay {n:,} accounts: {run['total_s']:.1f} s (load {run['load_s']:.1f} s), "
              f"{run['actions']:,} actions, {per:,.0f} µs per action")
        gc.collect()
    if not BIG:
        print("crash replay 10,000,000 accounts: not run (DELEVERAGE_BENCH_10M=1 runs it)")
    fill = apply_fill_cost()
    last = runs[-1]
    per = last["acting_s"] / max(last["actions"], 1)
    print(f"per liquidation action at {last['n']:,} accounts: {per * 1e6:,.0f} µs; one exact apply_fill "
          f"{fill * 1e6:.1f} µs → an action costs {per / fill:,.1f} one-by-one fills (goal ≤ 20 µs/action)")
    ref_n = REPLAY_SIZES[0]  # the reference path on the smallest size, beside the integer path run again
    gc.collect()
    fast = crash_replay(ref_n)
    gc.collect()
    ref = crash_replay(ref_n, reference=True)
    per_fast = fast["acting_s"] / max(fast["actions"], 1)
    per_ref = ref["acting_s"] / max(ref["actions"], 1)
    same = "identical" if fast["audit"] == ref["audit"] and fast["actions"] == ref["actions"] else "DIFFERENT"
    print(f"per liquidation action at {ref_n:,} accounts, same run: integer path {per_fast * 1e6:,.0f} µs, "
          f"reference (Fraction) path {per_ref * 1e6:,.0f} µs → ratio new/reference {per_fast / per_ref:.2f} "
          f"(audit digests {same})")
    ns = np.log([r["n"] for r in runs])
    exponent = np.polyfit(ns, np.log([r["total_s"] for r in runs]), 1)[0]
    print(f"growth exponent of wall time in accounts ({REPLAY_SIZES[0]:,} → {REPLAY_SIZES[-1]:,}): "
          f"{exponent:.2f} (1.0 = linear; goal ≤ 1.1)")


def main() -> None:
    print(f"accounts per load: {LOAD_SIZES}; crash replay sizes {REPLAY_SIZES}, {MARKS} marks, 10% drop")
    bench_load()
    bench_replay()


if __name__ == "__main__":
    main()
