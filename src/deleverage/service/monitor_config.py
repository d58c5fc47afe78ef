"""The service's ``[monitor]`` table, its ``[[alerts]]`` rules and their webhooks (configuration only).

``[monitor]`` holds the fields of :class:`~deleverage.engine.monitor.MonitorConfig` (windows, risk
bands, the liquidation map's grid, ``sample_every_ms``) and what only the service needs: how many
samples it keeps for the dashboard and for resuming the stream (``history``), the webhooks alerts go
to, and how often the monitor writes its own snapshot. A config with a ``[monitor]`` table runs the
monitor; without one the service computes no risk metrics (``[[alerts]]`` then is refused)::

    [monitor]
    windows = ["1m", "5m", "15m", "1h"]
    bands_pct = [1, 2, 5]
    sample_every_ms = 1000          # a sample every second of event time (ts_ns of the inputs)
    history = 900                   # samples kept in memory: the dashboard's heatmap, stream resume
    webhooks = ["https://desk.example/hooks/deleverage"]   # or [[monitor.webhooks]] tables

    [[monitor.webhooks]]
    url = "https://pager.example/v1/events"
    timeout_s = 2
    attempts = 3
    headers = { Authorization = "Token abc" }

    [[alerts]]
    name = "liquidations-5m"
    metric = "liquidation_ratio"
    window = "5m"
    threshold = 0.02

``DELEVERAGE_ALERT_WEBHOOKS`` (comma-separated URLs) replaces the configured webhooks — a way to keep
a URL with a secret in it out of the file.

:func:`monitor_digest` is what decides the monitor's outputs besides the inputs (the store's genesis,
the monitor's computation settings and the rules; not the webhooks or the history length): a monitor
snapshot or an alert log written under another digest is not reused as-is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deleverage.engine.alert_sinks import WebhookSink
from deleverage.engine.alerts import AlertRule, Alerts, AlertsConfig
from deleverage.engine.monitor import MonitorConfig
from deleverage.errors import InvalidInput

ENGINE_FIELDS = tuple(MonitorConfig.model_fields)


class WebhookConfig(BaseModel):
    """One receiver of alerts: JSON POSTs with a timeout and bounded retries (engine/alert_sinks.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    timeout_s: float = Field(2.0, gt=0, le=60)
    attempts: int = Field(3, ge=1, le=20)
    backoff_s: float = Field(0.25, ge=0, le=60)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            WebhookSink(value)
        except InvalidInput as exc:
            raise ValueError(exc.problem) from None
        return value

    def sink(self) -> WebhookSink:
        return WebhookSink(self.url, timeout_s=self.timeout_s, attempts=self.attempts, backoff_s=self.backoff_s,
                           headers=self.headers)

    def label(self) -> str:
        """The URL without its query string or credentials (what logs and the alert log show)."""
        from urllib.parse import urlsplit  # noqa: PLC0415

        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"


class MonitorSettings(MonitorConfig):
    """``[monitor]``: the engine monitor's settings plus the service's (see the module docstring)."""

    enabled: bool = True
    history: int = Field(900, ge=1, le=100_000)
    webhooks: tuple[WebhookConfig, ...] = ()
    snapshot_every: int | None = Field(None, ge=0)  # inputs between monitor snapshots (None: the service's)

    @field_validator("webhooks", mode="before")
    @classmethod
    def _urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list | tuple):
            return [{"url": v} if isinstance(v, str) else v for v in value]
        return value

    def engine_config(self) -> MonitorConfig:
        """The :class:`MonitorConfig` part (what :class:`~deleverage.engine.monitor.RiskMonitor` takes)."""
        return MonitorConfig(**{k: getattr(self, k) for k in ENGINE_FIELDS})


def check_rules(monitor: MonitorSettings | None, rules: Sequence[AlertRule]) -> None:
    """Unique names; windows and bands the monitor computes; no rules without a monitor."""
    if not rules:
        return
    if monitor is None:
        raise InvalidInput("alerts", [r.name for r in rules], "alert rules need a [monitor] table")
    try:
        AlertsConfig(alerts=tuple(rules))
    except ValueError as exc:
        raise InvalidInput("alerts", [r.name for r in rules], str(exc).splitlines()[-1]) from None
    Alerts(rules, windows=monitor.windows, bands=monitor.band_labels)  # InvalidInput naming the rule


def monitor_digest(genesis_digest: str, monitor: MonitorSettings, rules: Sequence[AlertRule]) -> str:
    """SHA-256 of what decides the monitor's outputs besides the inputs (module docstring)."""
    body = {"genesis": genesis_digest, "monitor": monitor.engine_config().model_dump(mode="json"),
            "alerts": [r.model_dump(mode="json") for r in rules]}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


__all__ = ["ENGINE_FIELDS", "MonitorSettings", "WebhookConfig", "check_rules", "monitor_digest"]
