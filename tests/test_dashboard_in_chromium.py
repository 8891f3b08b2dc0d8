"""The dashboard in a real browser: headless Chromium (Debian's package, `make browser`)
loads it from a web process started from the Procfile, draws the chart, the health panel, the
next runs in the viewer's timezone and the progress bar with its phase, moves the bar when the
run progresses, and the screenshot is not blank.

Chromium is driven over its DevTools protocol (tornado's websocket client, already installed
with Flower), which lets the test log in with a session cookie.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import struct
import subprocess
import time
import zlib
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from django.test import Client
from django.utils import timezone
from tornado.websocket import websocket_connect

from project.devservices import free_port
from schedules.models import ImportRun, ScheduledImport
from tests.api_support import make_run
from tests.conftest import answers, wait_for
from tests.factories import make_import

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1100,900", "--remote-debugging-port=0",
]  # fmt: skip


class Browser:
    """One headless Chromium and a DevTools session on its page, driven synchronously."""

    def __init__(self, profile: Path) -> None:
        binary = shutil.which("chromium")
        if binary is None:
            pytest.fail("chromium is not installed: run `make browser` (Debian's package)")
        self.process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.loop = asyncio.new_event_loop()
        self.ws = None
        try:
            port_file = profile / "DevToolsActivePort"
            wait_for(port_file.exists, 30, what="chromium's DevTools port")
            port = int(port_file.read_text().split()[0])
            pages = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
            url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
            self.ws = self.loop.run_until_complete(self._connect(url))
        except BaseException:
            self.close()  # never leave a browser behind a failed start
            raise
        self.ids = itertools.count(1)

    @staticmethod
    async def _connect(url: str):
        # Inside the running loop, so that tornado binds the connection to it.
        return await websocket_connect(url, max_message_size=2**26)

    def send(self, method: str, **params) -> dict:
        return self.loop.run_until_complete(self._send(method, params))

    async def _send(self, method: str, params: dict) -> dict:
        call_id = next(self.ids)
        await self.ws.write_message(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.read_message(), 30))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
        self.loop.close()
        # The whole process group: Chromium's zygote and renderers too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


def distinct_colours(png: bytes) -> int:
    """Rough count of distinct pixel values of an 8-bit RGB(A) PNG (no imaging library)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    position, data, header = 8, b"", None
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        kind = png[position + 4 : position + 8]
        body = png[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            data += body
        position += 12 + length
    width, height, depth, colour_type = header[:4]
    assert depth == 8 and colour_type in (2, 6)
    channels = 3 if colour_type == 2 else 4
    raw = zlib.decompress(data)
    stride = width * channels + 1
    # Sample unfiltered-looking pixels of a few rows; filtered rows still differ when the
    # picture does, which is all a "not blank" check needs.
    seen = set()
    for row in range(0, height, max(height // 50, 1)):
        line = raw[row * stride + 1 : (row + 1) * stride]
        seen.update(line[i : i + channels] for i in range(0, len(line), channels * 7))
    return len(seen)


@pytest.fixture
def browser(tmp_path):
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    instance = Browser(profile)
    yield instance
    instance.close()


def test_the_dashboard_renders_its_chart_and_live_progress_in_chromium(
    alice, django_user_model, processes, browser, tmp_path
):
    # Given runs over two days, a run in progress at 25% and a failing import
    staff = django_user_model.objects.create_user("sam", password="x", is_staff=True)
    now = timezone.now()
    imp = make_import(alice, "https://example.com/p.csv")
    for days, status in [(2, "succeeded"), (1, "succeeded"), (1, "partial"), (0, "failed")]:
        make_run(imp, status, queued_at=now - timedelta(days=days))
    running = make_run(
        imp, "running", bytes_read=250, bytes_total=1000, started_at=now, phase="staging"
    )
    ScheduledImport.objects.filter(pk=imp.pk).update(consecutive_failures=1)
    nightly = make_import(
        alice, "https://example.com/n.csv", name="nightly", dataset="nightly",
        schedule_type="cron", cron_expression="30 2 * * *", interval_seconds=None,
        timezone="Europe/Berlin",
    )  # fmt: skip
    in_berlin = nightly.next_run_at.astimezone(ZoneInfo("Europe/Berlin"))
    port = free_port()
    processes.start("web", PORT=str(port), WEB_CONCURRENCY="1")
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(base + "/api/v1/health"), 30, what="web\n" + processes.logs())
    client = Client()
    client.force_login(staff)

    # When staff in Berlin open the dashboard in Chromium
    browser.send("Emulation.setTimezoneOverride", timezoneId="Europe/Berlin")
    browser.send("Network.enable")
    browser.send(
        "Network.setCookie", name="sessionid", value=client.cookies["sessionid"].value, url=base
    )
    browser.send("Page.navigate", url=f"{base}/dashboard/")
    wait_for(
        lambda: browser.evaluate("Number(document.body && document.body.dataset.liveUpdates)"),
        20,
        what="the page and its first live update",
    )

    # Then the chart and the progress bar are drawn
    bars = browser.evaluate("document.querySelectorAll('#runs-chart rect.bar').length")
    assert bars == 4  # succeeded, succeeded + partial, failed
    fill = f"document.querySelector('tr[data-run-id=\"{running.pk}\"] .progress .fill')"
    assert browser.evaluate(f"{fill}.style.width") == "25%"
    assert browser.evaluate(f"{fill}.getBoundingClientRect().width") > 20

    bar = f"document.querySelector('tr[data-run-id=\"{running.pk}\"] .progress')"
    assert browser.evaluate(f"{bar}.querySelector('.phase').textContent") == "staging"

    # And the health panel shows the broker up, and neither beat nor a worker (none runs here)
    state = "document.querySelector('#health [data-check=\"{}\"]').className"
    assert browser.evaluate(state.format("broker")) == "health-item ok"
    assert browser.evaluate(state.format("beat")) == "health-item bad"
    assert browser.evaluate(state.format("workers")) == "health-item bad"

    # And the next runs are in the viewer's timezone, the UTC time on hover
    when = f"document.querySelector('#upcoming-runs tr[data-import-id=\"{nightly.pk}\"] time')"
    assert browser.evaluate(f"{when}.textContent").startswith(
        in_berlin.strftime("%Y-%m-%d %H:%M:%S ")
    )
    assert browser.evaluate(f"{when}.title").endswith(" UTC")
    assert "(in " in browser.evaluate(f"{when}.textContent")
    assert browser.evaluate("document.getElementById('viewer-zone').textContent") == (
        "Europe/Berlin"
    )
    _screenshot(browser, tmp_path / "dashboard-staging.png")

    # When the run progresses, the bar follows without a reload
    ImportRun.objects.filter(pk=running.pk).update(bytes_read=750)
    wait_for(lambda: browser.evaluate(f"{fill}.style.width") == "75%", 30, what="the bar to move")

    # And when it merges, the full bar says so and shows that work goes on
    ImportRun.objects.filter(pk=running.pk).update(bytes_read=1000, phase="merge")
    wait_for(lambda: browser.evaluate(f"{bar}.classList.contains('working')"), 30, what="the merge")
    assert browser.evaluate(f"{bar}.querySelector('.phase').textContent") == "merge"

    # And an import that starts failing joins the imports needing attention without a reload
    # (the open page showed the list it was rendered with, for good)
    broken = make_import(alice, "https://example.com/b.csv", name="broken", dataset="broken")
    ScheduledImport.objects.filter(pk=broken.pk).update(
        consecutive_failures=2, last_run_status="failed", last_run_at=timezone.now()
    )
    listed = "document.querySelector('#attention-imports tbody').textContent"
    wait_for(lambda: "broken" in browser.evaluate(listed), 30, what="the attention list")

    # And the screenshot shows a page, not a blank
    time.sleep(0.6)  # the bar's CSS transition
    shot = _screenshot(browser, tmp_path / "dashboard.png")
    assert len(shot) > 10_000
    assert distinct_colours(shot) > 8
    dom = browser.evaluate("document.documentElement.outerHTML")
    assert "runs-chart" in dom and "Imports needing attention" in dom and "Next runs" in dom


def _screenshot(browser: Browser, path: Path) -> bytes:
    """The whole page, below the window's fold too."""
    metrics = browser.send("Page.getLayoutMetrics")["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": metrics["width"], "height": metrics["height"], "scale": 1}
    shot = base64.b64decode(
        browser.send("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)[
            "data"
        ]
    )
    path.write_bytes(shot)
    return shot
