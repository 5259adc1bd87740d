"""HTTP for monitoring, on a thread: the status page (`/`, and its actions when they are on),
`/metrics` (Prometheus), `/healthz` and `/status` (JSON)."""

from __future__ import annotations

import html
import json
import logging
import socketserver
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import msgspec
from prometheus_client import make_wsgi_app

from common import faults
from common.thread_health import GuardedThread
from monitoring.metrics import REGISTRY, record_thread_failure
from monitoring.page_actions import PageActions, Refused
from monitoring.scaling import scaling_signal
from monitoring.state import WorkerState
from monitoring.status_page import PageFacts, PageView, render
from queues.base import QueueDepth

log = logging.getLogger(__name__)
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
PAGE_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    # No script, frame, plug-in or outside request, whatever a message managed to put in the page.
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
]


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds up the supervisor's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds is not news


class MonitoringServer:
    def __init__(
        self,
        address: str,
        port: int,
        latest: Callable[[], WorkerState | None],
        facts: PageFacts,
        actions: PageActions | None = None,
        *,
        backlog: Callable[[], QueueDepth | None] | None = None,
    ) -> None:
        self.latest = latest
        self.backlog = backlog
        self.facts = facts
        self.actions = actions
        self.metrics_app = make_wsgi_app(REGISTRY)
        self.routes: dict[str, Callable[[dict[str, Any], StartResponse], Iterable[bytes]]] = {
            "/": self._page,
            "/healthz": self._health,
            "/status": self._status,
            "/scaling": self._scaling,
            "/metrics": self.metrics_app,
        }
        self.server = make_server(address, port, self._app, _ThreadingServer, _QuietHandler)
        self.port = self.server.server_port
        self.thread = GuardedThread("monitoring", self._serve, count_failure=record_thread_failure)

    def start(self) -> None:
        self.thread.start()
        log.info("serving metrics and health", extra={"address": self.server.server_address[0], "port": self.port})

    def stop(self) -> None:
        self.thread.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def problem(self) -> str | None:
        return self.thread.problem()

    def _serve(self) -> None:
        faults.check("monitoring")
        self.server.serve_forever()

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path in self.routes:
            return self.routes[path](environ, start_response)
        if path.startswith("/actions/"):
            return self._act(path.removeprefix("/actions/"), environ, start_response)
        return _text(start_response, "404 Not Found", f"no page {path}: try /, /metrics, /healthz, /status or /scaling")

    def _scaling(self, _environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        state = self.latest()
        if state is None:
            return _json(start_response, "503 Service Unavailable", {"status": "starting"})
        return _json(start_response, "200 OK", scaling_signal(state, self.backlog() if self.backlog else None))

    def _status(self, _environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        state = self.latest()
        if state is None:
            return _json(start_response, "503 Service Unavailable", {"status": "starting"})
        return _json(start_response, "200 OK", msgspec.to_builtins(state))

    def _page(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        actions = self.actions
        may_act = actions is not None and actions.may_act(environ)
        view = PageView(may_act, actions.token if actions is not None and may_act else "", query.get("notice", [""])[0])
        data = render(self.latest(), self.facts, view).encode()
        start_response("200 OK", [*PAGE_HEADERS, ("Content-Length", str(len(data)))])
        return [data] if environ.get("REQUEST_METHOD") != "HEAD" else []

    def _act(self, action: str, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self.actions is None:
            return _text(start_response, "403 Forbidden", "the status page's actions are off (--status-actions)")
        try:
            done = self.actions.act(action, environ)
        except Refused as refused:
            log.warning(
                "status page action refused",
                extra={"action": action, "why": str(refused), "client": environ.get("REMOTE_ADDR")},
            )
            return _text(start_response, refused.status, str(refused))
        start_response("303 See Other", [("Location", f"/?notice={done}"), ("Content-Length", "0")])
        return []

    def _health(self, _environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        state = self.latest()
        if state is None:
            return _json(start_response, "503 Service Unavailable", {"status": "starting"})
        problems = state.problems(time.time())
        if problems:
            return _json(start_response, "503 Service Unavailable", {"status": "unhealthy", "problems": problems})
        return _json(start_response, "200 OK", {"status": "ok", "summary": state.summary()})


def _text(start_response: StartResponse, status: str, text: str) -> list[bytes]:
    """A short answer a person reads: an HTML page (escaped) with a way back to the status page."""
    data = f'<!doctype html><title>{status}</title><p>{html.escape(text)}</p><p><a href="/">back</a></p>'.encode()
    start_response(status, [*PAGE_HEADERS, ("Content-Length", str(len(data)))])
    return [data]


def _json(start_response: StartResponse, status: str, body: Any) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
