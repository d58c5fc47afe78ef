"""Descending-price (Dutch) collateral auction after MakerDAO Liquidations 2.0.

Follows ``makerdao/dss`` ``src/clip.sol`` (Clipper: kick, take, redo, yank), ``src/abaci.sol``
(price curves) and ``src/dog.sol`` (bark: the global ``Hole`` and per-collateral ``hole`` caps on debt
in auction, the liquidation penalty ``chop``).

Units and exactness (house rules, not Maker's fixed point):

- ``tab`` (debt to raise), ``dust``, ``tip``, ``hole``/``Hole`` are integer minor units of the debt asset;
  ``lot`` is integer minor units of collateral; prices are exact ``Fraction`` debt minor units per
  collateral minor unit. Maker rounds prices to 1e-27 (ray); we keep them exact and round only the
  amounts: what a taker owes rounds **up**, collateral delivered and keeper coin round **down**.
- Time: ``ts`` arguments are integer **nanoseconds**; curves and ``tail`` work in whole seconds
  (elapsed = floor((ts - tic) / 1e9)), like Maker's ``block.timestamp``.
- Where Maker reverts on a business condition the call returns a result whose ``status`` is an
  :class:`AuctionStatus` carrying Maker's revert string (``Clipper/needs-reset``,
  ``Clipper/too-expensive``, ``Clipper/no-partial-purchase`` ...), and state is unchanged. Malformed
  calls (negative amounts, unknown collateral, time going backwards) raise ``InvalidInput``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Protocol

from deleverage.core.money import Number, to_fraction
from deleverage.errors import InvalidInput

NS_PER_SECOND = 1_000_000_000
PPM = 1_000_000


# --- price curves (abaci.sol) ----------------------------------------------------------------------


class PriceCurve(Protocol):
    def price(self, top: Fraction, elapsed_s: int) -> Fraction: ...


def _multiplier(cut: Number, field_name: str) -> Fraction:
    value = to_fraction(cut, field_name)
    if not 0 <= value <= 1:
        raise InvalidInput(field_name, cut, "must be a multiplier in [0, 1] (0.99 = -1% per step)")
    return value


def _seconds(value: int, field_name: str, *, positive: bool = True) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (1 if positive else 0):
        raise InvalidInput(field_name, value, "must be a whole number of seconds" + (" > 0" if positive else ""))
    return value


def _elapsed(elapsed_s: int) -> int:
    return _seconds(elapsed_s, "elapsed_s", positive=False)


@dataclass(frozen=True, slots=True)
class LinearDecrease:
    """top · (tau − t) / tau, zero from ``tau`` seconds on."""

    tau_s: int

    def __post_init__(self) -> None:
        _seconds(self.tau_s, "tau_s")

    def price(self, top: Fraction, elapsed_s: int) -> Fraction:
        elapsed = _elapsed(elapsed_s)
        if elapsed >= self.tau_s:
            return Fraction(0)
        return Fraction(top) * (self.tau_s - elapsed) / self.tau_s


@dataclass(frozen=True, slots=True)
class StairstepExponentialDecrease:
    """top · cut^floor(t / step): the price drops by the factor ``cut`` every ``step`` seconds."""

    step_s: int
    cut: Fraction

    def __init__(self, step_s: int, cut: Number) -> None:
        object.__setattr__(self, "step_s", _seconds(step_s, "step_s"))
        object.__setattr__(self, "cut", _multiplier(cut, "cut"))

    def price(self, top: Fraction, elapsed_s: int) -> Fraction:
        return Fraction(top) * self.cut ** (_elapsed(elapsed_s) // self.step_s)


@dataclass(frozen=True, slots=True)
class ExponentialDecrease:
    """top · cut^t: a per-second multiplier (Maker's gas-cheaper stairstep with step = 1)."""

    cut: Fraction

    def __init__(self, cut: Number) -> None:
        object.__setattr__(self, "cut", _multiplier(cut, "cut"))

    def price(self, top: Fraction, elapsed_s: int) -> Fraction:
        return Fraction(top) * self.cut ** _elapsed(elapsed_s)


# --- statuses and results --------------------------------------------------------------------------


class AuctionStatus(StrEnum):
    """Outcome of a call; the non-success values are Maker's revert messages."""

    KICKED = "kicked"
    TAKEN = "taken"
    RESET = "reset"
    YANKED = "yanked"
    NOT_RUNNING = "Clipper/not-running-auction"
    NEEDS_RESET = "Clipper/needs-reset"
    TOO_EXPENSIVE = "Clipper/too-expensive"
    NO_PARTIAL_PURCHASE = "Clipper/no-partial-purchase"
    CANNOT_RESET = "Clipper/cannot-reset"
    STOPPED = "Clipper/stopped-incorrect"
    LIQUIDATION_LIMIT_HIT = "Dog/liquidation-limit-hit"
    LEAVES_DUST = "Dog/leaves-dust"
    NULL_AUCTION = "Dog/null-auction"


@dataclass(frozen=True, slots=True)
class CollateralConfig:
    """Per-collateral parameters (Clipper ``buf tail cusp chip tip``, Dog ``chop hole``, Vat ``dust``)."""

    curve: PriceCurve
    buf: Fraction = Fraction(1)          # top = oracle price × buf
    tail_s: int = 2**63                  # reset after this many seconds
    cusp: Fraction = Fraction(0)         # reset when price / top < cusp
    chip_ppm: int = 0                    # keeper incentive: share of tab
    tip_minor: int = 0                   # keeper incentive: flat
    dust_minor: int = 0                  # smallest debt that may remain
    chop: Fraction = Fraction(1)         # liquidation penalty multiplier on debt
    hole_minor: int = 2**255             # cap on debt (incl. penalty) in auction for this collateral

    def __post_init__(self) -> None:
        object.__setattr__(self, "buf", to_fraction(self.buf, "buf"))
        object.__setattr__(self, "cusp", _multiplier(self.cusp, "cusp"))
        object.__setattr__(self, "chop", to_fraction(self.chop, "chop"))
        if self.buf <= 0:
            raise InvalidInput("buf", self.buf, "must be > 0")
        if self.chop < 1:
            raise InvalidInput("chop", self.chop, "must be >= 1")
        _seconds(self.tail_s, "tail_s", positive=False)
        for name in ("chip_ppm", "tip_minor", "dust_minor", "hole_minor"):
            _amount(getattr(self, name), name)


def _amount(value: int, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(field_name, value, "must be an int >= 0 (minor units)")
    return value


@dataclass(slots=True)
class Sale:
    """An auction in progress (Clipper ``Sale``)."""

    auction_id: int
    collateral: str
    tab_minor: int
    lot_minor: int
    owner: str
    tic_ns: int
    top: Fraction


@dataclass(frozen=True, slots=True)
class KickResult:
    status: AuctionStatus
    auction_id: int | None = None
    tab_minor: int = 0
    lot_minor: int = 0
    top: Fraction = Fraction(0)
    keeper_coin_minor: int = 0


@dataclass(frozen=True, slots=True)
class TakeResult:
    status: AuctionStatus
    price: Fraction = Fraction(0)
    slice_minor: int = 0                 # collateral bought
    owe_minor: int = 0                   # debt paid by the taker
    tab_minor: int = 0                   # debt left to raise
    lot_minor: int = 0                   # collateral left in auction
    returned_minor: int = 0              # collateral returned to the owner (tab covered)
    finished: bool = False


@dataclass(frozen=True, slots=True)
class RedoResult:
    status: AuctionStatus
    top: Fraction = Fraction(0)
    keeper_coin_minor: int = 0


@dataclass
class DutchAuctionHouse:
    """Dog + Clippers: liquidations start auctions under the Hole/hole caps; keepers take and redo."""

    collaterals: dict[str, CollateralConfig]
    global_hole_minor: int = 2**255
    stopped: int = 0                     # 0 none, 1 no kick, 2 no kick/take/redo
    dirt_minor: int = 0
    collateral_dirt_minor: dict[str, int] = field(default_factory=dict)
    sales: dict[int, Sale] = field(default_factory=dict)
    kicks: int = 0
    keeper_paid_minor: int = 0

    def _config(self, collateral: str) -> CollateralConfig:
        if collateral not in self.collaterals:
            raise InvalidInput("collateral", collateral, f"unknown; known: {sorted(self.collaterals)}")
        return self.collaterals[collateral]

    # -- Dog.bark + Clipper.kick --
    def liquidate(
        self, collateral: str, debt_minor: int, collateral_minor: int, oracle_price: Number,
        ts_ns: int, *, owner: str, keeper: str = "keeper",
    ) -> KickResult:
        """Start an auction for (part of) a vault: debt × chop capped by the room under Hole/hole."""
        cfg = self._config(collateral)
        debt, ink = _amount(debt_minor, "debt_minor"), _amount(collateral_minor, "collateral_minor")
        if isinstance(ts_ns, bool) or not isinstance(ts_ns, int) or ts_ns < 0:
            # a float start time would make every later take/redo refuse the sale: debt stuck in Dirt
            raise InvalidInput("ts_ns", ts_ns, "must be an int number of nanoseconds >= 0")
        price = to_fraction(oracle_price, "oracle_price")
        if debt == 0 or price <= 0:
            raise InvalidInput("debt_minor/oracle_price", (debt_minor, oracle_price), "must be > 0")
        if self.stopped >= 1:
            return KickResult(AuctionStatus.STOPPED)
        dirt = self.collateral_dirt_minor.get(collateral, 0)
        room = min(self.global_hole_minor - self.dirt_minor, cfg.hole_minor - dirt)
        if room <= 0 or room < cfg.dust_minor:
            return KickResult(AuctionStatus.LIQUIDATION_LIMIT_HIT)
        dart = min(debt, int(room / cfg.chop))  # debt liquidated, floor like Maker
        if dart != debt and debt - dart < cfg.dust_minor:
            return KickResult(AuctionStatus.LEAVES_DUST)
        dink = min(ink, ink * dart // debt)
        if dink == 0:
            return KickResult(AuctionStatus.NULL_AUCTION)
        tab = int(dart * cfg.chop)  # mul(due, chop) / WAD rounds down
        top = price * cfg.buf
        self.kicks += 1
        self.sales[self.kicks] = Sale(self.kicks, collateral, tab, dink, owner, ts_ns, top)
        self.dirt_minor += tab
        self.collateral_dirt_minor[collateral] = dirt + tab
        coin = self._pay_keeper(cfg, tab)
        return KickResult(AuctionStatus.KICKED, self.kicks, tab, dink, top, coin)

    def _pay_keeper(self, cfg: CollateralConfig, tab: int) -> int:
        coin = cfg.tip_minor + tab * cfg.chip_ppm // PPM if (cfg.tip_minor or cfg.chip_ppm) else 0
        self.keeper_paid_minor += coin
        return coin

    # -- Clipper.status --
    def status(self, auction_id: int, ts_ns: int) -> tuple[bool, Fraction]:
        """(needs redo, current price); raises for an unknown auction or time before the kick."""
        sale = self.sales.get(auction_id)
        if sale is None:
            raise InvalidInput("auction_id", auction_id, "is not running")
        return self._status(sale, ts_ns)

    def _status(self, sale: Sale, ts_ns: int) -> tuple[bool, Fraction]:
        if isinstance(ts_ns, bool) or not isinstance(ts_ns, int) or ts_ns < sale.tic_ns:
            raise InvalidInput("ts_ns", ts_ns, f"must be an int ns >= the auction start {sale.tic_ns}")
        elapsed = (ts_ns - sale.tic_ns) // NS_PER_SECOND
        cfg = self.collaterals[sale.collateral]
        price = cfg.curve.price(sale.top, elapsed)
        return elapsed > cfg.tail_s or price / sale.top < cfg.cusp, price

    # -- Clipper.take --
    def take(self, auction_id: int, amount_minor: int, max_price: Number, ts_ns: int) -> TakeResult:
        """Buy up to ``amount_minor`` collateral at the current price if it is <= ``max_price``."""
        amt = _amount(amount_minor, "amount_minor")
        max_price_q = to_fraction(max_price, "max_price")
        sale = self.sales.get(auction_id)
        if sale is None:
            return TakeResult(AuctionStatus.NOT_RUNNING)
        if self.stopped >= 2:
            return TakeResult(AuctionStatus.STOPPED)
        done, price = self._status(sale, ts_ns)
        if done:
            return TakeResult(AuctionStatus.NEEDS_RESET, price, tab_minor=sale.tab_minor, lot_minor=sale.lot_minor)
        if max_price_q < price:
            return TakeResult(AuctionStatus.TOO_EXPENSIVE, price, tab_minor=sale.tab_minor, lot_minor=sale.lot_minor)
        cfg = self.collaterals[sale.collateral]
        tab, lot = sale.tab_minor, sale.lot_minor
        piece = min(lot, amt)
        exact_owe = piece * price
        if exact_owe > tab:  # don't collect more than tab
            owe = tab
            piece = int(owe / price)  # collateral delivered rounds down
        else:
            owe = -((-exact_owe.numerator) // exact_owe.denominator)  # what the taker pays rounds up
            if owe < tab and piece < lot and tab - owe < cfg.dust_minor:
                if tab <= cfg.dust_minor or price == 0:
                    return TakeResult(
                        AuctionStatus.NO_PARTIAL_PURCHASE, price, tab_minor=tab, lot_minor=lot
                    )
                owe = tab - cfg.dust_minor
                piece = int(owe / price)
        tab, lot = tab - owe, lot - piece
        dirt_release = tab + owe if lot == 0 else owe
        self.dirt_minor -= dirt_release
        self.collateral_dirt_minor[sale.collateral] -= dirt_release
        returned = 0
        finished = lot == 0 or tab == 0
        if finished:
            returned = lot if tab == 0 else 0
            del self.sales[auction_id]
        else:
            sale.tab_minor, sale.lot_minor = tab, lot
        return TakeResult(AuctionStatus.TAKEN, price, piece, owe, tab, lot - returned, returned, finished)

    # -- Clipper.redo --
    def redo(self, auction_id: int, oracle_price: Number, ts_ns: int) -> RedoResult:
        """Restart a stale auction at top = oracle × buf; pays the keeper unless the auction is dusty."""
        sale = self.sales.get(auction_id)
        price = to_fraction(oracle_price, "oracle_price")
        if price <= 0:
            raise InvalidInput("oracle_price", oracle_price, "must be > 0")
        if sale is None:
            return RedoResult(AuctionStatus.NOT_RUNNING)
        if self.stopped >= 2:
            return RedoResult(AuctionStatus.STOPPED)
        done, _ = self._status(sale, ts_ns)
        if not done:
            return RedoResult(AuctionStatus.CANNOT_RESET)
        cfg = self.collaterals[sale.collateral]
        sale.tic_ns = ts_ns
        sale.top = price * cfg.buf
        coin = 0
        if sale.tab_minor >= cfg.dust_minor and sale.lot_minor * price >= cfg.dust_minor:
            coin = self._pay_keeper(cfg, sale.tab_minor)
        return RedoResult(AuctionStatus.RESET, sale.top, coin)

    # -- Clipper.yank --
    def yank(self, auction_id: int) -> tuple[AuctionStatus, int, int]:
        """Cancel an auction (shutdown/governance): (status, tab released, collateral handed back)."""
        sale = self.sales.pop(auction_id, None)
        if sale is None:
            return AuctionStatus.NOT_RUNNING, 0, 0
        self.dirt_minor -= sale.tab_minor
        self.collateral_dirt_minor[sale.collateral] -= sale.tab_minor
        return AuctionStatus.YANKED, sale.tab_minor, sale.lot_minor


__all__ = [
    "AuctionStatus",
    "CollateralConfig",
    "DutchAuctionHouse",
    "ExponentialDecrease",
    "KickResult",
    "LinearDecrease",
    "NS_PER_SECOND",
    "PriceCurve",
    "RedoResult",
    "Sale",
    "StairstepExponentialDecrease",
    "TakeResult",
]
