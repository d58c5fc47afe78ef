"""Margin math: maintenance and initial margin, margin ratio, liquidation and bankruptcy prices.

Conventions (human units; the ``*_minor`` functions work in integer ticks, lots and minor units):

* ``qty`` is the absolute position size: base units for a linear contract (0.02 BTC), USD contract
  value for an inverse one (contracts × contract size). ``side`` is ``"long"`` or ``"short"``.
* Amounts (``wallet_balance``, margins, PnL) are in the settlement asset: USDT for linear, the coin
  for inverse. Tier tables are indexed by the notional in that same asset (Binance COIN-M brackets
  are in coin).
* Isolated margin: ``wallet_balance`` is the position's isolated margin. Cross margin: the wallet
  balance, with the other positions' maintenance (``other_maintenance``) and unrealised PnL
  (``other_unrealized_pnl``) passed in, as in Binance's "TMM1" and "UPNL1".
* ``maintenance_basis="mark"`` (Binance, Hyperliquid, dYdX): maintenance is charged on the notional
  at the mark price, so it moves with the price and the tier at the liquidation price applies.
  ``"entry"`` (Bybit, BitMEX isolated): maintenance on the entry value, a constant.

Liquidation price, solved exactly (no iteration). Let ``f(P) = equity(P) − maintenance(P)``. For a
linear long ``f'(P) = q·(1 − r) > 0``; for a linear short ``f'(P) = −q·(1 + r) < 0`` (``r`` < 1
is the bracket rate, and maintenance is continuous across floors). In ``x = 1/P`` the inverse
contract gives the same signs. So ``f`` is strictly monotone and has at most one root: solving the
linear equation with each bracket's ``(rate, cum)`` and keeping the candidate whose notional falls in
that same bracket (floors inclusive) yields exactly one answer when a root exists. At a floor the
two adjacent brackets give the same price (continuity) and the upper bracket is the one kept.

The returned price is the *trigger threshold*: a long is liquidatable when mark ≤ LP, a short when
mark ≥ LP (see :func:`liquidation_triggered`). When no positive finite root exists the threshold is
still meaningful: ``Decimal(0)`` for a long that no positive price liquidates (Binance shows "--")
or a short that every price liquidates; ``Decimal("Infinity")`` for a short that no price liquidates
(an inverse short with ≥ 1× collateral) or a long that every price liquidates.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Literal

from deleverage.core.instruments import Instrument, position_sign
from deleverage.core.money import (
    Number,
    non_negative_fraction,
    payout_minor,
    positive_fraction,
    requirement_minor,
    to_fraction,
)
from deleverage.core.tiers import MarginTiers
from deleverage.errors import InvalidInput

MaintenanceBasis = Literal["mark", "entry"]
TiersLike = MarginTiers | str

_ZERO = Fraction(0)
_INFINITY = Decimal("Infinity")
_DECIMAL_DIGITS = 50


# --- argument checks ------------------------------------------------------------------------------


_positive = positive_fraction
_non_negative = non_negative_fraction


def _contract(contract: str) -> str:
    if contract not in ("linear", "inverse"):
        raise InvalidInput("contract", contract, "must be 'linear' or 'inverse'")
    return contract


def _basis(basis: str) -> str:
    if basis not in ("mark", "entry"):
        raise InvalidInput("maintenance_basis", basis, "must be 'mark' or 'entry'")
    return basis


def _tiers(tiers: TiersLike) -> MarginTiers:
    if isinstance(tiers, MarginTiers):
        return tiers
    if isinstance(tiers, str):
        return MarginTiers.load(tiers)
    raise InvalidInput("tiers", tiers, "expected a MarginTiers or the name of a bundled table")


def _to_decimal(value: Fraction) -> Decimal:
    """A Fraction as a Decimal with 50 significant digits (exact when it terminates sooner)."""
    with localcontext() as ctx:
        ctx.prec = _DECIMAL_DIGITS
        return Decimal(value.numerator) / Decimal(value.denominator)


# --- exact building blocks ------------------------------------------------------------------------


def _notional(qty: Fraction, price: Fraction, contract: str) -> Fraction:
    """Position value in the settlement asset: ``q·P`` (linear) or ``Q/P`` (inverse)."""
    return qty * price if contract == "linear" else qty / price


def _pnl(sign: int, qty: Fraction, entry: Fraction, mark: Fraction, contract: str) -> Fraction:
    if contract == "linear":
        return sign * qty * (mark - entry)
    return sign * qty * (1 / entry - 1 / mark)


def _maintenance(tiers: MarginTiers, notional: Fraction) -> Fraction:
    return tiers.maintenance_margin_exact(notional)


def _floor_fractions(tiers: MarginTiers) -> list[Fraction]:
    return [Fraction(b.floor) for b in tiers.brackets]


def _in_bracket(floors: list[Fraction], index: int, notional: Fraction) -> bool:
    upper_ok = index + 1 == len(floors) or notional < floors[index + 1]
    return floors[index] <= notional and upper_ok


def _solve_mark_basis(
    sign: int, qty: Fraction, entry: Fraction, base: Fraction, tiers: MarginTiers, contract: str
) -> Fraction | None:
    """The unique positive root of equity = maintenance at mark, or None when there is none.

    ``base`` is wallet + other unrealised PnL − other maintenance.
    """
    floors = _floor_fractions(tiers)
    for index, bracket in enumerate(tiers.brackets):
        rate, cum = Fraction(bracket.rate), Fraction(bracket.cum)
        if contract == "linear":
            # base + c + s·q·(P − E) = q·P·r  →  P = (base + c − s·q·E) / (q·(r − s))
            price = (base + cum - sign * qty * entry) / (qty * (rate - sign))
            if price <= 0:
                continue
        else:
            # base + c + s·Q·(1/E − x) = Q·x·r  →  x = (base + c + s·Q/E) / (Q·(r + s))
            inverse_price = (base + cum + sign * qty / entry) / (qty * (rate + sign))
            if inverse_price <= 0:
                continue
            price = 1 / inverse_price
        if _in_bracket(floors, index, _notional(qty, price, contract)):
            return price
    return None


def _no_root_threshold(sign: int, base: Fraction, qty: Fraction, entry: Fraction, contract: str) -> Decimal:
    """Threshold when no positive root exists: 'never' or 'always', read from f at its open end.

    Linear: f(0⁺) = base − s·q·E (maintenance → 0 with the notional). Inverse: f(P → ∞) = base + s·Q/E.
    f is monotone, so with no root its sign is the same everywhere and equals the sign at that end.
    """
    if contract == "linear":
        f_low = base - sign * qty * entry  # value of f as P → 0⁺
        if sign > 0:
            return Decimal(0) if f_low >= 0 else _INFINITY
        return Decimal(0) if f_low <= 0 else _INFINITY
    f_high = base + sign * qty / entry  # value of f as P → ∞
    if sign > 0:
        return _INFINITY if f_high <= 0 else Decimal(0)
    return _INFINITY if f_high >= 0 else Decimal(0)


# --- liquidation and bankruptcy prices ------------------------------------------------------------


def liquidation_price_fraction(
    *,
    side: str,
    qty: Number,
    entry_price: Number,
    wallet_balance: Number,
    tiers: TiersLike,
    contract: str = "linear",
    maintenance_basis: str = "mark",
    other_maintenance: Number = 0,
    other_unrealized_pnl: Number = 0,
) -> Fraction | Decimal:
    """Exact liquidation price as a Fraction; ``Decimal(0)``/``Decimal('Infinity')`` when none exists."""
    sign = position_sign(side)
    q = _positive(qty, "qty")
    entry = _positive(entry_price, "entry_price")
    wallet = _non_negative(wallet_balance, "wallet_balance")
    other_mm = _non_negative(other_maintenance, "other_maintenance")
    other_pnl = to_fraction(other_unrealized_pnl, "other_unrealized_pnl")
    kind = _contract(contract)
    basis = _basis(maintenance_basis)
    table = _tiers(tiers)
    base = wallet + other_pnl - other_mm
    if basis == "mark":
        price = _solve_mark_basis(sign, q, entry, base, table, kind)
        if price is None:
            return _no_root_threshold(sign, base, q, entry, kind)
        return price
    # entry basis: maintenance is a constant M; equity(P) = M is linear in P (or in 1/P).
    constant = base - _maintenance(table, _notional(q, entry, kind))
    if kind == "linear":
        price = entry - sign * constant / q
        if price <= 0:
            return Decimal(0)
        return price
    inverse_price = 1 / entry + sign * constant / q
    if inverse_price <= 0:
        return _INFINITY
    return 1 / inverse_price


def liquidation_price(
    *,
    side: str,
    qty: Number,
    entry_price: Number,
    wallet_balance: Number,
    tiers: TiersLike,
    contract: str = "linear",
    maintenance_basis: str = "mark",
    other_maintenance: Number = 0,
    other_unrealized_pnl: Number = 0,
) -> Decimal:
    """The mark price at which equity equals maintenance margin (see the module doc for 0 / ∞).

    Binance example: cross, wallet 500 USDT, long 0.02 BTC at 50,000, rate 0.4% → 25,100.40.
    """
    result = liquidation_price_fraction(
        side=side, qty=qty, entry_price=entry_price, wallet_balance=wallet_balance, tiers=tiers,
        contract=contract, maintenance_basis=maintenance_basis,
        other_maintenance=other_maintenance, other_unrealized_pnl=other_unrealized_pnl,
    )
    return result if isinstance(result, Decimal) else _to_decimal(result)


def bankruptcy_price(
    *,
    side: str,
    qty: Number,
    entry_price: Number,
    wallet_balance: Number,
    contract: str = "linear",
) -> Decimal:
    """The price at which the position's margin is exactly exhausted (equity = 0).

    ``Decimal(0)`` for a long that stays solvent down to zero, ``Decimal('Infinity')`` for an
    inverse short that stays solvent at every price.
    """
    sign = position_sign(side)
    q = _positive(qty, "qty")
    entry = _positive(entry_price, "entry_price")
    wallet = _non_negative(wallet_balance, "wallet_balance")
    kind = _contract(contract)
    if kind == "linear":
        price = entry - sign * wallet / q
        return Decimal(0) if price <= 0 else _to_decimal(price)
    inverse_price = 1 / entry + sign * wallet / q
    return _INFINITY if inverse_price <= 0 else _to_decimal(1 / inverse_price)


def liquidation_triggered(*, side: str, mark_price: Number, liquidation_price: Number | Decimal) -> bool:
    """True when ``mark_price`` has reached the threshold: long mark ≤ LP, short mark ≥ LP."""
    sign = position_sign(side)
    mark = _positive(mark_price, "mark_price")
    if isinstance(liquidation_price, Decimal) and liquidation_price == _INFINITY:
        return sign > 0
    limit = to_fraction(liquidation_price, "liquidation_price")
    return mark <= limit if sign > 0 else mark >= limit


# --- margin in human units ------------------------------------------------------------------------


def position_notional(*, qty: Number, price: Number, contract: str = "linear") -> Decimal:
    """Position value in the settlement asset: ``qty × price`` (linear) or ``qty / price`` (inverse)."""
    value = _notional(_positive(qty, "qty"), _positive(price, "price"), _contract(contract))
    return _to_decimal(value)


def unrealized_pnl(
    *, side: str, qty: Number, entry_price: Number, mark_price: Number, contract: str = "linear"
) -> Decimal:
    """Linear ``s·q·(mark − entry)``; inverse ``s·Q·(1/entry − 1/mark)`` (in coin)."""
    value = _pnl(
        position_sign(side), _positive(qty, "qty"), _positive(entry_price, "entry_price"),
        _positive(mark_price, "mark_price"), _contract(contract),
    )
    return _to_decimal(value)


def maintenance_margin(
    *, qty: Number, price: Number, tiers: TiersLike, contract: str = "linear"
) -> Decimal:
    """Tiered maintenance margin on the notional at ``price`` (the mark, or the entry for entry basis)."""
    notional = _notional(_positive(qty, "qty"), _positive(price, "price"), _contract(contract))
    return _to_decimal(_maintenance(_tiers(tiers), notional))


def initial_margin(
    *, qty: Number, price: Number, leverage: Number, tiers: TiersLike | None = None,
    contract: str = "linear",
) -> Decimal:
    """``notional / leverage``; with ``tiers``, a leverage above the bracket maximum is refused."""
    notional = _notional(_positive(qty, "qty"), _positive(price, "price"), _contract(contract))
    lev = _positive(leverage, "leverage")
    if tiers is not None:
        cap = _tiers(tiers).max_leverage(notional)
        if cap is not None and lev > Fraction(cap):
            raise InvalidInput("leverage", leverage, f"exceeds the bracket maximum {cap}x")
    return _to_decimal(notional / lev)


def margin_ratio(
    *,
    side: str,
    qty: Number,
    entry_price: Number,
    mark_price: Number,
    wallet_balance: Number,
    tiers: TiersLike,
    contract: str = "linear",
    maintenance_basis: str = "mark",
    other_maintenance: Number = 0,
    other_unrealized_pnl: Number = 0,
) -> Decimal:
    """Binance's margin ratio = maintenance margin / margin balance; ≥ 1 means liquidatable.

    ``Decimal('Infinity')`` when the margin balance is zero or negative.
    """
    sign = position_sign(side)
    q = _positive(qty, "qty")
    entry = _positive(entry_price, "entry_price")
    mark = _positive(mark_price, "mark_price")
    kind = _contract(contract)
    basis_price = mark if _basis(maintenance_basis) == "mark" else entry
    maintenance = _maintenance(_tiers(tiers), _notional(q, basis_price, kind))
    maintenance += _non_negative(other_maintenance, "other_maintenance")
    balance = (
        _non_negative(wallet_balance, "wallet_balance")
        + to_fraction(other_unrealized_pnl, "other_unrealized_pnl")
        + _pnl(sign, q, entry, mark, kind)
    )
    if balance <= 0:
        return _INFINITY
    return _to_decimal(maintenance / balance)


# --- integer (ledger) versions --------------------------------------------------------------------


def _notional_minor(instrument: Instrument, qty_lots: int, price_ticks: int | Fraction) -> Fraction:
    if not isinstance(qty_lots, int) or isinstance(qty_lots, bool):
        raise InvalidInput("qty_lots", qty_lots, "must be an int number of lots")
    return instrument.notional(price_ticks, abs(qty_lots))  # type: ignore[arg-type]


def _maintenance_minor(instrument: Instrument, tiers: TiersLike, notional_minor: Fraction) -> int:
    per_unit = instrument.settle.minor_per_unit
    notional_units = notional_minor / per_unit
    return requirement_minor(_maintenance(_tiers(tiers), notional_units) * per_unit)


def maintenance_margin_minor(
    instrument: Instrument, tiers: TiersLike, qty_lots: int, price_ticks: int
) -> int:
    """Maintenance margin in settlement minor units at the mark ``price_ticks``; rounds up."""
    return _maintenance_minor(instrument, tiers, _notional_minor(instrument, qty_lots, price_ticks))


def maintenance_margin_entry_minor(
    instrument: Instrument, tiers: TiersLike, qty_lots: int, entry_price_ticks: int | Fraction
) -> int:
    """Entry-basis maintenance (Bybit/BitMEX) in minor units; the entry may be a fractional tick."""
    notional = _notional_minor(instrument, qty_lots, entry_price_ticks)
    return _maintenance_minor(instrument, tiers, notional)


def initial_margin_minor(
    instrument: Instrument, qty_lots: int, price_ticks: int, leverage: Number
) -> int:
    """``notional / leverage`` in minor units; rounds up (a requirement)."""
    lev = _positive(leverage, "leverage")
    return requirement_minor(_notional_minor(instrument, qty_lots, price_ticks) / lev)


def unrealized_pnl_minor(
    instrument: Instrument, side: str, qty_lots: int, entry_price_ticks: int | Fraction,
    mark_price_ticks: int,
) -> int:
    """Unrealised PnL in minor units; rounds down (toward −∞), so rounding never credits money."""
    sign = position_sign(side)
    if not isinstance(qty_lots, int) or isinstance(qty_lots, bool) or qty_lots < 0:
        raise InvalidInput("qty_lots", qty_lots, "must be a non-negative int number of lots")
    for name, ticks in (("entry_price_ticks", entry_price_ticks), ("mark_price_ticks", mark_price_ticks)):
        if ticks <= 0:
            raise InvalidInput(name, ticks, "must be > 0")
    entry_value = instrument.notional(entry_price_ticks, qty_lots)  # type: ignore[arg-type]
    mark_value = instrument.notional(mark_price_ticks, qty_lots)
    if instrument.contract == "linear":
        pnl = sign * (mark_value - entry_value)
    else:  # coin value falls as the price rises: a long gains entry_value − mark_value
        pnl = sign * (entry_value - mark_value)
    return payout_minor(pnl)


def is_finite_price(price: Decimal) -> bool:
    """False for the 0 / Infinity thresholds that mean 'never' or 'always'."""
    return price.is_finite() and price > 0


__all__ = [
    "MaintenanceBasis",
    "MarginTiers",
    "TiersLike",
    "bankruptcy_price",
    "initial_margin",
    "initial_margin_minor",
    "is_finite_price",
    "liquidation_price",
    "liquidation_price_fraction",
    "liquidation_triggered",
    "maintenance_margin",
    "maintenance_margin_entry_minor",
    "maintenance_margin_minor",
    "margin_ratio",
    "position_notional",
    "unrealized_pnl",
    "unrealized_pnl_minor",
]
