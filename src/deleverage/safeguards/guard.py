"""The ``Safeguards`` facade: every safeguard of a policy, per symbol, behind the engine's calls.

The engine calls :meth:`Safeguards.on_mark`, :meth:`~Safeguards.on_oracle` and
:meth:`~Safeguards.advance` with explicit timestamps and writes the returned :class:`SafeguardEvent`
objects to its ``AuditLog`` unchanged (``audit.record(e.kind, e.ts_ns, symbol=e.symbol, **e.data)``).
Queries that let time pass (:meth:`~Safeguards.execution_allowed`,
:meth:`~Safeguards.fund_drawdown_fired`) may cause a transition too; its event is queued and returned
by the next ``on_mark`` / ``on_oracle`` / ``advance`` / :meth:`~Safeguards.drain_events` call, so
nothing is lost.

What halts: the price band (per symbol) and, when ``safeguards.fund_drawdown_halt`` is set, a fund
drawdown (all symbols). A halt stops *execution* only; detection goes on. Each halt lifts when its
condition clears or after ``safeguards.max_pause_ms`` anyway (``execution_resumed``, reason
``max_pause``).

Errors: one clock per symbol — every call for a symbol must carry a ``ts_ns`` at or after the previous
one (else ``SimulationError`` naming both times); the fund has its own clock. Malformed numbers (NaN,
inf, bool, a price ≤ 0) raise ``InvalidInput`` naming the field, and leave the state unchanged.
Implausible but well-formed oracle prints (stale, jumpy, far from the mark) are accepted and reported
as ``oracle_invalid`` events: every invalid print is reported, and on marks/advance a new invalid
reason is reported once (a validity that persists is not repeated until it has cleared).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from deleverage.config.events import EventKind
from deleverage.config.policy import LiquidationPolicy
from deleverage.core.tiers import MarginTiers
from deleverage.errors import InvalidInput, SimulationError
from deleverage.safeguards.breakers import (
    NS_PER_MS,
    FundDrawdownTrigger,
    HaltLatch,
    NotionalCap,
    PriceBandBreaker,
    PriceValue,
    Transition,
    check_price,
    check_ts,
)
from deleverage.safeguards.dynamic_margin import PPM, DynamicMargin
from deleverage.safeguards.oracle import OracleValidity, Verdict


@dataclass(frozen=True, slots=True)
class SafeguardEvent:
    """A safeguard decision, shaped for ``AuditLog.record(kind, ts_ns, symbol=..., **data)``."""

    kind: EventKind
    ts_ns: int
    symbol: str | None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class _SymbolState:
    band: PriceBandBreaker | None
    oracle: OracleValidity
    cap: NotionalCap
    margin: DynamicMargin | None
    clock_ns: int | None = None
    last_mark: PriceValue | None = None
    oracle_reported: str | None = None  # invalid reason already reported (None: valid or not yet)
    scale_ppm: int = PPM
    announced_step: int | None = None
    announced_ppm: int = PPM


class Safeguards:
    """Circuit breakers, oracle checks, caps, fund drawdown and dynamic margin of one policy."""

    def __init__(
        self,
        policy: LiquidationPolicy,
        *,
        oracle_max_jump_bps: float | None = None,
        oracle_jump_window_ms: int = 10_000,
        oracle_max_confidence_bps: float | None = None,
        vol_sample_ms: int = 1_000,
    ) -> None:
        self.policy = policy
        self.config = policy.safeguards
        self._oracle_kwargs: dict[str, Any] = {
            "max_age_ns": _ms_to_ns(self.config.oracle_max_age_ms),
            "max_divergence_bps": self.config.oracle_max_divergence_bps,
            "max_jump_bps": oracle_max_jump_bps,
            "jump_window_ns": oracle_jump_window_ms * NS_PER_MS,
            "max_confidence_bps": oracle_max_confidence_bps,
        }
        OracleValidity(**self._oracle_kwargs)  # validate the extra limits now, not at the first print
        self._vol_sample_ms = vol_sample_ms
        self._symbols: dict[str, _SymbolState] = {}
        self._pending: list[SafeguardEvent] = []
        self.fund = FundDrawdownTrigger(policy.adl.drawdown_fraction, policy.adl.drawdown_window_ms * NS_PER_MS)
        self._fund_halt_fraction = (
            None if self.config.fund_drawdown_halt is None else Fraction(str(self.config.fund_drawdown_halt))
        )
        self._fund_latch = HaltLatch(self.config.max_pause_ms * NS_PER_MS)
        self._fund_clock: int | None = None
        self._fund_last: dict[str, Any] = {}

    # --- per-symbol state ---------------------------------------------------------------------------
    def _state(self, symbol: object) -> _SymbolState:
        if not isinstance(symbol, str) or not symbol:
            raise InvalidInput("symbol", symbol, "must be a non-empty string")
        state = self._symbols.get(symbol)
        if state is None:
            cfg = self.config
            band = None
            if cfg.price_band_bps is not None:
                band = PriceBandBreaker(
                    cfg.price_band_bps, cfg.band_window_ms * NS_PER_MS, cfg.max_pause_ms * NS_PER_MS
                )
            margin = None
            if self.policy.dynamic_margin.enabled:
                margin = DynamicMargin(self.policy.dynamic_margin, sample_ms=self._vol_sample_ms)
            state = _SymbolState(
                band=band, oracle=OracleValidity(**self._oracle_kwargs),
                cap=NotionalCap(cfg.max_notional_in_liquidation), margin=margin,
            )
            self._symbols[symbol] = state
        return state

    @staticmethod
    def _check_clock(symbol: str, state: _SymbolState, ts_ns: object) -> int:
        ts = check_ts(ts_ns)
        if state.clock_ns is not None and ts < state.clock_ns:
            raise SimulationError(
                f"symbol {symbol}: ts_ns={ts} is before the previous ts_ns={state.clock_ns}"
            )
        return ts

    # --- inputs -------------------------------------------------------------------------------------
    def on_mark(self, symbol: str, mark_ticks: int, ts_ns: int) -> list[SafeguardEvent]:
        """A new mark: roll the band, the volatility and the margin steps; check the oracle against it."""
        state = self._state(symbol)
        mark = check_price(mark_ticks, "mark_ticks")
        ts = self._check_clock(symbol, state, ts_ns)
        state.clock_ns, state.last_mark = ts, mark
        if state.band is not None:
            self._transition(state.band.on_mark(ts, mark), symbol)
        if state.margin is not None:
            state.margin.observe_mark(ts, mark)
        self._roll(symbol, state, ts)
        return self.drain_events()

    def on_oracle(
        self, symbol: str, price_ticks: int, ts_ns: int, *, confidence_ticks: object | None = None
    ) -> list[SafeguardEvent]:
        """An oracle print; an invalid one (stale, jumpy, divergent) is reported as ``oracle_invalid``."""
        state = self._state(symbol)
        check_price(price_ticks, "oracle_price_ticks")
        ts = self._check_clock(symbol, state, ts_ns)
        state.oracle.on_print(ts, price_ticks, confidence_ticks)
        state.clock_ns = ts
        verdict = state.oracle.verdict(ts, state.last_mark)
        if verdict.valid:
            state.oracle_reported = None
        else:
            self._emit(EventKind.ORACLE_INVALID, ts, symbol, {"trigger": "print", **verdict.as_data()})
            state.oracle_reported = verdict.reason
        return self.drain_events()

    def on_concentration(self, symbol: str, share: float, ts_ns: int) -> list[SafeguardEvent]:
        """The symbol's concentration measure (a share of open interest, in [0, 1]) for dynamic margin."""
        state = self._state(symbol)
        ts = self._check_clock(symbol, state, ts_ns)
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise InvalidInput("share", share, "a share of open interest must be a number in [0, 1]")
        if state.margin is not None:
            state.margin.observe_concentration(ts, share)
        state.clock_ns = ts
        return self.drain_events()

    def advance(self, ts_ns: int) -> list[SafeguardEvent]:
        """Time passes for every symbol (and the fund): windows roll, halts clear or time out."""
        ts = check_ts(ts_ns)
        for symbol, state in self._symbols.items():
            self._check_clock(symbol, state, ts)
        if self._fund_clock is not None and ts < self._fund_clock:
            raise SimulationError(f"fund: ts_ns={ts} is before the previous ts_ns={self._fund_clock}")
        for symbol, state in self._symbols.items():
            state.clock_ns = ts
            if state.band is not None:
                self._transition(state.band.advance(ts), symbol)
            self._roll(symbol, state, ts)
        if self._fund_clock is not None:
            self._fund_clock = ts
            drawdown = self.fund.at(ts)
            if drawdown is not None:
                self._fund_halt_update(ts, drawdown.peak_minor, drawdown.balance_minor, drawdown.as_data())
        return self.drain_events()

    def _roll(self, symbol: str, state: _SymbolState, ts: int) -> None:
        if state.margin is not None:
            self._margin_steps(symbol, state, ts)
        if state.oracle.checks_enabled:
            verdict = state.oracle.verdict(ts, state.last_mark)
            if verdict.valid:
                state.oracle_reported = None
            elif verdict.reason != state.oracle_reported:
                self._emit(EventKind.ORACLE_INVALID, ts, symbol, {"trigger": "check", **verdict.as_data()})
                state.oracle_reported = verdict.reason

    def _margin_steps(self, symbol: str, state: _SymbolState, ts: int) -> None:
        margin = state.margin
        if margin is None:
            return
        current = margin.in_effect(ts)
        scale_ppm = PPM if current is None else current.scale_ppm
        if scale_ppm != state.scale_ppm:
            data = {"phase": "effective", "previous_scale_ppm": state.scale_ppm}
            data.update(current.as_data() if current is not None else {"scale_ppm": PPM})
            self._emit(EventKind.MARGIN_CHANGED, ts, symbol, data)
            state.scale_ppm = scale_ppm
        step = ts // margin.step_ns
        if state.announced_step != step:
            announcement = margin.announce(ts)
            state.announced_step = step
            if announcement.scale_ppm != state.announced_ppm:
                data = {"phase": "announced", "previous_scale_ppm": state.announced_ppm, **announcement.as_data()}
                self._emit(EventKind.MARGIN_CHANGED, ts, symbol, data)
            state.announced_ppm = announcement.scale_ppm

    # --- queries ------------------------------------------------------------------------------------
    def execution_allowed(self, symbol: str, ts_ns: int) -> bool:
        """May liquidation orders for ``symbol`` be sent at ``ts_ns``? (Moves the symbol's clock.)"""
        state = self._state(symbol)
        ts = self._check_clock(symbol, state, ts_ns)
        state.clock_ns = ts
        if state.band is not None:
            self._transition(state.band.advance(ts), symbol)
            if not state.band.allowed(ts):
                return False
        return self._fund_latch.allowed(ts)

    def oracle_valid(self, symbol: str, ts_ns: int, mark_ticks: int | None = None) -> Verdict:
        """The oracle's verdict at ``ts_ns`` against ``mark_ticks`` (default: the last mark). Pure."""
        state = self._state(symbol)
        ts = self._check_clock(symbol, state, ts_ns)
        mark = state.last_mark if mark_ticks is None else mark_ticks
        return state.oracle.verdict(ts, mark)

    def fund_drawdown_fired(self, fund_balance_minor: int, ts_ns: int) -> bool:
        """Record the fund balance; True when its drawdown over the ADL window reaches the ADL fraction.

        Uses ``policy.adl.drawdown_fraction`` / ``drawdown_window_ms`` (the engine acts on it when
        ``adl.trigger == "fund_drawdown"``). With ``safeguards.fund_drawdown_halt`` set, a drawdown at
        or above that fraction also halts execution on every symbol (events queued).
        """
        ts = check_ts(ts_ns)
        if self._fund_clock is not None and ts < self._fund_clock:
            raise SimulationError(f"fund: ts_ns={ts} is before the previous ts_ns={self._fund_clock}")
        drawdown = self.fund.observe(ts, fund_balance_minor)
        self._fund_clock = ts
        self._fund_last = drawdown.as_data()
        self._fund_halt_update(ts, drawdown.peak_minor, drawdown.balance_minor, drawdown.as_data())
        return drawdown.fired

    def _fund_halt_update(self, ts: int, peak: int, balance: int, data: dict[str, Any]) -> None:
        self._fund_last = data
        if self._fund_halt_fraction is None:
            return
        outside = peak > 0 and (peak - balance) >= self._fund_halt_fraction * peak
        since = self._fund_latch.halted_since_ns
        change = self._fund_latch.update(ts, outside)
        if change is None:
            return
        action, reason = change
        payload = {"reason": "fund_drawdown" if action == "halted" else reason,
                   "halt_fraction": float(self._fund_halt_fraction), **data}
        if action == "resumed" and since is not None:
            payload.update(halted_since_ns=since, paused_ns=ts - since, still_outside=outside)
        kind = EventKind.EXECUTION_HALTED if action == "halted" else EventKind.EXECUTION_RESUMED
        self._emit(kind, ts, None, payload)

    def notional_room(self, symbol: str) -> float | None:
        """Notional that may still enter liquidation for ``symbol`` (None: no cap)."""
        room = self._state(symbol).cap.room()
        return None if room is None else float(room)

    def reserve_notional(self, symbol: str, notional: object) -> Fraction:
        """Reserve notional entering liquidation; returns the exact amount granted (≤ requested)."""
        return self._state(symbol).cap.reserve(notional)

    def release_notional(self, symbol: str, notional: object) -> None:
        """Release notional that left liquidation (filled, cancelled, taken over)."""
        self._state(symbol).cap.release(notional)

    def margin_scale(self, symbol: str, ts_ns: int) -> float:
        """The maintenance scale in effect at ``ts_ns`` (1.0 when dynamic margin is off)."""
        margin = self._state(symbol).margin
        return 1.0 if margin is None else margin.scale_at(check_ts(ts_ns))

    def tiers_at(self, symbol: str, ts_ns: int, base_tiers: MarginTiers) -> MarginTiers:
        """The tier table in force at ``ts_ns`` (``base_tiers`` itself when dynamic margin is off)."""
        margin = self._state(symbol).margin
        if margin is None:
            return base_tiers
        return margin.tiers_at(check_ts(ts_ns), base_tiers)

    # --- events and state ---------------------------------------------------------------------------
    def _emit(self, kind: EventKind, ts: int, symbol: str | None, data: dict[str, Any]) -> None:
        self._pending.append(SafeguardEvent(kind, ts, symbol, data))

    def _transition(self, transition: Transition | None, symbol: str) -> None:
        if transition is None:
            return
        kind = EventKind.EXECUTION_HALTED if transition.action == "halted" else EventKind.EXECUTION_RESUMED
        self._emit(kind, transition.ts_ns, symbol, dict(transition.data))

    def drain_events(self) -> list[SafeguardEvent]:
        """Events queued since the last call (in the order they happened)."""
        events, self._pending = self._pending, []
        return events

    def state(self) -> dict[str, Any]:
        """Summary numbers: per-symbol halts, oracle, caps, margin scale; the fund's drawdown."""
        symbols: dict[str, Any] = {}
        for symbol, st in sorted(self._symbols.items()):
            symbols[symbol] = {
                "clock_ns": st.clock_ns,
                "band": None if st.band is None else st.band.state(),
                "execution_allowed": (st.band is None or st.band.allowed(st.clock_ns or 0))
                and self._fund_latch.allowed(st.clock_ns or 0),
                "oracle_invalid_reason": st.oracle_reported,
                "notional_in_liquidation": float(st.cap.in_liquidation),
                "notional_room": self.notional_room(symbol),
                "margin_scale_ppm": st.scale_ppm,
                "announced_scale_ppm": st.announced_ppm,
            }
        fund = {"halted": self._fund_latch.halted, "armed": self._fund_latch.armed,
                "halted_since_ns": self._fund_latch.halted_since_ns, **self._fund_last}
        return {"symbols": symbols, "fund": fund, "pending_events": len(self._pending)}


def _ms_to_ns(value: int | None) -> int | None:
    return None if value is None else value * NS_PER_MS


__all__ = ["SafeguardEvent", "Safeguards"]
