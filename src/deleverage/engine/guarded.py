"""The safeguards the engine drives itself: fund drawdown halt, notional cap, dynamic margin, marks.

:class:`GuardedMixin` is mixed into :class:`deleverage.engine.engine.LiquidationEngine` (state lives
on the engine, set up in its ``__init__``):

* **fund drawdown halt** — after fund postings the fund balance is reported to
  ``Safeguards.fund_drawdown_fired``; a fired halt stops execution (not detection) on every symbol
  until the drawdown clears or ``max_pause_ms`` passes (the safeguards' events are written as is);
* **notional cap** — every liquidation order reserves its notional (settle units, exact) with
  ``reserve_notional`` before it is sent; what does not fit waits (``skipped``, ``notional_cap``) and
  the reservation is released when the order completes or fails (a book order at the end of its
  waterfall, a batch at its close, a Dutch sale when it ends);
* **dynamic margin** — the tier table in force is ``tiers_at(symbol, ts, base)``: it changes only at
  announced step boundaries; the float screen is then rebuilt (everyone re-screened once);
  concentration is fed as the largest trader's share of open interest at each step;
* **missing marks** — a cross account holding a position in a symbol with no mark yet cannot be
  valued: it waits (``skipped``, ``missing_mark``) instead of failing a call half-way.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from deleverage.config.events import EventKind

if TYPE_CHECKING:
    from deleverage.config.events import AuditLog
    from deleverage.core.instruments import Instrument
    from deleverage.core.ledger import Ledger
    from deleverage.core.tiers import MarginTiers
    from deleverage.engine.detect import SymbolDetector
    from deleverage.engine.dutch_exec import DutchExecutor


class GuardedMixin:
    """Fund halt, notional cap, dynamic margin and missing-mark waits of a :class:`LiquidationEngine`."""

    if TYPE_CHECKING:  # the engine's state this mixin reads (engine.py owns it)
        ledger: Ledger
        audit: AuditLog
        _safeguards: Any
        _settler: Any
        _instruments: dict[str, Instrument]
        _tiers: dict[str, MarginTiers]
        _base_tiers: dict[str, MarginTiers]
        _detectors: dict[str, SymbolDetector]
        _cleared: dict[str, dict[str, int]]
        _marks: dict[str, int]
        _dutch: DutchExecutor | None
        _fund_code: str
        _fund_reported: int | None
        _fund_halted: bool
        _cap_on: bool
        _step_ns: int
        _concentration_step: dict[str, int]
        _dutch_reserved: dict[tuple[str, str], Fraction]
        _mark_waits: dict[str, dict[str, tuple[str, int, int]]]

        def _record_safeguard(self, event: Any, symbol: str | None, ts_ns: int) -> None: ...
        def _reindex(self, symbol: str, account_id: str) -> None: ...

    def _report_fund(self, ts_ns: int) -> bool:
        """Report the fund balance to the drawdown halt (after fund postings); True if it changed state.

        Reported when the balance changed since the last report, and on every call while the fund
        halt holds (so the ``max_pause`` resume is written when it is due). The fund is watched in
        the settle asset of the engine's first instrument.
        """
        balance = max(0, self._settler.fund_balance(self._fund_code))
        if balance == self._fund_reported and not self._fund_halted:
            return False
        self._fund_reported = balance
        self._safeguards.fund_drawdown_fired(balance, ts_ns)
        events = self._safeguards.drain_events() if hasattr(self._safeguards, "drain_events") else []
        for event in events:
            self._record_safeguard(event, None, ts_ns)
        return bool(events)

    def _feed_concentration(self, symbol: str, ts_ns: int) -> None:
        """At the first call of each margin step: the largest trader's share of open interest.

        Share of account i = |position_i| / open interest, open interest = the larger of the traders'
        total long and total short (so a share is in [0, 1]); read from the float account book, which
        mirrors the ledger's trader positions. The symbol's scale uses the largest share.
        """
        step = ts_ns // self._step_ns
        if self._concentration_step.get(symbol) == step or symbol not in self._detectors:
            return
        self._concentration_step[symbol] = step
        share = self._detectors[symbol].largest_share()
        for event in self._safeguards.on_concentration(symbol, share, ts_ns) or ():
            self._record_safeguard(event, symbol, ts_ns)

    def _apply_margin_steps(self, ts_ns: int) -> None:
        """Switch to the tier table in force (announced scales, effective at step boundaries only).

        A new table moves every liquidation price: the symbol's float screen is rebuilt under it
        (every account re-screened once, the checked-safe memo dropped) and cross accounts'
        other-symbol maintenance is re-read on every symbol.
        """
        changed = []
        for symbol, base in self._base_tiers.items():
            tiers = self._safeguards.tiers_at(symbol, ts_ns, base)
            previous = self._tiers[symbol]
            if tiers is previous:
                continue
            self._tiers[symbol] = tiers
            det = self._detectors.get(symbol)
            rescreened = 0
            if det is not None:
                self._cleared[symbol].clear()
                rescreened = det.retier(tiers)
            self.audit.record(EventKind.MARGIN_CHANGED, ts_ns, symbol=symbol, source="engine", phase="applied",
                              scale=self._safeguards.margin_scale(symbol, ts_ns), tiers=tiers.name,
                              previous_tiers=previous.name, rescreened_accounts=rescreened)
            changed.append(symbol)
        if changed and len(self._instruments) > 1:
            for symbol, det in self._detectors.items():
                for aid in det.cross_accounts():
                    self._reindex(symbol, aid)

    def _reserve_lots(self, symbol: str, lots: int, price_ticks: int) -> tuple[int, Fraction]:
        """Lots of an order that fit under ``max_notional_in_liquidation`` and the notional reserved.

        Notional in settle units at ``price_ticks``, exact; what is granted beyond whole lots is
        given back at once. Without a cap: every lot, nothing reserved.
        """
        if not self._cap_on or lots <= 0:
            return lots, Fraction(0)
        inst = self._instruments[symbol]
        per_lot = abs(inst.notional(price_ticks, 1)) / inst.settle.minor_per_unit
        if per_lot <= 0:
            return lots, Fraction(0)
        granted = self._safeguards.reserve_notional(symbol, per_lot * lots)
        fit = min(lots, math.floor(granted / per_lot))
        keep = per_lot * fit
        if granted > keep:
            self._safeguards.release_notional(symbol, granted - keep)
        return fit, keep

    def _release_notional(self, symbol: str, amount: Fraction) -> None:
        if amount:
            self._safeguards.release_notional(symbol, amount)

    def _release_ended_sales(self) -> None:
        """Give back the notional of Dutch sales that ended (sold out, yanked, case closed)."""
        sales = self._dutch.sales if self._dutch is not None else {}
        for key in [k for k in self._dutch_reserved if k not in sales]:
            self._release_notional(key[0], self._dutch_reserved.pop(key))

    # --- marks missing ------------------------------------------------------------------------------
    def _missing_mark(self, account_id: str, symbol: str) -> str | None:
        """Another symbol without a mark yet where the account holds a position (None: all valued).

        ``symbol`` itself is valued at the trigger price (an oracle policy before its first mark).
        """
        if len(self._marks) == len(self._instruments):
            return None
        for s in self._instruments:
            if s != symbol and s not in self._marks and self.ledger.position(account_id, s).qty_lots:
                return s
        return None

    def _wait_for_mark(self, symbol: str, account_id: str, missing: str, ts_ns: int) -> None:
        """An account that cannot be valued waits (``skipped``, reason ``missing_mark``, once per wait)."""
        waits = self._mark_waits[symbol]
        wait = waits.get(account_id)
        if wait is not None:
            waits[account_id] = (wait[0], wait[1], wait[2] + 1)
            return
        waits[account_id] = (missing, ts_ns, 1)
        self.audit.record(EventKind.SKIPPED, ts_ns, symbol=symbol, account_id=account_id, reason="missing_mark",
                          missing_symbol=missing)

    def _end_mark_wait(self, symbol: str, account_id: str, ts_ns: int) -> None:
        wait = self._mark_waits[symbol].pop(account_id, None)
        if wait is not None:
            self.audit.record(EventKind.WAIT_ENDED, ts_ns, symbol=symbol, account_id=account_id,
                              reason="missing_mark", waited_ns=ts_ns - wait[1], ticks=wait[2],
                              last_missing_symbol=wait[0])

    def _first_mark(self, symbol: str) -> None:
        """A symbol's first mark: accounts waiting for it are re-screened with it at their next tick."""
        for sym, waits in self._mark_waits.items():
            for aid in [a for a, w in waits.items() if w[0] == symbol]:
                self._reindex(sym, aid)


__all__ = ["GuardedMixin"]
