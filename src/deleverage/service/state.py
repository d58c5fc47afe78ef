"""The service as a deterministic state machine over canonical inputs.

:class:`InputParser` turns a request (human decimal strings) into a canonical input (integers: ticks,
lots, minor units, ns) using only the configuration: the number grammar and the kernels' magnitude
bounds of :mod:`deleverage.service.limits`, known symbols and assets, the time window. It needs no
state, so the HTTP layer runs it before an input joins the queue.

:class:`ServiceState` is the ledger + engine + order books built from the configuration's genesis
(policy, instruments, tiers, seeded insurance fund). :meth:`ServiceState.check` refuses, against the
current state, whatever :meth:`ServiceState.apply` could not carry out (time going backwards, unknown
account, overdraft, a position past the kernels' bound, a crossed or too wide book...), so an
accepted input always applies and nothing written is ever undone. :meth:`ServiceState.apply` returns
every output the input caused — the engine's audit events, its liquidation records and the ledger's
journal postings — and the accounts it touched. Same genesis + same inputs → same outputs, byte for
byte; that is what restart verification relies on.

Memory stays bounded by the accounts, not by the history: the audit log and the ledger journal are
drained after every input (their rows live in the store; sequence numbers stay global), and the
engine's list of liquidation records is emptied likewise.

:class:`Mirror` keeps, per account, an immutable :class:`AccountRecord` (balances and positions as of
the last applied input) and the running totals that ``/v1/state`` reports (balances per asset, open
size and cost per symbol), updated from each input's touched accounts in O(touched), never by a scan.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import Any

from deleverage.core.instruments import Instrument
from deleverage.core.ledger import WORLD_ID, JournalRecord, Ledger
from deleverage.core.money import Asset
from deleverage.core.positions import Position, contract_sign
from deleverage.core.tiers import MarginTiers
from deleverage.engine.engine import LiquidationEngine
from deleverage.engine.events import AuditEvent, AuditLog
from deleverage.errors import (
    BookIntegrityError,
    DataError,
    DeleverageError,
    InvalidInput,
    SimulationError,
)
from deleverage.service import limits, listing
from deleverage.service.config import ServiceConfig
from deleverage.service.store import GENESIS_CHAIN, OutputRow, canonical_json
from deleverage.venues.l2 import L2Book

INSURANCE_FUND, FEE_POOL, MARKET = "insurance_fund", "fee_pool", "market"
SYSTEM_ACCOUNTS = (INSURANCE_FUND, FEE_POOL, MARKET)
INPUT_KINDS = ("advance", "book", "deposit", "fill", listing.KIND, "mark", "oracle", "withdraw")


class UnknownAccount(InvalidInput):
    """No such account (HTTP 404)."""

    def __init__(self, account_id: str) -> None:
        super().__init__("account_id", account_id, "unknown account")


class StoreDivergence(DataError):
    """Replaying the store does not reproduce what it recorded; ``seq`` is the first divergent input."""

    def __init__(self, seq: int, problem: str, *, path: str | None = None) -> None:
        self.seq = seq
        super().__init__(f"replay diverges at input seq {seq}: {problem}", path=path, field="seq")


class TimeWentBackwards(SimulationError):
    """An input older than the last one (HTTP 409)."""

    field = "ts_ns"


class StreamingAuditLog(AuditLog):
    """An audit log that hands its events to the service once and keeps none; seq stays global."""

    def __init__(self) -> None:
        super().__init__()
        self._base = 0

    def record(self, kind: Any, ts_ns: int, *, symbol: str | None = None, account_id: str | None = None,
               **data: Any) -> AuditEvent:
        event = super().record(kind, ts_ns, symbol=symbol, account_id=account_id, **data)
        if self._base:
            event = dataclasses.replace(event, seq=self._base + event.seq)
            self._events[-1] = event
        return event

    def __len__(self) -> int:
        return self._base + len(self._events)

    def __getitem__(self, index: int) -> AuditEvent:
        return self._events[index - self._base]

    def drain(self) -> list[AuditEvent]:
        events, self._events = self._events, []
        self._base += len(events)
        return events


# --- requests → canonical inputs (configuration only) ---------------------------------------------------
class InputParser:
    """Request body → canonical input, refusing by field name (see :mod:`deleverage.service.limits`)."""

    def __init__(self, config: ServiceConfig, instruments: Mapping[str, Instrument]) -> None:
        self.config = config
        self.instruments = dict(instruments)
        self.assets: dict[str, Asset] = {i.settle.code: i.settle for i in self.instruments.values()}
        self.limits = {s: limits.instrument_limits(i, config.max_book_levels) for s, i in self.instruments.items()}

    def instrument(self, symbol: Any, field: str = "symbol") -> Instrument:
        if not isinstance(symbol, str) or symbol not in self.instruments:
            shown = symbol[:32] if isinstance(symbol, str) else symbol
            raise InvalidInput(field, shown, f"not served; known: {sorted(self.instruments)}")
        return self.instruments[symbol]

    def asset(self, code: Any, field: str = "asset") -> Asset:
        if not isinstance(code, str) or code not in self.assets:
            shown = code[:32] if isinstance(code, str) else code
            raise InvalidInput(field, shown, f"not a settlement asset here; known: {sorted(self.assets)}")
        return self.assets[code]

    def parse(self, kind: str, body: Any, now_ns: int, account: str | None = None) -> dict[str, Any]:
        """Canonical payload; ``ts_ns`` is None when the request omitted it (the writer fills it in).

        ``account`` is the account of the route (``/v1/accounts/{id}/...``), never a body field.
        """
        if not isinstance(body, dict):
            raise InvalidInput("body", type(body).__name__, "must be a JSON object")
        allowed = _FIELDS.get(kind)
        if allowed is None:
            raise InvalidInput("kind", kind, f"must be one of {list(INPUT_KINDS)}")
        for name in body:
            if name not in allowed:
                raise InvalidInput(str(name)[:32], None, f"unknown field; {kind} takes {sorted(allowed)}")
        ts = body.get("ts_ns")
        if ts is None and kind == "advance":
            raise InvalidInput("ts_ns", None, "is required")
        c = self.config
        out: dict[str, Any] = {"ts_ns": None if ts is None else limits.timestamp_ns(
            ts, now_ns, c.ts_window_ahead_s, c.ts_window_behind_s)}
        if kind in ("mark", "oracle"):
            inst = self.instrument(body.get("symbol"))
            out |= {"symbol": inst.symbol,
                    "price_ticks": limits.price_ticks(inst, body.get("price"), "price", self.limits[inst.symbol])}
        elif kind in ("deposit", "withdraw"):
            asset = self.asset(body.get("asset"))
            out |= {"account_id": limits.account_id(account), "asset": asset.code,
                    "amount_minor": limits.amount_minor(asset, body.get("amount"), "amount")}
        elif kind == "fill":
            inst = self.instrument(body.get("symbol"))
            side = body.get("side")
            if side not in ("buy", "sell"):
                raise InvalidInput("side", side if isinstance(side, str | None) else str(side)[:8],
                                   "must be 'buy' or 'sell'")
            lim = self.limits[inst.symbol]
            out |= {"account_id": limits.account_id(account), "symbol": inst.symbol,
                    "side": side, "qty_lots": limits.qty_lots(inst, body.get("qty"), "qty", lim),
                    "price_ticks": limits.price_ticks(inst, body.get("price"), "price", lim)}
        elif kind == "book":
            inst = self.instrument(body.get("symbol"))
            out |= {"symbol": inst.symbol, "bids": self._levels(inst, body.get("bids"), "bids"),
                    "asks": self._levels(inst, body.get("asks"), "asks")}
        elif kind == listing.KIND:
            out |= listing.parse_listing(body, self.assets)
        return out

    def add(self, instrument: Instrument) -> None:
        """Serve a newly listed instrument (its settlement asset is already served)."""
        self.instruments[instrument.symbol] = instrument
        self.limits[instrument.symbol] = limits.instrument_limits(instrument, self.config.max_book_levels)

    def _levels(self, inst: Instrument, levels: Any, field: str) -> list[list[int]]:
        if not isinstance(levels, list):
            raise InvalidInput(field, type(levels).__name__, "must be a list of [price, qty] decimal strings")
        if len(levels) > self.config.max_book_levels:
            raise InvalidInput(field, len(levels), f"more than max_book_levels={self.config.max_book_levels} levels")
        lim = self.limits[inst.symbol]
        out, seen = [], set()
        for index, level in enumerate(levels):
            where = f"{field}[{index}]"
            if not isinstance(level, list) or len(level) != 2:
                raise InvalidInput(where, str(level)[:40], "expected [price, qty]")
            price = limits.price_ticks(inst, level[0], f"{where}.price", lim)
            qty = limits.qty_lots(inst, level[1], f"{where}.qty", lim, allow_zero=True)
            if price in seen:
                raise InvalidInput(f"{where}.price", level[0], "appears twice on this side")
            seen.add(price)
            out.append([price, qty])
        return out


_TS = {"ts_ns"}
_FIELDS: dict[str, set[str]] = {
    "mark": _TS | {"symbol", "price"},
    "oracle": _TS | {"symbol", "price"},
    "advance": _TS,
    "book": _TS | {"symbol", "bids", "asks"},
    "deposit": _TS | {"asset", "amount"},
    "withdraw": _TS | {"asset", "amount"},
    "fill": _TS | {"symbol", "side", "qty", "price"},
    listing.KIND: set(listing.FIELDS),
}


# --- the mirror: per-account records and running totals ------------------------------------------------
@dataclass(frozen=True, slots=True)
class AccountRecord:
    """An account as of one input: immutable, so readers can hold it while the writer moves on."""

    account_id: str
    kind: str
    margin_mode: str
    balances: Mapping[str, int]
    positions: tuple[Position, ...]
    in_liquidation: frozenset[str]  # symbols with an open liquidation case


@dataclass(slots=True)
class Totals:
    """Running sums for the conservation check: Σ balances (not world/clearing) per asset, and per
    symbol Σ signed lots and Σ cost over every position, so total value at the marks is
    Σ balances + κ·(notional(mark, Σ lots) − Σ cost) — exact, O(symbols)."""

    balances: dict[str, int] = field(default_factory=dict)
    lots: dict[str, int] = field(default_factory=dict)
    cost: dict[str, int] = field(default_factory=dict)
    world: dict[str, int] = field(default_factory=dict)  # the outside world's balance: −(inflow)

    def copy(self) -> Totals:
        return Totals(dict(self.balances), dict(self.lots), dict(self.cost), dict(self.world))

    def inflow(self) -> dict[str, int]:
        """What came in from outside, per asset (deposits and the seeded fund, less withdrawals)."""
        return {code: -v for code, v in sorted(self.world.items())}


class Mirror:
    """Account records and totals of the applied state, updated from touched accounts only."""

    def __init__(self) -> None:
        self.accounts: dict[str, AccountRecord] = {}
        self.totals = Totals()
        self._kinds: dict[str, str] = {}

    @staticmethod
    def record_of(ledger: Ledger, account_id: str, active: Mapping[str, set[str]]) -> AccountRecord:
        view = ledger.account(account_id)
        positions = tuple(ledger.account_positions(account_id))
        cases = frozenset(s for s, ids in active.items() if account_id in ids)
        return AccountRecord(account_id, view.kind, view.margin_mode, view.balances, positions, cases)

    def kind(self, ledger: Ledger, account_id: str) -> str:
        kind = self._kinds.get(account_id)
        if kind is None:
            kind = self._kinds[account_id] = ledger.account(account_id).kind
        return kind

    def apply_postings(self, ledger: Ledger, records: list[JournalRecord]) -> None:
        balances, world = self.totals.balances, self.totals.world
        for rec in records:
            for account_id, code, delta in rec.posting.entries:
                kind = self.kind(ledger, account_id)
                if kind == "world":
                    world[code] = world.get(code, 0) + delta
                elif kind != "clearing":
                    balances[code] = balances.get(code, 0) + delta

    def update(self, ledger: Ledger, touched: set[str], active: Mapping[str, set[str]]) -> dict[str, AccountRecord]:
        """New records of ``touched`` (returned) and the position sums moved by their changes."""
        lots, cost = self.totals.lots, self.totals.cost
        out = {}
        for account_id in sorted(touched):
            old = self.accounts.get(account_id)
            new = self.record_of(ledger, account_id, active)
            for pos in old.positions if old is not None else ():
                lots[pos.symbol] = lots.get(pos.symbol, 0) - pos.qty_lots
                cost[pos.symbol] = cost.get(pos.symbol, 0) - pos.cost_minor
            for pos in new.positions:
                lots[pos.symbol] = lots.get(pos.symbol, 0) + pos.qty_lots
                cost[pos.symbol] = cost.get(pos.symbol, 0) + pos.cost_minor
            self.accounts[account_id] = out[account_id] = new
        return out


def total_values(totals: Totals, instruments: Mapping[str, Instrument],
                 marks: Mapping[str, int]) -> dict[str, Fraction | None]:
    """Per asset: Σ balances + Σ unrealized PnL at ``marks`` (None when a needed mark is missing)."""
    out: dict[str, Fraction | None] = {code: Fraction(v) for code, v in totals.balances.items()}
    for symbol, inst in instruments.items():
        code = inst.settle.code
        lots, cost = totals.lots.get(symbol, 0), totals.cost.get(symbol, 0)
        if lots == 0 and cost == 0:
            continue
        current = out.get(code, Fraction(0))
        if lots and symbol not in marks:
            out[code] = None
            continue
        value = inst.notional(marks[symbol], lots) if lots else Fraction(0)
        if current is not None:
            out[code] = current + contract_sign(inst) * (value - cost)
    return dict(sorted(out.items()))


# --- the state machine --------------------------------------------------------------------------------
@dataclass(slots=True)
class Applied:
    """What one input did: its outputs, and the records of the accounts it touched."""

    outputs: list[OutputRow]
    records: dict[str, AccountRecord]
    liquidations: int
    liquidation_records: list[Any] = field(default_factory=list)  # the engine's, before it drains them


class ServiceState:
    """Ledger, engine and books of the genesis, advanced by canonical inputs (see module docstring)."""

    # tier specs of instruments listed after the genesis; replaced, never mutated (the class default
    # also serves a snapshot pickled before listings existed)
    listed_tiers: Mapping[str, str] = MappingProxyType({})

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.policy = config.load_policy()
        self.instruments: dict[str, Instrument] = {i.symbol: i for i in config.load_instruments()}
        self.listed_tiers = {}
        self.parser = InputParser(config, self.instruments)
        self.assets = self.parser.assets
        self.ledger = Ledger()
        for account_id in SYSTEM_ACCOUNTS:
            self.ledger.open_account(account_id, kind=account_id)
        for code, amount in sorted(config.insurance_fund.items()):
            asset = self.parser.asset(code, "insurance_fund")
            minor = limits.amount_minor(asset, str(amount), f"insurance_fund.{code}")
            self.ledger.deposit(INSURANCE_FUND, code, minor, 0, reason="seed insurance fund")
        self.books = {s: L2Book(max_span_ticks=config.book_max_span_ticks) for s in self.instruments}
        self.audit = StreamingAuditLog()
        self.engine = LiquidationEngine(self.ledger, instruments=self.instruments.values(), policy=self.policy,
                                        liquidity=self.books, tiers_for=self.tiers_for, audit=self.audit,
                                        insurance_fund=INSURANCE_FUND, fee_pool=FEE_POOL, market=MARKET)
        self.engine.track_all()
        self.seq = 0
        self.chain = GENESIS_CHAIN
        self.last_ts_ns = 0
        self.marks: dict[str, int] = {}
        self.last_price: dict[str, int] = {}
        self.liquidations = 0
        self.mirror = Mirror()
        self._journal_len = 0
        genesis_postings = self._drain_journal()  # the seeded fund: part of the genesis, not an output
        self.audit.drain()
        self.mirror.apply_postings(self.ledger, genesis_postings)
        self.mirror.update(self.ledger, set(SYSTEM_ACCOUNTS), self._active())

    # --- lookups ------------------------------------------------------------------------------------
    def tiers_for(self, instrument: Instrument) -> MarginTiers:
        """A listed instrument's own tier table, else the configuration's."""
        spec = self.listed_tiers.get(instrument.symbol)
        return self.config.tiers_for(instrument) if spec is None else listing.tiers_of(spec)

    def require_account(self, account_id: str) -> None:
        if not account_id or account_id == WORLD_ID or not self.ledger.has_account(account_id):
            raise UnknownAccount(account_id)

    def valuation_marks(self) -> dict[str, int]:
        """Latest mark per symbol, else the last traded price (for valuing positions before any mark)."""
        return {**self.last_price, **self.marks}

    def _active(self) -> dict[str, set[str]]:
        return {s: set(self.engine.active_accounts(s)) for s in self.instruments}

    # --- validation against the state (nothing changes) ------------------------------------------------
    def check(self, seq: int, kind: str, p: Mapping[str, Any]) -> None:
        """Refuse an input that could not apply in full; afterwards :meth:`apply` cannot fail on it."""
        if p["ts_ns"] < self.last_ts_ns:
            raise TimeWentBackwards(f"ts_ns={p['ts_ns']} is older than the last input's {self.last_ts_ns}")
        symbol = p.get("symbol")
        if kind == listing.KIND:
            if symbol in self.instruments:
                raise InvalidInput("symbol", symbol, "is already listed")
            return
        if symbol is not None and symbol not in self.instruments:  # (a listing rebuilt away)
            raise InvalidInput("symbol", symbol, f"not served; known: {sorted(self.instruments)}")
        aid = str(p.get("account_id") or "")
        if kind == "deposit":
            if aid == WORLD_ID or aid in (FEE_POOL, MARKET):
                raise InvalidInput("account_id", aid, "must be a trader id or insurance_fund")
            after = self.ledger.balance(aid, p["asset"]) if self.ledger.has_account(aid) else 0
            if after + p["amount_minor"] > limits.INT64_MAX:
                raise InvalidInput("amount", str(self.assets[p["asset"]].from_minor(p["amount_minor"])),
                                   "would take the balance past the largest amount held (2**63 - 1 minor units)")
        elif kind in ("withdraw", "fill"):
            self.require_account(aid)
            if aid in SYSTEM_ACCOUNTS:
                raise InvalidInput("account_id", aid, f"system account cannot {kind}")
            if kind == "withdraw":
                self._check_withdraw(aid, p["asset"], p["amount_minor"])
            else:
                self._check_fill(aid, p)
        elif kind == "book":
            self._check_book(seq, p)

    def _check_fill(self, account_id: str, p: Mapping[str, Any]) -> None:
        inst = self.instruments[p["symbol"]]
        signed = p["qty_lots"] if p["side"] == "buy" else -p["qty_lots"]
        after = self.ledger.position(account_id, inst.symbol).qty_lots + signed
        bound = self.parser.limits[inst.symbol].max_lots
        if abs(after) > bound:
            raise InvalidInput("qty", f"{inst.lots_to_qty(p['qty_lots'])}",
                               f"would take the position to {inst.lots_to_qty(abs(after))}, past the largest size "
                               f"the engine's kernels hold ({inst.lots_to_qty(bound)})")

    def _check_book(self, seq: int, p: Mapping[str, Any]) -> None:
        """Dry-run the snapshot on a scratch book: the code that will apply it decides (crossed, span)."""
        try:
            L2Book(max_span_ticks=self.config.book_max_span_ticks).apply_snapshot(p["bids"], p["asks"], seq)
        except (BookIntegrityError, InvalidInput) as exc:
            field = getattr(exc, "field", "")
            raise InvalidInput(field if field.startswith(("bids", "asks")) else "bids", None, str(exc)) from None

    def _check_withdraw(self, account_id: str, code: str, amount_minor: int) -> None:
        have = self.ledger.balance(account_id, code)
        if amount_minor > have:
            raise InvalidInput("amount", str(self.assets[code].from_minor(amount_minor)),
                               f"exceeds the balance {self.assets[code].from_minor(have)}")
        positions = [p for p in self.ledger.account_positions(account_id)
                     if self.instruments[p.symbol].settle.code == code]
        if not positions:
            return
        marks = self.valuation_marks()
        missing = sorted(p.symbol for p in positions if p.symbol not in marks)
        if missing:
            raise InvalidInput("amount", str(self.assets[code].from_minor(amount_minor)),
                               f"cannot value the open positions yet (no mark or trade on {missing})")
        state = self.ledger.margin_state(account_id, marks, self.tiers_for, asset_code=code)
        if state.equity_exact - amount_minor <= state.maintenance_exact:
            raise InvalidInput("amount", str(self.assets[code].from_minor(amount_minor)),
                               f"would leave equity at or below maintenance margin "
                               f"({self.assets[code].from_minor(state.maintenance_minor)} {code})")

    # --- applying ------------------------------------------------------------------------------------
    def apply(self, seq: int, kind: str, p: Mapping[str, Any]) -> Applied:
        """Apply a checked canonical input; returns its outputs and the accounts it touched."""
        engine, ledger = self.engine, self.ledger
        ts = p["ts_ns"]
        if kind == "mark":
            engine.on_mark(p["symbol"], p["price_ticks"], ts)
            self.marks[p["symbol"]] = p["price_ticks"]
        elif kind == "oracle":
            engine.on_oracle(p["symbol"], p["price_ticks"], ts)
        elif kind == "advance":
            engine.advance(ts)
        elif kind == "book":
            self.books[p["symbol"]].apply_snapshot(p["bids"], p["asks"], last_update_id=seq)
        elif kind == "deposit":
            if not ledger.has_account(p["account_id"]):
                ledger.open_account(p["account_id"])
            ledger.deposit(p["account_id"], p["asset"], p["amount_minor"], ts, reason=f"deposit #{seq}")
            engine.on_position_changed(p["account_id"])
        elif kind == "withdraw":
            ledger.withdraw(p["account_id"], p["asset"], p["amount_minor"], ts, reason=f"withdraw #{seq}")
            engine.on_position_changed(p["account_id"])
        elif kind == "fill":
            self._apply_fill(seq, p)
        elif kind == listing.KIND:
            self._list(p)
        else:
            raise InvalidInput("kind", kind, f"must be one of {list(INPUT_KINDS)}")
        self.last_ts_ns = ts
        return self._outputs(p.get("account_id"))

    def _apply_fill(self, seq: int, p: Mapping[str, Any]) -> None:
        aid, inst = p["account_id"], self.instruments[p["symbol"]]
        buyer, seller = (aid, MARKET) if p["side"] == "buy" else (MARKET, aid)
        self.ledger.apply_fill(buyer=buyer, seller=seller, instrument=inst, price_ticks=p["price_ticks"],
                               qty_lots=p["qty_lots"], ts_ns=p["ts_ns"], reason=f"fill #{seq} {aid}")
        self.last_price[inst.symbol] = p["price_ticks"]
        self.engine.on_position_changed(aid)

    def _list(self, p: Mapping[str, Any]) -> None:
        inst = listing.instrument_of(p, self.assets)
        tiers = listing.tiers_of(p["tiers"])
        self.listed_tiers = {**self.listed_tiers, inst.symbol: p["tiers"]}
        self.instruments[inst.symbol] = inst
        self.parser.add(inst)
        self.books[inst.symbol] = book = L2Book(max_span_ticks=self.config.book_max_span_ticks)
        self.engine.list_instrument(inst, tiers=tiers, liquidity=book)

    def _drain_journal(self) -> list[JournalRecord]:
        # the ledger keeps every record it ever posted; the store keeps them here, so the ledger's
        # slots are cleared once read (its length, which numbers the records, is unchanged)
        journal = self.ledger._journal  # noqa: SLF001 — read once per input, O(new records)
        new = journal[self._journal_len:]
        for index in range(self._journal_len, len(journal)):
            journal[index] = None  # type: ignore[call-overload]
        self._journal_len = len(journal)
        return new

    def _outputs(self, input_account: str | None) -> Applied:
        rows: list[OutputRow] = []
        touched: set[str] = set()
        for event in self.audit.drain():
            row = event.as_row()
            payload = canonical_json({"audit_seq": row["seq"], "data": json.loads(row["data"])})
            rows.append(OutputRow("audit", row["kind"], row["ts_ns"], row["symbol"], row["account_id"], payload))
            if event.account_id is not None:
                touched.add(event.account_id)
        records = self.engine.records
        for record in records:
            rows.append(OutputRow("liquidation", record.action, record.ts_ns, record.symbol, record.account_id,
                                  canonical_json(dataclasses.asdict(record))))
        liquidations = len(records)
        drained = list(records)
        records.clear()
        self.liquidations += liquidations
        postings = self._drain_journal()
        for rec in postings:
            rows.append(_posting_row(rec))
            touched.update(a for a, _, _ in rec.posting.entries)
            if rec.fill is not None:  # opening a position moves no cash: the entries may not name them
                touched.update((rec.fill.buyer, rec.fill.seller))
        if input_account is not None:
            touched.add(input_account)
        touched = {a for a in touched if ":" not in a and a != WORLD_ID and self.ledger.has_account(a)}
        if postings:
            self.mirror.apply_postings(self.ledger, postings)
        updated = self.mirror.update(self.ledger, touched, self._active()) if touched else {}
        return Applied(rows, updated, liquidations, drained)

    # --- summaries --------------------------------------------------------------------------------------
    def engine_summary(self) -> dict[str, Any]:
        summary = self.engine.state()
        summary["liquidations"] = self.liquidations
        return summary

    def totals(self) -> dict[str, Fraction | None]:
        return total_values(self.mirror.totals, self.instruments, self.valuation_marks())


def _posting_row(rec: JournalRecord) -> OutputRow:
    posting = rec.posting
    payload = {"journal_seq": rec.seq, "reason": posting.reason, "entries": [list(e) for e in posting.entries],
               "fill": None if rec.fill is None else dataclasses.asdict(rec.fill)}
    symbol = None if rec.fill is None else rec.fill.symbol
    return OutputRow("posting", "fill" if rec.fill else "transfer", posting.ts_ns, symbol, None,
                     canonical_json(payload))


def fraction_text(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def refusal(exc: DeleverageError) -> tuple[int, str, str | None]:
    """HTTP status, message and field of a refused input (the documented error format)."""
    if isinstance(exc, UnknownAccount):
        return 404, str(exc), exc.field
    if isinstance(exc, InvalidInput):
        return 422, str(exc), exc.field
    if isinstance(exc, SimulationError):
        return 409, str(exc), "ts_ns"
    return 422, str(exc), getattr(exc, "field", None)


def __getattr__(name: str) -> Any:
    """``Service`` lived here before the writer got its own module: the old import path still works."""
    if name == "Service":
        from deleverage.service.core import Service  # noqa: PLC0415 — core imports this module

        return Service
    raise AttributeError(name)


__all__ = [
    "INPUT_KINDS",
    "SYSTEM_ACCOUNTS",
    "AccountRecord",
    "Applied",
    "InputParser",
    "Mirror",
    "ServiceState",
    "StoreDivergence",
    "StreamingAuditLog",
    "TimeWentBackwards",
    "Totals",
    "UnknownAccount",
    "fraction_text",
    "refusal",
    "total_values",
]
