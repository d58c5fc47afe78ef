"""Screening 1,000,000 accounts: full margin-ratio recompute vs the liquidation-price index.

Population (seeded): BTCUSDT, half long half short, lognormal sizes, entries around 60,000, leverage
2–100x, Binance-like tiers. Baseline: a naive numpy full rescan in the same process.
"""

from __future__ import annotations

import time

import numpy as np

from deleverage.core.book import AccountBook
from deleverage.core.instruments import BTCUSDT
from deleverage.core.liqindex import LiquidationPriceIndex
from deleverage.core.tiers import MarginTiers

N = 1_000_000
TIERS = MarginTiers.from_brackets([(0, "0.004"), (50_000, "0.005"), (250_000, "0.01"),
                                   (1_000_000, "0.025"), (10_000_000, "0.05")])


def population(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    side = rng.choice([-1.0, 1.0], N)
    qty = np.round(side * rng.lognormal(-3.0, 1.5, N), 3)
    qty[qty == 0] = 0.001
    entry = 60_000 * np.exp(rng.normal(0, 0.03, N))
    leverage = rng.uniform(2, 100, N)
    balance = np.abs(qty) * entry / leverage
    return np.arange(N, dtype=np.int64), qty, entry, balance


def naive_ratios(qty, entry, balance, mark, floors, rates, cums):
    notional = np.abs(qty) * mark
    k = np.searchsorted(floors, notional, side="right") - 1
    maintenance = notional * rates[k] - cums[k]
    equity = balance + qty * (mark - entry)
    return np.where(equity > 0, maintenance / np.where(equity > 0, equity, 1), np.inf)


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(20240305)
    ids, qty, entry, balance = population(rng)
    book = AccountBook(BTCUSDT, TIERS, N + 1024)
    t = time.perf_counter()
    book.load(ids, qty, entry, balance)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    index = LiquidationPriceIndex(book, buffer_bps=0.001)
    build_s = time.perf_counter() - t
    floors, rates, cums = TIERS.arrays()
    mark = 60_000.0
    book.margin_ratios(mark)  # warm numba
    index.on_mark(mark)

    naive = best(lambda: naive_ratios(qty, entry, balance, mark, floors, rates, cums), 5)
    full = best(lambda: book.margin_ratios(mark), 20)
    rescan = best(lambda: book.liquidatable(mark), 20)
    ok = np.allclose(book.margin_ratios(mark), naive_ratios(qty, entry, balance, mark, floors, rates, cums))

    # quiet ticks: mark moves within the widest gap between liquidation prices near 60,000
    prices = np.sort(book.liquidation_prices())
    near = prices[(prices > 59_000) & (prices < 61_000)]
    g = int(np.argmax(np.diff(near)))
    lo_gap, hi_gap = near[g], near[g + 1]
    mark = 0.5 * (lo_gap + hi_gap)
    step = 0.2 * (hi_gap - lo_gap)
    index.on_mark(mark)
    marks = [mark, mark + step, mark - step, mark + 0.5 * step]
    reps = 20_000
    t = time.perf_counter()
    for i in range(reps):
        index.on_mark(marks[i & 3])
    quiet = (time.perf_counter() - t) / reps
    below_gap = prices[prices < mark]
    # an update after a position change (book write + index re-file)
    slots = rng.integers(0, N, 2000)
    t = time.perf_counter()
    for s in slots:
        a = int(book.account_ids[s])
        book.update(a, qty=float(book.qc[s]) * 1.01, entry_price=float(book.entry_price[s]),
                    balance=float(book.balance[s]))
    update = (time.perf_counter() - t) / len(slots)
    t = time.perf_counter()
    for s in slots[:200]:
        q = float(book.qc[s])
        np.insert(prices, np.searchsorted(prices, q), q)  # flat sorted array baseline
    flat_insert = (time.perf_counter() - t) / 200
    index.on_mark(mark)
    # a tick that crosses accounts: 1 % down
    crossing = best(lambda: (index.on_mark(mark), index.on_mark(mark * 0.99)), 3)

    total_bytes = book.nbytes + index.nbytes
    print(f"accounts                      {N:,} (bulk load {load_s*1e3:.0f} ms, index build {build_s*1e3:.0f} ms)")
    print(f"full margin-ratio recompute   {full*1e3:8.2f} ms   naive numpy {naive*1e3:.2f} ms  "
          f"(x{naive/full:.1f} faster; equal: {ok})")
    print(f"full liquidatable rescan      {rescan*1e3:8.2f} ms")
    print(f"quiet tick via index          {quiet*1e6:8.3f} us   ratio full-rescan/index "
          f"x{rescan/quiet:,.0f} (vs naive x{naive/quiet:,.0f})")
    print(f"crossing tick (1% move)       {crossing*1e3:8.2f} ms   (back and down, confirm=None)")
    print(f"index update after a change   {update*1e6:8.2f} us   flat sorted insert {flat_insert*1e6:.0f} us "
          f"(x{flat_insert/update:.0f})")
    print(f"memory book+index             {total_bytes / N:8.1f} bytes/account "
          f"(book {book.nbytes / N:.1f}, index {index.nbytes / N:.1f}; naive arrays "
          f"{(qty.nbytes + entry.nbytes + balance.nbytes + ids.nbytes) / N:.0f})")
    print(f"quiet marks in gap            [{lo_gap:.2f}, {hi_gap:.2f}]; prices below: {below_gap.size:,}")


if __name__ == "__main__":
    main()
