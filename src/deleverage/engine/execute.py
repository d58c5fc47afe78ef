"""Execution half of the engine: book orders, batches, the waterfall call, records (docs/engine.md 5–10).

:class:`ExecutionMixin` is mixed into :class:`deleverage.engine.engine.LiquidationEngine`; it holds
no state of its own and reads the engine's (``_settler``, ``_cases``, ``_liquidity``...). Split out of
engine.py to keep each module readable; the public API stays on the engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from deleverage.config.events import EventKind
from deleverage.engine.batching import BatchOrder, clear_batch, net_orders
from deleverage.engine.detect import AccountMargin, bankruptcy_limit_of
from deleverage.engine.exact_fast import int_per_tick_lot
from deleverage.engine.planning import Plan, order_limit_ticks, plan_quantity, takeover_price_ticks
from deleverage.engine.records import (
    Counterparty,
    LiquidationCase,
    LiquidationRecord,
    Venue,
    slippage_bps,
)
from deleverage.engine.waterfall import FillSummary

NS_PER_MS = 1_000_000


class ExecutionMixin:
    """Book orders, batch closes, the loss waterfall and the records of a :class:`LiquidationEngine`."""

    _settler: Any
    _cases: dict[str, dict[str, LiquidationCase]]
    if TYPE_CHECKING:  # the engine's state and helpers this mixin reads (engine.py owns them)
        from deleverage.config.events import AuditLog
        from deleverage.config.policy import LiquidationPolicy
        from deleverage.core.instruments import Instrument
        from deleverage.core.ledger import Ledger
        from deleverage.core.tiers import MarginTiers
        from deleverage.engine.backstop import BackstopProvider

        ledger: Ledger
        policy: LiquidationPolicy
        audit: AuditLog
        backstops: list[BackstopProvider]
        records: list[LiquidationRecord]
        on_before_execute: Callable[..., None] | None
        _instruments: dict[str, Instrument]
        _tiers: dict[str, MarginTiers]
        _liquidity: dict[str, Any]
        _oracles: dict[str, int]
        _prev_marks: dict[str, int]
        _batch_close: dict[str, int | None]
        _batch_members: dict[str, dict[str, None]]
        _marks: dict[str, int]
        _holding: dict[str, bool]

        _safeguards: Any
        _cap_on: bool

        def _trigger_ticks(self, symbol: str) -> int: ...
        def _reserve_lots(self, symbol: str, lots: int, price_ticks: int) -> tuple[int, Fraction]: ...
        def _release_notional(self, symbol: str, amount: Fraction) -> None: ...
        def _missing_mark(self, account_id: str, symbol: str) -> str | None: ...
        def _margin(self, account_id: str, symbol: str, price: int | None = None) -> AccountMargin: ...
        def _skip(self, case: LiquidationCase, ts_ns: int, reason: str, **data: Any) -> None: ...
        def _end_wait(self, case: LiquidationCase, ts_ns: int) -> None: ...
        def _drop(self, case: LiquidationCase, ts_ns: int, reason: str,
                  m: AccountMargin | None = None) -> None: ...

    # --- immediate execution (book venue) ---------------------------------------------------------------
    def _execute_now(self, case: LiquidationCase, m: AccountMargin, ts_ns: int) -> None:
        symbol, inst = case.symbol, self._instruments[case.symbol]
        price = self._trigger_ticks(symbol)
        plan = plan_quantity(case, m, self.policy, inst, self._tiers[symbol], price, ts_ns)
        if plan.qty_lots == 0:
            self._skip(case, ts_ns, plan.reason)
            return
        lots, reserved = self._reserve_lots(symbol, plan.qty_lots, price)
        if lots == 0:  # the cap on notional in liquidation is full: wait
            self._skip(case, ts_ns, "notional_cap", planned_lots=plan.qty_lots)
            return
        self._end_wait(case, ts_ns)
        try:
            self._execute_lots(case, m, plan, lots, price, ts_ns)
        finally:  # the order completed or failed: its notional leaves liquidation
            self._release_notional(symbol, reserved)
        self._after_action(case, ts_ns)

    def _execute_lots(self, case: LiquidationCase, m: AccountMargin, plan: Plan, lots: int, price: int,
                      ts_ns: int) -> None:
        symbol, inst = case.symbol, self._instruments[case.symbol]
        bankrupt = bankruptcy_limit_of(case.side, inst, m.qty_lots, m.equity_exact, price)
        capped = {"planned_lots": plan.qty_lots} if lots < plan.qty_lots else {}
        self.audit.record(EventKind.LIQUIDATION_PLANNED, ts_ns, symbol=symbol, account_id=case.account_id,
                          qty_lots=lots, mode=plan.reason, position_lots=m.qty_lots, price_ticks=price,
                          equity_minor=math.floor(m.equity_exact), maintenance_minor=m.maintenance_minor,
                          bankruptcy_ticks=bankrupt, direct_takeover=plan.direct_takeover, **capped)
        action = "full" if plan.full and lots == plan.qty_lots else "partial"
        if plan.direct_takeover:
            self._absorb(case, lots, ts_ns, force=True)
            return
        got = self._book_order(case, m, lots, bankrupt, ts_ns)
        self._record(case, got, "book", action, ts_ns, "market")
        left = lots - got.lots
        if left > 0:
            self._absorb(case, left, ts_ns)

    def _book_order(self, case: LiquidationCase, m: AccountMargin, lots: int, bankrupt: int | None,
                    ts_ns: int) -> FillSummary:
        symbol = case.symbol
        inst, price = self._instruments[symbol], self._trigger_ticks(symbol)
        limit = order_limit_ticks(self.policy, case.side, bankrupt, m, inst, price, ts_ns, lots)
        taker = "sell" if case.side == "long" else "buy"
        if self.on_before_execute is not None:
            self.on_before_execute(symbol, taker, lots, limit, ts_ns)
        self.audit.record(EventKind.ORDER_SENT, ts_ns, symbol=symbol, account_id=case.account_id, side=taker,
                          qty_lots=lots, limit_ticks=limit, order=self.policy.execution.order)
        got = self._settler.book_fill(case.account_id, symbol, case.side, self._liquidity[symbol], lots, limit,
                                      ts_ns, all_or_none=self.policy.execution.order == "fok")
        kind = EventKind.ORDER_FILLED if got.lots else EventKind.ORDER_UNFILLED
        self.audit.record(kind, ts_ns, symbol=symbol, account_id=case.account_id, filled_lots=got.lots,
                          unfilled_lots=lots - got.lots, vwap_ticks=got.vwap_ticks, fee_minor=got.fee_minor)
        return got

    def _fund_room_lots(self, symbol: str, price_ticks: int) -> int | None:
        """Lots the fund may still take over under ``takeover.fund_max_position_fraction`` (None = no cap)."""
        fraction = self.policy.takeover.fund_max_position_fraction
        if fraction is None:
            return None
        inst = self._instruments[symbol]
        settler = self._settler
        limit = settler.fund_balance(inst.settle.code) * fraction
        held = abs(inst.notional(price_ticks, settler.ledger.position(settler.fund, symbol).qty_lots))
        per_lot = abs(inst.notional(max(1, price_ticks), 1))
        return max(0, int((limit - float(held)) // float(per_lot))) if per_lot else 0

    def _absorb(self, case: LiquidationCase, lots: int, ts_ns: int, *, force: bool = False) -> None:
        """Waterfall for lots the venue did not take: backstop → fund takeover → ADL → wait.

        The bankruptcy price is the account's *now*, from the ledger: fills and fees since the order
        was planned moved it, and a takeover below it (above, for a short) would leave a deficit.
        """
        symbol, settler = case.symbol, self._settler
        tk = self.policy.takeover
        m = self._margin(case.account_id, symbol)
        lots = min(lots, abs(m.qty_lots))
        if lots <= 0:
            return
        bankrupt_now = m.equity_exact <= 0
        if not force and tk.when in ("bankrupt", "below_equity_ratio") and not bankrupt_now:
            self._skip(case, ts_ns, "unfilled_waits", lots=lots, takeover_when=tk.when)
            return
        mark = self._trigger_ticks(symbol)
        inst = self._instruments[symbol]
        code = inst.settle.code
        bankrupt = bankruptcy_limit_of(case.side, inst, m.qty_lots, m.equity_exact, mark)
        price = takeover_price_ticks(self.policy, case.side, bankrupt, self._oracles.get(symbol, 0), mark)
        if tk.by == "backstop" and self.backstops:
            got = settler.backstop_takeover(case.account_id, symbol, case.side, lots,
                                            None if tk.price == "backstop_quote" else price, ts_ns,
                                            check_price=tk.price != "bankruptcy",
                                            discount_bps=tk.backstop_discount_bps)
            self._record(case, got, "backstop", "takeover", ts_ns, "backstop")
            if got.lots:
                self._holding[symbol] = True
            lots -= got.lots
        adl = self.policy.adl
        adl_possible = adl.trigger != "never" and adl.ranking != "none"
        fund_ok = tk.by == "insurance_fund" or (tk.by == "backstop" and (bankrupt_now or force))
        beyond_fund = False
        if lots and fund_ok and not settler.adl_mode(code):
            fund_price = bankrupt if bankrupt is not None else mark
            room = self._fund_room_lots(symbol, fund_price)
            take = lots if room is None else min(lots, room)
            beyond_fund = take < lots
            if take:
                got = settler.fund_takeover(case.account_id, symbol, case.side, take, fund_price, ts_ns)
                self._record(case, got, "takeover", "takeover", ts_ns, "fund")
                lots -= got.lots
                self._offload_fund(symbol, ts_ns)
                settler.credit_remaining_margin(case.account_id, symbol, ts_ns)
        if lots and adl_possible and (settler.adl_mode(code) or bankrupt_now or force or beyond_fund):
            adl_price = self._adl_price_ticks(symbol, bankrupt, mark)
            got = settler.adl_close(case.account_id, symbol, case.side, lots, adl_price, ts_ns)
            self._record(case, got, "adl", "adl", ts_ns, "peer")
            lots -= got.lots
        if lots:
            self._skip(case, ts_ns, "no_liquidity", unfilled_lots=lots, takeover_by=tk.by)

    def _adl_price_ticks(self, symbol: str, bankrupt: int | None, mark: int) -> int:
        """ADL close price per ``adl.price``: bankruptcy (BitMEX/Binance), mark (OKX), previous mark (HL)."""
        kind = self.policy.adl.price
        if kind == "bankruptcy" and bankrupt is not None:
            return bankrupt
        if kind == "previous_mark":
            return self._prev_marks.get(symbol, mark)
        return mark

    def _after_action(self, case: LiquidationCase, ts_ns: int) -> None:
        case.last_action_ns = ts_ns
        case.actions += 1
        if self.ledger.position(case.account_id, case.symbol).qty_lots == 0:
            self._settle_after(case, ts_ns)
            self._drop(case, ts_ns, "closed")

    def _settle_after(self, case: LiquidationCase, ts_ns: int) -> None:
        bad = self._settler.cover_deficit(case.account_id, case.symbol, case.side, ts_ns)
        if bad:
            self.records.append(LiquidationRecord(
                ts_ns, case.symbol, case.account_id, case.side, 0, 0.0, case.trigger_mark_ticks, None, None,
                "takeover", self.policy.name, "full", bad_debt_minor=bad,
                liquidation_price_ticks=case.liquidation_price_ticks))

    def _record(self, case: LiquidationCase, got: FillSummary, venue: Venue, action: str, ts_ns: int,
                counterparty: Counterparty) -> None:
        if got.lots == 0:
            return
        self._end_wait(case, ts_ns)
        inst = self._instruments[case.symbol]
        vwap = got.vwap_ticks
        case.closed_lots += got.lots
        per = int_per_tick_lot(inst)
        at = max(1, round(vwap or 1))
        value = float(abs(per * at * got.lots)) if per is not None else float(abs(inst.notional(at, got.lots)))
        notional = value / inst.settle.minor_per_unit  # float(Fraction(n)) == float(n)
        self.records.append(LiquidationRecord(
            ts_ns, case.symbol, case.account_id, case.side, got.lots, notional, case.trigger_mark_ticks, vwap,
            slippage_bps(case.side, vwap, case.trigger_mark_ticks), venue, self.policy.name, action,  # type: ignore[arg-type]
            fee_minor=got.fee_minor, liquidation_price_ticks=case.liquidation_price_ticks,
            counterparty=counterparty, price_tick_lots=got.tick_lots, mark_ticks=self._marks.get(case.symbol, 0),
            found_ns=case.found_ns))

    def _record_offload(self, holder: str, symbol: str, long: bool, got: FillSummary, venue: Venue,
                        counterparty: Counterparty, ts_ns: int) -> None:
        """A lot the fund or a backstop sells out of the inventory it took over (``action="offload"``)."""
        if got.lots == 0:
            return
        inst = self._instruments[symbol]
        vwap = got.vwap_ticks
        mark = self._marks.get(symbol, 0)
        side = "long" if long else "short"
        notional = float(abs(inst.notional(max(1, round(vwap or 1)), got.lots))) / inst.settle.minor_per_unit
        self.records.append(LiquidationRecord(
            ts_ns, symbol, holder, side, got.lots, notional, mark, vwap, slippage_bps(side, vwap, mark), venue,
            self.policy.name, "offload", counterparty=counterparty, price_tick_lots=got.tick_lots, mark_ticks=mark))

    def _offload_fund(self, symbol: str, ts_ns: int) -> None:
        """The fund sells what it took over: at once to the book, or (auction venue) in the next batch."""
        settler = self._settler
        qty = settler.ledger.position(settler.fund, symbol).qty_lots
        if qty == 0:
            return
        if self.policy.execution.venue == "auction":
            if self._batch_close[symbol] is None:
                self._batch_close[symbol] = ts_ns + self.policy.execution.batch_interval_ms * NS_PER_MS
            return
        got = settler.offload_fund(symbol, self._liquidity[symbol], ts_ns)
        self._record_offload(settler.fund, symbol, qty > 0, got, "book", "market", ts_ns)

    def _offload_backstops(self, symbol: str, ts_ns: int) -> None:
        """Backstop providers work the due share of their inventory back into the book."""
        for provider, long, got in self._settler.offload_backstops(symbol, self._liquidity[symbol], ts_ns):
            self._record_offload(provider.account_id, symbol, long, got, "book", "market", ts_ns)
        ledger = self._settler.ledger
        self._holding[symbol] = any(ledger.position(b.account_id, symbol).qty_lots for b in self.backstops)

    # --- batches -----------------------------------------------------------------------------------------
    def _plan_batch(self, symbol: str, live: list[LiquidationCase], price: int, ts_ns: int
                    ) -> tuple[list[tuple[BatchOrder, LiquidationCase]], Fraction]:
        """Plan every member at the close mark, apply the caps; the orders and the notional reserved."""
        ex = self.policy.execution
        inst = self._instruments[symbol]
        orders = []
        batch_notional = 0.0
        reserved_total = Fraction(0)
        per_lot = float(abs(inst.notional(price, 1))) / inst.settle.minor_per_unit
        for case in sorted(live, key=LiquidationCase.sort_key):
            missing = self._missing_mark(case.account_id, symbol)
            if missing is not None:
                self._skip(case, ts_ns, "missing_mark", missing_symbol=missing)
                self._rejoin(case, ts_ns)
                continue
            m = self._margin(case.account_id, symbol)
            if not m.liquidatable:
                self._drop(case, ts_ns, "restored_before_batch", m)
                continue
            plan = plan_quantity(case, m, self.policy, inst, self._tiers[symbol], price, ts_ns)
            lots = plan.qty_lots
            if ex.max_account_notional is not None:
                lots = min(lots, int(ex.max_account_notional // per_lot))
            if ex.max_batch_notional is not None:
                lots = min(lots, int((ex.max_batch_notional - batch_notional) // per_lot))
            if lots <= 0:
                self._skip(case, ts_ns, "cap" if plan.qty_lots else plan.reason)
                self._rejoin(case, ts_ns)
                continue
            wanted = lots
            lots, reserved = self._reserve_lots(symbol, lots, price)
            if lots == 0:
                self._skip(case, ts_ns, "notional_cap", planned_lots=wanted)
                self._rejoin(case, ts_ns)
                continue
            reserved_total += reserved
            if lots < plan.qty_lots:
                self._skip(case, ts_ns, "notional_cap" if lots < wanted else "cap", planned_lots=plan.qty_lots,
                           allowed_lots=lots)
            else:
                self._end_wait(case, ts_ns)
            batch_notional += lots * per_lot
            bankrupt = bankruptcy_limit_of(case.side, inst, m.qty_lots, m.equity_exact, price)
            limit = order_limit_ticks(self.policy, case.side, bankrupt, m, inst, price, ts_ns, lots)
            self.audit.record(EventKind.LIQUIDATION_PLANNED, ts_ns, symbol=symbol, account_id=case.account_id,
                              qty_lots=lots, mode=plan.reason, position_lots=m.qty_lots, price_ticks=price,
                              equity_minor=math.floor(m.equity_exact), maintenance_minor=m.maintenance_minor,
                              bankruptcy_ticks=bankrupt, batch=True)
            orders.append((BatchOrder(case.account_id, case.side, lots, limit), case))
        return orders, reserved_total

    def _close_batch(self, symbol: str, ts_ns: int) -> None:
        """Plan every member at the close mark, apply caps, net, then auction or book the residual."""
        members, self._batch_members[symbol] = self._batch_members[symbol], {}
        self._batch_close[symbol] = None
        price = self._trigger_ticks(symbol)
        cases = self._cases[symbol]
        orders, reserved = self._plan_batch(symbol, [cases[a] for a in members if a in cases], price, ts_ns)
        try:
            self._execute_batch(symbol, orders, price, ts_ns)
        finally:  # the batch's orders completed or failed: their notional leaves liquidation
            self._release_notional(symbol, reserved)

    def _execute_batch(self, symbol: str, orders: list[tuple[BatchOrder, LiquidationCase]], price: int,
                       ts_ns: int) -> None:
        """Auction (with the fund's inventory), or net then book the residual; then the waterfall."""
        ex = self.policy.execution
        settler = self._settler
        fund_lots = settler.ledger.position(settler.fund, symbol).qty_lots if ex.venue == "auction" else 0
        if not orders and not fund_lots:
            return
        cases = self._cases[symbol]
        filled: dict[str, int] = {}
        residual = [o for o, _ in orders]
        book = self._liquidity[symbol]
        if ex.venue == "auction":
            sides = [residual] if ex.net_opposite else [[o for o in residual if o.side == s] for s in ("long", "short")]
            for k, group in enumerate(sides):
                fund_part = fund_lots if ex.net_opposite or (k == 0) == (fund_lots > 0) else 0
                if not group and not fund_part:
                    continue
                res = clear_batch(settler, symbol, group, book, price, ts_ns, band_bps=ex.band_bps,
                                  depth_levels=ex.depth_levels, include_backstops=ex.include_backstop_bids,
                                  backstop_discount_bps=self.policy.takeover.backstop_discount_bps,
                                  fund_lots=fund_part)
                for (aid, cp), got in res.fills.items():
                    venue: Venue = "netting" if cp in ("peer", "fund") else "auction"
                    self._record(cases[aid], got, venue, "partial", ts_ns, cp)  # type: ignore[arg-type]
                    filled[aid] = filled.get(aid, 0) + got.lots
                for cp, got in res.fund_offload.items():
                    self._record_offload(settler.fund, symbol, fund_part > 0, got,
                                         "netting" if cp == "peer" else "auction", cp, ts_ns)  # type: ignore[arg-type]
                if any(cp == "backstop" for _, cp in res.fills) or "backstop" in res.fund_offload:
                    self._holding[symbol] = True
        else:
            if ex.net_opposite:
                netted, residual = net_orders(settler, symbol, residual, price, ts_ns)
                for aid, got in netted.items():
                    self._record(cases[aid], got, "netting", "partial", ts_ns, "peer")
                    filled[aid] = got.lots
            for o in residual:
                case = cases[o.account_id]
                got = self._book_order(case, self._margin(o.account_id, symbol), o.qty_lots, o.limit_ticks, ts_ns)
                self._record(case, got, "book", "partial", ts_ns, "market")
                filled[o.account_id] = filled.get(o.account_id, 0) + got.lots
        for order, case in orders:
            done = filled.get(order.account_id, 0)
            if order.qty_lots - done > 0 and order.account_id in cases:
                self._absorb(case, order.qty_lots - done, ts_ns)
            if order.account_id in cases:
                self._after_action(case, ts_ns)
                if order.account_id in cases and ex.carry_over:
                    self._rejoin(case, ts_ns)
        self._offload_fund(symbol, ts_ns)  # what is left of the fund's inventory: the next batch

    def _rejoin(self, case: LiquidationCase, ts_ns: int) -> None:
        """Carry a still-liquidatable case into the next batch."""
        members = self._batch_members[case.symbol]
        if case.account_id not in members:
            members[case.account_id] = None
        if self._batch_close[case.symbol] is None:
            self._batch_close[case.symbol] = ts_ns + self.policy.execution.batch_interval_ms * NS_PER_MS


__all__ = ["ExecutionMixin"]
