"""``/dashboard``: the risk desk's page, its assets and its login, served from the package.

The page is plain HTML, CSS and JavaScript shipped in ``deleverage/service/static/`` (package data:
no CDN, no build step, no external URL — a test parses every asset for ``http(s)://``), with a small
canvas charting module of its own (``charts.js``). It draws the monitor's samples from
``/v1/stream?channels=monitor,alert`` (resumed with ``since`` after a reconnect) and the service's
``/v1/monitor`` (status, rules).

**How the key is handled.** A browser cannot put an ``Authorization`` header on a page navigation,
and a key in a URL ends up in logs and histories. So ``GET /dashboard`` without credentials answers
401 with a login form; the form POSTs the reader key *in the request body* to ``/dashboard/login``,
which checks it (a venue-wide key with the read right: a reader or feeder key, not a scoped one) and
answers with an opaque session cookie — ``HttpOnly`` (no script can read it, so the page never holds
the key), ``SameSite=Strict`` (no other site's page can send it), ``Path=/``, ``Secure`` behind HTTPS,
valid ``dashboard_session_h`` hours, kept in memory (a restart asks for the key again). The page's
``fetch`` and its websocket carry the cookie; the websocket handshake with a cookie must come from
the service's own origin (``Origin`` checked), which closes cross-site websocket hijacking. Writes
never accept the cookie: only bearer keys write. ``GET /dashboard`` with ``Authorization: Bearer``
works too (scripts, tests). Every answer of the dashboard carries a Content-Security-Policy that
allows only the service's own origin.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from deleverage.service.auth import Client, KeyRing, check, token_of

COOKIE = "deleverage_session"
ASSETS = {"dashboard.css": "text/css", "dashboard.js": "text/javascript", "charts.js": "text/javascript",
          "login.css": "text/css"}
PUBLIC_ASSETS = frozenset({"login.css"})
MAX_LOGIN_BODY = 4096
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def asset(name: str) -> bytes:
    """A file of ``deleverage/service/static`` (package data)."""
    return resources.files("deleverage.service").joinpath("static", name).read_bytes()


@dataclass(slots=True)
class _Session:
    client: Client
    expires: float


class Sessions:
    """Dashboard logins: opaque random tokens → the client whose key opened them, until they expire."""

    def __init__(self, hours: float, clock: Any = time.monotonic) -> None:
        self.ttl = hours * 3600.0
        self.clock = clock
        self._by_token: dict[str, _Session] = {}

    def open(self, client: Client) -> str:
        self._expire()
        token = secrets.token_urlsafe(32)
        self._by_token[token] = _Session(client, self.clock() + self.ttl)
        return token

    def client(self, token: str | None) -> Client | None:
        if not token:
            return None
        found = self._by_token.get(token)
        if found is None:
            return None
        if found.expires <= self.clock():
            del self._by_token[token]
            return None
        return found.client

    def close(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)

    def _expire(self) -> None:
        now = self.clock()
        for token in [t for t, s in self._by_token.items() if s.expires <= now]:
            del self._by_token[token]


def same_origin(headers: Any, scheme: str) -> bool:
    """A browser's request from the service's own page (no Origin header: not a browser's cross-site one)."""
    origin = headers.get("origin")
    if origin is None:
        return True
    host = headers.get("host", "")
    secure = "https" if scheme in ("https", "wss") else "http"
    return origin in (f"{secure}://{host}", f"{scheme}://{host}")


def reader_of(request: Any, keyring: KeyRing, sessions: Sessions, *, venue_wide: bool = True,
              scheme: str | None = None) -> Client | tuple[int, str]:
    """The caller by its bearer key, else by its dashboard session cookie (same origin only)."""
    token = token_of(request.headers.get("authorization", ""))
    if token is not None:
        return check(keyring, token, "read", venue_wide=venue_wide)
    client = sessions.client(request.cookies.get(COOKIE))
    if client is None:
        return 401, "missing bearer API key or dashboard session"
    if not same_origin(request.headers, scheme or request.url.scheme):
        return 403, "a dashboard session is accepted only from the service's own page"
    return client


def install(app: FastAPI, keyring: KeyRing, sessions: Sessions) -> None:
    """The dashboard's routes (see the module docstring)."""

    def page(name: str, status: int = 200, message: str = "") -> HTMLResponse:
        text = asset(name).decode("utf-8").replace("{{message}}", _escape(message))
        return HTMLResponse(text, status_code=status, headers=SECURITY_HEADERS)

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard(request: Request) -> Response:
        outcome = reader_of(request, keyring, sessions)
        if isinstance(outcome, Client):
            return page("dashboard.html")
        status, message = outcome
        return page("login.html", 401 if status == 401 else 403,
                    "" if request.cookies.get(COOKIE) is None and status == 401 else message)

    @app.post("/dashboard/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_LOGIN_BODY:
                return page("login.html", 413, "request too large")
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
        key = (fields.get("key") or [""])[0].strip()
        outcome = check(keyring, key or None, "read", venue_wide=True)
        if not isinstance(outcome, Client):
            return page("login.html", outcome[0], outcome[1])
        response = RedirectResponse("/dashboard", status_code=303, headers=SECURITY_HEADERS)
        response.set_cookie(COOKIE, sessions.open(outcome), max_age=int(sessions.ttl), path="/", httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    @app.post("/dashboard/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        sessions.close(request.cookies.get(COOKIE))
        response = RedirectResponse("/dashboard", status_code=303, headers=SECURITY_HEADERS)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/dashboard/assets/{name}", include_in_schema=False)
    async def dashboard_asset(name: str, request: Request) -> Response:
        if name not in ASSETS:
            return Response(b'{"error":"no such asset","field":"name"}', status_code=404,
                            media_type="application/json")
        if name not in PUBLIC_ASSETS:
            outcome = reader_of(request, keyring, sessions)
            if not isinstance(outcome, Client):
                return Response(f'{{"error":"{outcome[1]}","field":null}}'.encode(), status_code=outcome[0],
                                media_type="application/json")
        return Response(asset(name), media_type=ASSETS[name], headers=SECURITY_HEADERS)


def _escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;"))


__all__ = ["ASSETS", "COOKIE", "CSP", "Sessions", "asset", "install", "reader_of", "same_origin"]
