"""The service as a deterministic state machine over stored inputs, and the process that persists it.

:class:`ServiceState` is the ledger + engine + order books built from the configuration's genesis
(policy, instruments, tiers, seeded insurance fund). Inputs arrive in canonical form (integers: ticks,
lots, minor units, ns) and :meth:`ServiceState.apply` returns every output they caused: the engine's
audit events, its liquidation records and the ledger's journal postings. Same genesis + same inputs →
same outputs, byte for byte; that is what restart verification relies on.

:class:`Service` puts the store in front: an input is validated against the current state (a refused
input changes nothing and is not stored), inserted, applied, and its outputs and digests are written in
the same transaction. If anything fails after the state started changing, the transaction rolls back and
the in-memory state is rebuilt from the store, so memory and store never disagree. On start the whole
store is replayed and every input's regenerated outputs are compared with the stored ones; the first
divergent sequence number is named and the service refuses to start (:class:`StoreDivergence`).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

from deleverage.core.instruments import Instrument
from deleverage.core.ledger import WORLD_ID, JournalRecord, Ledger
from deleverage.core.money import Asset
from deleverage.engine.engine import LiquidationEngine
from deleverage.errors import DataError, DeleverageError, InvalidInput, SimulationError
from deleverage.service.config import ServiceConfig
from deleverage.service.store import (
    GENESIS_CHAIN,
    EventStore,
    OutputRow,
    canonical_json,
    chain_digest,
    outputs_digest,
)
from deleverage.venues.l2 import L2Book

INSURANCE_FUND, FEE_POOL, MARKET = "insurance_fund", "fee_pool", "market"
SYSTEM_ACCOUNTS = (INSURANCE_FUND, FEE_POOL, MARKET)
INPUT_KINDS = ("advance", "book", "deposit", "fill", "mark", "oracle", "withdraw")


class UnknownAccount(InvalidInput):
    """No such account (HTTP 404)."""

    def __init__(self, account_id: str) -> None:
        super().__init__("account_id", account_id, "unknown account")


class StoreDivergence(DataError):
    """Replaying the store does not reproduce what it recorded; ``seq`` is the first divergent input."""

    def __init__(self, seq: int, problem: str, *, path: str | None = None) -> None:
        self.seq = seq
        super().__init__(f"replay diverges at input seq {seq}: {problem}", path=path, field="seq")


def _convert(convert: Callable[[Any], int], value: Any, field: str) -> int:
    """Human decimal string → exact integer units, naming the request field when it is refused."""
    if not isinstance(value, str):
        raise InvalidInput(field, value, "must be a decimal string (never a float)")
    try:
        return convert(value)
    except InvalidInput as exc:
        raise InvalidInput(field, value, exc.problem) from None


class ServiceState:
    """Ledger, engine and books of the genesis, advanced by canonical inputs (see module docstring)."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.policy = config.load_policy()
        self.instruments: dict[str, Instrument] = {i.symbol: i for i in config.load_instruments()}
        self.assets: dict[str, Asset] = {i.settle.code: i.settle for i in self.instruments.values()}
        self.ledger = Ledger()
        for account_id in SYSTEM_ACCOUNTS:
            self.ledger.open_account(account_id, kind=account_id)
        for code, amount in sorted(config.insurance_fund.items()):
            minor = _convert(self.asset(code, "insurance_fund").to_minor, amount, f"insurance_fund.{code}")
            if minor:
                self.ledger.deposit(INSURANCE_FUND, code, minor, 0, reason="seed insurance fund")
        self.books = {s: L2Book() for s in self.instruments}
        self.engine = LiquidationEngine(self.ledger, instruments=self.instruments.values(), policy=self.policy,
                                        liquidity=self.books, tiers_for=config.tiers_for,
                                        insurance_fund=INSURANCE_FUND, fee_pool=FEE_POOL, market=MARKET)
        self.engine.track_all()
        self.seq = 0
        self.chain = GENESIS_CHAIN
        self.last_ts_ns = 0
        self.marks: dict[str, int] = {}
        self.last_price: dict[str, int] = {}
        self._journal_len = len(self.ledger.journal)

    # --- lookups ------------------------------------------------------------------------------------
    def instrument(self, symbol: Any, field: str = "symbol") -> Instrument:
        if symbol not in self.instruments:
            raise InvalidInput(field, symbol, f"not served; known: {sorted(self.instruments)}")
        return self.instruments[symbol]

    def asset(self, code: Any, field: str = "asset") -> Asset:
        if code not in self.assets:
            raise InvalidInput(field, code, f"not a settlement asset here; known: {sorted(self.assets)}")
        return self.assets[code]

    def require_account(self, account_id: str) -> None:
        if not account_id or not self.ledger.has_account(account_id) or account_id == WORLD_ID:
            raise UnknownAccount(account_id)

    def valuation_marks(self) -> dict[str, int]:
        """Latest mark per symbol, else the last traded price (for valuing positions before any mark)."""
        return {**self.last_price, **self.marks}

    # --- human request → canonical input ----------------------------------------------------------------
    def canonical(self, kind: str, body: Mapping[str, Any], default_ts_ns: int) -> dict[str, Any]:
        """Exact integer form of a request (the stored payload); bad values name their field."""
        ts = body.get("ts_ns")
        if ts is None:
            ts = max(default_ts_ns, self.last_ts_ns)
        if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
            raise InvalidInput("ts_ns", ts, "must be a non-negative integer number of nanoseconds")
        out: dict[str, Any] = {"ts_ns": ts}
        if kind in ("mark", "oracle"):
            inst = self.instrument(body.get("symbol"))
            out |= {"symbol": inst.symbol, "price_ticks": _convert(inst.price_to_ticks, body.get("price"), "price")}
        elif kind in ("deposit", "withdraw"):
            asset = self.asset(body.get("asset"))
            amount = _convert(asset.to_minor, body.get("amount"), "amount")
            if amount <= 0:
                raise InvalidInput("amount", body.get("amount"), "must be > 0")
            out |= {"account_id": body.get("account_id"), "asset": asset.code, "amount_minor": amount}
        elif kind == "fill":
            inst = self.instrument(body.get("symbol"))
            side = body.get("side")
            if side not in ("buy", "sell"):
                raise InvalidInput("side", side, "must be 'buy' or 'sell'")
            qty = _convert(inst.qty_to_lots, body.get("qty"), "qty")
            if qty <= 0:
                raise InvalidInput("qty", body.get("qty"), "must be > 0")
            out |= {"account_id": body.get("account_id"), "symbol": inst.symbol, "side": side, "qty_lots": qty,
                    "price_ticks": _convert(inst.price_to_ticks, body.get("price"), "price")}
        elif kind == "book":
            inst = self.instrument(body.get("symbol"))
            out |= {"symbol": inst.symbol, "bids": self._levels(inst, body.get("bids"), "bids"),
                    "asks": self._levels(inst, body.get("asks"), "asks")}
        elif kind != "advance":
            raise InvalidInput("kind", kind, f"must be one of {list(INPUT_KINDS)}")
        return out

    @staticmethod
    def _levels(inst: Instrument, levels: Any, field: str) -> list[list[int]]:
        if not isinstance(levels, list | tuple):
            raise InvalidInput(field, levels, "must be a list of [price, qty] decimal strings")
        out = []
        for index, level in enumerate(levels):
            if not isinstance(level, list | tuple) or len(level) != 2:
                raise InvalidInput(f"{field}[{index}]", level, "expected [price, qty]")
            price = _convert(inst.price_to_ticks, level[0], f"{field}[{index}].price")
            qty = _convert(inst.qty_to_lots, level[1], f"{field}[{index}].qty")
            if qty < 0:
                raise InvalidInput(f"{field}[{index}].qty", level[1], "must be >= 0")
            out.append([price, qty])
        return out

    # --- validation against the state (nothing changes) ------------------------------------------------
    def check(self, kind: str, p: Mapping[str, Any]) -> None:
        """Refuse an input that cannot apply: time going backwards, unknown account, overdraft..."""
        if p["ts_ns"] < self.last_ts_ns:
            raise SimulationError(f"ts_ns={p['ts_ns']} is older than the last input's {self.last_ts_ns}")
        aid = str(p.get("account_id") or "")
        if kind == "deposit":
            if not aid or ":" in aid or aid == WORLD_ID or aid in (FEE_POOL, MARKET):
                raise InvalidInput("account_id", aid, "must be a trader id (no ':') or insurance_fund")
        elif kind in ("withdraw", "fill"):
            self.require_account(aid)
            if aid in SYSTEM_ACCOUNTS:
                raise InvalidInput("account_id", aid, f"system account cannot {kind}")
            if kind == "withdraw":
                self._check_withdraw(aid, p["asset"], p["amount_minor"])

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
        state = self.ledger.margin_state(account_id, marks, self.config.tiers_for, asset_code=code)
        if state.equity_exact - amount_minor <= state.maintenance_exact:
            raise InvalidInput("amount", str(self.assets[code].from_minor(amount_minor)),
                               f"would leave equity at or below maintenance margin "
                               f"({self.assets[code].from_minor(state.maintenance_minor)} {code})")

    # --- applying ------------------------------------------------------------------------------------
    def apply(self, seq: int, kind: str, p: Mapping[str, Any]) -> list[OutputRow]:
        """Apply a checked canonical input; returns its outputs (audit, liquidations, postings)."""
        engine, ledger = self.engine, self.ledger
        audit_from, records_from = len(engine.audit), len(engine.records)
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
        else:
            raise InvalidInput("kind", kind, f"must be one of {list(INPUT_KINDS)}")
        self.last_ts_ns = ts
        return self._outputs(audit_from, records_from)

    def _apply_fill(self, seq: int, p: Mapping[str, Any]) -> None:
        aid, inst = p["account_id"], self.instruments[p["symbol"]]
        buyer, seller = (aid, MARKET) if p["side"] == "buy" else (MARKET, aid)
        self.ledger.apply_fill(buyer=buyer, seller=seller, instrument=inst, price_ticks=p["price_ticks"],
                               qty_lots=p["qty_lots"], ts_ns=p["ts_ns"], reason=f"fill #{seq} {aid}")
        self.last_price[inst.symbol] = p["price_ticks"]
        self.engine.on_position_changed(aid)

    def _outputs(self, audit_from: int, records_from: int) -> list[OutputRow]:
        engine = self.engine
        rows = []
        for index in range(audit_from, len(engine.audit)):
            row = engine.audit[index].as_row()
            payload = canonical_json({"audit_seq": row["seq"], "data": json.loads(row["data"])})
            rows.append(OutputRow("audit", row["kind"], row["ts_ns"], row["symbol"], row["account_id"], payload))
        for record in engine.records[records_from:]:
            rows.append(OutputRow("liquidation", record.action, record.ts_ns, record.symbol, record.account_id,
                                  canonical_json(dataclasses.asdict(record))))
        journal = self.ledger.journal
        for rec in journal[self._journal_len:]:
            rows.append(_posting_row(rec))
        self._journal_len = len(journal)
        return rows


def _posting_row(rec: JournalRecord) -> OutputRow:
    posting = rec.posting
    payload = {"journal_seq": rec.seq, "reason": posting.reason, "entries": [list(e) for e in posting.entries],
               "fill": None if rec.fill is None else dataclasses.asdict(rec.fill)}
    symbol = None if rec.fill is None else rec.fill.symbol
    return OutputRow("posting", "fill" if rec.fill else "transfer", posting.ts_ns, symbol, None,
                     canonical_json(payload))


def fraction_text(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


class Service:
    """Store + state behind one lock: :meth:`submit` inputs, read :attr:`state`; replays on start."""

    def __init__(self, config: ServiceConfig, *, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.config = config
        self.clock_ns = clock_ns
        self.lock = threading.RLock()
        self.store = EventStore(config.database_url)
        try:
            self.store.bind_genesis(config.genesis())
            self.state = self.replay()
        except BaseException:
            self.store.close()
            raise

    def close(self) -> None:
        self.store.close()

    def replay(self) -> ServiceState:
        """Rebuild the state from every stored input, checking each one's outputs and digests."""
        state = ServiceState(self.config)
        for row in self.store.inputs():
            if row.seq != state.seq + 1:
                raise StoreDivergence(row.seq, f"expected seq {state.seq + 1} (gap or reorder)", path=self.store.url)
            try:
                payload = json.loads(row.payload)
                state.check(row.kind, payload)
                outputs = state.apply(row.seq, row.kind, payload)
            except (DeleverageError, ValueError, KeyError, TypeError) as exc:
                raise StoreDivergence(row.seq, f"the stored {row.kind} input no longer applies: {exc}",
                                      path=self.store.url) from None
            _compare_outputs(row.seq, self.store.outputs_of(row.seq), outputs, self.store.url)
            digest = outputs_digest(outputs)
            if digest != row.output_digest:
                raise StoreDivergence(row.seq, f"outputs digest {digest} != stored {row.output_digest}",
                                      path=self.store.url)
            chain = chain_digest(state.chain, row.seq, row.kind, row.payload, digest)
            if chain != row.chain_digest:
                raise StoreDivergence(row.seq, "chain digest differs (the input or an earlier digest was altered)",
                                      path=self.store.url)
            state.seq, state.chain = row.seq, chain
        return state

    def submit(self, kind: str, body: Mapping[str, Any], client: str) -> tuple[int, list[OutputRow]]:
        """Validate, store and apply one input atomically; returns its seq and outputs."""
        with self.lock:
            state = self.state
            payload = state.canonical(kind, body, self.clock_ns())
            state.check(kind, payload)
            seq, text = state.seq + 1, canonical_json(payload)
            touched = False
            try:
                with self.store.append() as tx:
                    tx.insert_input(seq, payload["ts_ns"], kind, payload.get("symbol"), payload.get("account_id"),
                                    text, client)
                    touched = True
                    outputs = state.apply(seq, kind, payload)
                    tx.insert_outputs(seq, outputs)
                    digest = outputs_digest(outputs)
                    chain = chain_digest(state.chain, seq, kind, text, digest)
                    tx.seal(seq, digest, chain)
            except BaseException:
                if touched:  # memory may hold half an input: rebuild it from the store
                    self.state = self.replay()
                raise
            state.seq, state.chain = seq, chain
            return seq, outputs


def _compare_outputs(seq: int, stored: list[OutputRow], regenerated: list[OutputRow], path: str) -> None:
    for index, (old, new) in enumerate(zip(stored, regenerated, strict=False)):
        if old != new:
            raise StoreDivergence(seq, f"output {index} ({old.stream} {old.kind}) differs: stored {old.payload}"
                                       f" regenerated {new.payload}", path=path)
    if len(stored) != len(regenerated):
        raise StoreDivergence(seq, f"{len(stored)} stored outputs, replay produces {len(regenerated)}", path=path)


__all__ = [
    "INPUT_KINDS",
    "SYSTEM_ACCOUNTS",
    "Service",
    "ServiceState",
    "StoreDivergence",
    "UnknownAccount",
    "fraction_text",
]
