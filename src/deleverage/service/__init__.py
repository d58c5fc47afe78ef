"""deleverage.service: the liquidation engine as a process.

Ingests marks, oracle prices, order book snapshots and account updates over HTTP, emits liquidation
orders, persists every input and output in an event store (SQLite by default, PostgreSQL when
configured) and authenticates clients with hashed API keys. Restart replays the store and refuses to
start if the replay does not reproduce it. See :mod:`deleverage.service.app` for the API.

FastAPI and uvicorn are optional dependencies (``pip install 'deleverage[service]'``); they are
imported only when the service is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from deleverage.service.config import ApiKey, ServiceConfig

if TYPE_CHECKING:
    from fastapi import FastAPI


def create_app(config: ServiceConfig | str | Path | None = None, **kwargs: Any) -> FastAPI:
    """The FastAPI app over a replayed and verified store (see :func:`deleverage.service.app.create_app`)."""
    from deleverage.service.app import create_app as _create_app  # noqa: PLC0415 — fastapi is optional

    return _create_app(config, **kwargs)


def serve(config_path: str | Path | None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the service with uvicorn (one worker: the store has a single writer)."""
    try:
        import uvicorn  # noqa: PLC0415 — optional dependency
    except ImportError:
        raise SystemExit("deleverage serve needs uvicorn: pip install 'deleverage[service]'") from None
    app = create_app(ServiceConfig.load(config_path))
    uvicorn.run(app, host=host, port=port, workers=1)


__all__ = ["ApiKey", "ServiceConfig", "create_app", "serve"]
