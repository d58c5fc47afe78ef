"""A bulk-loaded population kept as numpy columns: Python objects are made for an account only when it is touched.

:meth:`deleverage.core.ledger.Ledger.load_traders` used to turn every row into an account tuple, balance
entries, a :class:`~deleverage.core.positions.Position` and pocket ids (≈ 650 bytes and ≈ 5 µs per account).
A :class:`BulkSegment` keeps the load's inputs and results instead, as columns:

* the account ids as one UTF-8 bytes array in sorted order plus the permutation to row order (the id → row
  index is ``np.searchsorted`` over that array: 16 bytes and no Python object per account);
* margin mode (bool), deposit (int64), signed qty (int64), entry price (int64), trade value and the
  counterparty's realized PnL per fill (int64, or an object column of Python ints when a value passes int64);
* a ``touched`` bitmap: the ledger's first *write* to a row's account (deposit, fill, margin move,
  liquidation) materialises that account into the ledger's dicts and sets its bit, after which the dicts
  are the truth for it and every column read skips the row.

An untouched row ``i`` of a segment in ``symbol`` settling in ``code`` stands for exactly what the one-by-one
path leaves (``open_account`` + ``deposit`` + ``add_isolated_margin`` + ``apply_fill``): a trader account,
cross or isolated; where ``qty ≠ 0`` a position ``(qty, cost = ±value)`` and, when isolated, the pocket
``isolated:<id>:<symbol>`` holding the deposit (the wallet then holds an explicit 0); otherwise the wallet
holds the deposit; no balance entry when the deposit is 0. The columns are never written after the load
(the journal is regenerated from them), so copies of a ledger share them and copy only the bitmap.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

import numpy as np

from deleverage.core.columns import BulkPlan


def exact_sum(values: np.ndarray) -> int:
    """Σ of an int64 (|v| < 2**62) or object column, exactly, in a Python int."""
    if values.dtype == object:
        return sum(values.tolist())
    total = 0
    chunk = 1 << 20  # summed in int64 per chunk when its bound proves no overflow, else in Python ints
    for start in range(0, values.size, chunk):
        part = values[start:start + chunk]
        bound = float(np.abs(part).max(initial=0)) * part.size
        total += int(part.sum()) if bound < 2.0**62 else sum(part.tolist())
    return total


class IdIndex:
    """Account ids of one segment, sorted, and the permutations sorted position ↔ row.

    Stored as fixed-width UTF-8 bytes (``kind`` "ascii" or "utf8"; ids ending in NUL could not survive a
    bytes column, so a segment holding any NUL keeps its ids as a sorted object array, ``kind`` "object").
    Bytes order is code-point order, so the sorted array is also the order of ``sorted()`` on the strings.
    """

    __slots__ = ("kind", "order", "rank", "sorted_ids")

    def __init__(self, sorted_ids: np.ndarray, order: np.ndarray, kind: str) -> None:
        self.sorted_ids = sorted_ids
        self.order = order  # sorted position → row
        self.rank = _inverse(order)  # row → sorted position
        self.kind = kind

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.sorted_ids, self.order, self.kind)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.sorted_ids, self.order, self.kind = state
        self.rank = _inverse(self.order)

    def __len__(self) -> int:
        return int(self.sorted_ids.size)

    @staticmethod
    def _encode(ids: Sequence[str]) -> tuple[np.ndarray, str]:
        if not ids:
            return np.zeros(0, dtype="S1"), "ascii"
        if "\x00" in "".join(ids):
            return np.array(ids, dtype=object), "object"
        try:
            return np.array(ids, dtype="S"), "ascii"
        except UnicodeEncodeError:
            return np.array([s.encode() for s in ids], dtype="S"), "utf8"

    @classmethod
    def build(cls, ids: Sequence[str]) -> IdIndex:
        """The index of ``ids`` (distinct non-empty strings: the ledger has checked them)."""
        encoded, kind = cls._encode(ids)
        width = np.int32 if encoded.size < 2**31 else np.int64
        order = np.argsort(encoded, kind="stable").astype(width)
        return cls(encoded[order], order, kind)

    def has_repeats_or_empty(self) -> bool:
        s = self.sorted_ids
        if not s.size:
            return False
        return bool(s[0] in (b"", "") or (s.size > 1 and (s[1:] == s[:-1]).any()))

    def _keys(self, ids: Sequence[str]) -> np.ndarray | None:
        """``ids`` in this index's representation (None when one cannot be represented: none of them matches)."""
        if self.kind == "object":
            return np.array(list(ids), dtype=object)
        if "\x00" in "".join(ids):
            return None
        try:
            return np.array(ids, dtype="S")
        except UnicodeEncodeError:
            return np.array([s.encode() for s in ids], dtype="S")

    def _found(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sorted position, found) of each key in this representation."""
        s = self.sorted_ids
        if self.kind != "object":
            fits = (np.char.str_len(keys) <= s.dtype.itemsize if keys.dtype.itemsize > s.dtype.itemsize
                    else np.ones(keys.size, dtype=bool))
            keys = keys.astype(s.dtype)
        else:
            fits = np.ones(keys.size, dtype=bool)
        at = np.minimum(np.searchsorted(s, keys), s.size - 1)
        return at, fits & (s[at] == keys)

    def find(self, account_id: str) -> int:
        """Row of ``account_id``, or -1."""
        s = self.sorted_ids
        if not s.size:
            return -1
        if self.kind == "object":
            key: Any = account_id
        else:
            key = account_id.encode()
            if len(key) > s.dtype.itemsize or "\x00" in account_id:
                return -1
        at = int(np.searchsorted(s, key))
        if at < s.size and s[at] == key:
            return int(self.order[at])
        return -1

    def find_many(self, ids: Sequence[str]) -> np.ndarray:
        """Row of each id (-1 where absent)."""
        keys = self._keys(ids) if len(ids) and self.sorted_ids.size else None
        if keys is None:
            return np.array([self.find(a) for a in ids] if self.sorted_ids.size else [-1] * len(ids),
                            dtype=np.int64)
        at, found = self._found(keys)
        return np.where(found, self.order[at], -1).astype(np.int64)

    def contains_any(self, ids: Sequence[str]) -> bool:
        return bool((self.find_many(ids) >= 0).any()) if len(ids) else False

    def overlaps(self, other: IdIndex) -> bool:
        """True when the two indexes share an id."""
        if not len(self) or not len(other):
            return False
        if self.kind != "object" and other.kind != "object":
            return bool(self._found(other.sorted_ids)[1].any())
        return self.contains_any(other.sorted_strings())

    def id_of(self, row: int) -> str:
        value = self.sorted_ids[self.rank[row]]
        return value if self.kind == "object" else bytes(value).decode()

    def decode(self, stored: np.ndarray) -> list[str]:
        """Stored ids (a slice of ``sorted_ids``) as strings."""
        if self.kind == "object":
            return stored.tolist()
        if self.kind == "ascii":
            return stored.astype(f"U{stored.dtype.itemsize}").tolist()
        return [b.decode() for b in stored.tolist()]

    def row_ids(self) -> list[str]:
        """Every id in row order."""
        return self.decode(self.sorted_ids[self.rank])

    def sorted_strings(self) -> list[str]:
        return self.decode(self.sorted_ids)


def _inverse(order: np.ndarray) -> np.ndarray:
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size, dtype=order.dtype)
    return rank


class BulkSegment:
    """One bulk load as columns (see the module docstring); only ``touched`` changes after the load."""

    def __init__(self, plan: BulkPlan, index: IdIndex, start_seq: int, count: int) -> None:
        cols = plan.columns
        self.symbol = plan.instrument.symbol
        self.code = plan.instrument.settle.code
        self.counterparty = plan.counterparty
        self.ts_ns = plan.ts_ns
        self.start_seq = start_seq
        self.count = count  # journal records
        self.ids = index
        self.isolated = np.array(cols.isolated, dtype=bool)
        self.deposit = np.array(cols.deposit_minor, dtype=np.int64)
        self.qty = np.array(cols.qty_lots, dtype=np.int64)
        self.price = np.array(cols.price_ticks, dtype=np.int64)
        self.value = plan.value_minor
        self.realized = plan.market_realized
        self.touched = np.zeros(self.qty.size, dtype=bool)

    def __len__(self) -> int:
        return int(self.qty.size)

    def copy(self) -> BulkSegment:
        other = object.__new__(BulkSegment)
        other.__dict__.update(self.__dict__)
        other.touched = self.touched.copy()
        return other

    # --- rows ---------------------------------------------------------------------------------------
    def live_row(self, account_id: str) -> int:
        """Row of ``account_id`` when it is here and untouched, else -1."""
        row = self.ids.find(account_id)
        return row if row >= 0 and not self.touched[row] else -1

    def opens(self, row: int) -> bool:
        return bool(self.qty[row] != 0)

    def pocketed(self, row: int) -> bool:
        return bool(self.isolated[row] and self.qty[row] != 0)

    def cost(self, row: int) -> int:
        value = int(self.value[row])
        return value if self.qty[row] > 0 else -value

    def costs(self) -> np.ndarray:
        """Signed entry cost of every row (±value; 0 where no position opened)."""
        if self.value.dtype == object:
            return np.array([v if q > 0 else -v for q, v in zip(self.qty.tolist(), self.value.tolist(),
                                                                 strict=True)], dtype=object)
        return np.where(self.qty > 0, self.value, -self.value)

    def balance_entries(self, row: int) -> list[tuple[str, int]]:
        """(account id, balance) entries the row holds in ``code`` (the wallet's, then the pocket's)."""
        amount = int(self.deposit[row])
        if amount <= 0:
            return []
        aid = self.ids.id_of(row)
        if self.pocketed(row):
            return [(aid, 0), (f"isolated:{aid}:{self.symbol}", amount)]
        return [(aid, amount)]

    def wallet_balance(self, row: int) -> int | None:
        if self.deposit[row] <= 0:
            return None
        return 0 if self.pocketed(row) else int(self.deposit[row])

    def pocket_balance(self, row: int) -> int | None:
        return int(self.deposit[row]) if self.deposit[row] > 0 else None

    # --- column reads over untouched rows ---------------------------------------------------------------
    def live(self) -> np.ndarray:
        return ~self.touched

    def live_deposit_total(self) -> tuple[int, bool]:
        """Σ of the untouched rows' balances (wallet + pocket = deposit), and whether any holds an entry."""
        live = self.deposit[~self.touched]
        return exact_sum(live), bool((live > 0).any())

    def live_open_sums(self) -> tuple[int, int, bool]:
        """(Σ qty, Σ cost, any open) over the untouched rows with a position."""
        mask = (~self.touched) & (self.qty != 0)
        if not mask.any():
            return 0, 0, False
        return exact_sum(self.qty[mask]), exact_sum(self.costs()[mask]), True

    def live_sorted_rows(self, mask: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
        """Untouched rows (where ``mask``, by row) in account-id order, and their ids."""
        order = self.ids.order
        keep = ~self.touched[order]
        if mask is not None:
            keep &= mask[order]
        at = np.flatnonzero(keep)
        return order[at], self.ids.decode(self.ids.sorted_ids[at])

    def account_tuples(self, no_parent: str | None = None) -> list[tuple[str, str, str, bool, str | None]]:
        """(id, kind, margin mode, allow negative, parent) of every untouched account and pocket, in lists
        built at C speed (a trader's parent is ``no_parent``)."""
        rows, ids = self.live_sorted_rows()
        isolated = self.isolated[rows]
        modes = np.where(isolated, "isolated", "cross").tolist()
        out: list[tuple[str, str, str, bool, str | None]] = list(
            zip(ids, repeat("trader"), modes, repeat(False), repeat(no_parent)))
        owners = [ids[i] for i in np.flatnonzero(isolated & (self.qty[rows] != 0)).tolist()]
        pockets = [f"isolated:{a}:{self.symbol}" for a in owners]
        out += zip(pockets, repeat("isolated"), repeat("cross"), repeat(False), owners)
        return out

    def balance_items(self) -> list[tuple[tuple[str, str], int]]:
        """((account, code), balance) of every untouched entry (wallets, then pockets)."""
        rows, ids = self.live_sorted_rows(self.deposit > 0)
        code = self.code
        amounts = self.deposit[rows]
        pocket = self.isolated[rows] & (self.qty[rows] != 0)
        out = list(zip(zip(ids, repeat(code)), np.where(pocket, 0, amounts).tolist(), strict=True))
        at = np.flatnonzero(pocket)
        out += zip(((f"isolated:{ids[i]}:{self.symbol}", code) for i in at.tolist()), amounts[at].tolist(), strict=True)
        return out


__all__ = ["BulkSegment", "IdIndex", "exact_sum"]
