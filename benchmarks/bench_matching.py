"""Matching throughput: the numba array book vs the Python book, on one seeded synthetic stream.

The stream (seed 20240805) mixes passive adds around a mid, cancels and amends of passive orders,
and marketable IOC / protected market orders that trade near the touch. Goals from issue 3:
≥ 1,000,000 ops/s through the array interface and ≥ 200,000 ops/s one order at a time from Python.
Figures are printed as ratios against the goals and against each other, measured in this run.
"""

from __future__ import annotations

import time

import numpy as np

from deleverage.venues.orderbook import ArrayOrderBook, Order, OrderBook

SEED = 20240805
MID_TICKS = 100_000
ARRAY_GOAL_OPS = 1_000_000
PYTHON_GOAL_OPS = 200_000


def synthetic_stream(n_ops: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Adds (62 %), cancels (20 %), amends (5 %), marketable orders (13 %) around a fixed mid.

    Passive orders two or more ticks from the mid are never reachable by the marketable flow
    (limits at mid ± 1), so every cancel and amend names a live order.
    """
    rng = np.random.default_rng(seed)
    cols = {
        k: np.zeros(n_ops, np.int64)
        for k in (
            "op",
            "order_id",
            "side",
            "price_ticks",
            "qty_lots",
            "order_type",
            "time_in_force",
        )
    }
    kind = rng.random(n_ops)
    side = rng.integers(0, 2, n_ops)
    offset = rng.geometric(0.15, n_ops)  # 1, 2, 3, ... ticks from the mid
    qty = rng.integers(1, 20, n_ops)
    pick = rng.random(n_ops)
    cancellable: list[int] = []
    next_id = 0
    for i in range(n_ops):
        sign = 1 if side[i] else -1  # sells above the mid, buys below
        if kind[i] < 0.25 and cancellable:
            j = int(pick[i] * len(cancellable))
            target = cancellable[j]
            cols["order_id"][i] = target
            if kind[i] < 0.20:
                cancellable[j] = cancellable[-1]
                cancellable.pop()
                cols["op"][i] = 1
            else:
                cols["op"][i], cols["qty_lots"][i] = 2, qty[i]
            continue
        cols["order_id"][i], cols["side"][i], cols["qty_lots"][i] = next_id, side[i], qty[i]
        if kind[i] < 0.87:
            cols["price_ticks"][i] = MID_TICKS + sign * offset[i]
            if offset[i] >= 2:
                cancellable.append(next_id)
        else:  # marketable: IOC limit or protected market order reaching one tick through the mid
            cols["price_ticks"][i] = MID_TICKS - sign
            cols["order_type"][i] = 1 if kind[i] > 0.95 else 0
            cols["time_in_force"][i] = 1
        next_id += 1
    return cols


def run_array(cols: dict[str, np.ndarray]) -> tuple[float, int]:
    book = ArrayOrderBook(MID_TICKS - 2_000, MID_TICKS + 2_000, len(cols["op"]) + 1)
    started = time.perf_counter()
    batch = book.process_arrays(**cols)
    return time.perf_counter() - started, len(batch.fills)


def run_python(cols: dict[str, np.ndarray], n_ops: int) -> tuple[float, int]:
    book = OrderBook()
    rows = list(
        zip(
            *(
                cols[k][:n_ops].tolist()
                for k in (
                    "op",
                    "order_id",
                    "side",
                    "price_ticks",
                    "qty_lots",
                    "order_type",
                    "time_in_force",
                )
            ),
            strict=True,
        )
    )
    sides, types, tifs = ("buy", "sell"), ("limit", "market"), ("GTC", "IOC", "FOK")
    n_fills = 0
    started = time.perf_counter()
    for op, order_id, side, price, qty, order_type, tif in rows:
        if op == 0:
            result = book.submit(
                Order(order_id, sides[side], qty, price, types[order_type], tifs[tif])
            )
            n_fills += len(result.fills)
        elif op == 1:
            book.cancel(order_id)
        else:
            book.amend(order_id, qty_lots=qty)
    return time.perf_counter() - started, n_fills


def main() -> None:
    n_array, n_python = 1_000_000, 200_000
    started = time.perf_counter()
    cols = synthetic_stream(n_array)
    print(
        f"stream: {n_array:,} ops generated in {time.perf_counter() - started:.1f} s (seed {SEED})"
    )
    run_array({k: v[:100] for k, v in cols.items()})  # compile outside the timing
    array_s, array_fills = min(run_array(cols) for _ in range(3))
    prefix = {k: v[:n_python] for k, v in cols.items()}
    python_s, python_fills = min(run_python(cols, n_python) for _ in range(2))
    _, prefix_fills = run_array(prefix)
    array_rate, python_rate = n_array / array_s, n_python / python_s
    print(
        f"array interface : {array_rate:>13,.0f} ops/s ({n_array:,} ops, {array_fills:,} fills, {array_s:.3f} s)"
    )
    print(
        f"python one-by-one: {python_rate:>12,.0f} ops/s ({n_python:,} ops, {python_fills:,} fills, {python_s:.3f} s)"
    )
    print(f"ratio array / python        : {array_rate / python_rate:8.1f}x")
    print(f"ratio array / goal 1,000,000: {array_rate / ARRAY_GOAL_OPS:8.2f}x")
    print(f"ratio python / goal 200,000 : {python_rate / PYTHON_GOAL_OPS:8.2f}x")
    print(
        f"same fills count on the {n_python:,}-op prefix: {prefix_fills == python_fills} ({prefix_fills:,})"
    )


if __name__ == "__main__":
    main()
