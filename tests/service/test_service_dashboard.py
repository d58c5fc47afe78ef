"""``/dashboard``: assets shipped in the package with no external URL, and the reader-key login.

The browser side (panels drawn, live updates, an alert) is tests/service/test_dashboard_e2e.py; here
the HTTP contract: without a session the page is the login form (401); the form takes a venue-wide
reader key in the body and answers an HttpOnly, SameSite=Strict session cookie; the cookie reads, from
the service's own origin only, and never writes; a scoped key is refused; logout ends the session.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import pytest
from starlette.websockets import WebSocketDisconnect

from deleverage.service.dashboard import ASSETS, COOKIE, CSP, asset

from . import service_kit as kit

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "src" / "deleverage" / "service" / "static"
PAGES = ("dashboard.html", "login.html")


def test_every_asset_is_package_data_and_names_no_other_host() -> None:
    files = sorted(p.name for p in STATIC.iterdir() if p.is_file())
    assert set(ASSETS) | set(PAGES) == set(files)  # served = shipped, nothing stray
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    globs = package_data["deleverage"]
    for name in files:
        assert any(fnmatch.fnmatch(f"service/static/{name}", g) for g in globs), f"{name} is not package data"
        text = asset(name).decode("utf-8")
        assert text == (STATIC / name).read_text()
        # no CDN, no font or map service: no absolute or protocol-relative URL anywhere
        assert not re.search(r"https?://|(?:src|href)\s*=\s*[\"']//|url\(\s*[\"']?//", text), name
        assert "@import" not in text, name


@pytest.fixture
def client(tmp_path: Path):  # noqa: ANN201
    c = kit.client(kit.config(tmp_path / "e.db"), kit.ManualClock(10**9))
    yield c
    c.__exit__(None, None, None)


def test_without_a_session_the_dashboard_is_the_login_form(client) -> None:  # noqa: ANN001
    r = client.get("/dashboard")
    assert r.status_code == 401 and 'action="/dashboard/login"' in r.text and "panel-oi" not in r.text
    assert r.headers["content-security-policy"] == CSP and r.headers["x-frame-options"] == "DENY"
    assert client.get("/dashboard/assets/login.css").status_code == 200  # the form's own style
    assert client.get("/dashboard/assets/dashboard.js").status_code == 401
    assert client.get("/dashboard/assets/nope.js").status_code == 404
    ok = client.get("/dashboard", headers=kit.READ)  # a script with a bearer key
    assert ok.status_code == 200 and 'id="panel-heat"' in ok.text
    scoped = client.get("/dashboard", headers=kit.ALICE)  # a reader of some accounts only
    assert scoped.status_code == 403


def test_login_sets_a_strict_httponly_cookie_that_reads_but_never_writes(client) -> None:  # noqa: ANN001
    for key, status, message in (("", 401, "missing bearer API key"), ("wrong", 401, "unknown API key"),
                                 (kit.ALICE_KEY, 403, "")):
        r = client.post("/dashboard/login", data={"key": key}, follow_redirects=False)
        assert r.status_code == status and COOKIE not in r.cookies and message in r.text
    r = client.post("/dashboard/login", data={"key": kit.READER_KEY}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    token = r.cookies[COOKIE]
    assert kit.READER_KEY not in cookie and len(token) >= 40
    client.cookies.set(COOKIE, token)
    page = client.get("/dashboard")
    assert page.status_code == 200 and 'src="/dashboard/assets/dashboard.js"' in page.text
    assert client.get("/dashboard/assets/charts.js").status_code == 200
    assert client.get("/v1/monitor").json()["monitor"] == {"enabled": False}  # no [monitor] table here
    assert client.get("/v1/state").status_code == 401  # the cookie opens the dashboard's reads only
    # from another site's page the cookie is refused (SameSite aside, the Origin is checked)
    assert client.get("/v1/monitor", headers={"Origin": "https://evil.example"}).status_code == 403
    with pytest.raises(WebSocketDisconnect), client.websocket_connect(
            "/v1/stream?channels=monitor", headers={"Origin": "https://evil.example"}) as ws:
        ws.receive_json()
    # writes take bearer keys only
    r = client.post("/v1/marks", json={"symbol": "BTCUSDT", "price": "60000", "ts_ns": 1})
    assert r.status_code == 401
    # logout ends the session: the same cookie is the login form again
    client.post("/dashboard/logout", follow_redirects=False)
    client.cookies.set(COOKIE, token)
    assert client.get("/dashboard").status_code == 401
