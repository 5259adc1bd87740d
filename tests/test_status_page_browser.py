"""The status page in a real browser (headless Chromium): a worker with two jobs running and one
failed shows its slots, the failure's message and the charts; a service name holding `<script>`
is text, never markup. The screenshot is kept as a test artifact."""

from __future__ import annotations

import os
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from testkit.browser import Browser
from testkit.moto_server import free_port
from testkit.waiting import wait_until
from tests.support import REPO, Worker, job, required_program

HOSTILE = "<script>alert('owned')</script>"


def artifacts_dir() -> Path:
    return Path(os.environ.get("API_WORKER_TEST_ARTIFACTS", REPO / "test-artifacts"))


class Elements(HTMLParser):
    """Every element of a document: its tag, attributes and the text inside it (children's too)."""

    def __init__(self, document: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str], list[str]]] = []
        self._open: list[list[str]] = []
        self.feed(document)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        text: list[str] = []
        self.found.append((tag, {name: value or "" for name, value in attrs}, text))
        if tag not in ("meta", "input", "br", "line", "link"):
            self._open.append(text)

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag not in ("meta", "input", "br", "line", "link"):
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for text in self._open:
            text.append(data)

    def all(self, tag: str, css: str | None = None) -> list[tuple[dict[str, str], str]]:
        return [(attrs, "".join(text)) for found, attrs, text in self.found
                if found == tag and (css is None or attrs.get("class") == css)]  # fmt: skip


@pytest.fixture
def browser(tmp_path: Path) -> Browser:
    return Browser(required_program("chromium", "chromium"), tmp_path / "chromium-profile")


def test_the_status_page_of_a_busy_worker_in_chromium(tmp_path: Path, browser: Browser) -> None:
    port = free_port()
    worker = Worker(tmp_path, workers=2, options=["--metrics-port", str(port)])
    try:
        worker.start()
        failed = worker.result(worker.submit(job([{"type": "parameter", "name": "--exit", "value": 3}])))
        assert failed["status"] == "failed"
        hostile = worker.result(worker.submit(job(service=HOSTILE)))
        assert hostile["status"] == "rejected"
        for number in range(2):
            started = tmp_path / f"started-{number}"
            worker.submit(job(_reporting_progress(started, f"{30 + number * 20}% step {number + 1} of 3"), events=True))
            wait_until(started.exists, 20, "the job to start")
        page = f"http://127.0.0.1:{port}/"
        elements = wait_until(lambda: _with_two_running(browser.dom(page)), 30, "a page with both jobs running")

        running = [text for _, text in elements.all("tr", "running")]
        assert len(running) == 2
        wait_until(lambda: "50% step 2 of 3" in browser.dom(page), 20, "the latest progress on the page")
        failures = [text for _, text in elements.all("tr", "failed")]
        assert any("the command ended with exit code 3" in text and "failed" in text for text in failures), failures
        assert any(HOSTILE in text and "rejected" in text for text in failures), failures
        assert not elements.all("script"), "the page holds a script element"
        charts = {attrs["aria-label"]: attrs for attrs, _ in elements.all("svg")}
        assert set(charts) == {"Jobs per minute", "Failures per minute"}
        for css in ("bar", "bar fail"):
            bars = elements.all("rect", css)
            assert len(bars) == 60
            assert any(attrs["height"] != "0" for attrs, _ in bars), f"no {css} is drawn"
        health = next(text for attrs, text in elements.all("div") if attrs.get("id") == "health")
        assert "Healthy" in health

        shot = browser.screenshot(page, artifacts_dir() / "status-page.png")
        assert shot.stat().st_size > 10_000
    finally:
        worker.stop()


def _reporting_progress(started: Path, progress: str) -> list[dict[str, Any]]:
    return [
        {"type": "parameter", "name": "--started", "value": str(started)},
        {"type": "parameter", "name": "--progress", "value": progress},
        {"type": "parameter", "name": "--sleep", "value": 120},
    ]


def _with_two_running(document: str) -> Elements | None:
    elements = Elements(document)
    return elements if len(elements.all("tr", "running")) == 2 else None
