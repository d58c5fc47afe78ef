"""JSON views: an input's answer, an account, the service state, a liquidation (pure functions).

They read only immutable values — the configuration's instruments and the published
:class:`~deleverage.service.state.AccountRecord` / totals — so a read never needs the writer's state.
Money keeps the engine's integers (ticks, lots, minor units) next to human decimal strings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

from deleverage.core.instruments import Instrument
from deleverage.core.money import Asset
from deleverage.core.tiers import MarginTiers
from deleverage.service.state import AccountRecord, fraction_text
from deleverage.service.store import OutputRow


class Catalogue:
    """The configuration's instruments and assets, for formatting."""

    def __init__(self, instruments: Mapping[str, Instrument], tiers_for: Callable[[Instrument], MarginTiers]) -> None:
        self.instruments = dict(instruments)
        self.assets: dict[str, Asset] = {i.settle.code: i.settle for i in self.instruments.values()}
        self.tiers = {s: tiers_for(i) for s, i in self.instruments.items()}

    def amount(self, code: str, minor: int) -> str:
        asset = self.assets.get(code)
        return f"{asset.from_minor(minor):f}" if asset is not None else str(minor)

    def price(self, symbol: str, ticks: int) -> str:
        return str(self.instruments[symbol].ticks_to_price(ticks))


def liquidation_view(cat: Catalogue, item: dict[str, Any]) -> dict[str, Any]:
    """A stored LiquidationRecord with human-unit fields next to the engine's integers."""
    data = item["data"]
    inst = cat.instruments[data["symbol"]]
    vwap = data.get("fill_vwap_ticks")
    human = {
        "qty": f"{inst.lots_to_qty(data['qty_lots']):f}",
        "trigger_mark": str(inst.ticks_to_price(data["trigger_mark_ticks"])),
        "fill_vwap": None if vwap is None else f"{inst.tick_size * Decimal(repr(vwap)):f}",
        "fee": cat.amount(inst.settle.code, data["fee_minor"]),
        "bad_debt": cat.amount(inst.settle.code, data["bad_debt_minor"]),
    }
    return {**item, **human}


def answer_view(cat: Catalogue, seq: int, chain: str, outputs: Sequence[OutputRow]) -> dict[str, Any]:
    """What an accepted input answers (also on an idempotent retry, rebuilt from the store)."""
    counts: dict[str, int] = {}
    liquidations = []
    for row in outputs:
        counts[row.stream] = counts.get(row.stream, 0) + 1
        if row.stream == "liquidation":
            item = {"seq": seq, "kind": row.kind, "ts_ns": row.ts_ns, "symbol": row.symbol,
                    "account_id": row.account_id, "data": json.loads(row.payload)}
            liquidations.append(liquidation_view(cat, item))
    return {"seq": seq, "digest": chain, "outputs": counts, "liquidations": liquidations}


def account_view(cat: Catalogue, record: AccountRecord, marks: Mapping[str, int]) -> dict[str, Any]:
    """Balances, positions valued at the published marks, and margin per settlement asset (cross).

    Margin follows ``Ledger.margin_state``: equity = wallet + Σ unrealized PnL (exact), maintenance =
    Σ tiered maintenance (exact), liquidatable when equity ≤ maintenance.
    """
    positions = []
    equity: dict[str, Fraction] = {}
    maintenance: dict[str, Fraction] = {}
    unvalued: set[str] = set()
    for pos in record.positions:
        inst = cat.instruments[pos.symbol]
        code = inst.settle.code
        entry = pos.entry_price_ticks(inst)
        mark = marks.get(pos.symbol)
        upnl = None if mark is None else pos.unrealized_pnl_exact(inst, mark)
        positions.append({
            "symbol": pos.symbol, "side": pos.side, "qty": f"{inst.lots_to_qty(abs(pos.qty_lots)):f}",
            "qty_lots": pos.qty_lots,
            "entry_price": None if entry is None else str(inst.tick_size * Decimal(entry.numerator)
                                                          / Decimal(entry.denominator)),
            "mark_price": None if mark is None else str(inst.ticks_to_price(mark)),
            "unrealized_pnl": None if upnl is None else cat.amount(code, math.floor(upnl)),
            "realized_pnl": cat.amount(code, pos.realized_pnl_minor),
            "in_liquidation": pos.symbol in record.in_liquidation,
        })
        if mark is None:
            unvalued.add(code)
            continue
        equity[code] = equity.get(code, Fraction(0)) + upnl  # type: ignore[operator]
        per_unit = inst.settle.minor_per_unit
        units = abs(inst.notional(mark, pos.qty_lots)) / per_unit
        maintenance[code] = maintenance.get(code, Fraction(0)) + cat.tiers[pos.symbol].maintenance_margin_exact(
            units) * per_unit
    margin: dict[str, Any] = {}
    for code in sorted({cat.instruments[p.symbol].settle.code for p in record.positions}):
        if code in unvalued:
            margin[code] = None
            continue
        e = equity.get(code, Fraction(0)) + record.balances.get(code, 0)
        m = maintenance.get(code, Fraction(0))
        margin[code] = {"equity": cat.amount(code, math.floor(e)),
                        "maintenance_margin": cat.amount(code, math.ceil(m)),
                        "margin_ratio": None if e <= 0 else float(m / e),
                        "liquidatable": e <= m}
    return {"account_id": record.account_id, "kind": record.kind, "margin_mode": record.margin_mode,
            "balances": {c: cat.amount(c, v) for c, v in sorted(record.balances.items())},
            "positions": positions, "margin": margin}


def totals_view(cat: Catalogue, totals: Mapping[str, Fraction | None], inflow: Mapping[str, int]
                ) -> dict[str, Any]:
    """Per asset: total value (balances + unrealized PnL) against the external inflow (conservation)."""
    out = {}
    for code in sorted(set(totals) | set(inflow)):
        total = totals.get(code, Fraction(0))
        flow = inflow.get(code, 0)
        out[code] = {"total_value_minor": None if total is None else fraction_text(total),
                     "external_inflow_minor": str(flow),
                     "total_value": (cat.amount(code, int(total))
                                     if total is not None and total.denominator == 1 else None),
                     "external_inflow": cat.amount(code, flow),
                     "conserved": None if total is None else total == flow}
    return out


__all__ = ["Catalogue", "account_view", "answer_view", "liquidation_view", "totals_view"]
