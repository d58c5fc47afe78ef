"""The exact double-entry ledger: accounts, balances per asset, positions per instrument.

Every change is a balanced :class:`Posting` (per asset the deltas sum to zero), validated in full and
then applied at once, so a refused operation leaves the ledger unchanged (same :meth:`Ledger.digest`).
Amounts are integer minor units, sizes integer lots, prices integer ticks.

System accounts, created by the ledger itself (user ids may not contain ``:``):

* ``world`` — the outside; deposits come from it and withdrawals go to it.
* ``clearing:<symbol>`` — pays out the realized PnL of an instrument. Its balance always equals the
  net unrealized PnL that the open positions of that instrument owe, or are owed, as a whole.
* ``isolated:<account>:<symbol>`` — the margin pocket of an isolated position: its realized PnL and
  fees settle there, its liquidation sees only that margin, and what is left returns to the wallet
  when the position closes.

Invariants (:meth:`Ledger.check_invariants`): per asset all balances sum to 0; per instrument
``Σ qty = 0``, ``Σ (cost − κ·realized) = 0`` (κ = +1 linear, −1 inverse) and clearing balance
``= −Σ realized``. Hence :meth:`Ledger.total_value` of the non-system accounts at any marks changes
only by deposits and withdrawals.

Negative balances: ``world``, ``market`` and ``clearing`` accounts may go negative; other accounts
only when opened with ``allow_negative=True`` or through settlement — a fill's realized loss and fee
may leave a bankrupt trader negative until the insurance fund covers it. A transfer never overdraws
an account that may not go negative; a withdrawal never creates a negative balance on any account.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Literal, NamedTuple

import numpy as np

from deleverage.core.bulk import BulkSegment, IdIndex, exact_sum
from deleverage.core.columns import (
    BulkPlan,
    TraderColumns,
    check_columns,
    journal_count,
    scan_counterparty,
    trade_values,
)
from deleverage.core.instruments import Instrument
from deleverage.core.margin import initial_margin_minor
from deleverage.core.money import Asset, Number
from deleverage.core.positions import (
    FillRecord,
    Position,
    PositionBook,
    apply_trade,
    contract_sign,
    mark_ticks_for,
    trade_value_minor,
)
from deleverage.core.tiers import MarginTiers
from deleverage.errors import InvalidInput, LedgerError

AccountKind = Literal[
    "trader", "insurance_fund", "fee_pool", "backstop", "market", "world", "clearing", "isolated"
]
MarginMode = Literal["cross", "isolated"]
OPENABLE_KINDS = ("backstop", "fee_pool", "insurance_fund", "market", "trader")
NEGATIVE_KINDS = ("clearing", "market", "world")
SYSTEM_KINDS = ("clearing", "isolated", "world")
WORLD_ID = "world"
Entry = tuple[str, str, int]


def clearing_account_id(symbol: str) -> str:
    """The system account paying out realized PnL of ``symbol``."""
    return f"clearing:{symbol}"


def isolated_account_id(account_id: str, symbol: str) -> str:
    """The margin pocket of ``account_id``'s isolated position in ``symbol``."""
    return f"isolated:{account_id}:{symbol}"


def _require_int(value: object, field_name: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field_name, value, "must be an integer")
    if minimum is not None and value < minimum:
        raise InvalidInput(field_name, value, f"must be >= {minimum}")
    return value


def _asset_code(asset: Asset | str) -> str:
    if isinstance(asset, Asset):
        return asset.code
    if isinstance(asset, str) and asset:
        return asset
    raise InvalidInput("asset", asset, "expected an Asset or a non-empty asset code")


@dataclass(frozen=True, slots=True)
class Posting:
    """A set of balance changes ``(account_id, asset_code, delta_minor)`` that must sum to 0 per asset."""

    entries: tuple[Entry, ...]
    reason: str
    ts_ns: int

    def imbalances(self) -> dict[str, int]:
        """Per asset, the non-zero sums of deltas (empty when the posting is balanced)."""
        totals: dict[str, int] = {}
        for _, asset_code, delta in self.entries:
            totals[asset_code] = totals.get(asset_code, 0) + delta
        return {code: total for code, total in totals.items() if total != 0}


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """A posting as applied, its sequence number (0, 1, ...) and the trade when it was a fill."""

    seq: int
    posting: Posting
    fill: FillRecord | None = None


@dataclass(frozen=True, slots=True)
class AccountView:
    """A read-only copy of an account and its balances."""

    account_id: str
    kind: str
    margin_mode: str
    allow_negative: bool
    balances: Mapping[str, int]

    def balance(self, asset: Asset | str) -> int:
        return self.balances.get(_asset_code(asset), 0)


@dataclass(frozen=True, slots=True)
class MarginState:
    """Margin of a cross account (its positions in one settlement asset) or of one isolated position.

    ``margin_ratio`` = maintenance / equity (inf when equity ≤ 0). ``liquidatable`` when there is an
    open position and exact equity ≤ exact maintenance (ratio ≥ 100%): the decision is taken on exact
    values so it flips exactly at :func:`deleverage.core.margin.liquidation_price`; the ``*_minor``
    fields are for display and payments (equity rounded down, maintenance rounded up).
    """

    equity_minor: int
    maintenance_minor: int
    initial_minor: int | None
    margin_ratio: float
    liquidatable: bool
    asset_code: str
    equity_exact: Fraction = field(default=Fraction(0), repr=False)
    maintenance_exact: Fraction = field(default=Fraction(0), repr=False)


class _Account(NamedTuple):
    """An account's fixed facts (a named tuple: built at C speed and small, a million at a time)."""

    account_id: str
    kind: str
    margin_mode: str
    allow_negative: bool
    parent: str | None = None


class Ledger:
    """Accounts, balances and positions, changed only by balanced postings kept in a journal."""

    def __init__(self) -> None:
        self._accounts: dict[str, _Account] = {WORLD_ID: _Account(WORLD_ID, "world", "cross", True)}
        self._balances: dict[tuple[str, str], int] = {}
        self._asset_codes: set[str] = set()
        self._pockets: dict[str, list[str]] = {}  # account id → its isolated pockets
        self._book = PositionBook()
        self._journal: list[JournalRecord] = []
        # bulk loads keep their journal records implicit: (index in _journal where they sit, segment)
        self._bulk: list[tuple[int, BulkSegment]] = []
        self._bulk_count = 0

    # --- bulk-loaded accounts (core/bulk.py) ----------------------------------------------------------
    # A bulk load's accounts stay in the columns of a BulkSegment (held by the position book, shared here)
    # until a write touches one: ``_touch`` then materialises it into the dicts, so every write path below
    # works on the dicts as before, and every read path looks in the dicts first, then in the columns.
    def _locate(self, account_id: object) -> tuple[BulkSegment, int, bool] | None:
        """(segment, row, is its pocket) of an untouched bulk account or pocket, else None."""
        if not isinstance(account_id, str):
            return None
        if account_id.startswith("isolated:"):
            parts = account_id.split(":", 2)
            if len(parts) != 3:
                return None
            for segment in self._book._bulk:
                if segment.symbol == parts[2]:
                    row = segment.live_row(parts[1])
                    if row >= 0:
                        return (segment, row, True) if segment.pocketed(row) else None
            return None
        for segment in self._book._bulk:
            row = segment.live_row(account_id)
            if row >= 0:
                return segment, row, False
        return None

    def _touch(self, account_id: object) -> None:
        """Before a write: move an untouched bulk account (or the owner of a pocket) into the dicts."""
        if self._book._bulk and account_id not in self._accounts:
            found = self._locate(account_id)
            if found is not None:
                self._materialise(found[0], found[1])

    def _materialise(self, segment: BulkSegment, row: int) -> None:
        """Exactly the dict entries the one-by-one path leaves for the row; the row is marked as moved out."""
        account_id = segment.ids.id_of(row)
        qty = int(segment.qty[row])
        isolated = bool(segment.isolated[row])
        self._accounts[account_id] = _Account(account_id, "trader", "isolated" if isolated else "cross", False)
        if isolated and qty:
            pocket = isolated_account_id(account_id, segment.symbol)
            self._accounts[pocket] = _Account(pocket, "isolated", "cross", False, account_id)
            self._pockets.setdefault(account_id, []).append(pocket)
        for holder, amount in segment.balance_entries(row):
            self._balances[(holder, segment.code)] = amount
        if qty:
            self._book.commit([Position(account_id, segment.symbol, qty, segment.cost(row))])
        segment.touched[row] = True

    def _bulk_account(self, account_id: str) -> _Account | None:
        found = self._locate(account_id)
        if found is None:
            return None
        segment, row, pocket = found
        if pocket:
            return _Account(account_id, "isolated", "cross", False, segment.ids.id_of(row))
        return _Account(account_id, "trader", "isolated" if segment.isolated[row] else "cross", False)

    def _balance_of(self, account_id: str, code: str) -> int | None:
        """The balance entry of ``account_id`` in ``code`` (None when there is none), columns included."""
        amount = self._balances.get((account_id, code))
        if amount is not None or not self._book._bulk:
            return amount
        found = self._locate(account_id)
        if found is None or found[0].code != code:
            return None
        segment, row, pocket = found
        return segment.pocket_balance(row) if pocket else segment.wallet_balance(row)

    def _pockets_of(self, account_id: str) -> list[str]:
        pockets = self._pockets.get(account_id)
        if pockets is not None or not self._book._bulk:
            return pockets or []
        found = self._locate(account_id)
        if found is not None and not found[2] and found[0].pocketed(found[1]):
            return [isolated_account_id(account_id, found[0].symbol)]
        return []

    def _exists(self, account_id: str) -> bool:
        return account_id in self._accounts or (bool(self._book._bulk) and self._locate(account_id) is not None)

    def _all_balances(self) -> dict[tuple[str, str], int]:
        """Every balance entry, the columns' included (for checks over the whole state)."""
        merged = dict(self._balances)
        for segment in self._book._bulk:
            merged.update(segment.balance_items())
        return merged

    # --- accounts -------------------------------------------------------------------------------
    def open_account(
        self, account_id: str, *, kind: str = "trader", margin_mode: str = "cross",
        allow_negative: bool = False,
    ) -> AccountView:
        """Open an empty account. Market accounts (external liquidity) may always go negative."""
        if not isinstance(account_id, str) or not account_id or ":" in account_id:
            raise InvalidInput("account_id", account_id, "must be a non-empty string without ':'")
        if self._exists(account_id):
            raise InvalidInput("account_id", account_id, "account already exists")
        if kind not in OPENABLE_KINDS:
            raise InvalidInput("kind", kind, f"must be one of {list(OPENABLE_KINDS)}")
        if margin_mode not in ("cross", "isolated"):
            raise InvalidInput("margin_mode", margin_mode, "must be 'cross' or 'isolated'")
        if not isinstance(allow_negative, bool):
            raise InvalidInput("allow_negative", allow_negative, "must be a bool")
        negative = allow_negative or kind in NEGATIVE_KINDS
        self._accounts[account_id] = _Account(account_id, kind, margin_mode, negative)
        return self.account(account_id)

    def open_accounts(
        self,
        account_ids: Iterable[str],
        *,
        kind: str = "trader",
        margin_mode: str = "cross",
        allow_negative: bool = False,
    ) -> int:
        """Open many empty accounts at once (all-or-nothing); returns how many were opened."""
        ids = list(account_ids)
        if kind not in OPENABLE_KINDS:
            raise InvalidInput("kind", kind, f"must be one of {list(OPENABLE_KINDS)}")
        if margin_mode not in ("cross", "isolated"):
            raise InvalidInput("margin_mode", margin_mode, "must be 'cross' or 'isolated'")
        if not isinstance(allow_negative, bool):
            raise InvalidInput("allow_negative", allow_negative, "must be a bool")
        self._check_new_ids(ids)
        negative = allow_negative or kind in NEGATIVE_KINDS
        for account_id in ids:
            self._accounts[account_id] = _Account(account_id, kind, margin_mode, negative)
        return len(ids)

    def load_traders(
        self, columns: TraderColumns, *, instrument: Instrument, counterparty: str = "market", ts_ns: int = 0,
    ) -> int:
        """Open, fund and position many trader accounts at once: the same state, digest and journal as
        ``open_account`` + ``deposit`` (+ ``add_isolated_margin``) + ``apply_fill`` against
        ``counterparty`` row by row, computed over integer columns (core/columns.py).

        All-or-nothing: every column, id and the counterparty are checked before anything is written.
        Returns how many accounts were opened.
        """
        cols = check_columns(columns)
        index = self._check_bulk_ids(cols.account_ids)
        _require_int(ts_ns, "ts_ns", minimum=0)
        self._book.check_instrument(instrument)
        opens = cols.qty_lots != 0
        any_fill = bool(opens.any())
        self._touch(counterparty)  # its position and balance change: a bulk-loaded one moves into the dicts
        if any_fill:
            cp = self._accounts.get(counterparty)
            if cp is None or cp.kind not in OPENABLE_KINDS or cp.margin_mode != "cross":
                raise InvalidInput("counterparty", counterparty, "must be an open cross-margin, non-system account")
        values = trade_values(instrument, cols.qty_lots, cols.price_ticks)
        start = self._book.get(counterparty, instrument.symbol)
        realized, final = scan_counterparty(instrument, cols.qty_lots, values, cols.price_ticks, start)
        plan = BulkPlan(cols, instrument, counterparty, ts_ns, values, realized, final)
        # Everything is checked: from here on nothing can fail. The accounts stay in columns (core/bulk.py).
        if any_fill:
            self._register(instrument)
            self._book.commit([plan.market_position])
        segment = BulkSegment(plan, index, self.journal_length(), journal_count(cols))
        self._book._bulk.append(segment)
        self._install_totals(plan, cols.deposit_minor > 0, segment)
        return len(cols)

    def _check_bulk_ids(self, account_ids: Iterable[str]) -> IdIndex:
        """The index of new, distinct, non-empty ids without ``:`` (refused by name otherwise)."""
        ids = account_ids if isinstance(account_ids, list) else list(account_ids)
        if set(map(type, ids)) <= {str} and ":" not in "".join(ids):
            index = IdIndex.build(ids)
            if not index.has_repeats_or_empty() and not self._clashes(index):
                return index
        self._check_new_ids(ids)  # names the first bad id (str subclasses pass it: indexed as plain strings)
        return IdIndex.build([str(a) for a in ids])

    def _clashes(self, index: IdIndex) -> bool:
        """True when an id of ``index`` is already an account (in the dicts or an earlier bulk load)."""
        plain = [a for a in self._accounts if ":" not in a]
        return index.contains_any(plain) or any(seg.ids.overlaps(index) for seg in self._book._bulk)

    def _check_new_ids(self, ids: Iterable[str]) -> None:
        """Refuse a non-string, empty, ``:``-holding, repeated or existing id, naming the first one."""
        ids = ids if isinstance(ids, list) else list(ids)
        if self._new_ids_ok(ids):
            return
        seen: set[str] = set()
        for index, account_id in enumerate(ids):
            if not isinstance(account_id, str) or not account_id or ":" in account_id:
                raise InvalidInput(f"account_ids[{index}]", account_id, "must be a non-empty string without ':'")
            if self._exists(account_id) or account_id in seen:
                raise InvalidInput(f"account_ids[{index}]", account_id, "account already exists")
            seen.add(account_id)

    def _new_ids_ok(self, ids: list[str]) -> bool:
        """The same checks in C-level passes; False sends the caller to the loop that names the culprit."""
        if not set(map(type, ids)) <= {str}:
            return False
        unique = set(ids)
        return (len(unique) == len(ids) and "" not in unique and ":" not in "".join(ids)
                and unique.isdisjoint(self._accounts)
                and not any(seg.ids.contains_any(ids) for seg in self._book._bulk))

    def _install_totals(self, plan: BulkPlan, funded: np.ndarray, segment: BulkSegment) -> None:
        """The world's side of the deposits, the counterparty's realized PnL, the journal segment."""
        cols, balances = plan.columns, self._balances
        code, symbol = plan.instrument.settle.code, plan.instrument.symbol
        if funded.any():  # every deposit came from the world
            total_in = exact_sum(cols.deposit_minor)
            balances[(WORLD_ID, code)] = balances.get((WORLD_ID, code), 0) - total_in
        moved = plan.market_realized != 0
        if moved.any():
            total = exact_sum(plan.market_realized)
            for account_id, delta in ((plan.counterparty, total), (clearing_account_id(symbol), -total)):
                balances[(account_id, code)] = balances.get((account_id, code), 0) + delta
        if funded.any() or moved.any():
            self._asset_codes.add(code)
        if segment.count:
            self._bulk.append((len(self._journal), segment))
            self._bulk_count += segment.count

    def account(self, account_id: str) -> AccountView:
        acc = self._require_account(account_id)
        # Look up this account's few assets directly: scanning every balance made opening N accounts O(N²).
        held = ((c, self._balance_of(account_id, c)) for c in sorted(self._asset_codes))
        balances = {c: amount for c, amount in held if amount is not None}
        return AccountView(acc.account_id, acc.kind, acc.margin_mode, acc.allow_negative, balances)

    def account_ids(self, *, include_system: bool = False) -> list[str]:
        ids = [a for a, acc in self._accounts.items() if include_system or acc.kind not in SYSTEM_KINDS]
        for segment in self._book._bulk:
            if include_system:
                ids += [t[0] for t in segment.account_tuples()]
            else:
                ids += segment.live_sorted_rows()[1]
        return sorted(ids)

    def has_account(self, account_id: str) -> bool:
        return self._exists(account_id)

    def balance(self, account_id: str, asset: Asset | str) -> int:
        self._require_account(account_id)
        return self._balance_of(account_id, _asset_code(asset)) or 0

    def _require_account(self, account_id: str) -> _Account:
        try:
            return self._accounts[account_id]
        except (KeyError, TypeError):
            acc = self._bulk_account(account_id) if self._book._bulk else None
            if acc is not None:
                return acc
            raise InvalidInput("account_id", account_id, "unknown account") from None

    def _open_system(self, account_id: str, kind: str, parent: str | None = None) -> None:
        if account_id not in self._accounts:
            negative = kind in NEGATIVE_KINDS
            self._accounts[account_id] = _Account(account_id, kind, "cross", negative, parent)
            if kind == "isolated" and parent is not None:
                self._pockets.setdefault(parent, []).append(account_id)

    # --- postings -------------------------------------------------------------------------------
    @property
    def journal(self) -> tuple[JournalRecord, ...]:
        return tuple(self._iter_journal())

    def journal_length(self) -> int:
        """How many records the journal holds (bulk-loaded ones included), without building them."""
        return len(self._journal) + self._bulk_count

    def _iter_journal(self) -> Iterator[JournalRecord]:
        done = 0
        for at, segment in self._bulk:
            yield from self._journal[done:at]
            yield from _bulk_records(segment)
            done = at
        yield from self._journal[done:]

    def post(self, posting: Posting, *, allow_deficit: bool = False) -> JournalRecord:
        """Validate ``posting`` in full, then apply it; nothing changes when it is refused.

        ``allow_deficit`` is for settlement: it lets an account that may not go negative do so.
        """
        self._validate_posting(posting, allow_deficit=allow_deficit)
        return self._apply(posting)

    def _validate_posting(
        self, posting: Posting, *, allow_deficit: bool, creating: frozenset[str] = frozenset()
    ) -> None:
        """Refuse a malformed, unbalanced or overdrawing posting (``creating``: ids about to open)."""
        if not isinstance(posting, Posting):
            raise InvalidInput("posting", posting, "expected a Posting")
        if not isinstance(posting.reason, str) or not posting.reason:
            raise InvalidInput("posting.reason", posting.reason, "must be a non-empty string")
        _require_int(posting.ts_ns, "posting.ts_ns", minimum=0)
        if not isinstance(posting.entries, tuple):
            raise InvalidInput("posting.entries", posting.entries, "must be a tuple")
        net: dict[tuple[str, str], int] = {}
        accounts = self._accounts
        for index, entry in enumerate(posting.entries):
            # the entry's name is formatted only when it is refused (this loop runs on every fill)
            if not isinstance(entry, tuple) or len(entry) != 3:
                raise InvalidInput(f"posting.entries[{index}]", entry, "expected (account_id, asset_code, delta_minor)")
            account_id, asset_code, delta = entry
            if account_id not in accounts and self._book._bulk:
                self._touch(account_id)
            if account_id not in creating and account_id not in accounts:
                self._require_account(account_id)
            if not isinstance(asset_code, str) or not asset_code:
                raise InvalidInput(f"posting.entries[{index}].asset_code", asset_code, "must be an asset code")
            if type(delta) is not int:
                _require_int(delta, f"posting.entries[{index}].delta_minor")
            net[(account_id, asset_code)] = net.get((account_id, asset_code), 0) + delta
        for asset_code, imbalance in sorted(posting.imbalances().items()):
            raise LedgerError(
                f"posting {posting.reason!r} is unbalanced in {asset_code}: deltas sum to {imbalance}"
            )
        if not allow_deficit:
            for (account_id, asset_code), delta in sorted(net.items()):
                self._check_overdraw(account_id, asset_code, delta, posting.reason)

    def _check_overdraw(self, account_id: str, asset_code: str, delta: int, reason: str) -> None:
        acc = self._accounts.get(account_id)
        before = self._balances.get((account_id, asset_code), 0)
        after = before + delta
        if delta < 0 and after < 0 and not (acc is not None and acc.allow_negative):
            raise LedgerError(
                f"posting {reason!r} would overdraw {account_id} in {asset_code}: "
                f"balance {before} {delta:+d} = {after}"
            )

    def _apply(self, posting: Posting, fill: FillRecord | None = None) -> JournalRecord:
        for account_id, asset_code, delta in posting.entries:
            key = (account_id, asset_code)
            self._balances[key] = self._balances.get(key, 0) + delta
            self._asset_codes.add(asset_code)
        record = JournalRecord(len(self._journal) + self._bulk_count, posting, fill)
        self._journal.append(record)
        return record

    def transfer(
        self, from_id: str, to_id: str, asset: Asset | str, amount_minor: int, *, reason: str, ts_ns: int
    ) -> JournalRecord:
        """Move ``amount_minor`` (> 0) between two accounts; refuses to overdraw the source."""
        amount = _require_int(amount_minor, "amount_minor", minimum=1)
        self._require_account(from_id)
        self._require_account(to_id)
        if from_id == to_id:
            raise InvalidInput("to_id", to_id, "must differ from from_id")
        code = _asset_code(asset)
        return self.post(Posting(((from_id, code, -amount), (to_id, code, amount)), reason, ts_ns))

    def deposit(
        self, account_id: str, asset: Asset | str, amount_minor: int, ts_ns: int, *, reason: str = "deposit"
    ) -> JournalRecord:
        """Money from the outside (the world account) into ``account_id``."""
        return self.transfer(WORLD_ID, account_id, asset, amount_minor, reason=reason, ts_ns=ts_ns)

    def withdraw(
        self, account_id: str, asset: Asset | str, amount_minor: int, ts_ns: int, *, reason: str = "withdraw"
    ) -> JournalRecord:
        """Money out to the world; never more than the balance, even where negatives are allowed."""
        amount = _require_int(amount_minor, "amount_minor", minimum=1)
        have = self.balance(account_id, asset)
        if amount > have:
            raise LedgerError(
                f"withdraw of {amount} {_asset_code(asset)} from {account_id} exceeds balance {have}"
            )
        return self.transfer(account_id, WORLD_ID, asset, amount, reason=reason, ts_ns=ts_ns)

    # --- isolated margin --------------------------------------------------------------------------
    def add_isolated_margin(
        self, account_id: str, instrument: Instrument, amount_minor: int, *, ts_ns: int,
        reason: str = "add isolated margin",
    ) -> JournalRecord:
        """Fund the isolated pocket of ``account_id``'s position in ``instrument`` from its wallet."""
        pocket = self._pocket(account_id, instrument)
        amount = _require_int(amount_minor, "amount_minor", minimum=1)
        code = instrument.settle.code
        posting = Posting(((account_id, code, -amount), (pocket, code, amount)), reason, ts_ns)
        self._validate_posting(posting, allow_deficit=False, creating=frozenset({pocket}))
        self._register(instrument)
        self._open_system(pocket, "isolated", account_id)
        return self._apply(posting)

    def remove_isolated_margin(
        self, account_id: str, instrument: Instrument, amount_minor: int, *, ts_ns: int,
        reason: str = "remove isolated margin",
    ) -> JournalRecord:
        """Return margin from the pocket to the wallet, never more than the pocket holds."""
        pocket = self._pocket(account_id, instrument)
        amount = _require_int(amount_minor, "amount_minor", minimum=1)
        have = self._balance_of(pocket, instrument.settle.code) or 0
        if amount > have:
            raise LedgerError(f"remove of {amount} from {pocket} exceeds its balance {have}")
        return self.transfer(pocket, account_id, instrument.settle, amount, reason=reason, ts_ns=ts_ns)

    def isolated_margin_minor(self, account_id: str, symbol: str) -> int:
        """Balance of the isolated pocket (0 when there is none)."""
        code = self._book.instrument(symbol).settle.code
        return self._balance_of(isolated_account_id(account_id, symbol), code) or 0

    def _pocket(self, account_id: str, instrument: Instrument) -> str:
        if self._require_account(account_id).margin_mode != "isolated":
            raise InvalidInput("account_id", account_id, "is not an isolated-margin account")
        self._book.check_instrument(instrument)
        return isolated_account_id(account_id, instrument.symbol)

    # --- instruments and positions --------------------------------------------------------------
    def _register(self, instrument: Instrument) -> None:
        if self._book.register(instrument):
            self._open_system(clearing_account_id(instrument.symbol), "clearing")

    def instruments(self) -> list[Instrument]:
        return self._book.instruments()

    def instrument(self, symbol: str) -> Instrument:
        return self._book.instrument(symbol)

    def position(self, account_id: str, symbol: str) -> Position:
        """The position of ``account_id`` in ``symbol`` (flat when never traded)."""
        self._require_account(account_id)
        return self._book.get(account_id, symbol)

    def positions(self, instrument_symbol: str | None = None, *, open_only: bool = True) -> Iterator[Position]:
        """Positions sorted by (symbol, account), of one instrument when ``instrument_symbol`` is set."""
        return self._book.iterate(instrument_symbol, open_only=open_only)

    def account_positions(self, account_id: str, *, open_only: bool = True) -> list[Position]:
        self._require_account(account_id)
        return list(self._book.iterate(account_id=account_id, open_only=open_only))

    # --- trading --------------------------------------------------------------------------------
    def apply_fill(
        self, *, buyer: str, seller: str, instrument: Instrument, price_ticks: int, qty_lots: int,
        ts_ns: int, reason: str, buyer_fee_minor: int = 0, seller_fee_minor: int = 0,
        fee_account: str = "fee_pool", reduce_only_for: str | None = None,
    ) -> JournalRecord:
        """One trade between two ledger accounts: both positions, realized PnL and fees, atomically.

        A positive fee is charged to the trader and credited to ``fee_account``; a negative one is a
        rebate. ``reduce_only_for`` (buyer or seller) refuses a fill that would grow or flip that
        account's position. Settlement may leave a bankrupt wallet negative.
        """
        self._check_fill_args(buyer, seller, instrument, price_ticks, qty_lots, ts_ns, reason)
        if self._book._bulk:
            for account_id in (buyer, seller, fee_account):
                self._touch(account_id)
        for name, fee in (("buyer_fee_minor", buyer_fee_minor), ("seller_fee_minor", seller_fee_minor)):
            if _require_int(fee, name):
                self._require_account(fee_account)
        if reduce_only_for is not None and reduce_only_for not in (buyer, seller):
            raise InvalidInput("reduce_only_for", reduce_only_for, "must be the buyer or the seller")
        value = trade_value_minor(instrument, price_ticks, qty_lots)
        fill = FillRecord(
            instrument.symbol, buyer, seller, price_ticks, qty_lots, value,
            buyer_fee_minor, seller_fee_minor,
        )
        entries: list[Entry] = []
        new_positions: list[Position] = []
        pockets: dict[str, str] = {}
        for account_id, signed_qty, fee in fill.sides():
            before = self._book.get(account_id, instrument.symbol)
            if account_id == reduce_only_for:
                _check_reduce_only(before, signed_qty)
            outcome = apply_trade(
                before, instrument, signed_qty_lots=signed_qty, value_minor=value,
                price_ticks=price_ticks, fee_minor=fee,
            )
            new_positions.append(outcome.position)
            wallet = self._settlement_wallet(account_id, instrument)
            if wallet != account_id:
                pockets[wallet] = account_id
            entries += self._settlement_entries(
                account_id, wallet, instrument, outcome.position, outcome.realized_minor, fee, fee_account
            )
        posting = Posting(tuple(entries), reason, ts_ns)
        creating = frozenset({clearing_account_id(instrument.symbol), *pockets})
        self._validate_posting(posting, allow_deficit=True, creating=creating)
        # Everything is checked: from here on nothing can fail.
        self._register(instrument)
        for pocket, owner in sorted(pockets.items()):
            self._open_system(pocket, "isolated", owner)
        self._book.commit(new_positions)
        return self._apply(posting, fill)

    def open_positions(
        self, account_ids: list[str], signed_lots: list[int], isolated_minor: list[int], *,
        instrument: Instrument, price_ticks: int, counterparty: str, ts_ns: int, reason: str = "open position",
    ) -> None:
        """Open flat accounts' positions against ``counterparty`` at one price, in row order: exactly
        ``add_isolated_margin`` (where ``isolated_minor`` > 0) then ``apply_fill`` per row — same state,
        digest and journal — without re-validating what the batch check already proved.

        When any row is not a plain open from flat (unknown account, not flat, repeated, overdrawn, ...)
        the rows go through those two calls one by one, which refuse it as they always did.
        """
        if self._book._bulk:
            for account_id in (*account_ids, counterparty):
                self._touch(account_id)
        if not self._opens_ok(account_ids, signed_lots, isolated_minor, instrument, price_ticks, counterparty,
                              ts_ns, reason):
            self._open_one_by_one(account_ids, signed_lots, isolated_minor, instrument, price_ticks, counterparty,
                                  ts_ns, reason)
            return
        code, symbol = instrument.settle.code, instrument.symbol
        clearing = clearing_account_id(symbol)
        self._register(instrument)
        market = self._book.get(counterparty, symbol)
        for account_id, lots, margin in zip(account_ids, signed_lots, isolated_minor, strict=True):
            isolated = self._accounts[account_id].margin_mode == "isolated"
            pocket = isolated_account_id(account_id, symbol) if isolated else ""
            if margin > 0:
                self._open_system(pocket, "isolated", account_id)
                self._apply(Posting(((account_id, code, -margin), (pocket, code, margin)),
                                    "add isolated margin", ts_ns))
            size = abs(lots)
            value = trade_value_minor(instrument, price_ticks, size)
            before = self._book.get(account_id, symbol)
            direction = 1 if lots > 0 else -1
            mine = replace(before, qty_lots=lots, cost_minor=before.cost_minor + direction * value)
            outcome = apply_trade(market, instrument, signed_qty_lots=-lots, value_minor=value,
                                  price_ticks=price_ticks)
            market, realized = outcome.position, outcome.realized_minor
            if isolated:
                self._open_system(pocket, "isolated", account_id)
            buyer, seller = (account_id, counterparty) if lots > 0 else (counterparty, account_id)
            self._book.commit([mine, market] if lots > 0 else [market, mine])
            entries = ((counterparty, code, realized), (clearing, code, -realized)) if realized else ()
            self._apply(Posting(entries, reason, ts_ns), FillRecord(symbol, buyer, seller, price_ticks, size, value))

    def _opens_ok(self, account_ids: list[str], signed_lots: list[int], isolated_minor: list[int],
                  instrument: Instrument, price_ticks: int, counterparty: str, ts_ns: int, reason: str) -> bool:
        """True when every row is an open from flat that the one-by-one calls would accept."""
        try:
            self._book.check_instrument(instrument)
        except InvalidInput:
            return False
        cp = self._accounts.get(counterparty)
        if (cp is None or cp.kind not in OPENABLE_KINDS or cp.margin_mode != "cross"
                or not (len(account_ids) == len(signed_lots) == len(isolated_minor))
                or len(set(account_ids)) != len(account_ids) or counterparty in account_ids
                or type(price_ticks) is not int or price_ticks < 1 or type(ts_ns) is not int or ts_ns < 0
                or not isinstance(reason, str) or not reason):
            return False
        code, symbol = instrument.settle.code, instrument.symbol
        for account_id, lots, margin in zip(account_ids, signed_lots, isolated_minor, strict=True):
            acc = self._accounts.get(account_id) if isinstance(account_id, str) else None
            if (acc is None or acc.kind not in OPENABLE_KINDS or type(lots) is not int or lots == 0
                    or type(margin) is not int or margin < 0 or self._book.get(account_id, symbol).qty_lots):
                return False
            if margin and (acc.margin_mode != "isolated" or (
                    self._balances.get((account_id, code), 0) < margin and not acc.allow_negative)):
                return False
        return True

    def _open_one_by_one(self, account_ids: list[str], signed_lots: list[int], isolated_minor: list[int],
                         instrument: Instrument, price_ticks: int, counterparty: str, ts_ns: int,
                         reason: str) -> None:
        """The reference: the ledger's own calls per row (and their refusals)."""
        for account_id, lots, margin in zip(account_ids, signed_lots, isolated_minor, strict=True):
            if margin > 0:
                self.add_isolated_margin(account_id, instrument, margin, ts_ns=ts_ns)
            buyer, seller = (account_id, counterparty) if lots > 0 else (counterparty, account_id)
            self.apply_fill(buyer=buyer, seller=seller, instrument=instrument, price_ticks=price_ticks,
                            qty_lots=abs(lots), ts_ns=ts_ns, reason=reason)

    def margin_balances(self, account_ids: Iterable[str], symbol: str) -> tuple[list[int], list[bool]]:
        """Per account: the isolated pocket's balance in ``symbol`` where the pocket exists, else the wallet's
        (the margin a screen row starts from), and whether it was the pocket."""
        code = self._book.instrument(symbol).settle.code
        accounts, balances = self._accounts, self._balances
        ids = list(account_ids)
        pockets = [isolated_account_id(a, symbol) for a in ids]
        pocketed = [p in accounts for p in pockets]
        held = [balances.get((p if has else a, code), 0) for a, p, has in zip(ids, pockets, pocketed, strict=True)]
        for segment in self._book._bulk:  # untouched bulk rows: read from the columns, nothing materialised
            rows = segment.ids.find_many(ids)
            at = np.flatnonzero(rows >= 0)
            if not at.size:
                continue
            found = rows[at]
            live = ~segment.touched[found]
            at, found = at[live], found[live]
            opened = segment.qty[found] != 0
            pocket = segment.isolated[found] & opened & (segment.symbol == symbol)
            wallet_empty = segment.isolated[found] & opened  # the deposit sits in the pocket (of whichever symbol)
            amount = np.where(pocket | (~wallet_empty & (segment.code == code)), segment.deposit[found], 0)
            for i, p, a in zip(at.tolist(), pocket.tolist(), amount.tolist(), strict=True):
                held[i], pocketed[i] = a, p
        if self._book._bulk:  # a pocket's own id: its balance, wherever it lives
            for i, account_id in enumerate(ids):
                if isinstance(account_id, str) and account_id.startswith("isolated:") and account_id not in accounts:
                    held[i] = self._balance_of(account_id, code) or 0
        return held, pocketed

    def _check_fill_args(
        self, buyer: str, seller: str, instrument: Instrument, price_ticks: int, qty_lots: int,
        ts_ns: int, reason: str,
    ) -> None:
        self._book.check_instrument(instrument)
        _require_int(price_ticks, "price_ticks", minimum=1)
        _require_int(qty_lots, "qty_lots", minimum=1)
        _require_int(ts_ns, "ts_ns", minimum=0)
        if not isinstance(reason, str) or not reason:
            raise InvalidInput("reason", reason, "must be a non-empty string")
        for name, account_id in (("buyer", buyer), ("seller", seller)):
            if self._require_account(account_id).kind not in OPENABLE_KINDS:
                raise InvalidInput(name, account_id, "system accounts cannot trade")
        if buyer == seller:
            raise InvalidInput("seller", seller, "must differ from buyer")

    def _settlement_wallet(self, account_id: str, instrument: Instrument) -> str:
        if self._accounts[account_id].margin_mode == "isolated":
            return isolated_account_id(account_id, instrument.symbol)
        return account_id

    def _settlement_entries(
        self, account_id: str, wallet: str, instrument: Instrument, after: Position,
        realized_minor: int, fee_minor: int, fee_account: str,
    ) -> list[Entry]:
        """Realized PnL from clearing, the fee to the fee account, and an emptied pocket's release."""
        code = instrument.settle.code
        entries: list[Entry] = []
        if realized_minor:
            clearing = clearing_account_id(instrument.symbol)
            entries += [(wallet, code, realized_minor), (clearing, code, -realized_minor)]
        if fee_minor:
            entries += [(wallet, code, -fee_minor), (fee_account, code, fee_minor)]
        if wallet != account_id and not after.is_open:
            left = self._balances.get((wallet, code), 0) + realized_minor - fee_minor
            if left > 0:
                entries += [(wallet, code, -left), (account_id, code, left)]
        return entries

    # --- valuation ------------------------------------------------------------------------------
    def unrealized_pnl_exact(self, account_id: str, symbol: str, mark_ticks: int) -> Fraction:
        return self._book.unrealized_exact(self.position(account_id, symbol), {symbol: mark_ticks})

    def equity_exact(
        self, account_id: str, marks: Mapping[str, int], *, asset_code: str | None = None,
        symbol: str | None = None,
    ) -> Fraction:
        """Wallet plus unrealized PnL at ``marks`` (symbol → mark ticks), exact.

        With ``symbol`` on an isolated account: that position's pocket plus its unrealized PnL.
        Otherwise: the wallet plus every position settling in the asset (and their pockets).
        """
        acc = self._require_account(account_id)
        if symbol is not None and acc.margin_mode == "isolated":
            margin = self._balance_of(
                isolated_account_id(account_id, symbol), self._book.instrument(symbol).settle.code
            ) or 0
            return margin + self._book.unrealized_exact(self._book.get(account_id, symbol), marks)
        code = self._resolve_asset(account_id, asset_code, symbol)
        total = Fraction(self._balance_of(account_id, code) or 0)
        for pos in self._book.iterate(account_id=account_id):
            if self._book.instrument(pos.symbol).settle.code == code:
                total += self._book.unrealized_exact(pos, marks)
        if acc.margin_mode == "isolated":
            for pocket in self._pockets_of(account_id):
                total += self._balance_of(pocket, code) or 0
        return total

    def equity_minor(
        self, account_id: str, marks: Mapping[str, int], *, asset_code: str | None = None,
        symbol: str | None = None,
    ) -> int:
        """Equity rounded down: what could be paid out never exceeds what is there."""
        return math.floor(self.equity_exact(account_id, marks, asset_code=asset_code, symbol=symbol))

    def margin_state(
        self, account_id: str, marks: Mapping[str, int], tiers_for: Callable[[Instrument], MarginTiers],
        *, symbol: str | None = None, asset_code: str | None = None, leverage: Number | None = None,
    ) -> MarginState:
        """Equity against tiered maintenance margin at the marks: cross, or isolated (``symbol``)."""
        acc = self._require_account(account_id)
        if acc.margin_mode == "isolated":
            if symbol is None:
                raise InvalidInput("symbol", None, f"isolated account {account_id} needs a symbol")
            code = self._book.instrument(symbol).settle.code
            positions = [self._book.get(account_id, symbol)]
        else:
            code = self._resolve_asset(account_id, asset_code, symbol)
            positions = [
                p for p in self._book.iterate(account_id=account_id)
                if self._book.instrument(p.symbol).settle.code == code
            ]
        equity = self.equity_exact(account_id, marks, asset_code=code, symbol=symbol)
        maintenance = Fraction(0)
        initial = None if leverage is None else 0
        open_positions = [p for p in positions if p.is_open]
        for pos in open_positions:
            instrument = self._book.instrument(pos.symbol)
            mark = mark_ticks_for(marks, pos.symbol)
            maintenance += _maintenance_exact(instrument, tiers_for(instrument), pos.qty_lots, mark)
            if initial is not None and leverage is not None:
                initial += initial_margin_minor(instrument, pos.qty_lots, mark, leverage)
        return MarginState(
            equity_minor=math.floor(equity),
            maintenance_minor=math.ceil(maintenance),
            initial_minor=initial,
            margin_ratio=math.inf if equity <= 0 else float(maintenance / equity),
            liquidatable=bool(open_positions) and equity <= maintenance,
            asset_code=code,
            equity_exact=equity,
            maintenance_exact=maintenance,
        )

    def total_values(self, marks: Mapping[str, int]) -> dict[str, Fraction]:
        """Per asset: balances of all non-world, non-clearing accounts plus all unrealized PnL.

        Summed in integers, one exact division per instrument at the end: a position's value is linear
        in its size, so Σ unrealized = κ·(notional(mark, Σ qty) − Σ cost) over the open positions of an
        instrument (the same Fraction as adding each position's, without a Fraction per position).
        """
        totals: dict[str, Fraction] = {
            code: Fraction(amount) for code, amount in self._balance_totals().items()}
        for symbol, (qty, cost) in sorted(self._book.open_sums().items()):
            instrument = self._book.instrument(symbol)
            mark = mark_ticks_for(marks, symbol)
            unrealized = contract_sign(instrument) * (instrument.notional(mark, qty) - cost)
            code = instrument.settle.code
            totals[code] = totals.get(code, Fraction(0)) + unrealized
        return dict(sorted(totals.items()))

    def _balance_totals(self) -> dict[str, int]:
        """Per asset, the sum of every balance held by an account other than the world and the clearing ones
        (an asset appears when such an account has an entry in it, even a zero one)."""
        excluded = [a for a in (WORLD_ID, *map(clearing_account_id, self._book.symbols()))
                    if a in self._accounts and self._accounts[a].kind in ("world", "clearing")]
        balances = self._balances
        totals: dict[str, int] = {}
        if len(self._asset_codes) == 1:  # one asset: a C-level sum over all balances, minus the few excluded
            (code,) = self._asset_codes
            held = [(a, code) for a in excluded if (a, code) in balances]
            if len(balances) != len(held):
                totals[code] = sum(balances.values()) - sum(balances[k] for k in held)
        else:
            skip = set(excluded)
            for (account_id, code), amount in balances.items():
                if account_id not in skip:
                    totals[code] = totals.get(code, 0) + amount
        for segment in self._book._bulk:  # untouched rows: wallet + pocket hold the deposit
            amount, any_entry = segment.live_deposit_total()
            if any_entry:
                totals[segment.code] = totals.get(segment.code, 0) + amount
        return totals

    def total_value(self, marks: Mapping[str, int], asset_code: str | None = None) -> Fraction:
        """Total value in one asset; ``asset_code`` may be omitted when only one asset is in use."""
        totals = self.total_values(marks)
        if asset_code is None:
            codes = sorted({c for (_, c) in self._balances} | set(totals))
            if len(codes) > 1:
                raise InvalidInput("asset_code", None, f"several assets in use {codes}; name one")
            asset_code = codes[0] if codes else ""
        return totals.get(asset_code, Fraction(0))

    def _resolve_asset(self, account_id: str, asset_code: str | None, symbol: str | None) -> str:
        if asset_code is not None:
            return asset_code
        if symbol is not None:
            return self._book.instrument(symbol).settle.code
        positions = self._book.iterate(account_id=account_id)
        codes = {self._book.instrument(p.symbol).settle.code for p in positions}
        if not codes:
            codes = {
                c for c in self._asset_codes if self._balance_of(account_id, c)
            }
        if len(codes) > 1:
            raise InvalidInput("asset_code", None, f"{account_id} holds several assets {sorted(codes)}")
        known = self._asset_codes | {i.settle.code for i in self._book.instruments()}
        if not codes and len(known) == 1:
            return next(iter(known))  # one-asset ledger: an empty account is worth 0 of it
        if not codes:
            raise InvalidInput("asset_code", None, f"{account_id} holds nothing; name the asset")
        return codes.pop()

    # --- integrity ------------------------------------------------------------------------------
    def check_invariants(self, *, replay_journal: bool = False) -> None:
        """Raise LedgerError naming the first broken invariant; optionally rebuild from the journal."""
        per_asset: dict[str, int] = {}
        for (_, code), amount in self._balances.items():
            per_asset[code] = per_asset.get(code, 0) + amount
        for segment in self._book._bulk:
            per_asset[segment.code] = per_asset.get(segment.code, 0) + segment.live_deposit_total()[0]
        for code, total in sorted(per_asset.items()):
            if total != 0:
                raise LedgerError(f"balances in {code} sum to {total}, not 0")
        self._book.check_invariants(
            lambda i: self._balances.get((clearing_account_id(i.symbol), i.settle.code), 0)
        )
        if replay_journal:
            self._check_replay()

    def _check_replay(self) -> None:
        balances: dict[tuple[str, str], int] = {}
        for record in self._iter_journal():
            for account_id, code, delta in record.posting.entries:
                balances[(account_id, code)] = balances.get((account_id, code), 0) + delta
        mine = self._all_balances()
        for key in sorted(set(balances) | set(mine)):
            if balances.get(key, 0) != mine.get(key, 0):
                raise LedgerError(
                    f"balance {key} is {mine.get(key, 0)}, journal gives {balances.get(key, 0)}"
                )
        self._book.check_replay(r.fill for r in self._iter_journal() if r.fill is not None)

    def digest(self) -> str:
        """SHA-256 of the full state: accounts, balances, positions, instruments, journal length."""
        accounts: list[tuple[str, str, str, bool, str | None]] = [
            (a.account_id, a.kind, a.margin_mode, a.allow_negative, a.parent or "") for a in self._accounts.values()]
        for segment in self._book._bulk:
            accounts += segment.account_tuples(no_parent="")
        accounts.sort()
        balances = sorted((k, v) for k, v in self._all_balances().items() if v != 0)
        text = repr((accounts, balances, self._book.state_key(), self.journal_length()))
        return hashlib.sha256(text.encode()).hexdigest()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with the accounts as columns (a named tuple each pickles through a Python-level
        ``__getnewargs__``: seconds for a million accounts when a scene is shared with workers)."""
        state = dict(self.__dict__)
        accounts = list(self._accounts.values())
        state["_accounts"] = [list(column) for column in zip(*accounts, strict=True)] if accounts else []
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        columns: list[list[Any]] = state.pop("_accounts")
        self.__dict__.update(state)
        self._accounts = dict(zip(columns[0], map(_Account, *columns), strict=True)) if columns else {}

    def copy(self) -> Ledger:
        """An independent copy; positions and postings are immutable, so sharing them is safe."""
        other = Ledger()
        other._accounts = dict(self._accounts)
        other._balances = dict(self._balances)
        other._asset_codes = set(self._asset_codes)
        other._pockets = {k: list(v) for k, v in self._pockets.items()}
        other._book = self._book.copy()  # copies the bulk segments' touched bitmaps (the columns are shared)
        other._journal = list(self._journal)
        copies = {id(old): new for old, new in zip(self._book._bulk, other._book._bulk, strict=True)}
        other._bulk = [(at, copies.get(id(segment), segment)) for at, segment in self._bulk]
        other._bulk_count = self._bulk_count
        return other


def _bulk_records(segment: BulkSegment) -> Iterator[JournalRecord]:
    """Exactly the records the one-by-one path appends for a bulk load (deposit, isolated margin, fill)."""
    code, symbol, ts = segment.code, segment.symbol, segment.ts_ns
    clearing, cp = clearing_account_id(symbol), segment.counterparty
    seq = segment.start_seq
    rows = zip(segment.ids.row_ids(), segment.isolated.tolist(), segment.deposit.tolist(), segment.qty.tolist(),
               segment.price.tolist(), segment.value.tolist(), segment.realized.tolist(), strict=True)
    for aid, iso, amount, qty, price, value, realized in rows:
        if amount > 0:
            yield JournalRecord(seq, Posting(((WORLD_ID, code, -amount), (aid, code, amount)), "deposit", ts))
            seq += 1
        if qty == 0:
            continue
        if iso and amount > 0:
            pocket = isolated_account_id(aid, symbol)
            yield JournalRecord(seq, Posting(((aid, code, -amount), (pocket, code, amount)),
                                             "add isolated margin", ts))
            seq += 1
        buyer, seller = (aid, cp) if qty > 0 else (cp, aid)
        entries = ((cp, code, realized), (clearing, code, -realized)) if realized else ()
        fill = FillRecord(symbol, buyer, seller, price, abs(qty), value, 0, 0)
        yield JournalRecord(seq, Posting(entries, "open position", ts), fill)
        seq += 1


def _maintenance_exact(instrument: Instrument, tiers: MarginTiers, qty_lots: int, mark_ticks: int) -> Fraction:
    """Tiered maintenance margin in minor units, exact (the ledger rounds only for display)."""
    per_unit = instrument.settle.minor_per_unit
    notional_units = abs(instrument.notional(mark_ticks, qty_lots)) / per_unit
    return tiers.maintenance_margin_exact(notional_units) * per_unit


def _check_reduce_only(before: Position, signed_qty: int) -> None:
    shrinks = before.qty_lots != 0 and (before.qty_lots > 0) != (signed_qty > 0)
    if not shrinks or abs(signed_qty) > abs(before.qty_lots):
        raise InvalidInput(
            "reduce_only_for", before.account_id,
            f"fill of {signed_qty} lots would not reduce position {before.qty_lots} in {before.symbol}",
        )


__all__ = [
    "NEGATIVE_KINDS",
    "OPENABLE_KINDS",
    "SYSTEM_KINDS",
    "WORLD_ID",
    "AccountKind",
    "AccountView",
    "FillRecord",
    "JournalRecord",
    "Ledger",
    "MarginMode",
    "MarginState",
    "Position",
    "Posting",
    "clearing_account_id",
    "isolated_account_id",
]
