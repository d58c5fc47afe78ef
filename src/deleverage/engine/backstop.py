"""Backstop liquidity providers: committed capacity, a discount, a maximum position; accept by rule.

A provider (Hyperliquid's liquidator vault, Drift's liquidators, an FBA market maker) stands ready to
take liquidated positions at a discount to the mark: it buys a long at ``mark × (1 − discount)`` or
better and sells to a short at ``mark × (1 + discount)`` or better. It declines, with the reason, when
the asked price is worse than its quote (``price``), when its position would exceed
``max_position_lots`` (``max_position``) or when the notional it has committed is used up
(``capacity``). Partial acceptance is allowed: the lots that fit are taken.

The discount may be set by the policy (``takeover.backstop_discount_bps``: the venue decides what its
backstops are paid) instead of by the provider; a protocol vault that takes over at the bankruptcy
price (Hyperliquid) is asked with ``check_price=False``. What a provider takes it holds as inventory
and works back into the book over time: each step it sells (buys back) the share
``1 − 2^(−Δt / offload_half_life_s)`` of its position (:meth:`offload_lots`), and the capacity that
inventory held is freed as it goes (:meth:`release`). With ``offload_band_bps`` the resale is a limit
order no worse than that far from the mark (:meth:`offload_limit_ticks`): it sells only into the depth
the book holds near the mark, so it waits for the book to refill instead of walking an emptied one; with
``offload_depth_share`` it offers at most that share of the depth resting inside the band each step
(:meth:`offload_paced`), so a thin, stressed book gets little of it and a refilled one what is due.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

from deleverage.core.instruments import Instrument
from deleverage.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class BackstopDecision:
    """How many lots a provider takes at ``price_ticks``, or why none (``reason``)."""

    provider: str
    accepted_lots: int
    price_ticks: int
    reason: str  # "accepted", "partial:<limit>", "price", "max_position", "capacity"


@dataclass(slots=True)
class BackstopProvider:
    """A committed liquidity provider; ``capacity_minor`` is the notional budget in settlement minor units."""

    account_id: str
    capacity_minor: int
    discount_bps: float
    max_position_lots: int
    used_minor: int = 0
    offload_half_life_s: float | None = 60.0  # None: holds what it takes until the end
    last_offload_ns: dict[str, int] = field(default_factory=dict)  # per symbol
    offload_band_bps: float | None = None  # None: resale at market; else limited to this far from the mark
    offload_depth_share: float | None = None  # with a band: sell at most this share of the depth inside it

    def __post_init__(self) -> None:
        if not isinstance(self.account_id, str) or not self.account_id:
            raise InvalidInput("account_id", self.account_id, "must be a non-empty string")
        if isinstance(self.capacity_minor, bool) or not isinstance(self.capacity_minor, int) or self.capacity_minor < 0:
            raise InvalidInput("capacity_minor", self.capacity_minor, "must be an int >= 0")
        if not (isinstance(self.discount_bps, int | float) and math.isfinite(self.discount_bps)
                and 0 <= self.discount_bps < 10_000):
            raise InvalidInput("discount_bps", self.discount_bps, "must be in [0, 10000)")
        if isinstance(self.max_position_lots, bool) or not isinstance(self.max_position_lots, int) \
                or self.max_position_lots < 0:
            raise InvalidInput("max_position_lots", self.max_position_lots, "must be an int >= 0")
        h = self.offload_half_life_s
        if h is not None and not (isinstance(h, int | float) and not isinstance(h, bool) and math.isfinite(h)
                                  and h > 0):
            raise InvalidInput("offload_half_life_s", h, "must be a finite number of seconds > 0, or None")
        band = self.offload_band_bps
        if band is not None and not (isinstance(band, int | float) and not isinstance(band, bool)
                                     and math.isfinite(band) and 0 <= band < 10_000):
            raise InvalidInput("offload_band_bps", band, "must be in [0, 10000) bps, or None")
        share = self.offload_depth_share
        if share is not None and not (isinstance(share, int | float) and not isinstance(share, bool)
                                      and 0 < share <= 1):
            raise InvalidInput("offload_depth_share", share, "must be in (0, 1], or None")
        if share is not None and band is None:
            raise InvalidInput("offload_depth_share", share, "needs offload_band_bps (the depth is counted inside it)")

    @property
    def remaining_minor(self) -> int:
        return max(0, self.capacity_minor - self.used_minor)

    def quote_ticks(self, taker_side: str, mark_ticks: int, discount_bps: float | None = None) -> int:
        """The worst price the provider accepts: buying below the mark, selling above it.

        ``taker_side`` is the provider's side of the trade ("buy" takes over a long); ``discount_bps``
        (the policy's) replaces the provider's own discount when given.
        """
        bps = self.discount_bps if discount_bps is None else discount_bps
        factor = Fraction(str(bps)) / 10_000
        if taker_side == "buy":
            return max(1, math.floor(mark_ticks * (1 - factor)))
        if taker_side == "sell":
            return math.ceil(mark_ticks * (1 + factor))
        raise InvalidInput("taker_side", taker_side, "must be 'buy' or 'sell'")

    def room_lots(self, taker_side: str, position_lots: int) -> int:
        """Lots the provider may still add on ``taker_side`` before its position limit."""
        signed = 1 if taker_side == "buy" else -1
        return max(0, self.max_position_lots - signed * position_lots)

    def capacity_lots(self, instrument: Instrument, price_ticks: int) -> int:
        """Whole lots whose notional at ``price_ticks`` fits in the remaining committed capacity."""
        per_lot = abs(instrument.notional(price_ticks, 1))
        return int(self.remaining_minor // per_lot) if per_lot > 0 else 0

    def decide(self, *, instrument: Instrument, taker_side: str, qty_lots: int, price_ticks: int,
               mark_ticks: int, position_lots: int, discount_bps: float | None = None,
               check_price: bool = True) -> BackstopDecision:
        """Accept up to ``qty_lots`` at ``price_ticks`` by the three rules, or decline with the reason.

        ``check_price=False``: a protocol vault that must take at the asked price (only the position
        and capacity rules apply).
        """
        if check_price:
            quote = self.quote_ticks(taker_side, mark_ticks, discount_bps)
            worse = price_ticks > quote if taker_side == "buy" else price_ticks < quote
            if worse:
                return BackstopDecision(self.account_id, 0, price_ticks, "price")
        room = self.room_lots(taker_side, position_lots)
        if room <= 0:
            return BackstopDecision(self.account_id, 0, price_ticks, "max_position")
        cap = self.capacity_lots(instrument, price_ticks)
        if cap <= 0:
            return BackstopDecision(self.account_id, 0, price_ticks, "capacity")
        lots = min(qty_lots, room, cap)
        if lots < qty_lots:
            limit = "max_position" if room <= cap else "capacity"
            return BackstopDecision(self.account_id, lots, price_ticks, f"partial:{limit}")
        return BackstopDecision(self.account_id, lots, price_ticks, "accepted")

    def commit(self, instrument: Instrument, price_ticks: int, lots: int) -> None:
        """Count ``lots`` taken at ``price_ticks`` against the committed capacity."""
        self.used_minor += math.ceil(abs(instrument.notional(price_ticks, lots)))

    def standing_bid(self, instrument: Instrument, taker_side: str, mark_ticks: int,
                     position_lots: int, discount_bps: float | None = None) -> tuple[int, int]:
        """(price_ticks, lots) this provider offers into a batch auction on ``taker_side``."""
        price = self.quote_ticks(taker_side, mark_ticks, discount_bps)
        lots = min(self.room_lots(taker_side, position_lots), self.capacity_lots(instrument, price))
        return price, lots

    # --- inventory ----------------------------------------------------------------------------------
    def offload_lots(self, symbol: str, position_lots: int, ts_ns: int) -> int:
        """Lots to work back into the book now: ``⌈|position| × (1 − 2^(−Δt/h))⌉``, Δt since the last call.

        The first call on a position starts its clock (nothing is sold in the step it was taken).
        """
        if position_lots == 0 or self.offload_half_life_s is None:
            self.last_offload_ns.pop(symbol, None)
            return 0
        last = self.last_offload_ns.get(symbol)
        self.last_offload_ns[symbol] = ts_ns
        if last is None or ts_ns <= last:
            return 0
        share = 1.0 - 2.0 ** (-(ts_ns - last) / 1e9 / self.offload_half_life_s)
        return min(abs(position_lots), math.ceil(abs(position_lots) * share - 1e-12))

    def offload_limit_ticks(self, position_lots: int, mark_ticks: int) -> int | None:
        """The worst price a resale accepts: ``mark × (1 ∓ band)`` (selling a long / buying back a
        short), or None (at market) without a band."""
        if self.offload_band_bps is None or position_lots == 0:
            return None
        factor = Fraction(str(self.offload_band_bps)) / 10_000
        if position_lots > 0:
            return max(1, math.ceil(mark_ticks * (1 - factor)))
        return math.floor(mark_ticks * (1 + factor))

    def offload_paced(self, due_lots: int, depth_lots: int) -> int:
        """Lots to offer now: what is due, at most ``offload_depth_share`` of the resting depth inside the
        band (``depth_lots``) — a thin book gets little, a refilled one what is due."""
        if self.offload_depth_share is None:
            return due_lots
        return min(due_lots, math.floor(depth_lots * self.offload_depth_share))

    def release(self, position_lots_before: int, lots: int) -> None:
        """Free the capacity of ``lots`` sold out of an inventory of ``position_lots_before`` (pro rata)."""
        held = abs(position_lots_before)
        if held <= 0 or lots <= 0:
            return
        self.used_minor -= self.used_minor * min(lots, held) // held


__all__ = ["BackstopDecision", "BackstopProvider"]
