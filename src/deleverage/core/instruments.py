"""Perpetual contracts: linear (USDⓈ-margined) and inverse (coin-margined), on integer ticks and lots.

A linear contract's value is ``price × qty × contract_size`` in the quote asset, which is also the
settlement asset. An inverse contract is worth ``contract_size`` USD; its value in the settlement coin
is ``qty × contract_size / price``. Everything here is exact: notionals come back as ``Fraction`` of
settlement minor units, and callers round them by the named rules of :mod:`deleverage.core.money`.

Margin tier tables live in :mod:`deleverage.core.tiers` and are named by ``Instrument.tiers``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from functools import cached_property
from typing import Any, Literal

import numpy as np

from deleverage.core.money import BTC, USDT, Asset, Number, Rounding, to_fraction, to_units
from deleverage.errors import InvalidInput

ContractKind = Literal["linear", "inverse"]
PositionSide = Literal["long", "short"]
OrderSide = Literal["buy", "sell"]


def position_sign(side: str) -> int:
    """+1 for a long, −1 for a short; anything else is refused by name."""
    if side == "long":
        return 1
    if side == "short":
        return -1
    raise InvalidInput("side", side, "must be 'long' or 'short'")


def order_sign(side: str) -> int:
    """+1 for a buy, −1 for a sell."""
    if side == "buy":
        return 1
    if side == "sell":
        return -1
    raise InvalidInput("side", side, "must be 'buy' or 'sell'")


def closing_order_side(position_side: str) -> OrderSide:
    """The order side that reduces a position: a long is closed by selling."""
    return "sell" if position_sign(position_side) > 0 else "buy"


@dataclass(frozen=True)
class Instrument:
    """A perpetual contract with its tick, lot and contract size."""

    symbol: str
    contract: ContractKind
    base: str
    quote: str
    settle: Asset
    tick_size: Decimal
    lot_size: Decimal
    contract_size: Decimal = Decimal(1)
    tiers: str | None = None

    def __post_init__(self) -> None:
        if self.contract not in ("linear", "inverse"):
            raise InvalidInput("contract", self.contract, "must be 'linear' or 'inverse'")
        for name in ("tick_size", "lot_size", "contract_size"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                raise InvalidInput(name, value, "must be a positive finite Decimal")

    # --- conversions at the edge ------------------------------------------------------------------
    def price_to_ticks(self, price: Number, rounding: Rounding = "exact") -> int:
        ticks = to_units(price, self.tick_size, rounding=rounding, field=f"{self.symbol}.price")
        if ticks <= 0:
            raise InvalidInput(f"{self.symbol}.price", price, "must be > 0")
        return ticks

    def ticks_to_price(self, price_ticks: int) -> Decimal:
        return self.tick_size * price_ticks

    def qty_to_lots(self, qty: Number, rounding: Rounding = "exact") -> int:
        return to_units(qty, self.lot_size, rounding=rounding, field=f"{self.symbol}.qty")

    def lots_to_qty(self, qty_lots: int) -> Decimal:
        return self.lot_size * qty_lots

    # --- exact value ------------------------------------------------------------------------------
    @cached_property
    def linear_value_per_tick_lot(self) -> Fraction:
        """Settlement minor units of one lot moving one tick (linear only)."""
        return (
            Fraction(self.tick_size)
            * Fraction(self.lot_size)
            * Fraction(self.contract_size)
            * self.settle.minor_per_unit
        )

    def notional(self, price_ticks: int, qty_lots: int) -> Fraction:
        """Exact value of ``qty_lots`` at ``price_ticks`` in settlement minor units (sign follows qty)."""
        if isinstance(price_ticks, float | bool) or isinstance(qty_lots, float | bool):
            # a float tick count is off the grid (1000.5 ticks), a bool is not a size at all
            raise InvalidInput(
                f"{self.symbol}.price_ticks/qty_lots", (price_ticks, qty_lots), "must be ints (ticks, lots)"
            )
        if price_ticks <= 0:
            raise InvalidInput(f"{self.symbol}.price_ticks", price_ticks, "must be > 0")
        if self.contract == "linear":
            value = self.linear_value_per_tick_lot
            if value.denominator == 1:  # the common case: stay in ints, far cheaper than Fraction math
                return Fraction(value.numerator * price_ticks * qty_lots)
            return value * price_ticks * qty_lots
        usd = Fraction(self.lot_size) * Fraction(self.contract_size) * qty_lots
        return usd * self.settle.minor_per_unit / (Fraction(self.tick_size) * price_ticks)

    def notional_at(self, price: Number, qty: Number) -> Fraction:
        """Exact value in settlement minor units for human-unit price and quantity (may be off-tick)."""
        p = to_fraction(price, "price")
        q = to_fraction(qty, "qty")
        if p <= 0:
            raise InvalidInput("price", price, "must be > 0")
        if self.contract == "linear":
            return p * q * Fraction(self.contract_size) * self.settle.minor_per_unit
        return q * Fraction(self.contract_size) * self.settle.minor_per_unit / p

    def with_tick(self, tick_size: Number) -> Instrument:
        """The same contract with another tick (Binance BTCUSDT was 0.01 in 2021, 0.10 later)."""
        return replace(self, tick_size=Decimal(str(tick_size)))


BTCUSDT = Instrument(
    symbol="BTCUSDT", contract="linear", base="BTC", quote="USDT", settle=USDT,
    tick_size=Decimal("0.1"), lot_size=Decimal("0.001"), tiers="binance-btcusdt",
)
ETHUSDT = Instrument(
    symbol="ETHUSDT", contract="linear", base="ETH", quote="USDT", settle=USDT,
    tick_size=Decimal("0.01"), lot_size=Decimal("0.001"), tiers="binance-ethusdt",
)
BTCUSD_PERP = Instrument(
    symbol="BTCUSD_PERP", contract="inverse", base="BTC", quote="USD", settle=BTC,
    tick_size=Decimal("0.1"), lot_size=Decimal(1), contract_size=Decimal(100),
    tiers=None,  # Binance publishes COIN-M brackets in contracts; no verified table is bundled yet
)


# --- the registry: what deleverage knows of each symbol, and since when ---------------------------------


@dataclass(frozen=True)
class TickEra:
    """A tick size and the period it is *known* to have been in force (``None``: not known / still on).

    Venues change ticks (Binance BTCUSDT: 0.01 in 2020–2021, 0.10 later). An era is what the evidence
    shows, not a guessed switch date: between two eras nothing is claimed, and the data decides.
    """

    tick_size: Decimal
    since_ns: int | None
    until_ns: int | None
    source: str

    def covers(self, ts_ns: int) -> bool:
        return (self.since_ns is None or ts_ns >= self.since_ns) and (self.until_ns is None or ts_ns < self.until_ns)


def _day_ns(text: str) -> int:
    from datetime import UTC, datetime

    return int(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()) * 1_000_000_000


_TICK_ERAS: dict[str, tuple[TickEra, ...]] = {
    "BTCUSDT": (
        TickEra(Decimal("0.01"), None, _day_ns("2021-05-20"),
                "Binance public-data BTCUSDT 1m klines: prices of 2020-03-12 and 2021-05-19 carry two decimals"),
        TickEra(Decimal("0.1"), _day_ns("2024-08-08"), None,
                "Binance BTCUSDT raw capture of 2024-08-08 (hftbacktest example data) and 1m klines of "
                "2025-10-10: every price on 0.1"),
    ),
    "ETHUSDT": (
        TickEra(Decimal("0.01"), _day_ns("2024-08-08"), None,
                "Binance ETHUSDT raw capture of 2024-08-08 (hftbacktest example data): prices on 0.01"),
    ),
    "BTCUSD_PERP": (
        TickEra(Decimal("0.1"), _day_ns("2024-08-08"), None,
                "Binance COIN-M BTCUSD_PERP raw captures of 2024-08-08/09 (hftbacktest example data): prices "
                "on 0.1, quantities in contracts of 100 USD"),
    ),
}


class InstrumentRegistry:
    """Instruments by exchange symbol, with the tick eras on record; immutable (``with_instruments`` copies).

    Entries added from a user's file (exchangeInfo / ccxt markets) are *declared*: their tick and lot are
    what the file says, checked against the data rather than chosen by era.
    """

    def __init__(self, instruments: Iterable[Instrument], eras: Mapping[str, Sequence[TickEra]] | None = None,
                 *, declared: Mapping[str, str] | None = None) -> None:
        self._by_symbol = {i.symbol.upper(): i for i in instruments}
        self._eras = {k.upper(): tuple(v) for k, v in (eras or {}).items()}
        self._declared = {k.upper(): v for k, v in (declared or {}).items()}

    def __contains__(self, symbol: object) -> bool:
        return isinstance(symbol, str) and symbol.upper() in self._by_symbol

    def get(self, symbol: str) -> Instrument:
        """The instrument of ``symbol`` (case-insensitive); unknown symbols are refused with the known list."""
        try:
            return self._by_symbol[symbol.upper()]
        except (KeyError, AttributeError):
            raise InvalidInput("symbol", symbol, f"unknown instrument; known: {self.symbols()}") from None

    def symbols(self) -> list[str]:
        return sorted(self._by_symbol)

    def eras(self, symbol: str) -> tuple[TickEra, ...]:
        """Tick eras on record for ``symbol`` (empty for declared entries and unknown symbols)."""
        key = symbol.upper()
        return () if key in self._declared else self._eras.get(key, ())

    def era_for(self, symbol: str, ts_ns: int | None) -> TickEra | None:
        """The tick era on record at ``ts_ns`` (None: none on record for that date, or ``ts_ns`` unknown)."""
        if ts_ns is None:
            return None
        return next((e for e in self.eras(symbol) if e.covers(ts_ns)), None)

    def declared_by(self, symbol: str) -> str | None:
        """The file an entry came from, when it came from a user's file."""
        return self._declared.get(symbol.upper())

    def with_instruments(self, instruments: Iterable[Instrument], source: str) -> InstrumentRegistry:
        """A copy where ``instruments`` (read from the file ``source``) replace or add entries.

        A file's entry keeps the registry's tier table name when it names none (exchangeInfo carries none).
        """
        added = []
        for inst in instruments:
            known = self._by_symbol.get(inst.symbol.upper())
            if inst.tiers is None and known is not None and known.settle == inst.settle:
                inst = replace(inst, tiers=known.tiers)
            added.append(inst)
        merged = {**self._by_symbol, **{i.symbol.upper(): i for i in added}}
        declared = {**self._declared, **{i.symbol.upper(): source for i in added}}
        return InstrumentRegistry(merged.values(), self._eras, declared=declared)


REGISTRY = InstrumentRegistry((BTCUSDT, ETHUSDT, BTCUSD_PERP), _TICK_ERAS)


def get_instrument(symbol: str) -> Instrument:
    """A bundled instrument by exchange symbol; unknown symbols are refused with the known list."""
    return REGISTRY.get(symbol)


def known_instruments() -> list[str]:
    return REGISTRY.symbols()


# --- choosing the instrument of a data file ---------------------------------------------------------------

_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USD")


def split_symbol(symbol: str) -> tuple[str, str, ContractKind]:
    """``ETHUSDT`` → (ETH, USDT, linear); ``BTCUSD_PERP`` → (BTC, USD, inverse) — Binance's naming."""
    name = symbol.upper()
    pair, _, suffix = name.partition("_")
    for quote in _QUOTES:
        if pair.endswith(quote) and len(pair) > len(quote):
            inverse = quote == "USD" and bool(suffix)  # COIN-M: BTCUSD_PERP, BTCUSD_240927
            return pair[: -len(quote)], quote, "inverse" if inverse else "linear"
    raise InvalidInput("symbol", symbol, f"cannot tell its base and quote (quote assets known: {', '.join(_QUOTES)}); "
                       "pass --instruments with the venue's exchangeInfo or ccxt markets JSON")


def data_grid(values: Any, *, max_decimals: int = 12) -> Decimal | None:
    """The coarsest step every value is a whole multiple of (``0.01`` for prices written with 2 decimals
    and not all on 0.1...), exact: the GCD of the values scaled to integers. None when no value is > 0."""
    array = np.abs(np.asarray(values, dtype=np.float64).ravel())
    array = array[np.isfinite(array) & (array > 0)]
    if array.size == 0:
        return None
    for decimals in range(max_decimals + 1):
        scaled = array * 10.0**decimals
        if scaled.max() >= 2.0**53:  # past float64's exact integers: no finer grid can be told apart
            return None
        units = np.rint(scaled)
        # text → float → ×10^d is off by a few ulps (relative 1e-15); anything further is a digit beyond
        # ``decimals``. Every value is > 0, so none may round to 0 units.
        if np.all(units >= 1) and np.all(np.abs(scaled - units) <= scaled * 1e-12):
            return Decimal(int(np.gcd.reduce(units.astype(np.int64)))).scaleb(-decimals).normalize()
    return None


def _fits(step: Decimal, grid: Decimal | None) -> bool:
    """Every value (multiples of ``grid``) is a multiple of ``step``."""
    return grid is None or grid % step == 0


def _plain(value: Decimal) -> str:
    """``Decimal("0.10")`` → ``"0.1"``, ``Decimal("1E+2")`` → ``"100"``."""
    return format(value.normalize(), "f")


@dataclass(frozen=True)
class InstrumentChoice:
    """The instrument a file replays as, and where each of its parts came from (for notes and summary.json)."""

    instrument: Instrument
    sources: dict[str, str]
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON: symbol, contract, assets, tick and lot as exact decimal strings, tiers, sources."""
        i = self.instrument
        return {
            "symbol": i.symbol, "contract": i.contract, "base": i.base, "quote": i.quote,
            "settle": i.settle.code, "tick_size": _plain(i.tick_size), "lot_size": _plain(i.lot_size),
            "contract_size": _plain(i.contract_size), "qty_unit": "contracts" if i.contract == "inverse" else i.base,
            "tiers": i.tiers, "sources": dict(sorted(self.sources.items())), "notes": list(self.notes),
        }


def _step(what: str, symbol: str, grid: Decimal | None, *, declared: tuple[Decimal, str] | None,
          in_force: tuple[Decimal, str] | None, known: Sequence[Decimal], item: str) -> tuple[Decimal, str, str | None]:
    """Pick a tick or lot: a declared one, else the one on record for the data's date — both must fit the
    data, a misfit is refused —, else the coarsest known one the data fits, else the data's own grid.
    Returns (step, source, note for the user or None)."""
    if declared is not None:
        value, source = declared
        if not _fits(value, grid):
            raise InvalidInput(f"{symbol}.{what}", _plain(value),
                               f"from {source} does not fit the data: its {item}s are multiples of {grid}, "
                               f"not of {_plain(value)} (the venue's {what} may have changed since that file was "
                               "saved); fix the file or leave --instruments out to infer it")
        return value, source, None
    if in_force is not None:
        value, source = in_force
        if not _fits(value, grid):
            raise InvalidInput(f"{symbol}.{what}", _plain(value),
                               f"is {symbol}'s {what} on the data's date ({source}), but the data's {item}s are "
                               f"multiples of {grid}: the file is not {symbol} perpetual trade data of that date (a spot "
                               "file? mark or index price klines? another symbol?); if it is, declare its "
                               "instrument with --instruments")
        return value, source, None
    for value in sorted(set(known), reverse=True):
        if _fits(value, grid):
            note = (f"{symbol}: {what} {_plain(value)}, the coarsest the registry knows for it that every {item} "
                    "fits (no value on record for the data's date)")
            return value, "registry: coarsest known value the data fits", note
    if grid is None:
        raise InvalidInput(f"{symbol}.{what}", None, f"cannot be inferred (no {item} > 0 in the data); "
                           "pass --instruments with the venue's exchangeInfo or ccxt markets JSON")
    note = (f"{symbol}: {what} {_plain(grid)} inferred from the data (every {item} is a multiple of it); "
            "pass --instruments with the venue's exchangeInfo or ccxt markets JSON to set it")
    return grid, "inferred from the data", note


def choose_instrument(
    symbol: str,
    *,
    at_ns: int | None,
    price_grid: Decimal | None,
    qty_grid: Decimal | None,
    registry: InstrumentRegistry = REGISTRY,
    symbol_source: str = "given",
    qty_is_contracts: bool | None = None,
) -> InstrumentChoice:
    """The instrument a data file replays as: the registry's entry for ``symbol`` with the tick in force on
    the data's date, checked against the data's grids; an unknown symbol gets ticks and lots inferred
    from the data (printed notes say so). Never a default symbol; an inverse contract whose contract size
    is not known is refused.
    """
    name = symbol.upper()
    notes: list[str] = []
    if name in registry:
        base_inst = registry.get(name)
        source = registry.declared_by(name)
        declared_tick = (base_inst.tick_size, source) if source else None
        declared_lot = (base_inst.lot_size, source) if source else None
        eras = registry.eras(name)
        era = registry.era_for(name, at_ns)
        known_ticks = [e.tick_size for e in eras] or [base_inst.tick_size]
        known_lots = [base_inst.lot_size]
        entry_source = source or "registry (core/instruments.py)"
    else:
        base, quote, contract = split_symbol(name)
        if contract == "inverse":
            raise InvalidInput("symbol", symbol, "is a coin-margined (inverse) contract deleverage does not know: its "
                               "contract size cannot be inferred from data; pass --instruments with Binance's "
                               "GET /dapi/v1/exchangeInfo JSON or ccxt markets JSON")
        settle = Asset(quote, 8)
        base_inst = Instrument(symbol=name, contract="linear", base=base, quote=quote, settle=settle,
                               tick_size=Decimal(1), lot_size=Decimal(1))
        declared_tick = declared_lot = None
        era, known_ticks, known_lots = None, [], []
        entry_source = "symbol name (not in the registry)"
        notes.append(f"{name} is not in deleverage's registry: linear contract settled in {quote} assumed from its "
                     "name; pass --instruments with the venue's exchangeInfo or ccxt markets JSON to declare it")
    # the era's evidence is long: `deleverage instruments` shows it; the source names where to look
    tick_in_force = (era.tick_size, "registry: on record for the data's date") if era else None
    lot_in_force = (base_inst.lot_size, entry_source) if known_lots else None
    tick, tick_source, tick_note = _step("tick_size", name, price_grid, declared=declared_tick,
                                         in_force=tick_in_force, known=known_ticks, item="price")
    lot, lot_source, lot_note = _step("lot_size", name, qty_grid, declared=declared_lot, in_force=lot_in_force,
                                      known=known_lots, item="quantity")
    notes += [n for n in (tick_note, lot_note) if n]
    same = (tick, lot) == (base_inst.tick_size, base_inst.lot_size)
    instrument = base_inst if same else replace(base_inst, tick_size=tick, lot_size=lot)
    sources = {"symbol": symbol_source, "contract": entry_source, "tick_size": tick_source, "lot_size": lot_source,
               "tiers": entry_source if instrument.tiers else "none shipped"}
    return InstrumentChoice(instrument, sources, tuple(notes))


__all__ = [
    "BTCUSDT",
    "BTCUSD_PERP",
    "ETHUSDT",
    "REGISTRY",
    "ContractKind",
    "Instrument",
    "InstrumentChoice",
    "InstrumentRegistry",
    "OrderSide",
    "PositionSide",
    "TickEra",
    "choose_instrument",
    "closing_order_side",
    "data_grid",
    "get_instrument",
    "known_instruments",
    "order_sign",
    "position_sign",
    "split_symbol",
]
