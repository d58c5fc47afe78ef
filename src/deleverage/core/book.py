"""AccountBook: a struct-of-arrays float view of every position on one instrument, for screening.

The exact ledger is the truth; this book is a float64 mirror used to *find* the few accounts worth
an exact look. Per slot it keeps the signed size in contract-size units (``qc = qty × contract
size``: base units for linear, USD for inverse), entry price, margin balance (wallet or isolated
margin, plus the other positions' unrealised PnL for cross), other maintenance and ``eq0``, the
mark-independent part of the equity, so one margin ratio costs a multiply, a bracket step and a
divide. Slots are dense indices with holes (free slots have ``qty == 0`` and id −1); an
open-addressing hash table (numpy arrays, numba) maps account ids to slots in ~24 bytes per account,
where a Python dict would cost ~100. ``capacity`` is only the initial size: a full book doubles its
arrays and rehashes its map (amortised O(1) per account added), so accounts and positions grow with
the ledger; listeners see the new size through :attr:`capacity`.

Margin conventions are those of :mod:`deleverage.core.margin` with ``maintenance_basis="mark"``:
margin ratio = maintenance / margin balance (+inf when the balance is ≤ 0), liquidatable when
maintenance ≥ margin balance; tiers are indexed by the notional in the settlement asset.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numba import njit

from deleverage.core import _kernels as k
from deleverage.core.instruments import Instrument
from deleverage.core.tiers import MarginTiers
from deleverage.errors import InvalidInput

SlotListener = Callable[[int], None]
_MAX_ID = int(np.iinfo(np.int64).max)


@njit(cache=True, nogil=True)
def _rehash(keys: np.ndarray, values: np.ndarray, account_ids: np.ndarray) -> None:
    """File every used slot (id >= 0) of ``account_ids`` into an empty map: id -> slot."""
    for slot in range(account_ids.shape[0]):
        if account_ids[slot] >= 0:
            k.map_put(keys, values, account_ids[slot], slot)


def _map_size(capacity: int) -> int:
    """Hash table size for ``capacity`` slots: a power of two, load ≤ 1/2."""
    return 1 << max(4, (2 * capacity - 1).bit_length())


class AccountRow(NamedTuple):
    """One account as the book sees it (floats; the ledger holds the exact values)."""

    account_id: int
    slot: int
    qty: float
    entry_price: float
    balance: float
    other_maintenance: float


def _finite(value: object, field: str) -> float:
    if isinstance(value, bool):
        raise InvalidInput(field, value, "expected a number, got a bool")
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInput(field, value, "expected a number") from None
    if not math.isfinite(result):
        raise InvalidInput(field, value, "must be a finite number")
    return result


def check_mark(mark: object) -> float:
    """A mark price as a positive finite float, refused by name otherwise."""
    value = _finite(mark, "mark")
    if value <= 0.0:
        raise InvalidInput("mark", mark, "must be > 0")
    return value


def _check_array(values: np.ndarray, field: str, *, positive: bool = False, nonzero: bool = False,
                 non_negative: bool = False) -> None:
    bad = ~np.isfinite(values)
    if positive:
        bad |= values <= 0
    if nonzero:
        bad |= values == 0
    if non_negative:
        bad |= values < 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidInput(f"{field}[{i}]", float(values[i]), "out of domain (finite" +
                           (", > 0" if positive else "") + (", non-zero" if nonzero else "") +
                           (", >= 0" if non_negative else "") + ")")


class AccountBook:
    """All positions on one instrument as float64 arrays keyed by slot, with an id → slot map."""

    def __init__(self, instrument: Instrument, tiers: MarginTiers, capacity: int) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0:
            raise InvalidInput("capacity", capacity, "must be a positive int")
        if not isinstance(tiers, MarginTiers):
            raise InvalidInput("tiers", tiers, "expected a MarginTiers")
        self.instrument = instrument
        self.tiers = tiers
        self.capacity = capacity  # slots allocated now; grows by doubling (see _grow)
        self.inverse = instrument.contract == "inverse"
        self.contract_size = float(instrument.contract_size)
        self._floors, self._rates, self._cums = tiers.arrays()
        self.qc = np.zeros(capacity, np.float64)
        self.entry_price = np.zeros(capacity, np.float64)
        self.balance = np.zeros(capacity, np.float64)
        self.other_maintenance = np.zeros(capacity, np.float64)
        self.eq0 = np.zeros(capacity, np.float64)
        self.account_ids = np.full(capacity, -1, np.int64)
        table = _map_size(capacity)
        self._map_keys = np.full(table, k.EMPTY_KEY, np.int64)
        self._map_slots = np.full(table, -1, np.int32)
        self._free = np.empty(capacity, np.int32)
        self._n_free = 0
        self._high = 0  # slots [0, _high) have been used
        self._ratios = np.empty(capacity, np.float64)
        self._ids_out = np.empty(capacity, np.int64)
        self._listeners: list[tuple[SlotListener, SlotListener]] = []

    # --- size and lookup --------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._high - self._n_free

    @property
    def high_water(self) -> int:
        """Number of slots ever used; per-slot outputs have this length."""
        return self._high

    def slot_of(self, account_id: int) -> int:
        """Slot of a known account; an unknown id is refused by name."""
        slot = self._lookup(account_id)
        if slot < 0:
            raise InvalidInput("account_id", account_id, "unknown account")
        return slot

    def __contains__(self, account_id: object) -> bool:
        if isinstance(account_id, bool) or not isinstance(account_id, int | np.integer):
            return False
        return bool(0 <= account_id <= _MAX_ID) and self._lookup(int(account_id)) >= 0

    def _lookup(self, account_id: int) -> int:
        key = self._check_id(account_id)
        return int(k.map_get(self._map_keys, self._map_slots, key))

    @staticmethod
    def _check_id(account_id: object) -> int:
        if (
            isinstance(account_id, bool)
            or not isinstance(account_id, int | np.integer)
            or not 0 <= account_id <= _MAX_ID
        ):
            raise InvalidInput("account_id", account_id, f"must be an int in [0, {_MAX_ID}]")
        return int(account_id)

    def account(self, account_id: int) -> AccountRow:
        slot = self.slot_of(account_id)
        return AccountRow(int(account_id), slot, float(self.qc[slot]) / self.contract_size,
                          float(self.entry_price[slot]), float(self.balance[slot]),
                          float(self.other_maintenance[slot]))

    # --- listeners (the liquidation-price index) --------------------------------------------------
    def attach(self, on_changed: SlotListener, on_removed: SlotListener) -> None:
        """Call ``on_changed(slot)`` after a slot is written, ``on_removed(slot)`` before it is freed."""
        self._listeners.append((on_changed, on_removed))

    # --- single-account changes (O(1)) ------------------------------------------------------------
    def add(self, account_id: int, *, qty: float, entry_price: float, balance: float,
            other_maintenance: float = 0.0) -> int:
        """Add a new account's position; return its slot."""
        key = self._check_id(account_id)
        values = self._check_position(qty, entry_price, balance, other_maintenance)
        if k.map_get(self._map_keys, self._map_slots, key) >= 0:
            raise InvalidInput("account_id", account_id, "already in the book (use update)")
        if self._n_free == 0 and self._high == self.capacity:
            self._grow(self._high + 1)
        if self._n_free:
            self._n_free -= 1
            slot = int(self._free[self._n_free])
        else:
            slot = self._high
            self._high += 1
        k.map_put(self._map_keys, self._map_slots, key, slot)
        self.account_ids[slot] = key
        self._write(slot, *values)
        return slot

    def update(self, account_id: int, *, qty: float, entry_price: float, balance: float,
               other_maintenance: float = 0.0) -> int:
        """Replace a known account's position (zero qty is refused: remove the account instead)."""
        values = self._check_position(qty, entry_price, balance, other_maintenance)
        slot = self.slot_of(account_id)
        self._write(slot, *values)
        return slot

    def remove(self, account_id: int) -> None:
        slot = self.slot_of(account_id)
        for _, on_removed in self._listeners:
            on_removed(slot)
        k.map_delete(self._map_keys, self._map_slots, int(account_id))
        self.qc[slot] = 0.0
        self.account_ids[slot] = -1
        self._free[self._n_free] = slot
        self._n_free += 1

    def _check_position(self, qty: object, entry_price: object, balance: object,
                        other_maintenance: object) -> tuple[float, float, float, float]:
        q = _finite(qty, "qty")
        if q == 0.0:
            raise InvalidInput("qty", qty, "must be non-zero (remove a flat account)")
        entry = _finite(entry_price, "entry_price")
        if entry <= 0.0:
            raise InvalidInput("entry_price", entry_price, "must be > 0")
        bal = _finite(balance, "balance")
        omm = _finite(other_maintenance, "other_maintenance")
        if omm < 0.0:
            raise InvalidInput("other_maintenance", other_maintenance, "must be >= 0")
        return q * self.contract_size, entry, bal, omm

    def _write(self, slot: int, qc: float, entry: float, balance: float, omm: float) -> None:
        self.qc[slot] = qc
        self.entry_price[slot] = entry
        self.balance[slot] = balance
        self.other_maintenance[slot] = omm
        self.eq0[slot] = balance + qc / entry if self.inverse else balance - qc * entry
        for on_changed, _ in self._listeners:
            on_changed(slot)

    def _grow(self, needed: int) -> None:
        """Make room for ``needed`` slots: at least double every per-slot array and rehash the map.

        Doubling keeps the cost amortised O(1) per account; existing slots keep their numbers, so
        listeners indexed by slot (the liquidation-price index) only have to extend their arrays.
        """
        capacity = max(needed, 2 * self.capacity)
        used = self._high
        for name in ("qc", "entry_price", "balance", "other_maintenance", "eq0"):
            old = getattr(self, name)
            new = np.zeros(capacity, np.float64)
            new[:used] = old[:used]
            setattr(self, name, new)
        ids = np.full(capacity, -1, np.int64)
        ids[:used] = self.account_ids[:used]
        self.account_ids = ids
        free = np.empty(capacity, np.int32)
        free[:self._n_free] = self._free[:self._n_free]
        self._free = free
        self._ratios = np.empty(capacity, np.float64)
        self._ids_out = np.empty(capacity, np.int64)
        table = _map_size(capacity)
        self._map_keys = np.full(table, k.EMPTY_KEY, np.int64)
        self._map_slots = np.full(table, -1, np.int32)
        _rehash(self._map_keys, self._map_slots, self.account_ids[:used])
        self.capacity = capacity

    # --- bulk load --------------------------------------------------------------------------------
    def load(self, account_ids: np.ndarray, qty: np.ndarray, entry_price: np.ndarray,
             balance: np.ndarray, other_maintenance: np.ndarray | None = None) -> None:
        """Append many accounts at once (vectorised); all-or-nothing. Attached listeners (the
        liquidation-price index) are told about every new slot, so loading after attaching is safe."""
        raw_ids = np.asarray(account_ids)
        if raw_ids.size and raw_ids.dtype.kind not in "iu":  # 1.7 would silently become id 1
            raise InvalidInput("account_ids", raw_ids.dtype, "must be an integer array")
        if raw_ids.dtype.kind == "u" and raw_ids.size and int(raw_ids.max()) > _MAX_ID:
            raise InvalidInput("account_ids", int(raw_ids.max()), f"must be <= {_MAX_ID}")
        ids = np.ascontiguousarray(raw_ids, dtype=np.int64)
        n = ids.shape[0]
        arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in (qty, entry_price, balance)]
        omm = (np.zeros(n) if other_maintenance is None
               else np.ascontiguousarray(other_maintenance, dtype=np.float64))
        for name, arr in zip(("qty", "entry_price", "balance", "other_maintenance"),
                             (*arrays, omm), strict=True):
            if arr.shape != (n,):
                raise InvalidInput(name, arr.shape, f"expected shape ({n},)")
        q, entry, bal = arrays
        if n and ids.min() < 0:
            raise InvalidInput("account_ids", int(ids.min()), "must be >= 0")
        _check_array(q, "qty", nonzero=True)
        _check_array(entry, "entry_price", positive=True)
        _check_array(bal, "balance")
        _check_array(omm, "other_maintenance", non_negative=True)
        if np.unique(ids).shape[0] != n or k.map_count_present(self._map_keys, self._map_slots, ids):
            raise InvalidInput("account_ids", n, "contains duplicates or ids already in the book")
        start, stop = self._high, self._high + n
        if stop > self.capacity:
            self._grow(stop)
        k.map_put_many(self._map_keys, self._map_slots, ids, start)
        self.account_ids[start:stop] = ids
        self.qc[start:stop] = q * self.contract_size
        self.entry_price[start:stop] = entry
        self.balance[start:stop] = bal
        self.other_maintenance[start:stop] = omm
        qc = self.qc[start:stop]
        self.eq0[start:stop] = bal + qc / entry if self.inverse else bal - qc * entry
        self._high = stop
        for on_changed, _ in self._listeners:
            for slot in range(start, stop):
                on_changed(slot)

    # --- screens ----------------------------------------------------------------------------------
    def margin_ratios(self, mark: float, out: np.ndarray | None = None) -> np.ndarray:
        """Maintenance / margin balance per slot (``high_water`` long; NaN for free slots).

        Without ``out`` the result is a view of an internal buffer, overwritten by the next call.
        """
        price = check_mark(mark)
        n = self._high
        target = self._ratios[:n] if out is None else out[:n]
        if target.shape[0] != n:
            raise InvalidInput("out", out.shape if out is not None else None, f"needs length >= {n}")
        k.margin_ratios_kernel(self.qc[:n], self.eq0[:n], self.other_maintenance[:n], price,
                               self.inverse, self._floors, self._rates, self._cums, target)
        return target

    def liquidatable(self, mark: float) -> np.ndarray:
        """Ids of every account with maintenance ≥ margin balance at ``mark`` (full rescan)."""
        price = check_mark(mark)
        n = self._high
        count = k.liquidatable_kernel(self.qc[:n], self.eq0[:n], self.other_maintenance[:n],
                                      self.account_ids[:n], price, self.inverse, self._floors,
                                      self._rates, self._cums, self._ids_out)
        return self._ids_out[:count].copy()

    def is_liquidatable(self, account_ids: np.ndarray, mark: float) -> np.ndarray:
        """Float test for a few accounts (a confirm callback for tests; the engine uses the ledger)."""
        price = check_mark(mark)
        slots = np.array([self.slot_of(int(a)) for a in np.asarray(account_ids).ravel()], np.int64)
        out = np.empty(slots.shape[0], np.float64)
        k.margin_ratios_kernel(self.qc[slots], self.eq0[slots], self.other_maintenance[slots], price,
                               self.inverse, self._floors, self._rates, self._cums, out)
        return out >= 1.0

    def liquidation_prices(self) -> np.ndarray:
        """Float liquidation price per slot (``high_water`` long; NaN for free slots)."""
        n = self._high
        out = np.empty(n, np.float64)
        k.liquidation_prices_kernel(self.qc[:n], self.entry_price[:n], self.balance[:n],
                                    self.other_maintenance[:n], self.inverse, self._floors,
                                    self._rates, self._cums, out)
        return out

    def slot_liquidation_price(self, slot: int) -> float:
        return float(k.liquidation_price_one(
            self.qc[slot], self.entry_price[slot], self.balance[slot], self.other_maintenance[slot],
            self.inverse, self._floors, self._rates, self._cums))

    def liquidation_price(self, account_id: int) -> float:
        """Float liquidation price of one account (long: mark ≤ it; short: mark ≥ it)."""
        return self.slot_liquidation_price(self.slot_of(account_id))

    @property
    def nbytes(self) -> int:
        """Bytes held by the book's arrays."""
        arrays = (self.qc, self.entry_price, self.balance, self.other_maintenance, self.eq0,
                  self.account_ids, self._map_keys, self._map_slots, self._free, self._ratios,
                  self._ids_out)
        return sum(a.nbytes for a in arrays)


__all__ = ["AccountBook", "AccountRow", "check_mark"]
