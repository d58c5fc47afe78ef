"""Listing a new instrument on a running store: the ``instrument_listed`` input (``POST /v1/instruments``).

The genesis fixes the instruments a store starts with; a venue lists more while it runs. A listing
is an ordinary input: parsed under the strict number grammar (:func:`parse_listing`, configuration
only), checked against the state (a symbol already served is refused, field ``symbol``), stored,
replayed and snapshotted like any other, so a restart, a snapshot load and ``deleverage store
verify --replay`` all rebuild the same instrument set. Everything that could make applying it fail
(the contract, the three sizes, the tier table, the settlement asset) is decided while parsing, so
an accepted listing always applies.

Body::

    {"symbol": "SOLUSDT", "contract": "linear", "base": "SOL", "quote": "USDT", "settle": "USDT",
     "tick_size": "0.01", "lot_size": "1", "contract_size": "1", "tiers": "flat:0.01"}

``tiers`` is ``flat:<rate>`` (0 < rate < 1) or a bundled table name; ``settle`` must be a settlement
asset the store already serves (a new asset would need a seeded insurance fund: a new genesis).

:meth:`LiquidationEngine.list_instrument <deleverage.engine.engine.LiquidationEngine.list_instrument>` adds the symbol to the running engine.
The engine has no public way to do that yet, so this fills in each of its per-symbol tables the way
its constructor and ``track_all`` do (a new symbol holds no position, so its screen starts empty);
``tests/service/test_service_listing.py`` checks that no per-symbol table is left without the symbol.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from deleverage.core.instruments import Instrument
from deleverage.core.money import Asset
from deleverage.core.tiers import MarginTiers
from deleverage.errors import DeleverageError, InvalidInput
from deleverage.service import limits

KIND = "instrument_listed"
FIELDS = frozenset({"ts_ns", "symbol", "contract", "base", "quote", "settle", "tick_size", "lot_size",
                    "contract_size", "tiers"})
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9_.-]{0,31}")
_CODE = re.compile(r"[A-Z0-9]{1,16}")
_TABLE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
MIN_SIZE, MAX_SIZE = Decimal("1e-18"), Decimal("1e18")


def _code(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or _CODE.fullmatch(value) is None:
        raise InvalidInput(name, value if not isinstance(value, str) else value[:32],
                           "must be 1-16 upper-case letters or digits")
    return value


def _size(body: Mapping[str, Any], name: str) -> str:
    value = limits.decimal_text(body.get(name), name)
    if not MIN_SIZE <= value <= MAX_SIZE:
        raise InvalidInput(name, body.get(name), f"must be between {MIN_SIZE} and {MAX_SIZE}")
    return str(value)  # the grammar admits no exponent, so this is the text as sent


def tiers_of(spec: str, field: str = "tiers") -> MarginTiers:
    """The tier table a listing names (``flat:<rate>`` or a bundled name); InvalidInput otherwise."""
    try:
        if spec.startswith("flat:"):
            rate = limits.decimal_text(spec.removeprefix("flat:"), field)
            if not 0 < rate < 1:
                raise InvalidInput(field, spec, "a flat maintenance rate is between 0 and 1 (exclusive)")
            return MarginTiers.flat(str(rate))
        if _TABLE.fullmatch(spec) is None:
            raise InvalidInput(field, spec[:64], "must be 'flat:<rate>' or a bundled tier table name")
        return MarginTiers.load(spec)
    except InvalidInput as exc:
        if exc.field == field:
            raise
        raise InvalidInput(field, spec[:64], str(exc)) from None
    except (DeleverageError, OSError, ValueError, KeyError) as exc:
        raise InvalidInput(field, spec[:64], f"not a usable tier table: {exc}") from None


def parse_listing(body: Mapping[str, Any], assets: Mapping[str, Asset]) -> dict[str, Any]:
    """The canonical payload of a listing (without ``ts_ns``); refuses by field name."""
    symbol = body.get("symbol")
    if not isinstance(symbol, str) or _SYMBOL.fullmatch(symbol) is None:
        raise InvalidInput("symbol", symbol if not isinstance(symbol, str) else symbol[:40],
                           "must be 1-32 upper-case letters, digits, '_', '.' or '-'")
    # a symbol already served is refused by the state check, after the Idempotency-Key lookup
    # (a retried listing must get its first answer, not "already listed")
    contract = body.get("contract")
    if contract not in ("linear", "inverse"):
        raise InvalidInput("contract", contract if isinstance(contract, str | None) else str(contract)[:16],
                           "must be 'linear' or 'inverse'")
    out: dict[str, Any] = {"symbol": symbol, "contract": contract}
    for name in ("base", "quote", "settle"):
        out[name] = _code(body, name)
    if out["settle"] not in assets:
        raise InvalidInput("settle", out["settle"], f"not a settlement asset here; known: {sorted(assets)}")
    for name in ("tick_size", "lot_size", "contract_size"):
        out[name] = _size(body, name)
    spec = body.get("tiers")
    if not isinstance(spec, str) or not spec:
        raise InvalidInput("tiers", spec if not isinstance(spec, str) else None,
                           "is required: 'flat:<rate>' or a bundled tier table name")
    tiers_of(spec)
    out["tiers"] = spec
    instrument_of(out, assets)  # the contract's own checks, now rather than when applying
    return out


def instrument_of(p: Mapping[str, Any], assets: Mapping[str, Asset]) -> Instrument:
    """The instrument a canonical listing payload describes."""
    return Instrument(symbol=p["symbol"], contract=p["contract"], base=p["base"], quote=p["quote"],
                      settle=assets[p["settle"]], tick_size=Decimal(p["tick_size"]),
                      lot_size=Decimal(p["lot_size"]), contract_size=Decimal(p["contract_size"]), tiers=None)


__all__ = ["FIELDS", "KIND", "instrument_of", "parse_listing", "tiers_of"]
