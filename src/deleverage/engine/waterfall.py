"""Settlement and the loss waterfall: fills, fees, backstops, takeover, insurance fund, ADL, bad debt.

Every money movement goes through the ledger (``apply_fill`` for trades, ``transfer`` for fees and
cover) and is written to the audit log with the numbers behind it. The order of the waterfall
(docs/engine.md step 9):

1. **fees** — ``liquidation_fee_rate × closed notional``, capped by the equity left above zero and by
   the paying wallet (Drift/Binance: a fee never makes an account bankrupt); the event names where
   it went (``fee_to``: insurance fund, fee pool, or the liquidator = the fill's counterparty);
2. **backstop** providers, in registration order, accept or decline by rule (engine/backstop.py);
3. **takeover** by the insurance fund at the bankruptcy price (Binance "Insurance Fund" FAQ), then
   the fund offloads to the book (``fund_offloaded``);
4. **insurance fund** covers a negative balance (``fund_drawn``);
5. **ADL** when the fund is exhausted (or fell ``drawdown_fraction`` from its peak within the window,
   OKX): the opposite side ranked by ``engine.adl`` scores, ``allocate`` the bankrupt lots, closed at
   the bankruptcy price; a cash shortfall is covered by the smallest pro-rata haircut of the
   top-ranked profits (``pro_rata_haircut``);
6. **socialised loss** only if the policy allows it, else **bad debt** stays on the account.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from deleverage.config.events import AuditLog, EventKind
from deleverage.config.policy import LiquidationPolicy
from deleverage.core import _kernels as kernels
from deleverage.core.instruments import Instrument
from deleverage.core.ledger import Ledger, isolated_account_id
from deleverage.core.tiers import MarginTiers
from deleverage.engine.adl import allocate, pro_rata_haircut
from deleverage.engine.backstop import BackstopProvider
from deleverage.engine.detect import AccountMargin, SymbolDetector, exact_margin
from deleverage.engine.exact_fast import int_per_tick_lot
from deleverage.errors import SimulationError
from deleverage.venues.liquidity import fill_of, split_vwap

ADL_TOP_K = 64


@dataclass(slots=True)
class FillSummary:
    """Lots and Σ price×lots of a group of fills, and the fees they cost the liquidated account."""

    lots: int = 0
    tick_lots: int = 0
    fee_minor: int = 0

    def add(self, lots: int, price_ticks: int, fee_minor: int = 0) -> None:
        self.lots += lots
        self.tick_lots += lots * price_ticks
        self.fee_minor += fee_minor

    @property
    def vwap_ticks(self) -> float | None:
        return self.tick_lots / self.lots if self.lots else None


class FundMonitor:
    """Peak of the insurance fund within a window, for the OKX drawdown trigger."""

    def __init__(self, window_ms: int) -> None:
        self.window_ns = window_ms * 1_000_000
        self._history: deque[tuple[int, int]] = deque()

    def observe(self, ts_ns: int, balance_minor: int) -> None:
        self._history.append((ts_ns, balance_minor))
        while self._history and self._history[0][0] < ts_ns - self.window_ns:
            self._history.popleft()

    def drawdown(self, balance_minor: int) -> float:
        peak = max((b for _, b in self._history), default=balance_minor)
        return 0.0 if peak <= 0 else max(0.0, (peak - balance_minor) / peak)


def adl_scores(detector: SymbolDetector, ints: np.ndarray, mark: float, ranking: str) -> np.ndarray:
    """Vectorised ADL scores (``engine.adl``: bitmex, leverage_pnl = Binance, hyperliquid, pnl,
    offsetting) for book slots ``ints``, from the float account book (settlement units)."""
    book = detector.book
    slots = np.array([book.slot_of(int(i)) for i in ints], np.int64) if ints.size else np.zeros(0, np.int64)
    qc, entry, balance = book.qc[slots], book.entry_price[slots], book.balance[slots]
    if book.inverse:
        pnl = qc * (1.0 / entry - 1.0 / mark)
        entry_notional, mark_notional = np.abs(qc) / entry, np.abs(qc) / mark
    else:
        pnl = qc * (mark - entry)
        entry_notional, mark_notional = np.abs(qc) * entry, np.abs(qc) * mark
    if ranking == "offsetting":
        return np.abs(qc)
    if ranking == "pnl":
        return pnl
    equity = balance + pnl
    with np.errstate(divide="ignore", invalid="ignore"):
        if ranking == "leverage_pnl":  # Binance: max(0, UPnL)/max(1, WB) × MM/(WB + UPnL)
            ratio = np.empty(slots.size, np.float64)
            kernels.margin_ratios_kernel(qc, book.eq0[slots], book.other_maintenance[slots], mark, book.inverse,
                                         *book.tiers.arrays(), ratio)
            ratio = np.where(equity > 0, ratio, 0.0)
            return np.maximum(pnl, 0.0) / np.maximum(balance, 1.0) * ratio
        if ranking == "hyperliquid":  # (mark/entry) × notional / account value; shorts mirrored
            move = np.where(qc > 0, mark / entry, entry / mark)
            score = move * mark_notional / np.where(equity > 0, equity, 1.0)
            return np.where(equity > 0, score, np.inf)
        pct = pnl / entry_notional  # BitMEX
        lev = np.where(equity > 0, mark_notional / np.where(equity > 0, equity, 1.0), 0.0)
        score = np.where(pct >= 0, pct * lev, np.where(lev > 0, pct / np.where(lev > 0, lev, 1.0), 0.0))
    return np.where(equity <= 0, np.where(pct > 0, np.inf, -np.inf), score)


def queue_order(scores: np.ndarray, sizes: np.ndarray, name_of: Callable[[int], str], k: int) -> list[int]:
    """Positions of the best ``k`` (or more, when ties at the cut are all kept) in queue order.

    Queue order = score desc, size desc, account id asc (``engine.adl.allocate``), exact: every
    position tied with the k-th at the cut is kept and ordered by size then id (NaN scores last).
    Only the tied group at the cut reads account ids, so a large tie costs O(tie) strings.
    """
    count = scores.shape[0]
    scores = np.where(np.isnan(scores), -np.inf, scores)
    candidates = np.arange(count)
    if count > k:
        kth = np.partition(scores, count - k)[count - k]  # the k-th largest score
        above = np.flatnonzero(scores > kth)
        tied = np.flatnonzero(scores == kth)
        need = k - above.size
        if tied.size > need:  # narrow the tie by size before ordering by id
            tied_sizes = sizes[tied]
            kth_size = np.partition(tied_sizes, tied.size - need)[tied.size - need]
            tied = tied[tied_sizes >= kth_size]
        candidates = np.concatenate([above, tied])
    return sorted(candidates.tolist(), key=lambda j: (-scores[j], -sizes[j], name_of(j)))


class Settler:
    """Posts fills, fees and waterfall transfers to the ledger and records each one."""

    def __init__(self, *, ledger: Ledger, policy: LiquidationPolicy, instruments: Mapping[str, Instrument],
                 tiers: Mapping[str, MarginTiers], audit: AuditLog, backstops: list[BackstopProvider],
                 insurance_fund: str, fee_pool: str, market: str, marks: Mapping[str, int],
                 detectors: Mapping[str, SymbolDetector], is_active: Callable[[str, str], bool]) -> None:
        self.ledger = ledger
        self.policy = policy
        self.instruments = instruments
        self.tiers = tiers
        self.audit = audit
        self.backstops = backstops
        self.fund = insurance_fund
        self.fee_pool = fee_pool
        self.market = market
        self.marks = marks
        self.detectors = detectors
        self.is_active = is_active
        self.changed: set[str] = set()
        self.fund_monitor = FundMonitor(policy.adl.drawdown_window_ms)
        self.bad_debt_minor: dict[str, int] = {}
        self.adl_lots = 0
        self.adl_haircut_minor = 0
        self.socialized_minor = 0
        self.fund_drawn_minor = 0
        self._fee_ppm = round(policy.fees.liquidation_fee_rate * 1_000_000)

    # --- helpers --------------------------------------------------------------------------------------
    def margin(self, account_id: str, symbol: str, marks: Mapping[str, int] | None = None) -> AccountMargin:
        return exact_margin(self.ledger, account_id, symbol, marks or self.marks, self.instruments, self.tiers)

    def fund_balance(self, code: str) -> int:
        return self.ledger.balance(self.fund, code)

    def observe_fund(self, ts_ns: int) -> None:
        codes = {i.settle.code for i in self.instruments.values()}
        for code in sorted(codes):
            self.fund_monitor.observe(ts_ns, self.fund_balance(code))

    def adl_mode(self, code: str) -> bool:
        """True when the policy's ADL trigger fires: fund exhausted, or its drawdown over the window."""
        adl = self.policy.adl
        if adl.trigger == "never" or adl.ranking == "none":
            return False
        balance = self.fund_balance(code)
        if balance <= 0:
            return True
        return adl.trigger == "fund_drawdown" and self.fund_monitor.drawdown(balance) >= adl.drawdown_fraction

    # --- fills and fees -------------------------------------------------------------------------------
    def fill(self, account_id: str, symbol: str, side: str, counterparty: str, price_ticks: int,
             lots: int, ts_ns: int, reason: str, *, check_counterparty: bool = False) -> int:
        """The liquidated account closes ``lots`` against ``counterparty``; returns the fee charged."""
        inst = self.instruments[symbol]
        buyer, seller = (counterparty, account_id) if side == "long" else (account_id, counterparty)
        if check_counterparty:
            cp_qty = self.ledger.position(counterparty, symbol).qty_lots
            reduces = (cp_qty < 0) if side == "long" else (cp_qty > 0)
            if not reduces or abs(cp_qty) < lots:
                raise SimulationError(f"{counterparty} cannot reduce {lots} lots in {symbol}")
        self.ledger.apply_fill(buyer=buyer, seller=seller, instrument=inst, price_ticks=price_ticks,
                               qty_lots=lots, ts_ns=ts_ns, reason=reason, reduce_only_for=account_id)
        self.changed.update((account_id, counterparty))
        return self.charge_fee(account_id, symbol, price_ticks, lots, counterparty, ts_ns)

    def charge_fee(self, account_id: str, symbol: str, price_ticks: int, lots: int, counterparty: str,
                   ts_ns: int) -> int:
        """Liquidation fee on the closed notional, capped by remaining margin and the paying wallet."""
        if self._fee_ppm == 0:
            return 0
        inst = self.instruments[symbol]
        per = int_per_tick_lot(inst)
        if per is not None and type(price_ticks) is int and type(lots) is int and price_ticks > 0:
            raw = abs(per * price_ticks * lots) * self._fee_ppm // 1_000_000  # the same floor, in ints
        else:
            raw = int(abs(inst.notional(price_ticks, lots)) * self._fee_ppm // 1_000_000)
        pocket = isolated_account_id(account_id, symbol)
        open_isolated = self.ledger.has_account(pocket) and self.ledger.position(account_id, symbol).qty_lots
        wallet = pocket if open_isolated else account_id
        code = inst.settle.code
        fee = raw
        if self.policy.fees.cap_by_remaining_margin:
            equity = self.margin(account_id, symbol).equity_exact
            fee = min(fee, max(0, math.floor(equity)))
        fee = min(fee, max(0, self.ledger.balance(wallet, code)))
        dest = {"insurance_fund": self.fund, "fee_pool": self.fee_pool}.get(self.policy.fees.fee_to, counterparty)
        if fee <= 0 or dest == wallet:
            return 0
        self.ledger.transfer(wallet, dest, code, fee, reason="liquidation fee", ts_ns=ts_ns)
        self.changed.add(account_id)
        self.audit.record(EventKind.FEE_CHARGED, ts_ns, symbol=symbol, account_id=account_id,
                          fee_minor=fee, uncapped_minor=raw, to=dest, rate_ppm=self._fee_ppm)
        return fee

    def book_fill(self, account_id: str, symbol: str, side: str, book: Any, lots: int, limit: int | None,
                  ts_ns: int, *, all_or_none: bool = False) -> FillSummary:
        """Take ``lots`` from the book at ``limit`` and settle what filled against the market account."""
        taker = "sell" if side == "long" else "buy"
        out = FillSummary()
        if all_or_none and fill_of(book.walk(taker, lots, limit)).filled_lots < lots:
            return out
        walk = fill_of(book.take(taker, lots, limit))
        for price, q in split_vwap(walk):
            fee = self.fill(account_id, symbol, side, self.market, price, q, ts_ns, "liquidation: book")
            out.add(q, price, fee)
        return out

    # --- backstop and takeover ------------------------------------------------------------------------
    def backstop_takeover(self, account_id: str, symbol: str, side: str, lots: int, price_ticks: int | None,
                          ts_ns: int, *, check_price: bool = True,
                          discount_bps: float | None = None) -> FillSummary:
        """Offer ``lots`` to each provider in turn; they accept or decline by rule.

        At ``price_ticks`` (the bankruptcy or the oracle-fee price), or with ``price_ticks`` None at each
        provider's own quote (mark ∓ ``discount_bps`` when the policy sets it), which may lie beyond
        the account's bankruptcy price: the deficit that leaves goes down the waterfall.
        ``check_price=False``: a protocol vault takes at the asked price whatever its quote.
        """
        out = FillSummary()
        inst = self.instruments[symbol]
        taker = "buy" if side == "long" else "sell"
        mark = self.marks[symbol]
        for provider in self.backstops:
            left = lots - out.lots
            if left <= 0:
                break
            position = self.ledger.position(provider.account_id, symbol).qty_lots
            quote = provider.quote_ticks(taker, mark, discount_bps)
            price = quote if price_ticks is None else price_ticks
            decision = provider.decide(instrument=inst, taker_side=taker, qty_lots=left, price_ticks=price,
                                       mark_ticks=mark, position_lots=position, discount_bps=discount_bps,
                                       check_price=check_price)
            if decision.accepted_lots <= 0:
                self.audit.record(EventKind.BACKSTOP_DECLINED, ts_ns, symbol=symbol, account_id=account_id,
                                  provider=provider.account_id, reason=decision.reason, lots=left,
                                  price_ticks=price, quote_ticks=quote)
                continue
            fee = self.fill(account_id, symbol, side, provider.account_id, price,
                            decision.accepted_lots, ts_ns, "liquidation: backstop takeover")
            provider.commit(inst, price, decision.accepted_lots)
            out.add(decision.accepted_lots, price, fee)
            self.audit.record(EventKind.TAKEOVER, ts_ns, symbol=symbol, account_id=account_id,
                              by=provider.account_id, lots=decision.accepted_lots, price_ticks=price,
                              decision=decision.reason)
        return out

    def fund_takeover(self, account_id: str, symbol: str, side: str, lots: int, price_ticks: int,
                      ts_ns: int) -> FillSummary:
        """The insurance fund takes ``lots`` at ``price_ticks`` (the bankruptcy price)."""
        out = FillSummary()
        self.ledger.apply_fill(
            buyer=self.fund if side == "long" else account_id, seller=account_id if side == "long" else self.fund,
            instrument=self.instruments[symbol], price_ticks=price_ticks, qty_lots=lots, ts_ns=ts_ns,
            reason="liquidation: fund takeover", reduce_only_for=account_id)
        self.changed.add(account_id)
        out.add(lots, price_ticks)
        self.audit.record(EventKind.TAKEOVER, ts_ns, symbol=symbol, account_id=account_id, by=self.fund,
                          lots=lots, price_ticks=price_ticks, mark_ticks=self.marks[symbol])
        return out

    def credit_remaining_margin(self, account_id: str, symbol: str, ts_ns: int) -> None:
        """Binance: collateral left after a takeover goes to the fund (single-position accounts)."""
        if not self.policy.fees.remaining_margin_to_fund_on_takeover:
            return
        if any(self.ledger.position(account_id, s).qty_lots for s in self.instruments):
            return
        code = self.instruments[symbol].settle.code
        left = self.ledger.balance(account_id, code)
        if left > 0:
            self.ledger.transfer(account_id, self.fund, code, left, reason="takeover remainder", ts_ns=ts_ns)
            self.changed.add(account_id)
            self.audit.record(EventKind.FUND_CREDITED, ts_ns, symbol=symbol, account_id=account_id,
                              amount_minor=left)

    def offload_fund(self, symbol: str, book: Any, ts_ns: int) -> FillSummary:
        """The fund sells (buys back) any position it holds in ``symbol`` to the book at market."""
        qty = self.ledger.position(self.fund, symbol).qty_lots
        if qty == 0:
            return FillSummary()
        out = self.sell_inventory(self.fund, symbol, book, abs(qty), qty > 0, ts_ns, "fund offload")
        if out.lots:
            self.audit.record(EventKind.FUND_OFFLOADED, ts_ns, symbol=symbol, account_id=self.fund,
                              lots=out.lots, vwap_ticks=out.vwap_ticks, left_lots=abs(qty) - out.lots)
        return out

    def sell_inventory(self, holder: str, symbol: str, book: Any, lots: int, long: bool, ts_ns: int,
                       reason: str, limit_ticks: int | None = None) -> FillSummary:
        """``holder`` (the fund, a backstop) sells ``lots`` of a long (buys back a short) to the book,
        no worse than ``limit_ticks`` when given."""
        walk = fill_of(book.take("sell" if long else "buy", lots, limit_ticks))
        inst = self.instruments[symbol]
        out = FillSummary()
        for price, q in split_vwap(walk):
            buyer, seller = (self.market, holder) if long else (holder, self.market)
            self.ledger.apply_fill(buyer=buyer, seller=seller, instrument=inst, price_ticks=price, qty_lots=q,
                                   ts_ns=ts_ns, reason=reason, reduce_only_for=holder)
            out.add(q, price)
        return out

    def offload_backstops(self, symbol: str, book: Any, ts_ns: int) -> list[tuple[BackstopProvider, bool, FillSummary]]:
        """Each provider works the due share of its inventory back into the book (BackstopProvider.offload_lots).

        Returns (provider, whether it sold a long, what filled) for every provider that traded.
        """
        done = []
        for provider in self.backstops:
            qty = self.ledger.position(provider.account_id, symbol).qty_lots
            lots = provider.offload_lots(symbol, qty, ts_ns)
            if lots <= 0:
                continue
            limit = provider.offload_limit_ticks(qty, self.marks[symbol])
            if limit is not None and provider.offload_depth_share is not None:
                side = "bid" if qty > 0 else "ask"
                if hasattr(book, "lots_within"):  # closed form (the lab's impact book)
                    depth = book.lots_within(side, limit)
                else:
                    depth = sum(q for _, q in book.depth_within(side, limit, math.ceil(lots / provider.offload_depth_share)))
                lots = provider.offload_paced(lots, depth)
                if lots <= 0:
                    continue
            got = self.sell_inventory(provider.account_id, symbol, book, lots, qty > 0, ts_ns, "backstop offload",
                                      limit)
            if got.lots:
                provider.release(qty, got.lots)
                self.audit.record(EventKind.BACKSTOP_OFFLOADED, ts_ns, symbol=symbol,
                                  account_id=provider.account_id, lots=got.lots, vwap_ticks=got.vwap_ticks,
                                  left_lots=abs(qty) - got.lots)
                done.append((provider, qty > 0, got))
        return done

    # --- ADL ----------------------------------------------------------------------------------------------
    def _ranked_opposite(self, account_id: str, symbol: str, side: str) -> list[tuple[str, int, float]]:
        """(account, |qty| lots, score) for the top of the opposite side, exact sizes from the ledger.

        The ``ADL_TOP_K`` cut-off is exact in the queue order of :func:`engine.adl.allocate` (score
        desc, size desc, account id asc): ties at the cut are resolved by size, then id, never by slot.
        """
        det = self.detectors[symbol]
        ints = det.slots_of_side(long_side=(side == "short"))
        if ints.size == 0:
            return []
        mark = self.marks[symbol] * float(self.instruments[symbol].tick_size)
        scores = adl_scores(det, ints, mark, self.policy.adl.ranking)
        book = det.book
        n = book.high_water
        qc = book.qc[:n]
        sizes = np.abs(qc[(qc > 0) if side == "short" else (qc < 0)])  # aligned with ``ints``
        order = queue_order(scores, sizes, lambda j: det.ids[int(ints[j])], ADL_TOP_K)
        rows: list[tuple[str, int, float]] = []
        for j in order:
            if len(rows) == ADL_TOP_K:
                break
            cp = det.ids[int(ints[j])]
            if cp == account_id or self.is_active(cp, symbol):
                continue
            qty = self.ledger.position(cp, symbol).qty_lots
            if (qty < 0) == (side == "long") and qty != 0:
                rows.append((cp, abs(qty), float(scores[j])))
        return rows

    def adl_close(self, account_id: str, symbol: str, side: str, lots: int, price_ticks: int,
                  ts_ns: int) -> FillSummary:
        """Close ``lots`` of the bankrupt position against the top-ranked opposite positions."""
        out = FillSummary()
        rows = self._ranked_opposite(account_id, symbol, side)
        for cp, q in allocate(rows, lots).items():
            self.fill(account_id, symbol, side, cp, price_ticks, int(q), ts_ns, "liquidation: ADL",
                      check_counterparty=True)
            out.add(int(q), price_ticks)
            self.audit.record(EventKind.ADL_EXECUTED, ts_ns, symbol=symbol, account_id=account_id,
                              counterparty=cp, lots=int(q), price_ticks=price_ticks,
                              score=dict((r[0], r[2]) for r in rows)[cp], ranking=self.policy.adl.ranking)
        self.adl_lots += out.lots
        return out

    # --- negative balances ------------------------------------------------------------------------------
    def cover_deficit(self, account_id: str, symbol: str, side: str, ts_ns: int) -> int:
        """Fund → ADL haircut → socialised loss → bad debt for a negative balance; returns bad debt."""
        inst = self.instruments[symbol]
        code = inst.settle.code
        if self.ledger.position(account_id, symbol).qty_lots:
            return 0
        pocket = isolated_account_id(account_id, symbol)
        wallet = pocket if self.ledger.has_account(pocket) and self.ledger.balance(pocket, code) < 0 else account_id
        equity = self.margin(account_id, symbol).equity_exact if wallet == account_id else \
            Fraction(self.ledger.balance(pocket, code))
        deficit = min(-self.ledger.balance(wallet, code), math.ceil(-equity)) if equity < 0 else 0
        if deficit <= 0:
            return 0
        fund = max(0, min(deficit, self.fund_balance(code)))
        if fund:
            self.ledger.transfer(self.fund, wallet, code, fund, reason="fund covers deficit", ts_ns=ts_ns)
            self.fund_drawn_minor += fund
            self.audit.record(EventKind.FUND_DRAWN, ts_ns, symbol=symbol, account_id=account_id,
                              amount_minor=fund, deficit_minor=deficit, fund_left_minor=self.fund_balance(code))
            deficit -= fund
        if deficit and self.adl_mode(code):
            deficit -= self._haircut(account_id, symbol, side, wallet, deficit, ts_ns)
        if deficit and self.policy.adl.socialize_losses:
            deficit -= self._socialize(account_id, symbol, wallet, deficit, ts_ns)
        self.changed.add(account_id)
        if deficit:
            self.bad_debt_minor[account_id] = self.bad_debt_minor.get(account_id, 0) + deficit
            self.audit.record(EventKind.BAD_DEBT, ts_ns, symbol=symbol, account_id=account_id,
                              amount_minor=deficit, fund_left_minor=self.fund_balance(code))
            if self.policy.adl.gate_withdrawals_on_negative_equity:
                self.audit.record(EventKind.WITHDRAWALS_GATED, ts_ns, symbol=symbol, account_id=account_id,
                                  reason="negative equity")
        return deficit

    def _haircut(self, account_id: str, symbol: str, side: str, wallet: str, deficit: int, ts_ns: int) -> int:
        """Smallest pro-rata haircut of the top-ranked opposite profits (capped by their wallets)."""
        code = self.instruments[symbol].settle.code
        profits = []
        for cp, _, _ in self._ranked_opposite(account_id, symbol, side):
            pnl = self.ledger.position(cp, symbol).unrealized_pnl_exact(self.instruments[symbol], self.marks[symbol])
            available = min(math.floor(pnl), self.ledger.balance(cp, code))
            if available > 0:
                profits.append((cp, available))
        taken = pro_rata_haircut(profits, deficit)
        for cp, amount in sorted(taken.items()):
            self.ledger.transfer(cp, wallet, code, amount, reason="ADL haircut", ts_ns=ts_ns)
            self.changed.add(cp)
        total = sum(taken.values())
        if total:
            self.adl_haircut_minor += total
            self.audit.record(EventKind.ADL_EXECUTED, ts_ns, symbol=symbol, account_id=account_id,
                              haircut_minor=total, counterparties=len(taken), deficit_minor=deficit,
                              share=total / sum(p for _, p in profits))
        return total

    def _socialize(self, account_id: str, symbol: str, wallet: str, deficit: int, ts_ns: int) -> int:
        """Spread the loss pro rata over every tracked account's positive wallet (Drift's last resort)."""
        code = self.instruments[symbol].settle.code
        det = self.detectors[symbol]
        wallets = [(a, self.ledger.balance(a, code)) for a in det.ids if a != account_id]
        taken = pro_rata_haircut([(a, b) for a, b in wallets if b > 0], deficit)
        for cp, amount in sorted(taken.items()):
            self.ledger.transfer(cp, wallet, code, amount, reason="socialised loss", ts_ns=ts_ns)
            self.changed.add(cp)
        total = sum(taken.values())
        if total:
            self.socialized_minor += total
            self.audit.record(EventKind.LOSS_SOCIALIZED, ts_ns, symbol=symbol, account_id=account_id,
                              amount_minor=total, accounts=len(taken), deficit_minor=deficit)
        return total


__all__ = ["FillSummary", "FundMonitor", "Settler", "adl_scores", "queue_order"]
