"""The HTTP API (FastAPI): post marks, oracle prices, book snapshots and account updates; read state.

Money, prices and quantities travel as decimal strings in human units (``"60000.5"`` USDT, ``"0.25"``
BTC) and are converted exactly at the edge (``Instrument.price_to_ticks`` / ``qty_to_lots`` /
``Asset.to_minor``); a JSON number where a decimal string is expected is refused, so no float ever
reaches the ledger. Raw audit payloads keep the engine's integers (ticks, lots, minor units).

Errors: ``{"error": message, "field": name or null}`` (every status, including 401/403/404). InvalidInput and request validation → 422, unknown
account → 404, bad or missing key → 401, role not allowed → 403, time going backwards → 409.

Liquidity: the engine executes against an :class:`~deleverage.venues.l2.L2Book` per symbol, fed by
``POST /v1/book`` snapshots (stored as inputs, so replay reproduces every fill). In production the
venue's own matching engine is plugged in instead through the
:class:`~deleverage.venues.liquidity.LiquiditySource` protocol (``best_bid``/``best_ask``/``walk``/
``take``/``levels``); its fills would then have to be recorded as inputs for replay to stay exact.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from deleverage.errors import DeleverageError, InvalidInput, LedgerError, SimulationError
from deleverage.service.auth import Client, KeyRing, require
from deleverage.service.config import ServiceConfig
from deleverage.service.state import Service, ServiceState, UnknownAccount, fraction_text
from deleverage.service.store import OutputRow

log = logging.getLogger("deleverage.service")
Reader = Depends(require("read"))
Feeder = Depends(require("write"))


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ts_ns: int | None = Field(None, ge=0, description="event time; omitted → the server clock")


class PriceIn(_In):
    symbol: StrictStr
    price: StrictStr


class AmountIn(_In):
    asset: StrictStr
    amount: StrictStr


class FillIn(_In):
    """A trade of the account against the market account (the venue already matched it)."""

    symbol: StrictStr
    side: StrictStr
    qty: StrictStr
    price: StrictStr


class BookIn(_In):
    symbol: StrictStr
    bids: list[tuple[StrictStr, StrictStr]]
    asks: list[tuple[StrictStr, StrictStr]]


class AdvanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ts_ns: int = Field(ge=0)


# --- views -------------------------------------------------------------------------------------------
def _amount(state: ServiceState, code: str, minor: int) -> str:
    asset = state.assets.get(code)
    return f"{asset.from_minor(minor):f}" if asset is not None else str(minor)


def liquidation_view(state: ServiceState, item: dict[str, Any]) -> dict[str, Any]:
    """A stored LiquidationRecord with human-unit fields next to the engine's integers."""
    data = item["data"]
    inst = state.instruments[data["symbol"]]
    vwap = data.get("fill_vwap_ticks")
    human = {
        "qty": f"{inst.lots_to_qty(data['qty_lots']):f}",
        "trigger_mark": str(inst.ticks_to_price(data["trigger_mark_ticks"])),
        "fill_vwap": None if vwap is None else f"{inst.tick_size * Decimal(repr(vwap)):f}",
        "fee": _amount(state, inst.settle.code, data["fee_minor"]),
        "bad_debt": _amount(state, inst.settle.code, data["bad_debt_minor"]),
    }
    return {**item, **human}


def _rows_view(state: ServiceState, seq: int, outputs: list[OutputRow]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    liquidations = []
    for row in outputs:
        counts[row.stream] = counts.get(row.stream, 0) + 1
        if row.stream == "liquidation":
            item = {"seq": seq, "kind": row.kind, "ts_ns": row.ts_ns, "symbol": row.symbol,
                    "account_id": row.account_id, "data": json.loads(row.payload)}
            liquidations.append(liquidation_view(state, item))
    return {"seq": seq, "digest": state.chain, "outputs": counts, "liquidations": liquidations}


def account_view(state: ServiceState, account_id: str) -> dict[str, Any]:
    """Balances, positions valued at the latest marks, and margin per settlement asset."""
    state.require_account(account_id)
    ledger, acc = state.ledger, state.ledger.account(account_id)
    marks = state.valuation_marks()
    positions = []
    for pos in ledger.account_positions(account_id):
        inst = state.instruments[pos.symbol]
        entry = pos.entry_price_ticks(inst)
        mark = marks.get(pos.symbol)
        positions.append({
            "symbol": pos.symbol, "side": pos.side, "qty": f"{inst.lots_to_qty(abs(pos.qty_lots)):f}",
            "qty_lots": pos.qty_lots,
            "entry_price": None if entry is None else str(inst.tick_size * Decimal(entry.numerator)
                                                          / Decimal(entry.denominator)),
            "mark_price": None if mark is None else str(inst.ticks_to_price(mark)),
            "unrealized_pnl": None if mark is None else _amount(
                state, inst.settle.code, math.floor(ledger.unrealized_pnl_exact(account_id, pos.symbol, mark))),
            "realized_pnl": _amount(state, inst.settle.code, pos.realized_pnl_minor),
            "in_liquidation": account_id in state.engine.active_accounts(pos.symbol),
        })
    margin: dict[str, Any] = {}
    for code in sorted({state.instruments[str(p["symbol"])].settle.code for p in positions}):
        if any(p["mark_price"] is None for p in positions):
            margin[code] = None
            continue
        m = ledger.margin_state(account_id, marks, state.config.tiers_for, asset_code=code)
        margin[code] = {"equity": _amount(state, code, m.equity_minor),
                        "maintenance_margin": _amount(state, code, m.maintenance_minor),
                        "margin_ratio": None if m.margin_ratio == float("inf") else m.margin_ratio,
                        "liquidatable": m.liquidatable}
    return {"account_id": account_id, "kind": acc.kind, "margin_mode": acc.margin_mode,
            "balances": {c: _amount(state, c, v) for c, v in sorted(acc.balances.items())},
            "positions": positions, "margin": margin}


def state_view(service: Service) -> dict[str, Any]:
    """Engine summary, marks, conservation totals and digests."""
    state = service.state
    ledger = state.ledger
    marks = state.valuation_marks()
    world = ledger.account("world").balances
    totals = {}
    for code, total in ledger.total_values(marks).items():
        inflow = -world.get(code, 0)
        totals[code] = {"total_value_minor": fraction_text(total), "external_inflow_minor": str(inflow),
                        "total_value": _amount(state, code, int(total)) if total.denominator == 1 else None,
                        "external_inflow": _amount(state, code, inflow), "conserved": total == inflow}
    engine = state.engine.state()
    engine["fund_balance"] = {c: _amount(state, c, v) for c, v in engine.pop("fund_balance_minor").items()}
    return {"last_seq": state.seq, "digest": state.chain, "ledger_digest": ledger.digest(),
            "audit_digest": state.engine.audit.digest(), "last_ts_ns": state.last_ts_ns,
            "marks": {s: str(state.instruments[s].ticks_to_price(t)) for s, t in sorted(state.marks.items())},
            "engine": engine, "totals": totals, "rows": service.store.counts()}


# --- errors ------------------------------------------------------------------------------------------
def _error(status: int, message: str, field: str | None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        return _error(422, first.get("msg", "invalid request"), ".".join(loc) or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail), "field": None}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(DeleverageError)
    async def _domain(_: Request, exc: DeleverageError) -> JSONResponse:
        if isinstance(exc, UnknownAccount):
            return _error(404, str(exc), exc.field)
        if isinstance(exc, InvalidInput):
            return _error(422, str(exc), exc.field)
        if isinstance(exc, SimulationError):
            return _error(409, str(exc), "ts_ns")
        if isinstance(exc, LedgerError):
            return _error(422, str(exc), None)
        return _error(422, str(exc), getattr(exc, "field", None))


# --- the app -----------------------------------------------------------------------------------------
def create_app(config: ServiceConfig | str | Path | None = None, *,
               clock_ns: Callable[[], int] | None = None) -> FastAPI:
    """Open the store, replay and verify it (raises StoreDivergence if it does not reproduce), serve."""
    if not isinstance(config, ServiceConfig):
        config = ServiceConfig.load(config)
    service = Service(config, clock_ns=clock_ns) if clock_ns else Service(config)
    if not config.api_keys:
        log.warning("no API keys configured: every call except /v1/health will get 401")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(title="deleverage", version="1", lifespan=lifespan)
    app.state.service = service
    app.state.keyring = KeyRing(config.api_keys)
    _install_error_handlers(app)
    _input_routes(app, service)
    _read_routes(app, service)
    return app


def _input_routes(app: FastAPI, service: Service) -> None:
    def submit(kind: str, body: dict[str, Any], client: Client) -> dict[str, Any]:
        seq, outputs = service.submit(kind, body, client.name)
        return _rows_view(service.state, seq, outputs)

    @app.post("/v1/marks")
    def post_mark(body: PriceIn, client: Client = Feeder) -> dict[str, Any]:
        return submit("mark", body.model_dump(), client)

    @app.post("/v1/oracle")
    def post_oracle(body: PriceIn, client: Client = Feeder) -> dict[str, Any]:
        return submit("oracle", body.model_dump(), client)

    @app.post("/v1/advance")
    def post_advance(body: AdvanceIn, client: Client = Feeder) -> dict[str, Any]:
        return submit("advance", body.model_dump(), client)

    @app.post("/v1/book")
    def post_book(body: BookIn, client: Client = Feeder) -> dict[str, Any]:
        data = body.model_dump()
        data["bids"], data["asks"] = [list(x) for x in body.bids], [list(x) for x in body.asks]
        return submit("book", data, client)

    @app.post("/v1/accounts/{account_id}/deposit")
    def post_deposit(account_id: str, body: AmountIn, client: Client = Feeder) -> dict[str, Any]:
        return submit("deposit", {**body.model_dump(), "account_id": account_id}, client)

    @app.post("/v1/accounts/{account_id}/withdraw")
    def post_withdraw(account_id: str, body: AmountIn, client: Client = Feeder) -> dict[str, Any]:
        return submit("withdraw", {**body.model_dump(), "account_id": account_id}, client)

    @app.post("/v1/accounts/{account_id}/fills")
    def post_fill(account_id: str, body: FillIn, client: Client = Feeder) -> dict[str, Any]:
        return submit("fill", {**body.model_dump(), "account_id": account_id}, client)


def _read_routes(app: FastAPI, service: Service) -> None:
    page = service.config.max_page

    @app.get("/v1/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "last_seq": service.state.seq, "digest": service.state.chain}

    @app.get("/v1/state")
    def get_state(_: Client = Reader) -> dict[str, Any]:
        with service.lock:
            return state_view(service)

    @app.get("/v1/accounts/{account_id}")
    def get_account(account_id: str, _: Client = Reader) -> dict[str, Any]:
        with service.lock:
            return account_view(service.state, account_id)

    @app.get("/v1/liquidations")
    def get_liquidations(since: int = Query(0, ge=0), limit: int = Query(page, ge=1, le=page),
                         account_id: str | None = None, _: Client = Reader) -> dict[str, Any]:
        with service.lock:
            items = service.store.outputs("liquidation", since=since, limit=limit, account_id=account_id)
            items = [liquidation_view(service.state, i) for i in items]
        return {"items": items, "next": items[-1]["id"] if items else since}

    @app.get("/v1/events")
    def get_events(since: int = Query(0, ge=0), limit: int = Query(page, ge=1, le=page),
                   kind: str | None = None, account_id: str | None = None,
                   stream: str = Query("audit", pattern="^(audit|posting|liquidation)$"),
                   _: Client = Reader) -> dict[str, Any]:
        with service.lock:
            items = service.store.outputs(stream, since=since, limit=limit, kind=kind, account_id=account_id)
        return {"items": items, "next": items[-1]["id"] if items else since}

    @app.get("/v1/inputs")
    def get_inputs(since: int = Query(0, ge=0), limit: int = Query(page, ge=1, le=page),
                   _: Client = Reader) -> dict[str, Any]:
        with service.lock:
            rows = list(service.store.inputs(since=since, limit=limit))
        items = [{"seq": r.seq, "ts_ns": r.ts_ns, "kind": r.kind, "client": r.client,
                  "payload": json.loads(r.payload), "chain_digest": r.chain_digest} for r in rows]
        return {"items": items, "next": items[-1]["seq"] if items else since}


__all__ = ["AdvanceIn", "AmountIn", "BookIn", "FillIn", "PriceIn", "account_view", "create_app",
           "liquidation_view", "state_view"]
