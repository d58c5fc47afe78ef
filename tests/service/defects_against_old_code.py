"""Issue 15's defects, checked over HTTP against whichever deleverage is importable — a script, not a
test (pytest does not collect it), so it runs unchanged on the code before the fix::

    git archive <old commit> src | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old/src .venv/bin/python tests/service/defects_against_old_code.py   # every line DEFECT
    .venv/bin/python tests/service/defects_against_old_code.py                           # every line FIXED

The tests of this folder check the same behaviours through the current API.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

import deleverage
from deleverage.service import ServiceConfig
from deleverage.service.app import create_app
from deleverage.service.auth import hash_key

FEED = {"Authorization": "Bearer f"}


def client(db: Path) -> TestClient:
    cfg = ServiceConfig.from_dict({
        "database_url": f"sqlite:///{db}", "instruments": ["BTCUSDT"], "insurance_fund": {"USDT": "100000"},
        "maintenance_tiers": {"BTCUSDT": "flat:0.004"},
        "api_keys": [{"name": "f", "role": "feeder", "sha256": hash_key("f")}]})
    c = TestClient(create_app(cfg, clock_ns=lambda: 0), raise_server_exceptions=False)
    c.__enter__()
    return c


def shut(c: TestClient) -> None:
    c.__exit__(None, None, None)
    try:
        c.app.state.service.close()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 — closed already (the new lifespan closes it)
        pass


def report(name: str, fixed: bool, detail: Any = "") -> None:
    print(f"{'FIXED ' if fixed else 'DEFECT'} {name}: {str(detail)[:110]}")


def post(c: TestClient, url: str, body: dict[str, Any], **headers: str) -> Any:
    return c.post(url, json=body, headers={**FEED, **headers})


def main() -> None:
    print("deleverage from", deleverage.__file__)
    root = Path(tempfile.mkdtemp())

    c = client(root / "capacity.db")
    last = None
    for i in range(1_030):
        post(c, f"/v1/accounts/a{i}/deposit", {"asset": "USDT", "amount": "1000", "ts_ns": 1})
        r = post(c, f"/v1/accounts/a{i}/fills", {"symbol": "BTCUSDT", "side": "buy", "qty": "0.01",
                                                 "price": "60000", "ts_ns": 1})
        last = r if r.status_code != 200 else last
    report("the 1,025th position of a symbol", last is None, "all 200" if last is None else last.text)
    shut(c)

    c = client(root / "numbers.db")
    started = time.time()
    r = post(c, "/v1/marks", {"symbol": "BTCUSDT", "price": "1e10000000"})
    report('price "1e10000000"', r.status_code == 422, f"{r.status_code} in {time.time() - started:.1f} s")
    post(c, "/v1/accounts/bob/deposit", {"asset": "USDT", "amount": "1000000000000", "ts_ns": 1})
    r = post(c, "/v1/accounts/bob/fills", {"symbol": "BTCUSDT", "side": "buy", "qty": "10000000000000000",
                                           "price": "60000", "ts_ns": 2})
    report("a fill of qty 1e16", r.status_code == 422, r.status_code)
    r = post(c, "/v1/advance", {"ts_ns": 2**63 - 1})
    report("/v1/advance to 2**63 - 1", r.status_code == 422, r.status_code)
    r = c.post("/v1/marks", content=b"{not json", headers={"content-type": "application/json"})
    report("an unauthenticated body is parsed before the 401", r.status_code == 401, r.status_code)
    shut(c)

    c = client(root / "500.db")

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("a bug")

    c.app.state.service.state.engine.on_mark = broken  # type: ignore[attr-defined]
    r = post(c, "/v1/marks", {"symbol": "BTCUSDT", "price": "60000", "ts_ns": 5})
    report("a 500 in the error format", r.headers.get("content-type") == "application/json",
           f"{r.status_code} {r.headers.get('content-type')}")
    shut(c)

    c = client(root / "idempotency.db")
    for _ in range(2):
        post(c, "/v1/accounts/carol/deposit", {"asset": "USDT", "amount": "100", "ts_ns": 1}, **{"Idempotency-Key": "k"})
    balance = c.get("/v1/accounts/carol", headers=FEED).json()["balances"]["USDT"]
    report("the same deposit twice with one Idempotency-Key", balance.startswith("100."), balance)
    shut(c)

    first = client(root / "two.db")
    try:
        second = client(root / "two.db")
    except Exception as exc:  # noqa: BLE001
        report("two servers on one store", True, exc)
    else:
        report("two servers on one store", False, "both started")
        shut(second)
    shut(first)

    db = root / "truncated.db"
    c = client(db)
    for i in range(30):
        post(c, "/v1/accounts/d/deposit", {"asset": "USDT", "amount": "1", "ts_ns": i})
    shut(c)
    con = sqlite3.connect(db)
    with con:
        con.execute("DELETE FROM outputs WHERE input_seq > 20")
        con.execute("DELETE FROM inputs WHERE seq > 20")
    con.close()
    try:
        c = client(db)
    except Exception as exc:  # noqa: BLE001
        report("the last 10 inputs deleted", True, exc)
    else:
        report("the last 10 inputs deleted", False, f"started at seq {c.get('/v1/health').json()['last_seq']}")
        shut(c)

    db = root / "corrupt.db"
    db.write_bytes(b"garbage" * 100)
    try:
        client(db)
    except Exception as exc:  # noqa: BLE001
        from deleverage.errors import DeleverageError

        report("a corrupt file", isinstance(exc, DeleverageError), f"{type(exc).__name__}: {exc}")
    else:
        report("a corrupt file", False, "started")


if __name__ == "__main__":
    main()
