"""Index, mark and oracle prices, driven by explicit timestamps (ns ints) and exact arithmetic.

* :class:`IndexPrice` — weighted mean or weighted median of constituent venue prices, dropping
  stale (and future-dated) quotes; optional Binance-style outlier rule: a source deviating more
  than ``max_deviation`` from the median of all sources gets weight 0, and when more than one
  deviates the plain median is used.
* :func:`binance_mark_price` — Binance perpetual mark price = median(price 1, price 2, last price)
  with price 1 = index × (1 + last funding rate × time until funding / funding interval) and
  price 2 = index + moving average of (mid − index) (Binance FAQ "Mark Price in Perpetual
  Futures"; 30 points every 5 s for COIN-M).
* :class:`MovingAverageBasis` — that moving average, sampled on an interval.
* :class:`Oracle` — a push oracle: publishes when the relative deviation from the last published
  price reaches a threshold or the heartbeat elapses, with a publication latency and staleness,
  so a fast trigger and a slow confirmation can disagree.

Prices may be given as int (ticks), Decimal, str or float (via repr); computations are exact
(Fraction) and results come back as Decimal (50 significant digits). NaN/inf and non-positive
prices are refused with :class:`InvalidInput`; time going backwards with :class:`SimulationError`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Literal

from deleverage.core.money import Number, to_fraction
from deleverage.errors import InvalidInput, SimulationError

IndexMethod = Literal["weighted_mean", "weighted_median"]
NS_PER_SECOND = 1_000_000_000
NS_PER_HOUR = 3_600 * NS_PER_SECOND


def _price(value: Number, field_name: str) -> Fraction:
    result = to_fraction(value, field_name)
    if result <= 0:
        raise InvalidInput(field_name, value, "price must be > 0")
    return result


def _timestamp(value: int, field_name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(field_name, value, "timestamp must be an int of nanoseconds")
    return value


def _duration(value: int, field_name: str, *, allow_zero: bool = False) -> int:
    _timestamp(value, field_name)
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInput(field_name, value, "duration must be > 0" if not allow_zero else "must be >= 0")
    return value


def _decimal(value: Fraction) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 50
        return Decimal(value.numerator) / Decimal(value.denominator)


def median(values: Iterable[Fraction]) -> Fraction:
    """Plain median; the mean of the two middle values for an even count."""
    ordered = sorted(values)
    if not ordered:
        raise InvalidInput("values", ordered, "median of an empty set")
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def weighted_median(pairs: Iterable[tuple[Fraction, Fraction]]) -> Fraction:
    """The price where cumulative weight first reaches half; the midpoint on an exact half split."""
    ordered = sorted(p for p in pairs if p[1] > 0)
    if not ordered:
        raise InvalidInput("weights", ordered, "weighted median needs a positive total weight")
    half = sum((w for _, w in ordered), Fraction(0)) / 2
    cumulative = Fraction(0)
    for index, (price, weight) in enumerate(ordered):
        cumulative += weight
        if cumulative > half:
            return price
        if cumulative == half:
            return (price + ordered[index + 1][0]) / 2
    return ordered[-1][0]  # unreachable: cumulative reaches the total


# --- index ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VenueQuote:
    """One constituent price observed at ``ts_event`` (ns)."""

    venue: str
    price: Number
    ts_event: int


class IndexPrice:
    """Index over constituent venues; stale quotes (older than ``max_age_ns``) are dropped."""

    def __init__(
        self,
        *,
        max_age_ns: int,
        weights: Mapping[str, Number] | None = None,
        method: IndexMethod = "weighted_mean",
        min_sources: int = 1,
        max_deviation: Number | None = None,
    ) -> None:
        self.max_age_ns = _duration(max_age_ns, "max_age_ns")
        if method not in ("weighted_mean", "weighted_median"):
            raise InvalidInput("method", method, "must be 'weighted_mean' or 'weighted_median'")
        self.method: IndexMethod = method
        if not isinstance(min_sources, int) or min_sources < 1:
            raise InvalidInput("min_sources", min_sources, "must be an int >= 1")
        self.min_sources = min_sources
        self.weights: dict[str, Fraction] = {}
        for venue, weight in (weights or {}).items():
            w = to_fraction(weight, f"weights[{venue!r}]")
            if w < 0:
                raise InvalidInput(f"weights[{venue!r}]", weight, "must be >= 0")
            self.weights[venue] = w
        self.max_deviation = None if max_deviation is None else to_fraction(max_deviation, "max_deviation")
        if self.max_deviation is not None and self.max_deviation <= 0:
            raise InvalidInput("max_deviation", max_deviation, "must be > 0")

    def fresh(self, quotes: Iterable[VenueQuote], now_ns: int) -> list[tuple[str, Fraction]]:
        """The usable (venue, price) pairs at ``now_ns``: latest per venue, not stale, not future."""
        _timestamp(now_ns, "now_ns")
        latest: dict[str, tuple[int, Fraction]] = {}
        for quote in quotes:
            ts = _timestamp(quote.ts_event, f"{quote.venue}.ts_event")
            price = _price(quote.price, f"{quote.venue}.price")
            if ts > now_ns or now_ns - ts > self.max_age_ns:
                continue
            if quote.venue not in latest or ts >= latest[quote.venue][0]:
                latest[quote.venue] = (ts, price)
        return sorted((venue, price) for venue, (_, price) in latest.items())

    def compute(self, quotes: Iterable[VenueQuote], now_ns: int) -> Decimal | None:
        """The index at ``now_ns``, or None when fewer than ``min_sources`` fresh quotes remain."""
        value = self.compute_exact(quotes, now_ns)
        return None if value is None else _decimal(value)

    def compute_exact(self, quotes: Iterable[VenueQuote], now_ns: int) -> Fraction | None:
        pairs = self.fresh(quotes, now_ns)
        weighted = [(p, self.weights.get(v, Fraction(1) if not self.weights else Fraction(0))) for v, p in pairs]
        weighted = [(p, w) for p, w in weighted if w > 0]
        if len(weighted) < self.min_sources:
            return None
        if self.max_deviation is not None:
            center = median(p for p, _ in weighted)
            outliers = [p for p, _ in weighted if abs(p - center) / center > self.max_deviation]
            if len(outliers) > 1:
                return center
            weighted = [(p, w) for p, w in weighted if p not in outliers]
        if self.method == "weighted_median":
            return weighted_median(weighted)
        total = sum((w for _, w in weighted), Fraction(0))
        return sum((p * w for p, w in weighted), Fraction(0)) / total


# --- mark -----------------------------------------------------------------------------------------


class MovingAverageBasis:
    """Average of (mid − index) over the last ``window_points`` samples taken ``interval_ns`` apart.

    Binance COIN-M: 30 points, one every 5 s (a 2.5-minute basis). A sample closer than
    ``interval_ns`` to the previous kept sample is ignored, so feeding every book update is safe.
    """

    def __init__(self, *, window_points: int = 30, interval_ns: int = 5 * NS_PER_SECOND) -> None:
        if not isinstance(window_points, int) or window_points < 1:
            raise InvalidInput("window_points", window_points, "must be an int >= 1")
        self.window_points = window_points
        self.interval_ns = _duration(interval_ns, "interval_ns", allow_zero=True)
        self._samples: deque[Fraction] = deque(maxlen=window_points)
        self._last_sample_ns: int | None = None
        self._last_seen_ns: int | None = None

    def observe(self, ts_ns: int, *, bid: Number, ask: Number, index: Number) -> bool:
        """Offer a sample; returns True when it was kept. Timestamps must not go backwards."""
        _timestamp(ts_ns, "ts_ns")
        if self._last_seen_ns is not None and ts_ns < self._last_seen_ns:
            raise SimulationError(f"ts_ns={ts_ns} is before the previous sample {self._last_seen_ns}")
        bid_f, ask_f, index_f = _price(bid, "bid"), _price(ask, "ask"), _price(index, "index")
        if bid_f > ask_f:
            raise InvalidInput("bid", bid, f"crossed quote: bid above ask {ask}")
        self._last_seen_ns = ts_ns
        if self._last_sample_ns is not None and ts_ns - self._last_sample_ns < self.interval_ns:
            return False
        self._samples.append((bid_f + ask_f) / 2 - index_f)
        self._last_sample_ns = ts_ns
        return True

    def value_exact(self) -> Fraction | None:
        if not self._samples:
            return None
        return sum(self._samples, Fraction(0)) / len(self._samples)

    def value(self) -> Decimal | None:
        exact = self.value_exact()
        return None if exact is None else _decimal(exact)

    def __len__(self) -> int:
        return len(self._samples)


def binance_mark_price(
    *,
    index_price: Number,
    last_price: Number,
    last_funding_rate: Number,
    time_until_funding_ns: int,
    basis: Number | None,
    funding_interval_ns: int = 8 * NS_PER_HOUR,
) -> Decimal:
    """Median of price 1 = index × (1 + rate × time to funding / interval), price 2 = index + basis,
    and the last price. With no basis yet (``None``) price 2 is the index itself."""
    index = _price(index_price, "index_price")
    last = _price(last_price, "last_price")
    rate = to_fraction(last_funding_rate, "last_funding_rate")
    remaining = _duration(time_until_funding_ns, "time_until_funding_ns", allow_zero=True)
    interval = _duration(funding_interval_ns, "funding_interval_ns")
    if remaining > interval:
        raise InvalidInput("time_until_funding_ns", remaining, f"exceeds the funding interval {interval}")
    price_1 = index * (1 + rate * Fraction(remaining, interval))
    price_2 = index + (Fraction(0) if basis is None else to_fraction(basis, "basis"))
    return _decimal(median([price_1, price_2, last]))


# --- oracle ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Publication:
    """A published oracle price: decided at ``ts_decided`` (ns), readable from ``ts_visible``."""

    price: Decimal
    ts_observed: int
    ts_decided: int
    ts_visible: int
    reason: Literal["first", "deviation", "heartbeat"]


@dataclass
class Oracle:
    """A push oracle with heartbeat, deviation threshold, publication latency and staleness.

    Observations arrive with ``observe(ts_ns, price)`` in time order. The oracle publishes the
    first observation, any observation whose relative deviation from the last published price is
    ≥ ``deviation``, and — when ``heartbeat_ns`` passes without a publication — the latest observed
    price at exactly the heartbeat deadline. A publication becomes readable ``latency_ns`` later.
    ``is_stale(now)`` is True when nothing is readable or the readable price was observed more than
    ``max_age_ns`` ago (default: heartbeat + latency).
    """

    heartbeat_ns: int
    deviation: Number
    latency_ns: int = 0
    max_age_ns: int | None = None
    _deviation: Fraction = field(init=False, repr=False)
    _publications: list[Publication] = field(init=False, default_factory=list, repr=False)
    _visible_ts: list[int] = field(init=False, default_factory=list, repr=False)
    _last_observation: tuple[int, Fraction] | None = field(init=False, default=None, repr=False)
    _last_published: Fraction | None = field(init=False, default=None, repr=False)
    _clock_ns: int | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        _duration(self.heartbeat_ns, "heartbeat_ns")
        _duration(self.latency_ns, "latency_ns", allow_zero=True)
        self._deviation = to_fraction(self.deviation, "deviation")
        if not 0 < self._deviation < 1:
            raise InvalidInput("deviation", self.deviation, "must be strictly between 0 and 1")
        if self.max_age_ns is None:
            self.max_age_ns = self.heartbeat_ns + self.latency_ns
        _duration(self.max_age_ns, "max_age_ns")

    # --- feeding --------------------------------------------------------------------------------
    def observe(self, ts_ns: int, price: Number) -> Publication | None:
        """Feed a source price; returns the publication it caused, if any."""
        _timestamp(ts_ns, "ts_ns")
        value = _price(price, "price")
        self._move_clock(ts_ns, "ts_ns")
        self._emit_heartbeats_before(ts_ns)
        self._last_observation = (ts_ns, value)
        last = self._publications[-1] if self._publications else None
        if last is None or self._last_published is None:
            return self._publish(value, ts_ns, ts_ns, "first")
        last_price = self._last_published
        if abs(value - last_price) / last_price >= self._deviation:
            return self._publish(value, ts_ns, ts_ns, "deviation")
        if ts_ns - last.ts_decided >= self.heartbeat_ns:
            return self._publish(value, ts_ns, ts_ns, "heartbeat")
        return None

    def advance(self, now_ns: int) -> list[Publication]:
        """Let time pass without observations: emit heartbeats due at or before ``now_ns``."""
        self._move_clock(now_ns, "now_ns")
        before = len(self._publications)
        self._emit_heartbeats_before(now_ns + 1)
        return self._publications[before:]

    def _move_clock(self, ts_ns: int, field_name: str) -> None:
        _timestamp(ts_ns, field_name)
        if self._clock_ns is not None and ts_ns < self._clock_ns:
            raise SimulationError(f"oracle {field_name}={ts_ns} is before the oracle clock {self._clock_ns}")
        self._clock_ns = ts_ns

    def _emit_heartbeats_before(self, ts_ns: int) -> None:
        """Heartbeat publications of the latest observation at deadlines strictly before ``ts_ns``."""
        if self._last_observation is None or not self._publications:
            return
        observed_ts, observed_price = self._last_observation
        deadline = self._publications[-1].ts_decided + self.heartbeat_ns
        while deadline < ts_ns:
            self._publish(observed_price, observed_ts, deadline, "heartbeat")
            deadline += self.heartbeat_ns

    def _publish(
        self, price: Fraction, ts_observed: int, ts_decided: int,
        reason: Literal["first", "deviation", "heartbeat"],
    ) -> Publication:
        publication = Publication(
            price=_decimal(price), ts_observed=ts_observed, ts_decided=ts_decided,
            ts_visible=ts_decided + self.latency_ns, reason=reason,
        )
        self._publications.append(publication)
        self._last_published = price
        self._visible_ts.append(publication.ts_visible)
        return publication

    # --- reading --------------------------------------------------------------------------------
    def price_at(self, ts_ns: int) -> Publication | None:
        """The latest publication readable at ``ts_ns`` (visible time ≤ ts_ns), or None."""
        _timestamp(ts_ns, "ts_ns")
        position = bisect_right(self._visible_ts, ts_ns)
        return self._publications[position - 1] if position else None

    def latest(self, now_ns: int) -> Publication | None:
        """What a consumer reads now: the same as ``price_at(now_ns)``."""
        return self.price_at(now_ns)

    def is_stale(self, now_ns: int) -> bool:
        """True when nothing is readable or the readable price's observation is older than max age."""
        publication = self.price_at(now_ns)
        if publication is None:
            return True
        max_age = self.max_age_ns if self.max_age_ns is not None else self.heartbeat_ns
        return now_ns - publication.ts_observed > max_age

    @property
    def publications(self) -> tuple[Publication, ...]:
        return tuple(self._publications)


__all__ = [
    "NS_PER_HOUR",
    "NS_PER_SECOND",
    "IndexMethod",
    "IndexPrice",
    "MovingAverageBasis",
    "Oracle",
    "Publication",
    "VenueQuote",
    "binance_mark_price",
    "median",
    "weighted_median",
]
