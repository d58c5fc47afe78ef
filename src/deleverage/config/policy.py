"""Liquidation policies as data: pydantic models, loadable from TOML, with presets that imitate real venues.

A policy answers five questions the engine asks on every candidate:

1. *trigger* — which price says the account is liquidatable (exchange mark, oracle, or mark confirmed by a
   slower oracle), and how long may the engine wait for that confirmation;
2. *partial* — how much to close (everything; the least that restores margin; one step down the risk
   tiers; a fixed chunk with a cooldown; a time ramp; a slope proportional to the shortfall);
3. *execution* — where and how the closing flow meets liquidity (order book with market / IOC orders,
   a uniform-price batch auction every interval, or a Dutch auction), and whether opposite liquidation
   flow is netted internally first;
4. *takeover* — who takes the position when the book cannot (insurance fund or backstop vault) and at
   what price;
5. *loss waterfall* — fees, the insurance fund, auto-deleveraging (ranking, trigger) and whether a
   remaining loss may be socialised.

Presets name the venue they imitate and the public document they follow (``source``). Where a preset
needs a number the venue does not publish, the field's value is marked as an assumption in ``notes``.
The presets themselves are data (:mod:`deleverage.config.presets`, below this module), so ``extends``
resolves without an import circle; ``engine.policy`` re-exports this module for the engine's callers.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from deleverage.config.presets import PRESET_SPECS, Spec
from deleverage.errors import InvalidInput

MS = 1
SECOND_MS = 1_000
HOUR_MS = 3_600_000


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TriggerConfig(_Model):
    """Which price makes an account liquidatable, and how a fast trigger waits for a slow confirmation."""

    price_source: Literal["mark", "oracle", "mark_confirmed_by_oracle"] = "mark"
    confirm_timeout_ms: int = Field(default=0, ge=0, description="hybrid: execute anyway after this wait")
    screen_buffer_bps: float = Field(
        default=1.0, ge=0, description="float screen widening before the exact check (float error is ~1e-12)"
    )


class PartialConfig(_Model):
    """How much of a liquidatable position is closed per action."""

    mode: Literal["full", "restore", "tier_step", "chunk", "incremental", "time_ramp", "slope"] = "full"
    target_ratio: float = Field(
        default=0.95, gt=0, le=1.0, description="restore/tier_step/incremental: stop once maintenance/equity ≤ this"
    )
    chunk_fraction: float = Field(default=0.2, gt=0, le=1.0, description="chunk: share closed per action")
    chunk_min_notional: float = Field(
        default=0.0, ge=0, description="chunk: positions at or below this notional are closed whole"
    )
    cooldown_ms: int = Field(default=0, ge=0, description="chunk/incremental: wait between actions on one account")
    during_cooldown: Literal["wait", "full"] = Field(
        default="wait", description="chunk: during the cooldown send nothing ('wait') or the whole position "
                            "('full', Hyperliquid)"
    )
    step_fraction: float = Field(default=0.1, gt=0, le=1.0, description="incremental: share per step")
    ramp_duration_ms: int = Field(default=0, ge=0, description="time_ramp: time to reach 100%")
    ramp_initial: float = Field(default=0.0, ge=0, le=1.0, description="time_ramp: share allowed at once")
    slope_gain: float = Field(default=1.0, gt=0, description="slope: share = gain × (MM − equity) / MM")
    slope_min_fraction: float = Field(default=0.05, gt=0, le=1.0, description="slope: smallest share per action")
    full_below_equity_ratio: float | None = Field(
        default=None, ge=0, description="equity/MM below this → close in full (or take over) at once"
    )


class DutchConfig(_Model):
    """MakerDAO Liquidations 2.0 parameters (clip.sol / abaci.sol)."""

    buf: float = Field(default=1.2, gt=0, description="top = oracle × buf")
    curve: Literal["linear", "stairstep", "exponential"] = "stairstep"
    tau_s: float = Field(default=3600.0, gt=0, description="linear: seconds to reach zero")
    step_s: float = Field(default=90.0, gt=0, description="stairstep: seconds per step")
    cut: float = Field(default=0.99, gt=0, le=1.0, description="per-step (stairstep) or per-second multiplier")
    tail_s: float = Field(default=8400.0, gt=0, description="reset when elapsed > tail")
    cusp: float = Field(default=0.4, gt=0, lt=1.0, description="reset when price / top < cusp")
    tip: float = Field(default=0.0, ge=0, description="flat keeper incentive, quote units")
    chip: float = Field(default=0.001, ge=0, description="keeper incentive share of tab")
    chop: float = Field(default=1.13, ge=1.0, description="liquidation penalty: tab = debt × chop")
    hole: float | None = Field(default=None, gt=0, description="cap on debt in auction for this collateral")
    global_hole: float | None = Field(default=None, gt=0, description="cap on debt in auction overall (Hole)")
    dust: float = Field(default=0.0, ge=0, description="smallest tab an auction may leave")


class ExecutionConfig(_Model):
    """Where closing flow meets liquidity and in what shape."""

    venue: Literal["book", "auction", "dutch"] = "book"
    order: Literal["market", "ioc_bankruptcy", "ioc_fillable", "fok"] = "ioc_bankruptcy"
    batch_interval_ms: int = Field(default=0, ge=0, description="0: act on every mark; >0: collect per interval")
    net_opposite: bool = Field(default=False, description="cross opposite liquidations internally at one price")
    include_backstop_bids: bool = Field(default=False, description="backstop LPs' standing bids join the batch")
    carry_over: bool = Field(default=True, description="unfilled batch quantity waits for the next batch")
    max_batch_notional: float | None = Field(default=None, gt=0, description="cap per batch (dYdX per block)")
    max_account_notional: float | None = Field(default=None, gt=0, description="cap per account per batch")
    net_cross_pairs_first: bool = Field(default=False, description="OKX: close an account's long/short pairs first")
    band_bps: float = Field(
        default=200.0, gt=0, lt=10_000, description="auction: a batch reaches the book's whole depth within "
        "this band around the close mark, and its orders are limited at the band's edge"
    )
    depth_levels: int | None = Field(
        default=None, ge=1, description="auction: at most this many book levels per side (None: the band's)"
    )
    dutch: DutchConfig | None = None

    @model_validator(mode="after")
    def _dutch_has_params(self) -> ExecutionConfig:
        if self.venue == "dutch" and self.dutch is None:
            raise ValueError("venue 'dutch' needs a [execution.dutch] table")
        if self.venue == "auction" and self.batch_interval_ms == 0:
            raise ValueError("venue 'auction' needs batch_interval_ms > 0")
        if self.venue == "auction" and self.order != "market":
            raise ValueError(f"venue 'auction' takes market orders limited by band_bps, not {self.order!r}: "
                             "bankruptcy prices belong to the loss waterfall, not to the order (set order = "
                             "'market')")
        return self


class TakeoverConfig(_Model):
    """Who takes over a position the book could not absorb, and at what price."""

    by: Literal["none", "insurance_fund", "backstop"] = "insurance_fund"
    price: Literal["bankruptcy", "oracle_fee", "backstop_quote"] = Field(
        default="bankruptcy", description="bankruptcy: at the account's bankruptcy price (a backstop vault "
        "takes it whatever its quote, Hyperliquid); oracle_fee: at oracle ∓ fee_bps, if within the provider's "
        "quote (Drift); backstop_quote: at each provider's quote, below the bankruptcy price if need be (the "
        "deficit goes down the waterfall)"
    )
    fee_bps: float = Field(default=0.0, ge=0, description="oracle_fee: takeover at oracle ∓ this")
    backstop_discount_bps: float | None = Field(
        default=None, ge=0, lt=10_000, description="backstops quote mark ∓ this, in takeovers and in batch "
        "auctions (None: each provider's own discount)"
    )
    when: Literal["bankrupt", "below_equity_ratio", "unfilled"] = "unfilled"
    equity_ratio: float = Field(default=2 / 3, gt=0, le=1.0, description="below_equity_ratio: equity/MM trigger")
    fund_max_position_fraction: float | None = Field(
        default=None, gt=0, description="the fund takes over positions only up to this share of its balance in "
                                "notional (Binance: 100%); the rest goes to ADL"
    )


class FeeConfig(_Model):
    """Liquidation fee: charged on closed notional, capped so it never makes the account bankrupt."""

    liquidation_fee_rate: float = Field(default=0.0, ge=0, lt=0.5)
    fee_to: Literal["insurance_fund", "fee_pool", "liquidator"] = "insurance_fund"
    cap_by_remaining_margin: bool = True
    remaining_margin_to_fund_on_takeover: bool = Field(
        default=True, description="Binance: what is left of the collateral at takeover goes to the fund"
    )


class ADLConfig(_Model):
    """Auto-deleveraging: who is closed against a bankrupt position and when."""

    ranking: Literal["leverage_pnl", "bitmex", "hyperliquid", "pnl", "offsetting", "none"] = "leverage_pnl"
    trigger: Literal["fund_exhausted", "fund_drawdown", "never"] = "fund_exhausted"
    drawdown_fraction: float = Field(default=0.3, gt=0, le=1.0)
    drawdown_window_ms: int = Field(default=8 * HOUR_MS, gt=0)
    price: Literal["bankruptcy", "mark", "previous_mark"] = "bankruptcy"
    socialize_losses: bool = False
    gate_withdrawals_on_negative_equity: bool = False


class SafeguardsConfig(_Model):
    """Circuit breakers and caps; execution halts, detection never does."""

    price_band_bps: float | None = Field(default=None, gt=0, description="halt execution if |Δmark| over window exceeds")
    band_window_ms: int = Field(default=60 * SECOND_MS, gt=0)
    max_pause_ms: int = Field(default=5 * 60 * SECOND_MS, gt=0, description="execution resumes after this anyway")
    oracle_max_age_ms: int | None = Field(default=None, gt=0)
    oracle_max_divergence_bps: float | None = Field(default=None, gt=0)
    max_notional_in_liquidation: float | None = Field(default=None, gt=0)
    fund_drawdown_halt: float | None = Field(default=None, gt=0, le=1.0)


class DynamicMarginConfig(_Model):
    """Maintenance scaled by realised volatility and concentration, changed only at announced steps."""

    enabled: bool = False
    vol_window_ms: int = Field(default=60 * 60 * SECOND_MS, gt=0)
    vol_reference: float = Field(default=0.6, gt=0, description="annualised volatility at which the scale is 1")
    vol_max_scale: float = Field(default=3.0, ge=1.0)
    concentration_threshold: float = Field(default=0.01, gt=0, le=1.0, description="share of open interest")
    concentration_slope: float = Field(default=1.0, ge=0)
    step_ms: int = Field(default=60 * 60 * SECOND_MS, gt=0, description="changes take effect on these boundaries")


class LiquidationPolicy(_Model):
    """A complete liquidation policy. ``name`` is how users select it; ``source`` what it follows."""

    name: str
    imitates: str = "custom"
    source: str = ""
    description: str = ""
    notes: tuple[str, ...] = ()
    cancel_open_orders: bool = True
    trigger: TriggerConfig = TriggerConfig()
    partial: PartialConfig = PartialConfig()
    execution: ExecutionConfig = ExecutionConfig()
    takeover: TakeoverConfig = TakeoverConfig()
    fees: FeeConfig = FeeConfig()
    adl: ADLConfig = ADLConfig()
    safeguards: SafeguardsConfig = SafeguardsConfig()
    dynamic_margin: DynamicMarginConfig = DynamicMarginConfig()

    @classmethod
    def from_toml(cls, path: str | Path) -> LiquidationPolicy:
        """Load a policy from a TOML file; a missing field keeps its default, an unknown one is refused."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidInput("policy", str(path), "file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput("policy", str(path), f"not valid TOML: {exc}") from None
        return cls.from_dict(data, origin=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, origin: str = "policy") -> LiquidationPolicy:
        data = dict(data)
        base_name = data.pop("extends", None)
        if base_name is not None:
            base = get_policy(str(base_name)).model_dump()
            data = _deep_merge(base, data)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidInput(f"{origin}:{where}", first.get("input"), first["msg"]) from None

    def with_overrides(self, **changes: Any) -> LiquidationPolicy:
        """A copy with nested fields replaced, validated: ``p.with_overrides(execution={"batch_interval_ms": 500})``."""
        return LiquidationPolicy.from_dict(_deep_merge(self.model_dump(), changes), origin=self.name)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _preset_factory(name: str, spec: Callable[[], Spec]) -> Callable[[], LiquidationPolicy]:
    """A function named like the preset that validates its spec into a policy (docstring: the spec's)."""

    def make() -> LiquidationPolicy:
        return LiquidationPolicy.model_validate(spec())

    make.__name__ = make.__qualname__ = name
    make.__doc__ = spec.__doc__
    return make


PRESETS: dict[str, Callable[[], LiquidationPolicy]] = {
    name: _preset_factory(name, spec) for name, spec in PRESET_SPECS.items()
}


def get_policy(name: str) -> LiquidationPolicy:
    """A preset by name, or a policy file by path (``*.toml``); unknown names list the known ones."""
    if name in PRESETS:
        return PRESETS[name]()
    if name.endswith(".toml"):
        return LiquidationPolicy.from_toml(name)
    raise InvalidInput("policy", name, f"unknown policy; known presets: {', '.join(sorted(PRESETS))}")


def list_policies() -> list[LiquidationPolicy]:
    return [factory() for _, factory in sorted(PRESETS.items())]


__all__ = [
    "HOUR_MS",
    "MS",
    "PRESETS",
    "SECOND_MS",
    "ADLConfig",
    "DutchConfig",
    "DynamicMarginConfig",
    "ExecutionConfig",
    "FeeConfig",
    "LiquidationPolicy",
    "PartialConfig",
    "SafeguardsConfig",
    "TakeoverConfig",
    "TriggerConfig",
    "get_policy",
    "list_policies",
]
