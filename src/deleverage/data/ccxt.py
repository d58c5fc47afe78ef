"""A JSON list of ccxt ``Position`` structures (``fetchPositions`` output) → a population frame.

ccxt numbers may arrive as float, str or null; each is coerced explicitly and a bad one is named by
its element and field (``positions[3].entryPrice``) with the JSON line where the element starts.
Fields used (FORMATS.md, "ccxt unified structures"): ``contracts`` (absolute), ``contractSize``,
``side`` ('long'|'short'), ``entryPrice``, ``leverage``, ``collateral``, ``marginMode``
('cross'|'isolated'), plus ``symbol``, ``id``, ``markPrice``, ``liquidationPrice``,
``maintenanceMarginPercentage`` when present. The base quantity is ``contracts × contractSize``.
Leverage and collateral determine each other through the entry notional when only one is given.
The frame has the columns of :func:`deleverage.data.population.generate_population`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from deleverage.data import _csvio as io
from deleverage.errors import DataError

POPULATION_SCHEMA: dict[str, Any] = {
    "account_id": pl.Int64, "side": pl.String, "qty": pl.Float64, "entry_price": pl.Float64,
    "leverage": pl.Float64, "collateral": pl.Float64, "margin_mode": pl.String,
}
CCXT_EXTRA_SCHEMA: dict[str, Any] = {
    "symbol": pl.String, "contracts": pl.Float64, "contract_size": pl.Float64,
    "mark_price": pl.Float64, "liquidation_price": pl.Float64,
    "maintenance_margin_rate": pl.Float64,
}


def _number(element: dict[str, Any], key: str, where: str, path: str, line: int | None,
            *, required: bool) -> float | None:
    """Coerce a ccxt number (float, int, str); None/"" allowed only when optional."""
    value = element.get(key)
    field = f"{where}.{key}"
    if value is None or value == "":
        if required:
            raise DataError("missing value", path=path, line=line, field=field)
        return None
    if isinstance(value, bool):
        raise DataError(f"{value!r} is not a number", path=path, line=line, field=field)
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{value!r} is not a number", path=path, line=line, field=field) from None
    if not math.isfinite(result):
        raise DataError(f"{value!r} is not finite", path=path, line=line, field=field)
    return result


def _element_lines(text: str, count: int) -> list[int | None]:
    """Line where each top-level list element starts (best effort: objects opened at depth 1)."""
    lines: list[int | None] = []
    depth, line, in_string, escape = 0, 1, False, False
    for char in text:
        if char == "\n":
            line += 1
        if in_string:
            if escape:
                escape = False
            elif char == "\\":
                escape = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in "[{":
            if depth == 1 and char == "{":
                lines.append(line)
            depth += 1
        elif char in "]}":
            depth -= 1
    return lines[:count] + [None] * max(0, count - len(lines))


def _position_row(
    element: Any, index: int, path: str, line: int | None
) -> dict[str, Any]:
    where = f"positions[{index}]"
    if not isinstance(element, dict):
        raise DataError(f"expected an object, got {type(element).__name__}", path=path, line=line,
                        field=where)
    side = str(element.get("side") or "").strip().lower()
    if side not in ("long", "short"):
        raise DataError(f"{element.get('side')!r} is not 'long' or 'short'", path=path, line=line,
                        field=f"{where}.side")
    contracts = _number(element, "contracts", where, path, line, required=True)
    size = _number(element, "contractSize", where, path, line, required=False)
    if size is None:
        size = 1.0
    elif size <= 0:  # a zero must not silently become 1, nor a negative flip the side
        raise DataError(f"{size!r} must be > 0", path=path, line=line, field=f"{where}.contractSize")
    entry = _number(element, "entryPrice", where, path, line, required=True)
    leverage = _number(element, "leverage", where, path, line, required=False)
    collateral = _number(element, "collateral", where, path, line, required=False)
    for key, value in (("contracts", contracts), ("entryPrice", entry)):
        if value is None or value <= 0:
            raise DataError(f"{value!r} must be > 0", path=path, line=line, field=f"{where}.{key}")
    notional = contracts * size * entry  # type: ignore[operator]
    if leverage is None and collateral is None:
        raise DataError("needs leverage or collateral", path=path, line=line, field=where)
    if leverage is None:
        leverage = notional / collateral if collateral else math.inf
    if collateral is None:
        collateral = notional / leverage if leverage else math.inf
    if not (leverage > 0 and math.isfinite(leverage)) or collateral <= 0:
        raise DataError(f"leverage {leverage!r} / collateral {collateral!r} must be > 0", path=path,
                        line=line, field=f"{where}.leverage")
    mode = str(element.get("marginMode") or "cross").strip().lower()
    if mode not in ("cross", "isolated"):
        raise DataError(f"{element.get('marginMode')!r} is not 'cross' or 'isolated'", path=path,
                        line=line, field=f"{where}.marginMode")
    return {
        "account_id": index, "side": side, "qty": contracts * size, "entry_price": entry,  # type: ignore[operator]
        "leverage": leverage, "collateral": collateral, "margin_mode": mode,
        "symbol": element.get("symbol"), "contracts": contracts, "contract_size": size,
        "mark_price": _number(element, "markPrice", where, path, line, required=False),
        "liquidation_price": _number(element, "liquidationPrice", where, path, line, required=False),
        "maintenance_margin_rate": _number(
            element, "maintenanceMarginPercentage", where, path, line, required=False),
    }


def positions_from_ccxt(positions: list[Any], *, path: str = "<positions>",
                        lines: list[int | None] | None = None) -> pl.DataFrame:
    """Normalise already-parsed ccxt Position dicts; ``account_id`` is the list index."""
    if not isinstance(positions, list):
        raise DataError(f"expected a JSON list of positions, got {type(positions).__name__}",
                        path=path)
    lines = lines or [None] * len(positions)
    rows = [_position_row(p, i, path, lines[i]) for i, p in enumerate(positions)]
    return pl.DataFrame(rows, schema={**POPULATION_SCHEMA, **CCXT_EXTRA_SCHEMA})


def read_ccxt_positions(path: str | Path) -> pl.DataFrame:
    """Read a JSON file: a list of Position structures, or ``{"positions": [...]}``."""
    name = str(path)
    text = io.read_bytes(path).decode("utf-8", errors="replace")
    if not text.strip():
        raise DataError("file is empty", path=name)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", path=name, line=exc.lineno) from None
    if isinstance(document, dict) and isinstance(document.get("positions"), list):
        document = document["positions"]
        lines = None
    else:
        lines = _element_lines(text, len(document)) if isinstance(document, list) else None
    return positions_from_ccxt(document, path=name, lines=lines)


def looks_like_ccxt_positions(document: Any) -> bool:
    """True for a (non-empty) list whose first element has ccxt Position keys."""
    if isinstance(document, dict):
        document = document.get("positions")
    return (isinstance(document, list) and bool(document) and isinstance(document[0], dict)
            and {"contracts", "side", "entryPrice"} <= set(document[0]))


__all__ = [
    "POPULATION_SCHEMA",
    "looks_like_ccxt_positions",
    "positions_from_ccxt",
    "read_ccxt_positions",
]
