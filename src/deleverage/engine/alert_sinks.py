"""Where alerts go: a list (tests, the lab) and a webhook that POSTs JSON with a timeout and retries.

:class:`WebhookSink` sends :meth:`AlertEvent.payload` as ``application/json`` (standard library HTTP,
no extra dependency). A connection error, a timeout, HTTP 429 or a 5xx is retried, at most
``attempts`` tries in all, waiting ``backoff_s × 2**i`` between them; any other 4xx is the receiver
refusing the alert and is not retried. It never raises for a delivery failure: it returns a
:class:`~deleverage.engine.alerts.DeliveryResult` and :class:`~deleverage.engine.alerts.Alerts` writes
``alert_undelivered`` to the audit log. Each payload carries ``alert_id`` (rule, series, start of the
firing), so a receiver that saw a retried POST twice can keep one.

Delivery is synchronous: a caller that must not wait (the service's event loop) runs ``send`` in a
worker thread. Timing (sleeps, timeouts) is wall-clock I/O and never enters an audit digest: only the
outcome (attempts, status) does.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from urllib.parse import urlparse

from deleverage.engine.alerts import AlertEvent, DeliveryResult
from deleverage.errors import InvalidInput

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class ListSink:
    """Keeps every alert it is given (in order); always delivers."""

    def __init__(self) -> None:
        self.events: list[AlertEvent] = []

    def send(self, event: AlertEvent) -> DeliveryResult:
        self.events.append(event)
        return DeliveryResult(True, 1)


class WebhookSink:
    """POST each alert as JSON to ``url``; bounded retries with exponential backoff."""

    def __init__(self, url: str, *, timeout_s: float = 2.0, attempts: int = 3, backoff_s: float = 0.25,
                 headers: Mapping[str, str] | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        parsed = urlparse(url) if isinstance(url, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidInput("url", url, "expected an http(s) URL with a host")
        if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s > 0):
            raise InvalidInput("timeout_s", timeout_s, "must be a positive number of seconds")
        if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 20:
            raise InvalidInput("attempts", attempts, "must be an int in [1, 20]")
        if not (isinstance(backoff_s, int | float) and math.isfinite(backoff_s) and backoff_s >= 0):
            raise InvalidInput("backoff_s", backoff_s, "must be a number of seconds >= 0")
        self.url = url
        self.timeout_s = float(timeout_s)
        self.attempts = attempts
        self.backoff_s = float(backoff_s)
        self.headers = {"Content-Type": "application/json", "User-Agent": "deleverage-alerts/1",
                        **dict(headers or {})}
        self._sleep = sleep

    def send(self, event: AlertEvent) -> DeliveryResult:
        body = json.dumps(event.payload(), sort_keys=True, separators=(",", ":")).encode()
        status: int | None = None
        error: str | None = None
        for attempt in range(1, self.attempts + 1):
            status, error, retry = self._post(body)
            if error is None:
                return DeliveryResult(True, attempt, status)
            if not retry or attempt == self.attempts:
                return DeliveryResult(False, attempt, status, error)
            self._sleep(self.backoff_s * 2 ** (attempt - 1))
        return DeliveryResult(False, self.attempts, status, error)  # pragma: no cover — loop returns

    def _post(self, body: bytes) -> tuple[int | None, str | None, bool]:
        """(status, error or None, retry?) of one POST."""
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 — http(s) checked
                response.read()
                return int(response.status), None, False
        except urllib.error.HTTPError as exc:
            return exc.code, f"HTTP {exc.code}", exc.code in RETRY_STATUSES
        except TimeoutError:
            return None, f"timed out after {self.timeout_s:g} s", True
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                return None, f"timed out after {self.timeout_s:g} s", True
            return None, f"connection failed: {reason}", True
        except OSError as exc:  # reset mid-response
            return None, f"connection failed: {exc}", True


__all__ = ["RETRY_STATUSES", "ListSink", "WebhookSink"]
