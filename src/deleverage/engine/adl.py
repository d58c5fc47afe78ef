"""Auto-deleveraging: rank the opposite side, then close the fewest, highest-ranked positions needed.

Two steps, kept apart so policies can swap either:

* **ranking** — a score per counterparty, one function per venue:

  - ``bitmex`` (:func:`ranking_score`): ``PnL% × effective leverage`` in profit, ``PnL% ÷ effective
    leverage`` in loss; effective leverage ``|mark value| / (mark value − bankrupt value)``; PnL% =
    ``(mark value − entry value) / |entry value|`` (BitMEX, https://www.bitmex.com/app/autoDeleveraging).
  - ``leverage_pnl`` (:func:`binance_leverage_pnl`): Binance's "LeveragePnL", "unrealized PnL /
    collateral multiplied by the margin ratio" (FAQ 360033525471), with the exact formulation at the
    end of that FAQ: ``PnL% = max(0, UPnL) / max(1, wallet balance)``, ``margin ratio = MM / (wallet
    balance + UPnL)`` (0 when that is ≤ 0), ``LeveragePnL = PnL% × margin ratio``. Unlike BitMEX a
    losing position scores 0 (no division by leverage), and the leverage term is the margin ratio.
  - ``hyperliquid`` (:func:`hyperliquid_score`): ``(mark / entry) × (notional / account value)`` for a
    long (Hyperliquid docs, "Auto-deleveraging"; the short mirror ``entry / mark`` is our reading).
  - ``pnl`` ranks by unrealised profit; ``offsetting`` (dYdX v4) by the offsetting size held.
* **allocation** — :func:`allocate` walks the queue from the top, closing each position up to its size
  until the bankrupt quantity is covered (the queue of BitMEX and Binance). :func:`pro_rata_haircut`
  is the alternative discussed by Chitra et al. (arXiv 2512.01112): the smallest uniform share of every
  profitable position's profit that covers a shortfall, so nobody is closed in full.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from fractions import Fraction
from typing import TypeVar

from deleverage.errors import InvalidInput

K = TypeVar("K", bound=Hashable)


def ranking_score(
    *,
    unrealized_pnl: float,
    entry_notional: float,
    mark_notional: float,
    margin_balance: float,
) -> float:
    """BitMEX ADL score: PnL% × effective leverage when in profit, PnL% ÷ effective leverage in loss.

    ``entry_notional`` and ``mark_notional`` are absolute values; ``margin_balance`` stands for
    ``mark value − bankrupt value`` (equal to the account's equity for a single position). An account
    with no collateral left ranks first (infinite leverage).
    """
    for name, value in (
        ("unrealized_pnl", unrealized_pnl),
        ("entry_notional", entry_notional),
        ("mark_notional", mark_notional),
        ("margin_balance", margin_balance),
    ):
        if not math.isfinite(value):
            raise InvalidInput(name, value, "must be finite")
    if entry_notional <= 0:
        raise InvalidInput("entry_notional", entry_notional, "must be > 0")
    pnl_pct = unrealized_pnl / entry_notional
    if margin_balance <= 0:
        return math.inf if pnl_pct > 0 else -math.inf
    leverage = abs(mark_notional) / margin_balance
    if leverage == 0:
        return 0.0
    return pnl_pct * leverage if pnl_pct >= 0 else pnl_pct / leverage


def binance_leverage_pnl(*, unrealized_pnl: float, wallet_balance: float, maintenance: float) -> float:
    """Binance LeveragePnL (FAQ 360033525471): ``max(0, UPnL)/max(1, WB) × MM/(WB + UPnL)``.

    Amounts in settlement units (USDT): the ``max(1, ·)`` floor is one unit of the margin asset. The
    margin ratio is 0 when ``WB + UPnL ≤ 0``.
    """
    for name, value in (("unrealized_pnl", unrealized_pnl), ("wallet_balance", wallet_balance),
                        ("maintenance", maintenance)):
        if not math.isfinite(value):
            raise InvalidInput(name, value, "must be finite")
    equity = wallet_balance + unrealized_pnl
    margin_ratio = maintenance / equity if equity > 0 else 0.0
    return max(0.0, unrealized_pnl) / max(1.0, wallet_balance) * margin_ratio


def hyperliquid_score(*, side: str, mark_price: float, entry_price: float, notional: float,
                      account_value: float) -> float:
    """Hyperliquid ADL sorting index: ``(mark / entry) × (notional / account value)`` for a long.

    A short uses ``entry / mark`` (its profit grows as the mark falls; our mirror, the docs give the
    long form). An account with no value left ranks first.
    """
    if side not in ("long", "short"):
        raise InvalidInput("side", side, "must be 'long' or 'short'")
    if not (mark_price > 0 and entry_price > 0):
        raise InvalidInput("mark_price/entry_price", (mark_price, entry_price), "must be > 0")
    if account_value <= 0:
        return math.inf
    move = mark_price / entry_price if side == "long" else entry_price / mark_price
    return move * abs(notional) / account_value


def _validated(candidates: Iterable[tuple[K, int | float | Fraction, float]]) -> list[tuple[K, int | float | Fraction, float]]:
    rows = list(candidates)
    seen: set[K] = set()
    for index, row in enumerate(rows):
        if len(row) != 3:
            raise InvalidInput(f"candidates[{index}]", row, "expected (account_id, qty, score)")
        account_id, size, score = row
        if account_id in seen:
            raise InvalidInput(f"candidates[{index}].account_id", account_id, "appears twice")
        seen.add(account_id)
        if isinstance(size, bool) or not isinstance(size, int | float | Fraction) or not math.isfinite(size):
            raise InvalidInput(f"candidates[{index}].qty", size, "must be a finite number")
        if size < 0:
            raise InvalidInput(f"candidates[{index}].qty", size, "must be >= 0")
        if isinstance(score, bool) or not isinstance(score, int | float) or math.isnan(score):
            raise InvalidInput(f"candidates[{index}].score", score, "must be a number")
    return rows


def allocate(
    candidates: Iterable[tuple[K, int | float | Fraction, float]], qty: int | float | Fraction
) -> dict[K, int | float | Fraction]:
    """Close the highest-scored positions first, each up to its size, until ``qty`` is covered.

    ``candidates`` are ``(account_id, qty, score)``; ties in score go to the larger position, then the
    smaller account id, so the queue is deterministic. Returns ``{account_id: qty_closed}`` for the
    accounts touched (in queue order). If the candidates together hold less than ``qty``, every one is
    closed in full and the caller sees the uncovered rest as ``qty − sum(result.values())``.
    """
    if isinstance(qty, bool) or not isinstance(qty, int | float | Fraction) or not math.isfinite(qty):
        raise InvalidInput("qty", qty, "must be a finite number")
    if qty < 0:
        raise InvalidInput("qty", qty, "must be >= 0")
    rows = _validated(candidates)
    queue = sorted(rows, key=lambda row: (-row[2], -row[1], _sort_key(row[0])))
    remaining = qty
    result: dict[K, int | float | Fraction] = {}
    for account_id, size, _score in queue:
        if remaining <= 0:
            break
        if size <= 0:
            continue
        take = min(size, remaining)
        result[account_id] = take
        remaining -= take
    return result


def pro_rata_haircut(profits: Iterable[tuple[K, int]], shortfall: int) -> dict[K, int]:
    """Smallest uniform haircut of profits (integer minor units) that covers ``shortfall``.

    Each account gives up ``floor(h × profit)`` with ``h = shortfall / Σprofit``; the few units lost to
    rounding are taken one at a time from the largest profits (ties by id), so the total is exact.
    If the profits cannot cover the shortfall, everyone gives all their profit.
    """
    rows = [(k, int(p)) for k, p in profits]
    if shortfall < 0:
        raise InvalidInput("shortfall", shortfall, "must be >= 0")
    for k, p in rows:
        if p < 0:
            raise InvalidInput(f"profits[{k!r}]", p, "must be >= 0")
    total = sum(p for _, p in rows)
    if total <= shortfall:
        return {k: p for k, p in rows if p > 0}
    taken = {k: (p * shortfall) // total for k, p in rows}
    missing = shortfall - sum(taken.values())
    for k, p in sorted(rows, key=lambda r: (-r[1], _sort_key(r[0]))):
        if missing == 0:
            break
        if taken[k] < p:
            taken[k] += 1
            missing -= 1
    return {k: v for k, v in taken.items() if v > 0}


def _sort_key(account_id: object) -> tuple[int, object]:
    return (0, account_id) if isinstance(account_id, int) else (1, str(account_id))


__all__ = ["allocate", "binance_leverage_pnl", "hyperliquid_score", "pro_rata_haircut", "ranking_score"]
