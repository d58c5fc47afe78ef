"""The dashboard end to end, in headless Chromium: a real `deleverage serve`, the 2025-10-10 crash replayed
into it through the feed connector, the page opened with a reader key, its panels updating and an alert
firing.

What runs: ``python -m deleverage serve`` in its own process (the monitor follower is its child), a
webhook receiver in a thread, :func:`deleverage.service.crash.replay_crash` in another thread (the
bundled 2025-10-10 klines, 20:50–21:30 UTC, served by :class:`KlineFeedServer` over a real local
websocket and posted by :class:`BinanceFeedConnector`), and Debian's chromium driven by Playwright
(``executable_path``: no downloaded browser). Checked against independent truth: the service's
first sample with a mark holds the population's long and short lots as posted (and no liquidation);
the page shows the numbers of the service's last sample (``/v1/monitor``, read over a separate
bearer-key connection) in every panel; a price-band halt in the store's audit was on the badges; the
fired alerts on the page are the alert log's and the webhook receiver's. Screenshots land in ``artifacts/dashboard-e2e/`` of the checkout (ignored by
git; ``DELEVERAGE_ARTIFACTS`` moves them); their path is printed in the test summary.

    .venv/bin/python -m pytest -q tests/service/test_dashboard_e2e.py -rA
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from deleverage.service.auth import hash_key
from deleverage.service.crash import CrashReplay, prepare, replay_crash
from deleverage.service.feed import population_inputs

from .live import ServerProcess
from .webhook import Receiver

CHROMIUM = Path(os.environ.get("DELEVERAGE_CHROMIUM", "/usr/bin/chromium"))
# what the machine's notes say a root, closed-network chromium needs
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
FEEDER, READER = "e2e-feeder-key", "e2e-reader-key"
VIEWPORT = {"width": 1366, "height": 768}  # a laptop screen
REPLAY = CrashReplay(window="20:50-21:30", accounts=1_000, seed=1, open_interest=30e6, step_ms=5_000,
                     mark_interval_ms=5_000, book_every_ms=10_000, oracle_every_ms=10_000, speed=300.0)
# Binance's rules with a circuit breaker and oracle checks, so their panel has something to show
POLICY = """
name = "binance-banded"
extends = "binance"
[safeguards]
price_band_bps = 150
band_window_ms = 60000
max_pause_ms = 60000
oracle_max_age_ms = 30000
oracle_max_divergence_bps = 100
"""
RULES = """
[[alerts]]
name = "liquidations-5m"
metric = "liquidation_ratio"
window = "5m"
threshold = 0.02
clear_threshold = 0.005
severity = "critical"

[[alerts]]
name = "oi-flush"
metric = "open_interest"
change_over = "5m"
change = "relative"
op = "<"
threshold = -0.05
"""

pytestmark = pytest.mark.slow


def artifacts_dir() -> Path:
    root = os.environ.get("DELEVERAGE_ARTIFACTS")
    base = Path(root) if root else Path(__file__).resolve().parents[2] / "artifacts"
    out = base / "dashboard-e2e"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return out


def service_toml(root: Path, webhook: str) -> Path:
    (root / "policy.toml").write_text(POLICY)
    path = root / "service.toml"
    path.write_text(f"""
database_url = "sqlite:///{root / 'events.db'}"
policy = "{root / 'policy.toml'}"
instruments = ["BTCUSDT"]
insurance_fund = {{ USDT = "1000000" }}
ts_window_behind_s = inf          # the inputs carry 2025 event times
snapshot_fork = false

[[api_keys]]
name = "feed"
role = "feeder"
sha256 = "{hash_key(FEEDER)}"

[[api_keys]]
name = "desk"
role = "reader"
sha256 = "{hash_key(READER)}"

[monitor]
windows = ["1m", "5m", "15m"]
bands_pct = [1, 2, 5]
sample_every_ms = 5000
history = 900
webhooks = ["{webhook}"]
{RULES}""")
    return path


class Replay(threading.Thread):
    """:func:`replay_crash` in a thread of its own (its own event loop); ``result`` or ``error`` after."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = asyncio.run(replay_crash(self.url, FEEDER, REPLAY))
        except BaseException as exc:  # noqa: BLE001 — re-raised by the test
            self.error = exc


def value(page: Any, element_id: str) -> float | None:
    """The number an element carries in ``data-value`` (what its text shows, unformatted)."""
    raw = page.get_attribute(f'[id="{element_id}"]', "data-value")
    return None if raw in (None, "") else float(raw)


# every class the safeguard badges take while the page runs (a halt lasts a few samples only)
WATCH_BADGES = """() => {
    window.__badges = new Set();
    const note = () => { for (const id of ['band-state', 'exec-state', 'oracle-state', 'fund-halt'])
        window.__badges.add(id + ' ' + document.getElementById(id).className); };
    new MutationObserver(note).observe(document.querySelector('.badges'),
        { subtree: true, childList: true, characterData: true, attributes: true }); }"""


def values(page: Any, *element_ids: str) -> dict[str, float | None]:
    """Several ``data-value`` numbers read at once (the page redraws between separate reads)."""
    raw = page.evaluate("""(ids) => ids.map((id) => { const el = document.getElementById(id);
        return el ? el.dataset.value : null; })""", list(element_ids))
    return {k: None if v in (None, "") else float(v) for k, v in zip(element_ids, raw, strict=True)}


def painted(page: Any, canvas_id: str) -> int:
    """Distinct colours on a canvas (a blank or a text-only canvas has few)."""
    return int(page.evaluate("""(id) => {
        const c = document.getElementById(id);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const seen = new Set();
        for (let i = 0; i < d.length; i += 16) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
        return seen.size; }""", canvas_id))


def overflowing(page: Any) -> list[str]:
    """Elements of a panel that stick out of it, and whether the page itself scrolls (1366×768)."""
    return list(page.evaluate("""() => {
        const out = [];
        const doc = document.documentElement;
        if (doc.scrollWidth > innerWidth || doc.scrollHeight > innerHeight) out.push(`page ${doc.scrollWidth}x${doc.scrollHeight}`);
        for (const panel of document.querySelectorAll('.panel')) {
            const p = panel.getBoundingClientRect();
            for (const el of panel.querySelectorAll('h2, table, canvas, .big, .sub, .badges, .legend')) {
                if (el.closest('.scroll')) continue;
                const r = el.getBoundingClientRect();
                if (r.right > p.right + 1 || r.bottom > p.bottom + 1)
                    out.push(`${panel.id} > ${el.id || el.tagName}: ${Math.round(r.right - p.right)} px right, ${Math.round(r.bottom - p.bottom)} px down`);
                if (el.tagName === 'CANVAS' && r.height < 28) out.push(`${panel.id} > ${el.id}: only ${r.height} px high`);
            }
            const h2 = panel.querySelector('h2');
            if (h2 && h2.scrollWidth > h2.clientWidth + 1) out.push(`${panel.id} title cut`);
        }
        return out; }"""))


def population_lots() -> dict[str, int]:
    """Lots of the population's long and short positions, from the inputs the replay posts."""
    population, _, server, start = prepare(REPLAY)
    inst = server.instrument
    lots = {"long": 0, "short": 0}
    for item in population_inputs(population, inst, ts_ns=start - 1):
        if item["kind"] == "fill":
            side = "long" if item["body"]["side"] == "buy" else "short"
            lots[side] += inst.qty_to_lots(Decimal(item["body"]["qty"]))
    return lots


def kept_samples(url: str, last_sample: int) -> list[dict[str, Any]]:
    """Every sample the service keeps, from its stream (``since=0``: resumed from the start)."""
    from websockets.sync.client import connect  # noqa: PLC0415 — Playwright's loop runs in this thread

    out: list[dict[str, Any]] = []
    ws_url = url.replace("http://", "ws://") + "/v1/stream?channels=monitor&since=0"
    with connect(ws_url, additional_headers={"Authorization": f"Bearer {READER}"}, max_size=2**26) as ws:
        while not out or out[-1]["sample"] < last_sample:
            message = json.loads(ws.recv(timeout=20))
            if message["channel"] == "monitor":
                out.append(message)
    return out


@pytest.fixture
def browser() -> Any:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM} (Debian's package `chromium`; .ci/run installs it)")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def test_the_dashboard_follows_a_crash_replay_and_shows_the_alert(browser: Any, tmp_path: Path,
                                                                  record_property: Any) -> None:
    shots = artifacts_dir()
    record_property("screenshots", str(shots))
    receiver = Receiver()
    server = ServerProcess(service_toml(tmp_path, receiver.url), tmp_path / "server.log")
    server.start()
    page_errors: list[str] = []
    foreign: list[str] = []
    try:
        context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
        page = context.new_page()
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        page.on("console", lambda msg: page_errors.append(msg.text) if msg.type == "error" else None)
        page.on("request", lambda req: None if req.url.startswith((server.url, "ws://127.0.0.1", "data:"))
                else foreign.append(req.url))

        # --- sign in: without a session the page is the login form; a wrong key is refused ------------------
        answer = page.goto(server.url + "/dashboard")
        assert answer is not None and answer.status == 401
        page.fill("#key", "not-a-key")
        page.click("#login")
        assert page.text_content("#message") == "unknown API key"
        assert page.query_selector("#panel-oi") is None
        page.fill("#key", READER)
        page.click("#login")
        page.wait_for_selector("#conn.good", timeout=15_000)
        page_errors.clear()  # the login form's 401 answers are logged as console errors; from here none
        assert page.text_content("#conn") == "live"
        page.screenshot(path=str(shots / "1-signed-in.png"))
        page.evaluate(WATCH_BADGES)

        # --- the replay: population first, then the feed -----------------------------------------------------
        replay = Replay(server.url)
        replay.start()
        page.wait_for_function("() => +document.getElementById('oi-value').dataset.value > 0", timeout=40_000)
        before = values(page, "mark-value", "sample-no")
        mark_before, sample_before = before["mark-value"], before["sample-no"]
        assert mark_before is not None and sample_before is not None
        page.screenshot(path=str(shots / "2-before-the-crash.png"))

        page.wait_for_function("""() => [...document.querySelectorAll('#alert-log tr.alert_fired td.what')]
            .some((td) => td.textContent.startsWith('fired liquidations-5m'))""", timeout=60_000)
        page.screenshot(path=str(shots / "3-alert-fired.png"))
        during = values(page, "mark-value", "sample-no", "liquidations")
        assert during["sample-no"] is not None and during["sample-no"] > sample_before
        assert during["mark-value"] is not None and during["mark-value"] < mark_before
        assert during["liquidations"] is not None and during["liquidations"] > 0

        replay.join(90)
        assert not replay.is_alive(), "the replay did not finish"
        if replay.error is not None:
            raise replay.error
        assert replay.result is not None and replay.result["refused"] == []
        reader = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {READER}"}, timeout=10)
        deadline = time.monotonic() + 30
        while True:
            body = reader.get("/v1/monitor").json()
            if body["monitor"]["behind"] == 0 and body["latest"] is not None and \
                    value(page, "sample-no") == body["latest"]["sample"]:
                break
            assert time.monotonic() < deadline, f"the page did not catch up: {body['monitor']}"
            time.sleep(0.2)
        page.wait_for_timeout(400)  # the heatmap redraws at most four times a second
        page.screenshot(path=str(shots / "4-after-the-replay.png"))

        # --- the service's samples: the first one with a mark holds the population as posted ------------------
        samples = kept_samples(server.url, body["latest"]["sample"])
        first = next(m["snapshot"] for m in samples if m["snapshot"]["symbols"]["BTCUSDT"]["mark"] is not None)
        lots = population_lots()
        oi = first["symbols"]["BTCUSDT"]["open_interest"]
        assert (oi["long"]["lots"], oi["short"]["lots"]) == (lots["long"], lots["short"])
        assert first["engine"]["liquidations"] == 0  # the population opens safe (the 1 % start buffer)
        assert [m["sample"] for m in samples] == list(range(samples[0]["sample"], body["latest"]["sample"] + 1))

        # --- every panel shows what the service computed -----------------------------------------------------
        risk = body["latest"]["snapshot"]["symbols"]["BTCUSDT"]
        fund = body["latest"]["snapshot"]["insurance_fund"]["USDT"]
        engine = body["latest"]["snapshot"]["engine"]
        assert value(page, "mark-value") == pytest.approx(risk["mark"])
        assert value(page, "oi-value") == pytest.approx(risk["open_interest"]["notional"])
        for w in ("1m", "5m", "15m"):
            assert value(page, f"oi-change-{w}") == pytest.approx(risk["open_interest_change"][w]["fraction"])
            assert value(page, f"liq-ratio-{w}") == pytest.approx(risk["liquidations"][w]["ratio"])
            assert value(page, f"liq-notional-{w}") == pytest.approx(risk["liquidations"][w]["notional"])
        for band in ("1%", "2%", "5%"):
            assert value(page, f"risk-accounts-{band}") == risk["at_risk"][band]["accounts"]
            assert value(page, f"risk-notional-{band}") == pytest.approx(risk["at_risk"][band]["notional"])
        for side in ("long", "short"):
            assert value(page, f"adl-accounts-{side}") == risk["adl_queue"][side]["accounts"]
        assert value(page, "fund-balance") == pytest.approx(fund["balance"])
        assert value(page, "fund-drawdown") == pytest.approx(fund["drawdown"])
        assert value(page, "liquidations") == engine["liquidations"] > during["liquidations"] - 1
        assert value(page, "exec-state") == (1 if risk["safeguards"]["execution_allowed"] else 0)
        assert page.text_content("#oracle-state") == "oracle valid: " + f"{risk['safeguards']['oracle_ticks'] / 10:,.1f} USDT"
        halts = reader.get("/v1/events", params={"kind": "execution_halted"}).json()["items"]
        assert halts, "the 150 bps band should halt execution during the crash"
        badges = set(page.evaluate("() => [...window.__badges]"))
        assert {"band-state badge bad", "exec-state badge bad", "band-state badge good"} <= badges, badges
        assert painted(page, "heat-chart") > 40, "the heatmap has no colours"
        assert painted(page, "map-chart") > 8, "the liquidation map is blank"
        for spark in ("oi-chart", "ratio-chart", "fund-chart"):
            assert painted(page, spark) > 4, f"{spark} is blank"

        # --- the alert: on the page, in the alert log (its audit stream) and at the webhook -------------------
        log = reader.get("/v1/alerts", params={"limit": 1000}).json()["items"]
        fired = {r["alert_id"] for r in log if r["kind"] == "alert_fired"}
        assert any(r["rule"] == "liquidations-5m" for r in log if r["kind"] == "alert_fired")
        shown = set(page.eval_on_selector_all(
            "#alert-log tr.alert_fired td.what", "cells => cells.map((c) => c.closest('tr').dataset.alertId)"))
        assert shown == fired
        posted = {b["alert_id"] for b in receiver.received() if b["event"] == "alert_fired"}
        assert posted == fired
        assert all(r["delivery"] == "delivered" for r in log if r["kind"] == "alert_fired")

        # --- /metrics with the reader key carries the names ------------------------------------------
        metrics = reader.get("/metrics").text
        for name in ('deleverage_open_interest{symbol="BTCUSDT"}', 'deleverage_liquidation_ratio{symbol="BTCUSDT",window="5m"}',
                     'deleverage_notional_at_risk{band="1%",symbol="BTCUSDT"}', 'deleverage_insurance_fund{asset="USDT"}'):
            assert name in metrics, name
        assert httpx.get(server.url + "/metrics").status_code == 401

        # --- a laptop screen: nothing sticks out, no console error, nothing fetched from elsewhere -----------
        assert overflowing(page) == []
        assert page_errors == []
        assert foreign == []
        (shots / "summary.json").write_text(json.dumps({"replay": replay.result, "monitor": body["monitor"],
                                                        "alerts": log}, indent=1, default=str))
        reader.close()
        context.close()
    finally:
        server.stop()
        receiver.close()
