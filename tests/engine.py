"""The Docker engine as the tests see it: a worker's containers, the engine's socket, a registry without images."""

from __future__ import annotations

import base64
import http.server
import json
import os
import threading
from pathlib import Path
from typing import Any

from docker import APIClient

from runners.container_settings import WORKER_LABEL


def worker_containers(api: APIClient, scratch: Path) -> list[dict[str, Any]]:
    """Every container (running or not) that the worker with this scratch directory made."""
    found: list[dict[str, Any]] = api.containers(all=True, filters={"label": f"{WORKER_LABEL}={scratch.resolve()}"})
    return found


def engine_socket_path() -> str | None:
    """The unix socket of the engine DOCKER_HOST names (None for a TCP engine)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return host.removeprefix("unix://") if host.startswith("unix://") else None


class _NoSuchImage(http.server.BaseHTTPRequestHandler):
    """A registry's API that knows no image at all: every manifest is unknown. With
    `server.password` set, it first asks for HTTP basic authentication, as private ones do."""

    server: _RegistryServer

    def do_GET(self) -> None:
        self.server.authorizations.append(self.headers.get("Authorization"))
        if self.server.password is not None and self.headers.get("Authorization") != self.server.password:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="test"')
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/v2/":
            self._answer(200, {})
        else:
            self._answer(404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]})

    do_HEAD = do_GET

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _RegistryServer(http.server.ThreadingHTTPServer):
    password: str | None = None  # the Authorization header it wants
    authorizations: list[str | None]


class EmptyRegistry:
    """A registry on loopback (engines trust 127.0.0.0/8 over plain HTTP) that has no images;
    with `user` and `password`, one that wants them first."""

    def __init__(self, user: str | None = None, password: str | None = None) -> None:
        self.server = _RegistryServer(("127.0.0.1", 0), _NoSuchImage)
        self.server.authorizations = []
        if user is not None and password is not None:
            self.server.password = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def authorizations(self) -> list[str | None]:
        """The Authorization header of every request it got (None: none sent)."""
        return self.server.authorizations

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
