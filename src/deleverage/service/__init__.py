"""deleverage.service: the liquidation engine as a process.

Ingests marks, oracle prices, order book snapshots and account updates over HTTP, emits liquidation
orders, persists every input and output in an event store (SQLite by default, PostgreSQL when
configured) with group commit, and authenticates clients with hashed API keys. Every input is
validated completely before it is written; retries are deduplicated by ``Idempotency-Key``; one
server writes a store. Restart loads the latest verified snapshot and replays the tail, and refuses
to start if the store was truncated, lost its WAL, forked, or does not reproduce what it recorded.
Decisions are pushed on a websocket (``/v1/stream``); health metrics at ``/metrics``. See
:mod:`deleverage.service.app` for the API and :mod:`deleverage.service.core` for the writer.

FastAPI, uvicorn, websockets and prometheus-client are optional dependencies (``pip install
'deleverage[service]'``); they are imported only when the service is built.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deleverage.service.config import ApiKey, ServiceConfig

if TYPE_CHECKING:
    from deleverage.service.app import ServiceApp

SWITCH_INTERVAL_S = 0.0002


def create_app(config: ServiceConfig | str | Path | None = None, **kwargs: Any) -> ServiceApp:
    """The FastAPI app over a replayed and verified store (see :func:`deleverage.service.app.create_app`)."""
    from deleverage.service.app import create_app as _create_app  # noqa: PLC0415 — fastapi is optional

    return _create_app(config, **kwargs)


def serve(config_path: str | Path | None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the service with uvicorn (one worker: the store has a single writer).

    The store is opened, checked and replayed before the port opens, so a damaged or locked store
    stops here with one line (the CLI prints ``Error: ...``).
    """
    try:
        import uvicorn  # noqa: PLC0415 — optional dependency
    except ImportError:
        raise SystemExit("deleverage serve needs uvicorn: pip install 'deleverage[service]'") from None
    app = create_app(ServiceConfig.load(config_path))
    # The commit thread waits in fsync with the GIL released; when the fsync returns it must get the
    # GIL back from the event loop quickly, or every group waits out the default 5 ms switch interval.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    uvicorn.run(app, host=host, port=port, workers=1, **server_options())


def server_options() -> dict[str, Any]:
    """uvicorn's fast event loop and HTTP parser when installed (the ``service`` extra has them)."""
    import importlib.util  # noqa: PLC0415

    options: dict[str, Any] = {"log_level": "info", "access_log": False}
    if importlib.util.find_spec("uvloop") is not None:
        options["loop"] = "uvloop"
    if importlib.util.find_spec("httptools") is not None:
        options["http"] = "httptools"
    if importlib.util.find_spec("websockets") is not None:
        from uvicorn.config import WS_PROTOCOLS  # noqa: PLC0415

        options["ws"] = "websockets-sansio" if "websockets-sansio" in WS_PROTOCOLS else "websockets"
    return options


__all__ = ["ApiKey", "ServiceConfig", "create_app", "serve", "server_options"]
