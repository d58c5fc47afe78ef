"""Which instrument a data file is, and the files that declare instruments and margin tiers.

A replay's instrument comes from the data and the user, never from a default (DESIGN, second round):

- the **symbol** from Binance's public-data file name (``ETHUSDT-1m-2021-05-19.csv``,
  ``BTCUSD_PERP-aggTrades-…``), a capture's ``"s"`` field, Tardis' ``symbol`` column, or ``--symbol``
  (a file name and ``--symbol`` that disagree are refused; a file with no symbol in its name needs
  ``--symbol``);
- **tick and lot** from a file the user passes with ``--instruments`` — Binance ``exchangeInfo``
  (``GET /fapi/v1/exchangeInfo``: filters ``PRICE_FILTER.tickSize``, ``LOT_SIZE.stepSize``,
  ``contractType``; ``GET /dapi/v1/exchangeInfo`` adds ``contractSize`` and ``marginAsset`` for COIN-M)
  or a ccxt ``markets`` JSON (``precision``, ``contractSize``, ``linear``/``inverse``, ``settle``; the
  raw Binance filters in ``info`` win when present) — else the registry's tick in force on the data's
  date (:mod:`deleverage.core.instruments`), else inferred from the data's own grid, with a note;
  whatever the source, every price and quantity of the data must fit it;
- **tiers** with ``--tiers``: a bundled table name, ``flat:<rate>``, or a file — Binance
  ``leverageBracket`` JSON (``/fapi/v1/leverageBracket``: ``notionalFloor``, ``maintMarginRatio``,
  ``initialLeverage``, ``cum``; ``/dapi/v1/leverageBracket``: ``qtyFloor`` in coin), ccxt
  ``fetchLeverageTiers`` JSON, or a table in deleverage's own format; else the instrument's shipped
  table; a symbol with none is refused with how to supply one.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from deleverage.core.instruments import (
    REGISTRY,
    Instrument,
    InstrumentChoice,
    InstrumentRegistry,
    choose_instrument,
    data_grid,
    split_symbol,
)
from deleverage.core.money import Asset
from deleverage.core.tiers import MarginTiers
from deleverage.errors import DataError, InvalidInput

#: Binance public-data names: ``<SYMBOL>-<interval or data type>-<date>.<ext>`` (data.binance.vision)
_PUBLIC_NAME = re.compile(r"^([A-Z0-9]+(?:_[A-Z0-9]+)?)-[A-Za-z0-9]+-\d{4}-\d{2}(?:-\d{2})?(?:\.[A-Za-z0-9]+)*$")
PRICE_COLUMNS = ("open", "high", "low", "close", "price", "bid_price", "ask_price")
QTY_COLUMNS = ("volume", "qty", "bid_qty", "ask_qty")
TIERS_HELP = ("pass --tiers with a Binance leverage-bracket JSON (GET /fapi/v1/leverageBracket, or "
              "/dapi/v1/leverageBracket for COIN-M), a ccxt fetchLeverageTiers JSON, a bundled table "
              "({bundled}), or flat:<rate> such as flat:0.005")


def symbol_from_name(name: str) -> str | None:
    """``ETHUSDT-1m-2021-05-19.csv`` → ``ETHUSDT``; ``BTCUSD_PERP-aggTrades-2024-08.zip`` → ``BTCUSD_PERP``."""
    match = _PUBLIC_NAME.match(name)
    return match.group(1) if match else None


# --- instrument files: exchangeInfo and ccxt markets ----------------------------------------------------


def _decimal(value: Any, where: str, path: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise DataError(f"{value!r} is not a number", path=path, field=where) from None
    if not number.is_finite() or number <= 0:
        raise DataError(f"{value!r} must be a positive number", path=path, field=where)
    return number.normalize()


def _asset(code: str) -> Asset:
    return Asset(code.upper(), 8)


def _from_exchange_info(entry: dict[str, Any], index: int, path: str) -> Instrument:
    where = f"symbols[{index}]"
    symbol = entry.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise DataError("missing symbol", path=path, field=f"{where}.symbol")
    filters = {f.get("filterType"): f for f in entry.get("filters", []) if isinstance(f, dict)}
    if "PRICE_FILTER" not in filters or "LOT_SIZE" not in filters:
        raise DataError("needs PRICE_FILTER and LOT_SIZE filters", path=path, field=f"{where}.filters")
    tick = _decimal(filters["PRICE_FILTER"].get("tickSize"), f"{where}.PRICE_FILTER.tickSize", path)
    lot = _decimal(filters["LOT_SIZE"].get("stepSize"), f"{where}.LOT_SIZE.stepSize", path)
    base = str(entry.get("baseAsset") or "")
    quote = str(entry.get("quoteAsset") or "")
    if not base or not quote:
        raise DataError("needs baseAsset and quoteAsset", path=path, field=where)
    inverse = "contractSize" in entry  # COIN-M (dapi): contracts of contractSize USD, margined in the coin
    size = _decimal(entry["contractSize"], f"{where}.contractSize", path) if inverse else Decimal(1)
    settle = str(entry.get("marginAsset") or (base if inverse else quote))
    return Instrument(symbol=symbol.upper(), contract="inverse" if inverse else "linear", base=base.upper(),
                      quote=quote.upper(), settle=_asset(settle), tick_size=tick, lot_size=lot, contract_size=size)


_CCXT_DECIMAL_PLACES, _CCXT_TICK_SIZE = 2, 4  # ccxt's precisionMode constants


def _ccxt_step(value: Any, mode: int | None, where: str, path: str) -> Decimal:
    """ccxt precision: a tick size (TICK_SIZE mode, ccxt 4's default for Binance) or a number of decimals
    (DECIMAL_PLACES). Without ``precisionMode``: an integer of 2 or more is decimals, anything else a size."""
    number = Decimal(str(value)) if isinstance(value, int | float | str) else None
    if number is None or not number.is_finite() or number < 0:
        raise DataError(f"{value!r} is not a precision", path=path, field=where)
    decimals = mode == _CCXT_DECIMAL_PLACES or (mode is None and number == number.to_integral() and number >= 2)
    if decimals:
        return Decimal(1).scaleb(-int(number))
    return _decimal(number, where, path)


def _from_ccxt_market(market: dict[str, Any], key: str, path: str, mode: int | None) -> Instrument:
    where = f"markets[{key!r}]"
    raw_info = market.get("info")
    info: dict[str, Any] = raw_info if isinstance(raw_info, dict) else {}
    symbol = market.get("id") or info.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise DataError("missing id (the exchange's symbol)", path=path, field=f"{where}.id")
    filters = {f.get("filterType"): f for f in info.get("filters", []) if isinstance(f, dict)}
    raw_precision = market.get("precision")
    precision: dict[str, Any] = raw_precision if isinstance(raw_precision, dict) else {}
    mode = market.get("precisionMode", mode)
    if "PRICE_FILTER" in filters and "LOT_SIZE" in filters:  # Binance's own numbers: exact
        tick = _decimal(filters["PRICE_FILTER"].get("tickSize"), f"{where}.info.PRICE_FILTER.tickSize", path)
        lot = _decimal(filters["LOT_SIZE"].get("stepSize"), f"{where}.info.LOT_SIZE.stepSize", path)
    elif "price" in precision and "amount" in precision:
        tick = _ccxt_step(precision["price"], mode, f"{where}.precision.price", path)
        lot = _ccxt_step(precision["amount"], mode, f"{where}.precision.amount", path)
    else:
        raise DataError("needs precision.price and precision.amount", path=path, field=f"{where}.precision")
    inverse = bool(market.get("inverse"))
    base, quote = str(market.get("base") or ""), str(market.get("quote") or "")
    if not base or not quote:
        raise DataError("needs base and quote", path=path, field=where)
    size = market.get("contractSize")
    contract_size = _decimal(size, f"{where}.contractSize", path) if size not in (None, "") else Decimal(1)
    settle = str(market.get("settle") or (base if inverse else quote))
    return Instrument(symbol=symbol.upper(), contract="inverse" if inverse else "linear", base=base.upper(),
                      quote=quote.upper(), settle=_asset(settle), tick_size=tick, lot_size=lot,
                      contract_size=contract_size)


def _load_json(path: str | Path, what: str) -> Any:
    p = Path(path).expanduser()
    if not p.is_file():
        raise InvalidInput(what, str(path), "file not found")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read: {exc}", path=str(path)) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", path=str(path), line=exc.lineno) from None


def read_instruments(path: str | Path) -> list[Instrument]:
    """Instruments declared by a Binance ``exchangeInfo`` JSON (USDⓈ-M or COIN-M) or a ccxt ``markets``
    JSON (a dict keyed by unified symbol, or the list ``fetchMarkets`` returns)."""
    document = _load_json(path, "instruments")
    name = str(path)
    if isinstance(document, dict) and isinstance(document.get("symbols"), list):
        found = [_from_exchange_info(e, i, name) for i, e in enumerate(document["symbols"]) if isinstance(e, dict)]
    else:
        mode = document.get("precisionMode") if isinstance(document, dict) else None
        if isinstance(document, dict):
            markets = [(str(k), v) for k, v in document.items() if isinstance(v, dict)]
        elif isinstance(document, list):
            markets = [(str(i), v) for i, v in enumerate(document) if isinstance(v, dict)]
        else:
            markets = []
        markets = [(k, m) for k, m in markets if "precision" in m or "info" in m]
        if not markets:
            raise DataError("neither a Binance exchangeInfo ({'symbols': [...]}) nor ccxt markets JSON", path=name)
        found = [_from_ccxt_market(m, k, name, mode) for k, m in markets]
    if not found:
        raise DataError("declares no instrument", path=name)
    return found


def registry_for(instruments: str | Path | None, base: InstrumentRegistry = REGISTRY) -> InstrumentRegistry:
    """The registry, with the instruments of the user's ``--instruments`` file declared over it."""
    if instruments is None:
        return base
    return base.with_instruments(read_instruments(instruments), source=f"--instruments {Path(instruments).name}")


# --- which instrument a loaded file is -------------------------------------------------------------------


def _grid(frame: Any, columns: tuple[str, ...]) -> Decimal | None:
    present = [c for c in columns if c in frame.columns]
    if not present or frame.height == 0:
        return None
    import numpy as np

    values = np.concatenate([frame[c].drop_nulls().to_numpy().astype(np.float64) for c in present])
    return data_grid(values)


def file_symbol(loaded: Any) -> tuple[str | None, str]:
    """The symbol a loaded file names, and where it was found."""
    payload = getattr(loaded, "payload", None)
    if payload is not None and hasattr(payload, "instrument"):
        return payload.instrument.symbol, "the capture's \"s\" field"
    frame = loaded.frame
    if "symbol" in frame.columns and frame.height:
        symbols = sorted({str(s) for s in frame["symbol"].drop_nulls().unique().to_list()})
        if len(symbols) == 1:
            return symbols[0], "the file's symbol column"
        if symbols:
            raise InvalidInput("symbol", ",".join(symbols[:5]), f"{loaded.path} mixes symbols; one instrument per file")
    name = Path(loaded.path).name
    symbol = symbol_from_name(name)
    return symbol, f"the file name {name}"


def instrument_for(loaded: Any, *, symbol: str | None = None,
                   registry: InstrumentRegistry = REGISTRY) -> InstrumentChoice:
    """The instrument ``loaded`` replays as (see the module docstring); refuses when the symbol is unknown
    or contradicts ``symbol``, or when a declared tick or lot does not fit the data."""
    found, where = file_symbol(loaded)
    if symbol is not None and found is not None and symbol.upper() != found.upper():
        raise InvalidInput("symbol", symbol, f"{loaded.path} is {found} by {where}; an instrument never replays "
                           "as another (leave --symbol out, or use a file of that symbol)")
    name = symbol or found
    if name is None:
        raise InvalidInput("symbol", None, f"cannot tell the instrument of {loaded.path}: its name does not follow "
                           "Binance's SYMBOL-1m-YYYY-MM-DD.csv; pass --symbol (e.g. --symbol ETHUSDT)")
    payload = getattr(loaded, "payload", None)
    if payload is not None and hasattr(payload, "instrument") and getattr(payload, "choice", None) is not None:
        return payload.choice  # a capture resolved its instrument while reading (its prices are ticks already)
    frame = loaded.frame
    at_ns = int(frame["ts_ns"].min()) if "ts_ns" in frame.columns and frame.height else None
    return choose_instrument(
        name, at_ns=at_ns, price_grid=_grid(frame, PRICE_COLUMNS), qty_grid=_grid(frame, QTY_COLUMNS),
        registry=registry, symbol_source="--symbol" if symbol is not None and found is None else where,
    )


def qty_unit_of(symbol: str | None) -> str | None:
    """"contracts" for a coin-margined symbol (Binance COIN-M quantities count contracts), else None."""
    if symbol is None:
        return None
    try:
        return "contracts" if split_symbol(symbol)[2] == "inverse" else None
    except InvalidInput:
        return None


# --- tier tables ---------------------------------------------------------------------------------------


def _bundled_settle(name: str) -> str | None:
    from importlib import resources

    try:
        text = resources.files("deleverage.datasets.tiers").joinpath(f"{name}.json").read_text(encoding="utf-8")
        settle = json.loads(text).get("settle")
    except (OSError, ValueError, AttributeError):
        return None
    return str(settle) if settle else None


def _rows(brackets: Any, path: str, where: str, keys: tuple[str, str, str]) -> list[tuple[str, str, str | None]]:
    floor_key, rate_key, leverage_key = keys
    if not isinstance(brackets, list) or not brackets:
        raise DataError("expected a non-empty list of brackets", path=path, field=where)
    rows = []
    for index, row in enumerate(sorted(brackets, key=lambda r: Decimal(str(r.get(floor_key, 0))))):
        if not isinstance(row, dict) or floor_key not in row or rate_key not in row:
            raise DataError(f"bracket needs {floor_key!r} and {rate_key!r}", path=path, field=f"{where}[{index}]")
        leverage = row.get(leverage_key)
        rows.append((str(row[floor_key]), str(row[rate_key]), None if leverage is None else str(leverage)))
    return rows


def _check_cum(tiers: MarginTiers, brackets: list[Any], path: str, where: str) -> None:
    """Binance's published ``cum`` must equal the one derived from the rates (it always does on real files)."""
    ordered = sorted(brackets, key=lambda r: Decimal(str(r.get("notionalFloor", r.get("qtyFloor", 0)))))
    for index, (row, bracket) in enumerate(zip(ordered, tiers.brackets, strict=True)):
        if "cum" in row and Decimal(str(row["cum"])) != bracket.cum:
            raise DataError(f"cum {row['cum']} disagrees with the rates (continuity gives {bracket.cum})",
                            path=path, field=f"{where}[{index}].cum")


def read_tiers(path: str | Path, instrument: Instrument) -> MarginTiers:
    """The tier table of ``instrument`` in a leverage-bracket file (formats in the module docstring)."""
    document = _load_json(path, "tiers")
    name, symbol = str(path), instrument.symbol
    label = f"{Path(path).name}:{symbol}"
    try:
        if isinstance(document, dict) and isinstance(document.get("brackets"), list):  # deleverage's own format
            rows = _rows(document["brackets"], name, "brackets", ("floor", "rate", "max_leverage"))
            return MarginTiers.from_brackets(rows, name=str(document.get("name") or label))
        entries = document if isinstance(document, list) else [document] if isinstance(document, dict) else []
        pair = symbol.split("_", 1)[0]
        for index, entry in enumerate(entries):  # Binance /fapi (symbol) or /dapi (pair) leverageBracket
            if isinstance(entry, dict) and str(entry.get("symbol", entry.get("pair", ""))).upper() in (symbol, pair):
                brackets, where = entry.get("brackets"), f"[{index}].brackets"
                if not isinstance(brackets, list) or not brackets:
                    raise DataError("expected a non-empty list of brackets", path=name, field=where)
                coin = "qtyFloor" in brackets[0]
                keys = ("qtyFloor" if coin else "notionalFloor", "maintMarginRatio", "initialLeverage")
                tiers = MarginTiers.from_brackets(_rows(brackets, name, where, keys), name=label)
                _check_cum(tiers, brackets, name, where)
                return tiers
        if isinstance(document, dict):  # ccxt fetchLeverageTiers: {unified symbol: [tiers]}
            unified = f"{instrument.base}/{instrument.quote}:{instrument.settle.code}"
            for key, tiers_list in document.items():
                if key.upper() == unified or key.upper() == symbol:
                    rows = _rows(tiers_list, name, key, ("minNotional", "maintenanceMarginRate", "maxLeverage"))
                    return MarginTiers.from_brackets(rows, name=label)
    except InvalidInput as exc:
        raise DataError(str(exc), path=name, field=exc.field) from None
    raise DataError(f"holds no tier table for {symbol}", path=name)


def resolve_tiers(spec: str | None, instrument: Instrument) -> MarginTiers:
    """``--tiers``: a bundled name, ``flat:<rate>``, a leverage-bracket file, or None for the shipped table."""
    bundled = MarginTiers.available()
    if spec is None:
        if instrument.tiers is None:
            raise InvalidInput("tiers", None, f"{instrument.symbol} has no shipped tier table; "
                               + TIERS_HELP.format(bundled=", ".join(bundled)))
        return MarginTiers.load(instrument.tiers)
    text = spec.strip()
    if text.startswith("flat:"):
        rate = text.removeprefix("flat:")
        return MarginTiers.flat(rate, name=f"flat:{rate}")
    if text in bundled:
        settle = _bundled_settle(text)
        if settle is not None and settle != instrument.settle.code:
            raise InvalidInput("tiers", text, f"is a table of notionals in {settle}; {instrument.symbol} "
                               f"settles in {instrument.settle.code}")
        return MarginTiers.load(text)
    if Path(text).expanduser().is_file():
        return read_tiers(Path(text).expanduser(), instrument)
    raise InvalidInput("tiers", spec, "is neither a bundled table, flat:<rate>, nor an existing file; "
                       + TIERS_HELP.format(bundled=", ".join(bundled)))


def check_tiers_spec(spec: str | None) -> None:
    """Cheap syntax check for the CLI (before anything heavy): flat:<rate> parses, a path exists."""
    if spec is None:
        return
    text = spec.strip()
    if text.startswith("flat:"):
        try:
            rate = Decimal(text.removeprefix("flat:"))
        except InvalidOperation:
            rate = Decimal(-1)
        if not (rate.is_finite() and 0 < rate < 1):
            raise InvalidInput("tiers", spec, "flat:<rate> needs a maintenance rate between 0 and 1, e.g. flat:0.005")


__all__ = [
    "PRICE_COLUMNS",
    "QTY_COLUMNS",
    "check_tiers_spec",
    "file_symbol",
    "instrument_for",
    "qty_unit_of",
    "read_instruments",
    "read_tiers",
    "registry_for",
    "resolve_tiers",
    "symbol_from_name",
]
