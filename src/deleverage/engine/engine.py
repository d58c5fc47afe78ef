"""The liquidation engine: detect → confirm → plan → batch → execute → settle → waterfall → record.

``LiquidationEngine`` (docs/engine.md) is driven by ``on_mark`` / ``on_oracle`` / ``advance`` calls
carrying explicit nanosecond timestamps. It owns no market: it is handed the ledger (the single source
of truth; every fill and transfer is posted there), instruments with their tier tables, a policy, and a
liquidity source per symbol. Every decision is an audit event with the numbers behind it; every
liquidation action is a :class:`~deleverage.engine.records.LiquidationRecord`.

Safeguards plug in at ``self._safeguards``: any object with ``on_mark(symbol, mark_ticks, ts_ns)``,
``on_oracle(symbol, oracle_ticks, ts_ns)``, ``advance(ts_ns)`` (each returning events with ``kind``,
``symbol``, ``data``) and ``execution_allowed(symbol, ts_ns) -> bool`` — the API of
:class:`deleverage.safeguards.Safeguards`, built by default when the policy configures a safeguard;
otherwise :class:`BasicSafeguards` (never halts) keeps a quiet tick cheap. An ``oracle_invalid`` event
from ``on_oracle`` means the print is reported and not used. When the policy configures them, the
engine also drives ``fund_drawdown_fired``, ``reserve_notional`` / ``release_notional``,
``on_concentration`` and ``tiers_at`` (engine/guarded.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from typing import Any

import numpy as np

from deleverage.config.events import AuditLog, EventKind
from deleverage.config.policy import LiquidationPolicy
from deleverage.core.instruments import Instrument
from deleverage.core.ledger import Ledger, Position
from deleverage.core.tiers import MarginTiers
from deleverage.engine.backstop import BackstopProvider
from deleverage.engine.detect import (
    AccountMargin,
    CrossLinks,
    SymbolDetector,
    exact_margin,
    float_row,
)
from deleverage.engine.dutch_exec import DutchExecutor
from deleverage.engine.exact_fast import int_per_tick_lot
from deleverage.engine.execute import ExecutionMixin
from deleverage.engine.guarded import GuardedMixin
from deleverage.engine.records import LiquidationCase, LiquidationRecord, StepResult
from deleverage.engine.waterfall import FillSummary, Settler
from deleverage.errors import InvalidInput, SimulationError
from deleverage.safeguards import Safeguards
from deleverage.venues.liquidity import EmptyBook

NS_PER_MS = 1_000_000
_NO_ACTIONS: tuple[LiquidationRecord, ...] = ()


class BasicSafeguards:
    """No-op safeguards (never halts) with the oracle divergence check of ``policy.safeguards``.

    Used when the policy configures no safeguard; otherwise the engine builds
    :class:`deleverage.safeguards.Safeguards` (same four calls).
    """

    def __init__(self, config: Any) -> None:
        self.config = config

    def on_mark(self, symbol: str, mark_ticks: int, ts_ns: int) -> list[Any]:
        return []

    def advance(self, ts_ns: int) -> list[Any]:
        return []

    def execution_allowed(self, symbol: str, ts_ns: int) -> bool:
        return True

    def on_oracle(self, symbol: str, oracle_ticks: int, ts_ns: int) -> list[Any]:
        return []


def _default_safeguards(policy: LiquidationPolicy) -> Any:
    """The real safeguards when the policy configures any, else the no-op (a quiet tick stays cheap)."""
    sg = policy.safeguards
    configured = any(v is not None for v in (sg.price_band_bps, sg.oracle_max_age_ms, sg.oracle_max_divergence_bps,
                                             sg.max_notional_in_liquidation, sg.fund_drawdown_halt))
    if configured or policy.dynamic_margin.enabled:
        return Safeguards(policy)
    return BasicSafeguards(sg)


def _check_price(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        if isinstance(value, float) and math.isnan(value):
            raise InvalidInput(field, value, "is NaN")
        raise InvalidInput(field, value, "must be an int number of ticks")
    if value <= 0:
        raise InvalidInput(field, value, "must be > 0")
    return int(value)


def _tiers_of(instrument: Instrument) -> MarginTiers:
    """The instrument's named tier table (an instrument without one needs ``tiers_for``)."""
    if instrument.tiers is None:
        raise InvalidInput("tiers_for", None, f"{instrument.symbol} names no tier table; pass tiers_for")
    return MarginTiers.load(instrument.tiers)


class LiquidationEngine(ExecutionMixin, GuardedMixin):
    """Runs a liquidation policy over a ledger; see docs/engine.md for the public API."""

    def __init__(self, ledger: Ledger, *, instruments: Iterable[Instrument], policy: LiquidationPolicy,
                 liquidity: Mapping[str, Any] | None = None,
                 tiers_for: Callable[[Instrument], MarginTiers] | None = None,
                 backstops: Iterable[BackstopProvider] = (), insurance_fund: str = "insurance_fund",
                 fee_pool: str = "fee_pool", market: str = "market", audit: AuditLog | None = None,
                 on_before_execute: Callable[..., None] | None = None, safeguards: Any = None) -> None:
        self.ledger = ledger
        self.policy = policy
        self._instruments = {i.symbol: i for i in instruments}
        if not self._instruments:
            raise InvalidInput("instruments", [], "at least one instrument is needed")
        tiers_for = tiers_for or _tiers_of
        self._tiers = {s: tiers_for(i) for s, i in self._instruments.items()}
        self._liquidity = {s: (liquidity or {}).get(s) or EmptyBook() for s in self._instruments}
        self.backstops = list(backstops)
        for name, aid in (("insurance_fund", insurance_fund), ("fee_pool", fee_pool), ("market", market),
                          *(("backstops", b.account_id) for b in self.backstops)):
            if not ledger.has_account(aid):
                raise InvalidInput(name, aid, "no such ledger account")
        self._system = {insurance_fund, fee_pool, market, *(b.account_id for b in self.backstops)}
        self.audit = audit if audit is not None else AuditLog()
        self.on_before_execute = on_before_execute
        self._safeguards = safeguards if safeguards is not None else _default_safeguards(policy)
        self._holding: dict[str, bool] = dict.fromkeys(self._instruments, False)  # a backstop holds inventory
        self._base_tiers = dict(self._tiers)  # dynamic margin scales these; ``_tiers`` holds the ones in force
        sg_cfg, sg_obj = policy.safeguards, self._safeguards
        self._watch_fund = sg_cfg.fund_drawdown_halt is not None and hasattr(sg_obj, "fund_drawdown_fired")
        self._fund_code = next(iter(self._instruments.values())).settle.code
        self._fund_reported: int | None = None
        self._fund_halted = False
        self._cap_on = sg_cfg.max_notional_in_liquidation is not None and hasattr(sg_obj, "reserve_notional")
        self._dynamic = policy.dynamic_margin.enabled and hasattr(sg_obj, "tiers_at")
        self._step_ns = policy.dynamic_margin.step_ms * NS_PER_MS
        self._concentration_step: dict[str, int] = {}
        self._dutch_reserved: dict[tuple[str, str], Fraction] = {}
        # accounts that could not be valued for want of a mark: symbol → account → missing symbol
        self._mark_waits: dict[str, dict[str, tuple[str, int, int]]] = {s: {} for s in self._instruments}
        self._marks: dict[str, int] = {}
        self._prev_marks: dict[str, int] = {}
        self._oracles: dict[str, int] = {}
        self._last_ts = -1
        self._cases: dict[str, dict[str, LiquidationCase]] = {s: {} for s in self._instruments}
        self._batch_close: dict[str, int | None] = dict.fromkeys(self._instruments)
        # insertion-ordered set of each symbol's batch members (a dict: O(1) membership, stable order)
        self._batch_members: dict[str, dict[str, None]] = {s: {} for s in self._instruments}
        self._detectors: dict[str, SymbolDetector] = {}
        self._links = CrossLinks(self._instruments)  # cross rows that carry other symbols' marks
        self._cleared: dict[str, dict[str, int]] = {s: {} for s in self._instruments}
        self._confirmed: dict[str, tuple[int, AccountMargin]] = {}  # confirm → open_cases, same price
        self.records: list[LiquidationRecord] = []
        self._halted = False
        self._settler = Settler(
            ledger=ledger, policy=policy, instruments=self._instruments, tiers=self._tiers, audit=self.audit,
            backstops=self.backstops, insurance_fund=insurance_fund, fee_pool=fee_pool, market=market,
            marks=self._marks, detectors=self._detectors, is_active=self._is_active)
        self._source = policy.trigger.price_source
        self._dutch: DutchExecutor | None = None
        if policy.execution.venue == "dutch" and policy.execution.dutch is not None:
            keeper = self.backstops[0].account_id if self.backstops else market
            self._dutch = DutchExecutor(policy.execution.dutch, self._settler, self._instruments,
                                        keeper=keeper, fund=insurance_fund,
                                        backstop_discount_bps=policy.takeover.backstop_discount_bps)

    # --- set-up ---------------------------------------------------------------------------------------
    def track_all(self, extra_capacity: int = 0) -> None:
        """Build the float account book + liquidation-price index of every symbol from the ledger.

        ``extra_capacity``: room for accounts that will open positions later (:meth:`on_position_changed`).
        """
        for symbol, inst in self._instruments.items():
            positions = [p for p in self.ledger.positions(symbol) if p.account_id not in self._system]
            rows = [p.account_id for p in positions]
            for aid in rows:
                self._links.update(self.ledger, aid)
            columns = self._screen_columns(symbol, positions)
            det = SymbolDetector(inst, self._tiers[symbol], capacity=int(len(rows) * 1.25) + 1024 + extra_capacity,
                                 buffer_bps=self.policy.trigger.screen_buffer_bps,
                                 confirm=self._confirmer(symbol), cleared=self._cleared[symbol])
            det.load(rows, *columns)
            self._detectors[symbol] = det
        self._settler.observe_fund(max(self._last_ts, 0))

    def _screen_columns(self, symbol: str, positions: list[Position]) -> tuple[np.ndarray, ...]:
        """The float rows of ``positions`` (:func:`float_row`) as four columns.

        One linear instrument with an integer value per tick-lot: the same floats as :func:`float_row` (each a
        correctly rounded int division or one float product), in list passes without a Fraction per row.
        Otherwise row by row.
        """
        if not positions:  # an empty book (a venue starting up): the ledger may not know the symbol yet
            return tuple(np.zeros(0, dtype=np.float64) for _ in range(4))
        inst = self._instruments[symbol]
        per = inst.linear_value_per_tick_lot if inst.contract == "linear" else None
        if len(self._instruments) != 1 or per is None or per.denominator != 1:
            data = [float_row(self.ledger, p.account_id, symbol, self._marks, self._instruments, self._tiers)
                    for p in positions]
            arr = np.array(data, dtype=np.float64).reshape(-1, 4)
            return tuple(np.ascontiguousarray(arr[:, k]) for k in range(4))
        unit, tick, lot = int(per.numerator), float(inst.tick_size), float(inst.lot_size)
        minor = inst.settle.minor_per_unit
        held, _ = self.ledger.margin_balances((p.account_id for p in positions), symbol)
        qty = [p.qty_lots * lot for p in positions]
        entry = [p.cost_minor / (unit * p.qty_lots) * tick if p.cost_minor else tick for p in positions]
        balance = [h / minor for h in held]
        return (np.array(qty, dtype=np.float64), np.array(entry, dtype=np.float64),
                np.array(balance, dtype=np.float64), np.zeros(len(positions)))

    def list_instrument(self, instrument: Instrument, *, tiers: MarginTiers | None = None,
                        liquidity: Any = None) -> None:
        """Serve a new symbol on a running engine: a venue lists a contract without a restart.

        No position holds the symbol yet, so nothing is re-screened; its detector starts empty and grows
        as accounts open positions (:meth:`on_position_changed`). Refused, with nothing changed, when the
        symbol is served already or settles in another asset than the engine's fund.
        """
        symbol = instrument.symbol
        if symbol in self._instruments:
            raise InvalidInput("symbol", symbol, "is listed already")
        if instrument.settle.code != self._fund_code:
            raise InvalidInput("settle", instrument.settle.code,
                               f"must be the insurance fund's asset {self._fund_code}")
        tiers = tiers if tiers is not None else _tiers_of(instrument)
        self._instruments[symbol] = instrument  # the same dicts as the settler's and the Dutch executor's
        self._tiers[symbol] = self._base_tiers[symbol] = tiers
        self._liquidity[symbol] = liquidity if liquidity is not None else EmptyBook()
        self._holding[symbol] = False
        self._mark_waits[symbol] = {}
        self._cases[symbol] = {}
        self._batch_close[symbol] = None
        self._batch_members[symbol] = {}
        self._cleared[symbol] = {}
        self._links.add_symbol(instrument)
        det = SymbolDetector(instrument, tiers, capacity=1024, buffer_bps=self.policy.trigger.screen_buffer_bps,
                             confirm=self._confirmer(symbol), cleared=self._cleared[symbol])
        empty = np.zeros(0, dtype=np.float64)
        det.load([], empty, empty, empty, empty)
        self._detectors[symbol] = det

    def load_arrays(self, symbol: str, account_ids: list[str], qty: np.ndarray, entry_price: np.ndarray,
                    balance: np.ndarray) -> None:
        """Bulk alternative to :meth:`track_all` for one symbol when the caller already has the rows."""
        det = SymbolDetector(self._instruments[symbol], self._tiers[symbol], capacity=len(account_ids) + 1024,
                             buffer_bps=self.policy.trigger.screen_buffer_bps, confirm=self._confirmer(symbol),
                             cleared=self._cleared[symbol])
        det.load(account_ids, qty, entry_price, balance)
        self._detectors[symbol] = det

    def on_position_changed(self, account_id: str) -> None:
        """Re-index ``account_id`` on every symbol after an outside trade or transfer."""
        for symbol in self._instruments:
            self._reindex(symbol, account_id)

    def _reindex(self, symbol: str, account_id: str) -> None:
        det = self._detectors.get(symbol)
        if det is None or account_id in self._system:
            return
        self._cleared[symbol].pop(account_id, None)
        self._links.update(self.ledger, account_id)
        det.upsert(account_id, *float_row(self.ledger, account_id, symbol, self._marks, self._instruments,
                                          self._tiers))

    # --- inputs ---------------------------------------------------------------------------------------
    def _check_call(self, symbol: object, ts_ns: object) -> str:
        if symbol not in self._instruments:
            raise InvalidInput("symbol", symbol, f"unknown to this engine; known: {sorted(self._instruments)}")
        if isinstance(ts_ns, bool) or not isinstance(ts_ns, int):
            raise InvalidInput("ts_ns", ts_ns, "must be an int of nanoseconds")
        if ts_ns < 0:
            raise InvalidInput("ts_ns", ts_ns, "must be >= 0 (ns since the epoch)")
        if ts_ns < self._last_ts:
            raise SimulationError(f"ts_ns={ts_ns} is older than the last call's {self._last_ts}")
        return symbol

    def on_mark(self, symbol: str, mark_price_ticks: int, ts_ns: int) -> StepResult:
        """A new mark: detect newly liquidatable accounts, work the active cases, close due batches."""
        self._check_call(symbol, ts_ns)
        mark = _check_price(mark_price_ticks, "mark_price_ticks")
        start = len(self.audit)
        self._last_ts = ts_ns
        previous = self._marks.get(symbol)
        if previous is not None:  # Hyperliquid ADL: the previous tick's mark (equal or not)
            self._prev_marks[symbol] = previous
        self._marks[symbol] = mark
        if not self._detectors:
            self.track_all()
        if self._links.count and mark != previous:  # other symbols' rows valued this one at the old mark
            for aid in self._links.stale_after(symbol):
                for other in self._instruments:
                    if other != symbol:
                        self._reindex(other, aid)
        if self._dynamic:  # concentration first: the step's announcement reads it
            self._feed_concentration(symbol, ts_ns)
        for event in self._safeguards.on_mark(symbol, mark, ts_ns) or ():
            self._record_safeguard(event, symbol, ts_ns)
        if self._dynamic:
            self._apply_margin_steps(ts_ns)
        if previous is None:
            self._first_mark(symbol)
        found = self._detectors[symbol].on_price(mark) if self._source != "oracle" else []
        if not found and not self._cases[symbol] and self._batch_close[symbol] is None \
                and not self._settler.changed and (self._dutch is None or not self._dutch.sales) \
                and not self._holding[symbol]:
            return StepResult(_NO_ACTIONS, start, start)
        return self._step(symbol, ts_ns, found, start)

    def on_oracle(self, symbol: str, oracle_price_ticks: int, ts_ns: int) -> StepResult:
        """A new oracle price: trigger (oracle policies), confirm (hybrid), or an ``oracle_invalid`` event."""
        self._check_call(symbol, ts_ns)
        oracle = _check_price(oracle_price_ticks, "oracle_price_ticks")
        start = len(self.audit)
        self._last_ts = ts_ns
        invalid = False
        for event in self._safeguards.on_oracle(symbol, oracle, ts_ns) or ():
            self._record_safeguard(event, symbol, ts_ns)
            invalid = invalid or str(getattr(event, "kind", "")) == EventKind.ORACLE_INVALID
        if invalid:  # an invalid print is reported and not used
            return StepResult(_NO_ACTIONS, start, len(self.audit))
        self._oracles[symbol] = oracle
        if not self._detectors:
            self.track_all()
        if self._dynamic:
            self._apply_margin_steps(ts_ns)
        if symbol not in self._marks and self._source != "oracle":
            return StepResult(_NO_ACTIONS, start, len(self.audit))
        found = self._detectors[symbol].on_price(oracle) if self._source == "oracle" else []
        # batches close on a mark (the tick's own), never on an oracle print between two marks
        return self._step(symbol, ts_ns, found, start, close_batches=False)

    def advance(self, ts_ns: int) -> StepResult:
        """Time passes: close due batches, expire confirmations, cooldowns, ramps, Dutch prices."""
        self._check_call(next(iter(self._instruments)), ts_ns)
        start = len(self.audit)
        self._last_ts = ts_ns
        if self._dynamic and self._detectors:
            for symbol in self._instruments:
                self._feed_concentration(symbol, ts_ns)
        for event in self._safeguards.advance(ts_ns) or ():
            self._record_safeguard(event, getattr(event, "symbol", None), ts_ns)
        if self._dynamic:
            self._apply_margin_steps(ts_ns)
        actions: list[LiquidationRecord] = []
        for symbol in self._instruments:
            if symbol in self._marks and self._detectors:
                actions += self._step(symbol, ts_ns, [], start).actions
        return StepResult(tuple(actions), start, len(self.audit))

    def _record_safeguard(self, event: Any, symbol: str | None, ts_ns: int) -> None:
        """Write a safeguard decision to the audit log unchanged (kind, its symbol, its numbers)."""
        kind = EventKind(str(getattr(event, "kind", EventKind.SKIPPED)))
        data = dict(getattr(event, "data", {}) or {})
        data.pop("symbol", None)
        event_symbol = getattr(event, "symbol", symbol)
        if event_symbol is None and kind in (EventKind.EXECUTION_HALTED, EventKind.EXECUTION_RESUMED):
            self._fund_halted = kind == EventKind.EXECUTION_HALTED  # the fund latch (all symbols)
        self.audit.record(kind, ts_ns, symbol=event_symbol, source="safeguards", **data)

    # --- prices ---------------------------------------------------------------------------------------
    def _trigger_ticks(self, symbol: str) -> int:
        if self._source == "oracle" and symbol in self._oracles:
            return self._oracles[symbol]
        return self._marks.get(symbol) or self._oracles[symbol]

    def _marks_at(self, symbol: str, price: int) -> dict[str, int]:
        marks = dict(self._marks)
        marks[symbol] = price
        return marks

    def _margin(self, account_id: str, symbol: str, price: int | None = None) -> AccountMargin:
        at = price if price is not None else self._trigger_ticks(symbol)
        marks = self._marks
        if marks.get(symbol) == at and len(marks) == len(self._instruments):  # every mark as it is: no copy
            return exact_margin(self.ledger, account_id, symbol, marks, self._instruments, self._tiers)
        marks = self._marks_at(symbol, at)
        missing = [s for s in self._instruments if s not in marks]
        for s in missing:
            if self.ledger.position(account_id, s).qty_lots:
                raise InvalidInput("marks", s, f"no mark yet for {s}, where {account_id} holds a position")
            marks[s] = 1
        return exact_margin(self.ledger, account_id, symbol, marks, self._instruments, self._tiers)

    def _confirmer(self, symbol: str) -> Callable[[list[str]], list[bool]]:
        """Exact confirmation for the index's candidates, with a per-account "cleared" memo.

        Liquidatability is monotone in the price for an unchanged account (a long that is safe at p is
        safe at every price ≥ p; a short at every price ≤ p), so an account found safe at p is not
        re-checked at a safer price until it is re-indexed; the detector also uses the memo to skip
        the index altogether on marks where nothing can be new. ``candidate_rejected`` is written the
        first time an account is rejected after (re-)indexing, not on every re-check.
        """
        cleared = self._cleared[symbol]

        def confirm(account_ids: list[str]) -> list[bool]:
            price = self._trigger_ticks(symbol)
            out = []
            for aid in account_ids:
                memo = cleared.get(aid)
                if memo is not None and (price >= memo if memo > 0 else price <= -memo):
                    out.append(False)
                    continue
                missing = self._missing_mark(aid, symbol)
                if missing is not None:  # cannot be valued: waits, not checked safe
                    self._wait_for_mark(symbol, aid, missing, self._last_ts)
                    out.append(False)
                    continue
                self._end_mark_wait(symbol, aid, self._last_ts)
                m = self._margin(aid, symbol, price)
                out.append(m.liquidatable)
                if m.liquidatable:
                    self._confirmed[aid] = (price, m)
                elif m.qty_lots:
                    cleared[aid] = price if m.qty_lots > 0 else -price
                    if memo is None and aid not in self._cases[symbol]:
                        self.audit.record(EventKind.CANDIDATE_REJECTED, self._last_ts, symbol=symbol,
                                          account_id=aid, price_ticks=price,
                                          equity_minor=math.floor(m.equity_exact),
                                          maintenance_minor=m.maintenance_minor)
            return out
        return confirm

    def _is_active(self, account_id: str, symbol: str) -> bool:
        return account_id in self._cases[symbol]

    # --- the step -------------------------------------------------------------------------------------
    def _step(self, symbol: str, ts_ns: int, found: list[str], start: int, *,
              close_batches: bool = True) -> StepResult:
        before = len(self.records)
        if self._watch_fund:
            self._report_fund(ts_ns)
        self._open_cases(symbol, found, ts_ns)
        for _ in range(4):  # re-detect accounts whose balances changed (ADL, haircuts) in this step
            self._work(symbol, ts_ns, close_batches)
            changed = sorted(self._settler.changed)
            self._settler.changed.clear()
            for aid in changed:
                for sym in self._instruments:
                    self._reindex(sym, aid)
            if not changed:
                break
            again = self._detectors[symbol].on_price(self._trigger_ticks(symbol))
            if not again:
                break
            self._open_cases(symbol, again, ts_ns)
        self._settler.observe_fund(ts_ns)
        if self._watch_fund:
            self._report_fund(ts_ns)
        return StepResult(tuple(self.records[before:]), start, len(self.audit))

    def _open_cases(self, symbol: str, found: list[str], ts_ns: int) -> None:
        cases = self._cases[symbol]
        price = self._trigger_ticks(symbol) if found else 0
        det = self._detectors[symbol]
        for aid in found:
            if aid in cases:
                continue
            cached = self._confirmed.get(aid)
            if cached is None or cached[0] != price:
                missing = self._missing_mark(aid, symbol)
                if missing is not None:
                    self._wait_for_mark(symbol, aid, missing, ts_ns)
                    continue
            m = cached[1] if cached is not None and cached[0] == price else self._margin(aid, symbol, price)
            if not m.liquidatable:
                continue
            side = "long" if m.qty_lots > 0 else "short"
            case = LiquidationCase(aid, symbol, ts_ns, price, side, abs(m.qty_lots),
                                   liquidation_price_ticks=det.liquidation_price_ticks(aid))
            cases[aid] = case
            self.audit.record(EventKind.CANDIDATE_FOUND, ts_ns, symbol=symbol, account_id=aid, price_ticks=price,
                              source=self._source, qty_lots=m.qty_lots, equity_minor=math.floor(m.equity_exact),
                              maintenance_minor=m.maintenance_minor, margin_ratio=m.margin_ratio,
                              liquidation_price_ticks=case.liquidation_price_ticks)
            if self._source == "mark_confirmed_by_oracle":
                case.confirmed = False
                case.confirm_deadline_ns = ts_ns + self.policy.trigger.confirm_timeout_ms * NS_PER_MS
                self.audit.record(EventKind.CONFIRMATION_PENDING, ts_ns, symbol=symbol, account_id=aid,
                                  deadline_ns=case.confirm_deadline_ns)
        self._confirmed.clear()

    def _work(self, symbol: str, ts_ns: int, close_batches: bool = True) -> None:
        """Re-evaluate every live case, then the due batch, the Dutch sales and the inventories' offload.

        A halt (``execution_allowed`` false) stops every kind of execution — book orders, the batch
        close, keeper takes, the fund's and the backstops' offloads — while detection and re-evaluation
        go on; a due batch then closes on the first mark after the halt lifts (a batch closes at the
        mark of the call that closes it: ``on_mark`` or ``advance``, never ``on_oracle``). Without a
        mark for the symbol (an oracle policy before the first mark) cases are found but wait:
        settlement values positions at the mark.
        """
        cases = self._cases[symbol]
        dutch = self._dutch
        allowed = self._safeguards.execution_allowed(symbol, ts_ns)
        self._halted = not allowed  # the safeguards write their own halt/resume events
        # a case whose Dutch sale runs is the auction's until it ends (Maker: recovery does not stop it)
        live = [c for c in cases.values() if dutch is None or not dutch.running(symbol, c.account_id)]
        if live:
            allowed = self._work_live(symbol, live, ts_ns, allowed)
        if not allowed or symbol not in self._marks:
            return
        close_ns = self._batch_close[symbol]
        if close_batches and close_ns is not None and ts_ns >= close_ns:
            self._close_batch(symbol, ts_ns)
            if self._watch_fund and self._report_fund(ts_ns):
                allowed = self._safeguards.execution_allowed(symbol, ts_ns)
                self._halted = not allowed
        if allowed and dutch is not None and dutch.sales:
            dutch.step(symbol, self._liquidity[symbol], self._trigger_ticks(symbol), ts_ns, self._on_dutch_take)
            self._release_ended_sales()
        if allowed and self.ledger.position(self._settler.fund, symbol).qty_lots:
            self._offload_fund(symbol, ts_ns)
        if allowed and self._holding[symbol]:
            self._offload_backstops(symbol, ts_ns)

    def _work_live(self, symbol: str, live: list[LiquidationCase], ts_ns: int, allowed: bool) -> bool:
        """Refresh the sort keys of the live cases at the trigger price, then work each in order.

        A case whose account cannot be valued (a position in a symbol without a mark) waits with
        ``missing_mark``. After each case the fund balance is reported: a drawdown halt that fires
        stops the cases after it. Returns whether execution is still allowed.
        """
        cases = self._cases[symbol]
        price = self._trigger_ticks(symbol)
        inst = self._instruments[symbol]
        blocked = {c.account_id: s for c in live if (s := self._missing_mark(c.account_id, symbol)) is not None}
        for case in live:
            if case.account_id in blocked:
                self._skip(case, ts_ns, "missing_mark", missing_symbol=blocked[case.account_id])
        live = [c for c in live if c.account_id not in blocked]
        margins = {c.account_id: self._margin(c.account_id, symbol, price) for c in live}
        per = int_per_tick_lot(inst) if type(price) is int and price > 0 else None
        for c in live:
            m = margins[c.account_id]
            c.margin_ratio = m.margin_ratio
            if not m.qty_lots:
                c.notional_minor = 0.0
            elif per is not None:  # float(Fraction(n)) == float(n)
                c.notional_minor = float(abs(per * price * m.qty_lots))
            else:
                c.notional_minor = float(abs(inst.notional(price, m.qty_lots)))
        changed = self._settler.changed
        for case in sorted(live, key=LiquidationCase.sort_key):
            if case.account_id not in cases:
                continue
            m = margins[case.account_id]
            if case.account_id in changed:  # moved by an earlier case's ADL, haircut or netting
                m = self._margin(case.account_id, symbol)
            self._work_case(case, m, ts_ns, allowed)
            if self._watch_fund and self._report_fund(ts_ns):
                allowed = self._safeguards.execution_allowed(symbol, ts_ns)
                self._halted = not allowed
        return allowed

    def _on_dutch_take(self, account_id: str, parts: list[tuple[str, FillSummary]]) -> None:
        symbol_cases = [(s, c[account_id]) for s, c in self._cases.items() if account_id in c]
        for symbol, case in symbol_cases:
            for counterparty, got in parts:
                self._record(case, got, "dutch", "full", self._last_ts, counterparty)  # type: ignore[arg-type]
                if counterparty == "backstop" and got.lots:
                    self._holding[symbol] = True
            self._after_action(case, self._last_ts)

    def _drop(self, case: LiquidationCase, ts_ns: int, reason: str, m: AccountMargin | None = None) -> None:
        self._end_wait(case, ts_ns)
        self._cases[case.symbol].pop(case.account_id, None)
        if self._dutch is not None:
            self._dutch.finish(case.symbol, case.account_id)
            self._release_ended_sales()
        data = {} if m is None else {"equity_minor": math.floor(m.equity_exact), "maintenance_minor": m.maintenance_minor}
        self.audit.record(EventKind.LIQUIDATION_DONE, ts_ns, symbol=case.symbol, account_id=case.account_id,
                          reason=reason, closed_lots=case.closed_lots, actions=case.actions, **data)
        if self.ledger.position(case.account_id, case.symbol).qty_lots:
            self._reindex(case.symbol, case.account_id)  # the index must offer it again if it re-breaches

    def _skip(self, case: LiquidationCase, ts_ns: int, reason: str, **data: Any) -> None:
        """A wait: one ``skipped`` event when it starts (and ``wait_ended`` when it ends), none per tick."""
        if case.waiting == reason:
            case.waiting_ticks += 1
            case.waiting_data = data
            return
        self._end_wait(case, ts_ns)
        case.waiting, case.waiting_since_ns, case.waiting_ticks, case.waiting_data = reason, ts_ns, 1, data
        self.audit.record(EventKind.SKIPPED, ts_ns, symbol=case.symbol, account_id=case.account_id,
                          reason=reason, **data)

    def _end_wait(self, case: LiquidationCase, ts_ns: int) -> None:
        if case.waiting is None:
            return
        self.audit.record(EventKind.WAIT_ENDED, ts_ns, symbol=case.symbol, account_id=case.account_id,
                          reason=case.waiting, waited_ns=ts_ns - case.waiting_since_ns, ticks=case.waiting_ticks,
                          **{f"last_{k}": v for k, v in case.waiting_data.items()})
        case.waiting = None

    def _work_case(self, case: LiquidationCase, m: AccountMargin, ts_ns: int, allowed: bool) -> None:
        symbol = case.symbol
        if m.qty_lots == 0:
            self._settle_after(case, ts_ns)
            self._drop(case, ts_ns, "flat", m)
            return
        if not m.liquidatable:
            self._drop(case, ts_ns, "restored", m)
            return
        if not case.confirmed and not self._confirm(case, ts_ns):
            return
        if not allowed:
            self._skip(case, ts_ns, "halted")
            return
        if symbol not in self._marks:  # an oracle policy before the first mark: nothing to settle at
            self._skip(case, ts_ns, "awaiting_mark")
            return
        if self._dutch is not None:
            price = self._trigger_ticks(symbol)
            lots, reserved = self._reserve_lots(symbol, abs(m.qty_lots), price)
            if lots == 0:
                self._skip(case, ts_ns, "notional_cap", planned_lots=abs(m.qty_lots))
                return
            status = self._dutch.kick(case.account_id, symbol, case.side, lots, price, ts_ns)
            if status == "kicked":
                self._end_wait(case, ts_ns)
                self._dutch_reserved[(symbol, case.account_id)] = reserved
            else:  # Dog/liquidation-limit-hit (Hole/hole), Dog/leaves-dust...
                self._release_notional(symbol, reserved)
                self._skip(case, ts_ns, str(status), dirt_minor=self._dutch.house.dirt_minor)
            return
        if self.policy.execution.batch_interval_ms > 0:
            if case.account_id not in self._batch_members[symbol]:
                self._batch_members[symbol][case.account_id] = None
                if self._batch_close[symbol] is None:
                    self._batch_close[symbol] = ts_ns + self.policy.execution.batch_interval_ms * NS_PER_MS
            self._skip(case, ts_ns, "batch_pending", batch_close_ns=self._batch_close[symbol])
            return
        self._execute_now(case, m, ts_ns)

    def _confirm(self, case: LiquidationCase, ts_ns: int) -> bool:
        """Hybrid: the oracle must agree, or the wait expires."""
        oracle = self._oracles.get(case.symbol)
        if oracle is not None and self._margin(case.account_id, case.symbol, oracle).liquidatable:
            case.confirmed = True
            self._end_wait(case, ts_ns)
            self.audit.record(EventKind.CONFIRMED, ts_ns, symbol=case.symbol, account_id=case.account_id,
                              oracle_ticks=oracle)
            return True
        if ts_ns >= case.confirm_deadline_ns:
            case.confirmed = True
            self._end_wait(case, ts_ns)
            self.audit.record(EventKind.CONFIRMATION_TIMED_OUT, ts_ns, symbol=case.symbol,
                              account_id=case.account_id, oracle_ticks=oracle, waited_ns=ts_ns - case.found_ns)
            return True
        self._skip(case, ts_ns, "awaiting_confirmation", oracle_ticks=oracle, deadline_ns=case.confirm_deadline_ns)
        return False

    # --- reporting --------------------------------------------------------------------------------------
    @property
    def halted(self) -> bool:
        """Whether execution was halted by a safeguard at the last call (cheap: no totals computed)."""
        return self._halted

    def active_accounts(self, symbol: str) -> list[str]:
        """Accounts with an open liquidation case on ``symbol``."""
        return sorted(self._cases[symbol])

    def state(self) -> dict[str, Any]:
        """Summary numbers: fund balance per asset, bad debt, ADL totals, active cases, halted?"""
        s = self._settler
        codes = sorted({i.settle.code for i in self._instruments.values()})
        return {
            "fund_balance_minor": {c: s.fund_balance(c) for c in codes},
            "fund_drawn_minor": s.fund_drawn_minor,
            "bad_debt_minor": sum(s.bad_debt_minor.values()),
            "adl_lots": s.adl_lots,
            "adl_haircut_minor": s.adl_haircut_minor,
            "socialized_minor": s.socialized_minor,
            "keeper_paid_minor": self._dutch.keeper_paid_minor if self._dutch is not None else 0,
            "active_cases": sum(len(c) for c in self._cases.values()),
            "liquidations": len(self.records),
            "halted": self._halted,
            "policy": self.policy.name,
        }

    # --- read-only views for observers (engine/monitor.py); nothing here changes the engine ----------
    @property
    def instruments(self) -> dict[str, Instrument]:
        """The engine's instruments by symbol (a copy)."""
        return dict(self._instruments)

    def mark_ticks(self, symbol: str) -> int | None:
        """The last mark of ``symbol`` (None before its first)."""
        return self._marks.get(symbol)

    def oracle_ticks(self, symbol: str) -> int | None:
        """The last oracle print the engine accepted for ``symbol`` (None before one)."""
        return self._oracles.get(symbol)

    def detector(self, symbol: str) -> SymbolDetector | None:
        """The float screen of ``symbol`` (account book + liquidation-price index); None before track_all."""
        return self._detectors.get(symbol)

    def margin_at(self, account_id: str, symbol: str, price_ticks: int) -> AccountMargin | None:
        """Exact margin of ``account_id`` were ``symbol``'s mark at ``price_ticks`` (other marks as they are);
        None when another symbol it holds has no mark yet."""
        if self._missing_mark(account_id, symbol) is not None:
            return None
        return self._margin(account_id, symbol, price_ticks)

    def safeguards_state(self) -> dict[str, Any]:
        """The safeguards' own summary (halts, oracle validity, caps; ``{}`` for the no-op safeguards)."""
        state = getattr(self._safeguards, "state", None)
        return dict(state()) if callable(state) else {}


__all__ = ["BasicSafeguards", "LiquidationEngine"]
