"""The webhook sink against a real HTTP server on localhost (no mocks): body, retries, timeout, refusal."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deleverage.engine.alert_sinks import ListSink, WebhookSink
from deleverage.engine.alerts import Alerts
from deleverage.engine.events import AuditLog, EventKind
from deleverage.errors import InvalidInput
from tests.engine.test_alerts import RULE, ratio


class Receiver:
    """A local HTTP server whose handler answers from a script of (status, delay_s), then 200."""

    def __init__(self, script: list[tuple[int, float]] | None = None) -> None:
        self.script = list(script or [])
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 — http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append((self.path, dict(self.headers), body))
                    status, delay = receiver.script.pop(0) if receiver.script else (200, 0.0)
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                try:
                    self.wfile.write(b"ok")
                except OSError:  # the client gave up (timeout)
                    pass

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def fire_one(sink: WebhookSink | ListSink, audit: AuditLog | None = None) -> Alerts:
    alerts = Alerts([RULE], sinks=[sink], audit=audit)
    alerts.evaluate(ratio(1, ("BTCUSDT", 0.05)))
    return alerts


def test_posts_the_alert_as_json(receiver: Receiver) -> None:
    sink = WebhookSink(receiver.url, headers={"Authorization": "Bearer desk"})
    alerts = fire_one(sink)
    assert len(receiver.requests) == 1
    path, headers, body = receiver.requests[0]
    assert path == "/hooks/alerts"
    assert headers["Content-Type"] == "application/json" and headers["Authorization"] == "Bearer desk"
    payload = json.loads(body)
    assert payload == alerts.events[0].payload()
    assert (payload["event"], payload["rule"], payload["metric"], payload["value"], payload["threshold"]) == \
        ("alert_fired", "liq-5m", "liquidation_ratio", 0.05, 0.02)
    assert payload["labels"] == {"symbol": "BTCUSDT", "window": "5m"}
    assert alerts.audit.count(EventKind.ALERT_UNDELIVERED) == 0


def test_retries_a_failing_receiver_until_it_answers() -> None:
    waits: list[float] = []
    with Receiver([(503, 0.0), (500, 0.0)]) as receiver:
        sink = WebhookSink(receiver.url, attempts=3, backoff_s=0.01, sleep=waits.append)
        result = sink.send(fire_one(ListSink()).events[0])
    assert result.ok and result.attempts == 3 and result.status == 200
    assert waits == [0.01, 0.02]  # exponential backoff between the tries
    bodies = {body for _, _, body in receiver.requests}
    assert len(receiver.requests) == 3 and len(bodies) == 1  # the same alert, same id, every time


def test_gives_up_after_its_attempts_and_records_it() -> None:
    audit = AuditLog()
    with Receiver([(503, 0.0)] * 10) as receiver:
        fire_one(WebhookSink(receiver.url, attempts=4, backoff_s=0.0), audit)
        assert len(receiver.requests) == 4
    undelivered = audit.of_kind(EventKind.ALERT_UNDELIVERED)
    assert len(undelivered) == 1
    data = undelivered[0].data
    assert (data["attempts"], data["status"], data["rule"], data["event"], data["sink"]) == \
        (4, 503, "liq-5m", "alert_fired", "WebhookSink")
    assert data["error"] == "HTTP 503"


def test_a_client_error_is_not_retried() -> None:
    with Receiver([(400, 0.0)]) as receiver:
        result = WebhookSink(receiver.url, attempts=5, backoff_s=0.0).send(fire_one(ListSink()).events[0])
        assert len(receiver.requests) == 1
    assert not result.ok and result.status == 400 and result.attempts == 1


def test_a_slow_receiver_times_out_and_is_retried_a_bounded_number_of_times() -> None:
    with Receiver([(200, 1.0), (200, 1.0)]) as receiver:
        started = time.monotonic()
        result = WebhookSink(receiver.url, timeout_s=0.2, attempts=2, backoff_s=0.0).send(
            fire_one(ListSink()).events[0])
        elapsed = time.monotonic() - started
    assert not result.ok and result.attempts == 2 and "timed out" in (result.error or "")
    assert elapsed < 1.5  # two timeouts of 0.2 s, not the receiver's 2 s


def test_nobody_listening_is_a_connection_failure_not_an_exception() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    result = WebhookSink(f"http://127.0.0.1:{port}/x", attempts=2, backoff_s=0.0).send(
        fire_one(ListSink()).events[0])
    assert not result.ok and result.attempts == 2 and "connection failed" in (result.error or "")


def test_bad_settings_are_refused() -> None:
    for kwargs, field in (({"url": "ftp://x"}, "url"), ({"url": "http://"}, "url"),
                          ({"timeout_s": 0}, "timeout_s"), ({"attempts": 0}, "attempts"),
                          ({"attempts": 1.5}, "attempts"), ({"backoff_s": -1}, "backoff_s")):
        with pytest.raises(InvalidInput, match=field):
            WebhookSink(**({"url": "http://127.0.0.1:1/"} | kwargs))
