"""Human names and units of the summary's metric keys, and how to print their values.

The report's table and the headline use these; ``summary.json`` keeps the keys (the names the
issues fix). ``quote`` in a unit is replaced by the run's settlement asset (e.g. USDT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Label:
    title: str
    unit: str = ""  # "bps", "quote", "s", "%" (a share shown as a percentage), "" (a count or ratio)
    integer: bool = False  # a count: printed without decimals


LABELS: dict[str, Label] = {
    "shortfall_bps": Label("Shortfall", "bps"),
    "system_loss": Label("System loss", "quote"),
    "cascade_notional": Label("Cascade notional", "quote"),
    "shortfall_quote": Label("Shortfall", "quote"),
    "bad_debt": Label("Bad debt", "quote"),
    "insurance_fund_drawdown": Label("Fund drawdown", "quote"),
    "adl_count": Label("ADL counterparties", "", integer=True),
    "adl_notional": Label("ADL notional", "quote"),
    "socialized_loss": Label("Socialised loss", "quote"),
    "frontrunner_profit": Label("Front-run P&L", "quote"),
    "liquidations": Label("Liquidations", "", integer=True),
    "liquidated_accounts": Label("Accounts liquidated", "", integer=True),
    "liquidated_notional": Label("Liquidated notional", "quote"),
    "netted_notional": Label("Netted notional", "quote"),
    "backstop_notional": Label("Backstop notional", "quote"),
    "induced_notional": Label("Induced notional", "quote"),
    "avg_slippage_bps": Label("Avg slippage", "bps"),
    "p50_slippage_bps": Label("Median slippage", "bps"),
    "p99_slippage_bps": Label("p99 slippage", "bps"),
    "collateral_recovered": Label("Collateral recovered", "quote"),
    "insurance_fund_end": Label("Fund at end", "quote"),
    "backstop_pnl": Label("Backstop P&L", "quote"),
    "fees": Label("Fees", "quote"),
    "cascade_waves": Label("Cascade waves", "", integer=True),
    "induced_share": Label("Induced share", "%"),
    "max_price_impact_bps": Label("Max price impact", "bps"),
    "halt_seconds": Label("Halted", "s"),
    "auction_fill_ratio": Label("Venue fill ratio", "%"),
    "liquidated_oi_share": Label("Liquidated share of OI", "%"),
    "long_share": Label("Long share", "%"),
}
# The table's columns, in order: the deciding ones first (the yardstick, the system's loss, the cascade),
# then who bore the loss, then what happened.
TABLE_COLUMNS = (
    "shortfall_bps", "system_loss", "cascade_notional", "shortfall_quote", "bad_debt", "insurance_fund_drawdown",
    "adl_count", "adl_notional", "socialized_loss", "frontrunner_profit", "liquidations", "liquidated_accounts",
    "liquidated_notional", "netted_notional", "backstop_notional", "induced_notional", "avg_slippage_bps",
    "p99_slippage_bps", "collateral_recovered", "insurance_fund_end", "backstop_pnl", "fees", "cascade_waves",
    "max_price_impact_bps", "halt_seconds", "auction_fill_ratio", "liquidated_oi_share", "long_share",
)


def label(key: str) -> Label:
    return LABELS.get(key, Label(key.replace("_", " ")))


def unit_text(key: str, quote: str = "quote") -> str:
    unit = label(key).unit
    return quote if unit == "quote" else unit


def header(key: str, quote: str = "quote") -> str:
    """``"Shortfall (bps)"``, ``"Bad debt (USDT)"``, ``"Liquidations"``."""
    unit = unit_text(key, quote)
    return f"{label(key).title} ({unit})" if unit else label(key).title


def format_value(key: str, value: float | None) -> str:
    """A value as a person reads it: counts as ints (``538``, never ``538.0``), money with thousands
    separators, bps with one decimal, shares as percentages."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    info = label(key)
    if info.integer and float(value).is_integer():
        return f"{int(value):,}"
    if info.unit == "%":
        return f"{value * 100:.1f}%"
    if info.unit in ("bps", "s"):
        return f"{value:,.1f}"
    if info.unit == "quote":
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    if abs(value) >= 1000 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.3g}"


def format_compact(key: str, value: float | None) -> str:
    """Like :func:`format_value`, with large amounts as ``36.2M`` / ``4.1k`` (interval bounds)."""
    if value is None or label(key).unit != "quote" or abs(value) < 10_000:
        return format_value(key, value)
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}{suffix}"
    return format_value(key, value)


__all__ = ["LABELS", "TABLE_COLUMNS", "Label", "format_compact", "format_value", "header", "label", "unit_text"]
