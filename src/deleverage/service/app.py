"""The HTTP API: post marks, oracle prices, book snapshots and account updates; read state; stream.

Money, prices and quantities travel as decimal strings in human units (``"60000.5"`` USDT, ``"0.25"``
BTC) and are converted exactly at the edge under a strict grammar and the engine's magnitude bounds
(:mod:`deleverage.service.limits`); a JSON number where a decimal string is expected is refused, so
no float ever reaches the ledger. Raw audit payloads keep the engine's integers (ticks, lots, minor
units).

Errors: ``{"error": message, "field": name or null}`` for every status, 500 included. InvalidInput and
request validation → 422, unknown account → 404, bad or missing key → 401, role or scope not allowed →
403, time going backwards → 409, body too large → 413, store unavailable or rebuilding → 503 (with
``Retry-After``).

**Writes** (``POST /v1/marks``, ``/v1/oracle``, ``/v1/advance``, ``/v1/book``, ``/v1/instruments``
(list a new symbol: :mod:`deleverage.service.listing`), ``/v1/accounts/{id}/deposit|withdraw|fills``) are served by :class:`InputGate`, a plain ASGI layer in
front of FastAPI: it checks the body size from ``Content-Length`` and the key from the headers
*before* reading the body (a 100 MB body from an unknown client is refused without being read),
reads at most ``max_body_bytes``, parses, validates and hands the input to the group-commit writer.
Every write takes an optional ``Idempotency-Key`` header (1–128 printable ASCII characters): a retry
with the same key (and the same request) gets the first answer, with ``Idempotent-Replayed: true``,
and is applied once — across restarts too; the same key on a different request is a 422.
``POST /v1/inputs`` takes many inputs in one request (``{"inputs": [{"kind", "body", "account_id"?,
"idempotency_key"?}, ...]}``, at most ``max_batch``) and answers each as its own request would be
(``{"answers": [{"status", "body", "replayed"?}, ...]}``, in order) — a feed's way to share commits.

**Reads** are FastAPI routes answered from the published read model or the store's read connections;
they never wait for the writer. See docs/index.md "Running as a service" for the table.

Liquidity: the engine executes against an :class:`~deleverage.venues.l2.L2Book` per symbol, fed by
``POST /v1/book`` snapshots (stored as inputs, so replay reproduces every fill).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from deleverage.errors import DeleverageError
from deleverage.service import limits
from deleverage.service.auth import Client, KeyRing, check, require, token_of
from deleverage.service.config import ServiceConfig
from deleverage.service.core import Answer, Service
from deleverage.service.dashboard import Sessions, reader_of
from deleverage.service.dashboard import install as install_dashboard
from deleverage.service.metrics import CONTENT_TYPE, ServiceMetrics
from deleverage.service.monitor import MonitorHub, RawMessage
from deleverage.service.state import UnknownAccount, fraction_text, refusal, total_values
from deleverage.service.store import StoreUnavailable
from deleverage.service.stream import DEFAULT_CHANNELS, OUTPUT_CHANNELS, StreamHub, stored_messages
from deleverage.service.views import account_view, liquidation_view, totals_view

log = logging.getLogger("deleverage.service")
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
WRITE_ROUTES = {"/v1/marks": "mark", "/v1/oracle": "oracle", "/v1/advance": "advance", "/v1/book": "book",
                "/v1/instruments": "instrument_listed"}
ACCOUNT_ROUTES = {"deposit": "deposit", "withdraw": "withdraw", "fills": "fill"}
BATCH_KINDS = frozenset({*WRITE_ROUTES.values(), *ACCOUNT_ROUTES.values()})
ACCOUNT_KINDS = frozenset(ACCOUNT_ROUTES.values())


_COMPACT = json.JSONEncoder(separators=(",", ":"))  # made once: every answer goes through it


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number here")


def _json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        message = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
        raise limits.InvalidInput("body", None, f"not valid JSON: {message[:120]}") from None


# --- the write path: a plain ASGI layer ---------------------------------------------------------------------
class InputGate:
    """Body limit and key check before reading; the write routes without FastAPI's per-request cost."""

    def __init__(self, app: Any, service: Service, keyring: KeyRing, metrics: ServiceMetrics) -> None:
        self.app = app
        self.service = service
        self.keyring = keyring
        self.metrics = metrics
        self.max_body = service.config.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length, auth, key = None, "", None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"authorization":
                auth = value.decode("latin-1")
            elif name == b"idempotency-key":
                key = value.decode("latin-1")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                await _send_json(send, 400, {"error": "Content-Length is not a number", "field": "Content-Length"})
                return
            if size > self.max_body:
                await _send_json(send, 413, {"error": f"body of {size} bytes exceeds max_body_bytes={self.max_body}",
                                             "field": "body"}, close=True)
                return
        kind, account = self._route(scope)
        if kind is None and scope["path"] == "/v1/inputs" and scope["method"] == "POST":
            kind = "batch"
        if kind is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _send_json(send, 405, {"error": "Method Not Allowed", "field": None}, extra=[(b"allow", b"POST")])
            return
        try:
            await self._write(kind, account, auth, key, receive, send)
        except Exception as exc:  # the gate is outermost: it answers its own 500s, in the error format
            log.exception("internal error on %s", scope["path"])
            with contextlib.suppress(Exception):  # (unless the answer had started already)
                await _send_json(send, 500, {"error": f"internal error ({type(exc).__name__}); nothing of "
                                                      "this input was stored", "field": None})

    @staticmethod
    def _route(scope: Scope) -> tuple[str | None, str | None]:
        path: str = scope["path"]
        kind = WRITE_ROUTES.get(path)
        if kind is not None:
            return kind, None
        if path.startswith("/v1/accounts/"):
            parts = path.split("/")
            if len(parts) == 5 and parts[4] in ACCOUNT_ROUTES and parts[3]:
                return ACCOUNT_ROUTES[parts[4]], parts[3]
        return None, None

    async def _write(self, kind: str, account: str | None, auth: str, key: str | None, receive: Receive,
                     send: Send) -> None:
        started = time.perf_counter()
        outcome = check(self.keyring, token_of(auth), "write")
        if not isinstance(outcome, Client):
            status, message = outcome
            extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
            await _send_json(send, status, {"error": message, "field": None}, extra=extra, close=True)
            self.metrics.answered(kind, status, False, started)
            return
        client = outcome
        body = await self._read_body(receive)
        if body is None:
            await _send_json(send, 413, {"error": f"body exceeds max_body_bytes={self.max_body}", "field": "body"},
                             close=True)
            self.metrics.answered(kind, 413, False, started)
            return
        if kind == "batch":
            await self._batch(client, body, send, started)
            return
        try:
            key = limits.idempotency_key(key)
            data = _json_body(body) if body else {}
            if not isinstance(data, dict):
                raise limits.InvalidInput("body", type(data).__name__, "must be a JSON object")
            req = self.service.parse(kind, data, client.name, key, account)
        except DeleverageError as exc:
            status, message, fld = refusal(exc)
            answer = Answer.error(status, message, fld)
        else:
            answer = await self.service.writer.submit(req)
        extra = []
        if answer.replayed:
            extra.append((b"idempotent-replayed", b"true"))
        if answer.retry_after is not None:
            extra.append((b"retry-after", str(max(1, math.ceil(answer.retry_after))).encode()))
        await _send_json(send, answer.status, answer.body, extra=extra)
        self.metrics.answered(kind, answer.status, answer.replayed, started)

    async def _batch(self, client: Client, body: bytes, send: Send, started: float) -> None:
        """``POST /v1/inputs``: many inputs in one request, each answered as its own request would
        be (in order, one group commit when they fit in ``max_batch``)."""
        try:
            data = _json_body(body)
            items = data.get("inputs") if isinstance(data, dict) else None
            if not isinstance(items, list) or not items:
                raise limits.InvalidInput("inputs", type(items).__name__, "must be a non-empty list of inputs")
            if len(items) > self.service.config.max_batch:
                raise limits.InvalidInput("inputs", len(items), f"more than max_batch={self.service.config.max_batch}")
        except DeleverageError as exc:
            status, message, fld = refusal(exc)
            await _send_json(send, status, {"error": message, "field": fld})
            return
        waiting: list[Any] = []
        for index, item in enumerate(items):
            try:
                if not isinstance(item, dict) or set(item) - {"kind", "body", "account_id", "idempotency_key"}:
                    raise limits.InvalidInput(f"inputs[{index}]", None, "expected {kind, body, account_id?, "
                                                                        "idempotency_key?}")
                kind = item.get("kind")
                if kind not in BATCH_KINDS:
                    raise limits.InvalidInput(f"inputs[{index}].kind", kind, f"must be one of {sorted(BATCH_KINDS)}")
                account = item.get("account_id")
                if (account is None) != (kind not in ACCOUNT_KINDS):
                    raise limits.InvalidInput(f"inputs[{index}].account_id", account,
                                              "required for deposit, withdraw and fill; not taken otherwise")
                key = limits.idempotency_key(item.get("idempotency_key"))
                req = self.service.parse(kind, item.get("body", {}), client.name, key, account)
            except DeleverageError as exc:
                status, message, fld = refusal(exc)
                waiting.append(Answer.error(status, message, fld))
            else:
                waiting.append(self.service.writer.enqueue(req))
        answers = [a if isinstance(a, Answer) else await a for a in waiting]
        out = [{"status": a.status, "body": a.body, **({"replayed": True} if a.replayed else {})} for a in answers]
        await _send_json(send, 200, {"answers": out})
        for item, answer in zip(items, answers, strict=True):
            kind = item.get("kind") if isinstance(item, dict) and item.get("kind") in BATCH_KINDS else "batch"
            self.metrics.answered(str(kind), answer.status, answer.replayed, started)

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


async def _send_json(send: Send, status: int, body: dict[str, Any], *,
                     extra: list[tuple[bytes, bytes]] | None = None, close: bool = False) -> None:
    payload = _COMPACT.encode(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
               *(extra or ())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


# --- errors of the FastAPI routes ----------------------------------------------------------------------------
def _error(status: int, message: str, field: str | None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)


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

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(_: Request, exc: StoreUnavailable) -> JSONResponse:
        return _error(503, str(exc), None, {"Retry-After": "1"})

    @app.exception_handler(DeleverageError)
    async def _domain(_: Request, exc: DeleverageError) -> JSONResponse:
        status, message, field = refusal(exc)
        return _error(status, message, field)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %r", exc)
        return _error(500, f"internal error ({type(exc).__name__}); nothing was written", None)


# --- the app -----------------------------------------------------------------------------------------------
def create_app(config: ServiceConfig | str | Path | None = None, *,
               clock_ns: Callable[[], int] | None = None) -> ServiceApp:
    """Open the store (lock, schema, genesis, head), load snapshot + replay the tail, serve.

    Raises :class:`~deleverage.service.store.StoreError` (one line: truncated, forked, locked by
    another server...) or :class:`~deleverage.service.state.StoreDivergence` before serving anything.
    """
    if not isinstance(config, ServiceConfig):
        config = ServiceConfig.load(config)
    service = Service(config, clock_ns=clock_ns) if clock_ns else Service(config)
    if not config.api_keys:
        log.warning("no API keys configured: every call except /v1/health and /v1/ready will get 401")
    metrics = ServiceMetrics(service)
    hub = StreamHub(service, config.stream_queue)
    monitor = None
    if config.monitor_on:
        monitor = MonitorHub(service, hub, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if config.warm_up:
            log.info("kernels warmed up in %.2f s", service.warm_up())
        service.freeze_heap()  # after the warm-up's garbage is gone (see Service.freeze_heap)
        service.writer.ensure_running()
        if monitor is not None:
            await monitor.start()
        try:
            yield
        finally:
            if monitor is not None:
                await monitor.stop()
            await service.writer.stop()
            service.close()

    app = FastAPI(title="deleverage", version="1", lifespan=lifespan)
    keyring = KeyRing(config.api_keys)
    app.state.service = service
    app.state.keyring = keyring
    app.state.metrics = metrics
    app.state.hub = hub
    app.state.monitor = monitor
    sessions = Sessions(config.dashboard_session_h)
    app.state.sessions = sessions
    _install_error_handlers(app)
    _read_routes(app, service, metrics)
    _monitor_routes(app, service, monitor, keyring, sessions)
    install_dashboard(app, keyring, sessions)
    _stream_route(app, service, hub, keyring, metrics, monitor, sessions)
    return ServiceApp(app, InputGate(app, service, keyring, metrics))


class ServiceApp:
    """The ASGI application: :class:`InputGate` in front of the FastAPI app, whose attributes
    (``state``, ``router``, ``openapi``...) it passes through. The gate is outermost so a write pays
    for no FastAPI middleware; everything else is FastAPI's."""

    def __init__(self, api: FastAPI, gate: InputGate) -> None:
        self.api = api
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.gate(scope, receive, send)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)


def state_view(service: Service) -> dict[str, Any]:
    """Engine summary, marks, conservation totals and digests, as of the last commit (O(symbols))."""
    read, cat = service.read, service.catalogue
    view = read.view
    marks = {**view.last_price, **view.marks}
    engine = dict(view.engine)
    engine["fund_balance"] = {c: cat.amount(c, v) for c, v in engine.pop("fund_balance_minor").items()}
    totals = total_values(view.totals, cat.instruments, marks)
    return {"last_seq": view.seq, "digest": view.chain, "last_ts_ns": view.last_ts_ns,
            "marks": {s: cat.price(s, t) for s, t in sorted(view.marks.items())},
            "engine": engine, "totals": totals_view(cat, totals, view.totals.inflow()),
            "rows": dict(read.counts), "snapshot": None if read.snapshot is None else read.snapshot.as_dict()}


def _read_routes(app: FastAPI, service: Service, metrics: ServiceMetrics) -> None:
    page = service.config.max_page
    reader, venue = Depends(require("read")), Depends(require("read", venue_wide=True))

    async def in_pool(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(service.writer.read_pool, lambda: fn(*args, **kwargs))

    @app.get("/v1/health")
    async def health() -> dict[str, Any]:
        """Liveness: the process answers (whatever the database is doing)."""
        view = service.read.view
        return {"status": "ok", "last_seq": view.seq, "digest": view.chain}

    @app.get("/v1/ready")
    async def ready() -> JSONResponse:
        """Readiness: replay done, writer lock held, store reachable now, writes accepted."""
        problem = await service.writer.ping()
        checks = {"replay": "done" if service.replay_done else "running",
                  "lock": "held" if service.store.lock_held else "lost",
                  "store": "reachable" if problem is None else problem}
        ok = problem is None and service.replay_done and service.store.lock_held
        body = {"ready": ok, "checks": checks, "last_seq": service.read.view.seq}
        return JSONResponse(body, status_code=200 if ok else 503, headers=None if ok else {"Retry-After": "1"})

    @app.get("/v1/state")
    async def get_state(_: Client = venue) -> dict[str, Any]:
        return state_view(service)

    @app.get("/v1/accounts/{account_id}")
    async def get_account(account_id: str, client: Client = reader) -> dict[str, Any]:
        if not client.may_read(account_id):
            return _error(403, f"key {client.name!r} may not read account {account_id!r}", "account_id")  # type: ignore[return-value]
        record = service.read.accounts.get(account_id)
        if record is None:
            raise UnknownAccount(account_id)
        view = service.read.view
        return account_view(service.catalogue, record, {**view.last_price, **view.marks})

    def scope_of(client: Client, account_id: str | None) -> list[str] | None:
        if client.accounts is None:
            return None
        if account_id is not None and account_id not in client.accounts:
            raise limits.InvalidInput("account_id", account_id, f"key {client.name!r} may not read it")
        return sorted(client.accounts)

    @app.get("/v1/liquidations")
    async def get_liquidations(since: int = Query(0, ge=0), limit: int = Query(page, ge=1, le=page),
                               account_id: str | None = None, client: Client = reader) -> dict[str, Any]:
        scope = scope_of(client, account_id)
        items = await in_pool(service.store.outputs, "liquidation", since=since, limit=limit,
                              account_id=account_id, accounts=scope)
        items = [liquidation_view(service.catalogue, {k: v for k, v in i.items() if k != "stream"}) for i in items]
        return {"items": items, "next": items[-1]["id"] if items else since}

    @app.get("/v1/events")
    async def get_events(since: int = Query(0, ge=0), limit: int = Query(page, ge=1, le=page),
                         kind: str | None = None, account_id: str | None = None,
                         stream: str = Query("audit", pattern="^(audit|posting|liquidation)$"),
                         client: Client = reader) -> dict[str, Any]:
        scope = scope_of(client, account_id)
        items = await in_pool(service.store.outputs, stream, since=since, limit=limit, kind=kind,
                              account_id=account_id, accounts=scope)
        for item in items:
            item.pop("stream", None)
        return {"items": items, "next": items[-1]["id"] if items else since}

    @app.get("/v1/inputs")
    async def get_inputs(since: int = Query(0, ge=0), limit: int = Query(page, ge=1, le=page),
                         _: Client = venue) -> dict[str, Any]:
        rows = await in_pool(lambda: list(service.store.inputs(since=since, limit=limit)))
        items = [{"seq": r.seq, "ts_ns": r.ts_ns, "kind": r.kind, "client": r.client,
                  "payload": json.loads(r.payload), "chain_digest": r.chain_digest,
                  "idempotency_key": r.idempotency_key} for r in rows]
        return {"items": items, "next": items[-1]["seq"] if items else since}

    @app.get("/metrics")
    async def get_metrics(_: Client = venue) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)


def _monitor_routes(app: FastAPI, service: Service, monitor: Any, keyring: KeyRing, sessions: Sessions) -> None:
    """``/v1/monitor`` (status + latest sample), ``/v1/monitor/sample`` (on demand), ``/v1/alerts``."""

    def caller(request: Request) -> Client | JSONResponse:
        outcome = reader_of(request, keyring, sessions)
        if isinstance(outcome, Client):
            return outcome
        headers = {"WWW-Authenticate": "Bearer"} if outcome[0] == 401 else None
        return _error(outcome[0], outcome[1], None, headers)

    def disabled() -> JSONResponse:
        return _error(404, "the monitor is not running: add a [monitor] table to the service config", None)

    @app.get("/v1/monitor")
    async def get_monitor(request: Request, latest: bool = True) -> Response:
        """The monitor's status and its latest sample (the ``monitor`` channel's message)."""
        who = caller(request)
        if not isinstance(who, Client):
            return who
        if monitor is None:
            return JSONResponse({"monitor": {"enabled": False}, "latest": None})
        sample = monitor.latest if latest else None
        body = ('{"monitor":' + json.dumps(monitor.state(), separators=(",", ":")) + ',"latest":'
                + (sample.text if sample is not None else "null") + "}")
        return Response(body, media_type="application/json")

    @app.post("/v1/monitor/sample")
    async def sample_now(request: Request) -> Response:
        """A sample now, at the last input's event time, computed on a copy of the monitor's windows
        (it changes nothing later samples or alerts see)."""
        who = caller(request)
        if not isinstance(who, Client):
            return who
        if monitor is None:
            return disabled()
        try:
            text = await monitor.peek()
        except (RuntimeError, TimeoutError) as exc:
            return _error(503, f"no on-demand sample: {exc or 'the monitor did not answer'}", None,
                          {"Retry-After": "1"})
        return Response(text, media_type="application/json")

    @app.get("/v1/alerts")
    async def get_alerts(request: Request, since: int = Query(0, ge=0),
                         limit: int = Query(100, ge=1, le=1000), newest: bool = False) -> Response:
        """Rows of the alert log with id > ``since``, oldest first (``newest``: the last ``limit``)."""
        who = caller(request)
        if not isinstance(who, Client):
            return who
        if monitor is None:
            return disabled()
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(service.writer.read_pool,
                                          functools.partial(monitor.alert_rows, since_id=since, limit=limit,
                                                            newest=newest))
        return JSONResponse({"items": rows, "next": rows[-1]["id"] if rows else since,
                             "counts": dict(monitor.alert_counts)})


def _stream_route(app: FastAPI, service: Service, hub: StreamHub, keyring: KeyRing,
                  metrics: ServiceMetrics, monitor: Any = None, sessions: Sessions | None = None) -> None:
    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        params = ws.query_params
        token = token_of(ws.headers.get("authorization", "")) or params.get("key")
        if token is None and sessions is not None:
            outcome = reader_of(ws, keyring, sessions, venue_wide=False, scheme=ws.url.scheme)
        else:
            outcome = check(keyring, token, "read")
        if not isinstance(outcome, Client):
            await _deny(ws, outcome[0], outcome[1], None)
            return
        client = outcome
        try:
            channels = _channels(params.get("channels"), hub.channels)
            since = None if params.get("since") is None else int(params["since"])
            if since is not None and since < 0:
                raise ValueError("since must be >= 0")
        except ValueError as exc:
            await _deny(ws, 422, str(exc)[:120], "channels" if "channel" in str(exc) else "since")
            return
        venue_channels = channels & {"monitor", "alert"}
        if venue_channels and client.scoped:
            await _deny(ws, 403, f"key {client.name!r} is scoped to accounts; channels {sorted(venue_channels)} "
                                 "are venue-wide", "channels")
            return
        await ws.accept()
        gone: asyncio.Future[None] | None = None
        sub = hub.subscribe(channels, client.accounts)
        metrics.subscribers.inc()
        live_from = service.read.view.seq
        sent_sample = -1  # the monitor samples sent before the live ones (resume): not sent twice
        try:
            await ws.send_json({"channel": "hello", "seq": live_from, "since": since, "channels": sorted(channels)})
            loop = asyncio.get_running_loop()
            if since is not None and since < live_from and channels & {"input", *OUTPUT_CHANNELS}:
                pages = stored_messages(service, since, live_from, sub.channels, client.accounts)
                while True:
                    batch: list[dict[str, Any]] | None = await loop.run_in_executor(
                        service.writer.read_pool, functools.partial(next, pages, None))
                    if batch is None:
                        break
                    for message in batch:
                        await ws.send_json(message)
            if monitor is not None and "alert" in channels and since is not None:
                rows = await loop.run_in_executor(service.writer.read_pool, functools.partial(
                    monitor.alert_rows, after_seq=since, limit=1000, newest=True))
                for row in rows:
                    await ws.send_json({"channel": "alert", **row})
            if monitor is not None and "monitor" in channels:
                kept = monitor.since(since) if since is not None else (
                    [monitor.latest] if monitor.latest is not None else [])
                for sample in kept:
                    await ws.send_text(sample.text)
                    sent_sample = sample.sample
            complete, current = live_from, None  # every input <= complete has been sent in full
            gone = asyncio.ensure_future(_until_disconnect(ws))
            while True:
                getting = asyncio.ensure_future(sub.queue.get())
                await asyncio.wait([getting, gone], return_when=asyncio.FIRST_COMPLETED)
                if not getting.done():  # the client left: stop waiting for the next group
                    getting.cancel()
                    return
                live = getting.result()
                if live is None or sub.overflowed:
                    await ws.close(code=1013, reason=f"too slow: resume with since={complete}")
                    return
                if isinstance(live, RawMessage):  # a monitor sample: its JSON text as the follower wrote it
                    if live["sample"] <= sent_sample:
                        continue
                    await ws.send_text(live.text)
                    continue
                seq = int(live.get("seq", 0))
                if current is not None and seq != current:
                    complete = current
                current = seq
                await ws.send_json(live)
        except WebSocketDisconnect:
            pass
        finally:
            hub.unsubscribe(sub)
            metrics.subscribers.dec()
            if gone is not None:
                gone.cancel()


async def _until_disconnect(ws: WebSocket) -> None:
    """Returns when the client closes (what it sends is ignored: the stream is one-way)."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _deny(ws: WebSocket, status: int, message: str, field: str | None) -> None:
    """Refuse the handshake with the documented JSON error (or close 1008 where HTTP answers are not
    supported by the server)."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(JSONResponse({"error": message, "field": field}, status_code=status))
    else:
        await ws.close(code=1008, reason=message[:120])


def _channels(text: str | None, known: tuple[str, ...]) -> frozenset[str]:
    if text is None:
        return frozenset(DEFAULT_CHANNELS)
    names = frozenset(c.strip() for c in text.split(",") if c.strip())
    unknown = sorted(names - set(known))
    if unknown or not names:
        raise ValueError(f"unknown channels {unknown}; known: {list(known)}")
    return names


__all__ = ["InputGate", "ServiceApp", "create_app", "fraction_text", "state_view"]
