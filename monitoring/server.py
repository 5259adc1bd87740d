"""HTTP for monitoring: `/metrics` (Prometheus), `/healthz` and `/status` (JSON), on a thread."""

from __future__ import annotations

import json
import logging
import socketserver
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import msgspec
from prometheus_client import make_wsgi_app

from common import faults
from common.thread_health import GuardedThread
from monitoring.metrics import REGISTRY, record_thread_failure
from monitoring.state import WorkerState

log = logging.getLogger(__name__)
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds up the supervisor's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds is not news


class MonitoringServer:
    def __init__(self, address: str, port: int, latest: Callable[[], WorkerState | None]) -> None:
        self.latest = latest
        self.metrics_app = make_wsgi_app(REGISTRY)
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
        if path == "/healthz":
            return self._health(start_response)
        if path == "/status":
            state = self.latest()
            if state is None:
                return _json(start_response, "503 Service Unavailable", {"status": "starting"})
            return _json(start_response, "200 OK", msgspec.to_builtins(state))
        return self.metrics_app(environ, start_response)  # type: ignore[no-any-return]

    def _health(self, start_response: StartResponse) -> Iterable[bytes]:
        state = self.latest()
        if state is None:
            return _json(start_response, "503 Service Unavailable", {"status": "starting"})
        problems = state.problems(time.time())
        if problems:
            return _json(start_response, "503 Service Unavailable", {"status": "unhealthy", "problems": problems})
        return _json(start_response, "200 OK", {"status": "ok", "summary": state.summary()})


def _json(start_response: StartResponse, status: str, body: Any) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
