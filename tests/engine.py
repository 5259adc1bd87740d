"""The Docker engine for the tests: reach it, build the test images, list a worker's containers."""

from __future__ import annotations

import base64
import http.server
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path
from typing import Any

from docker import APIClient
from docker.errors import DockerException
from docker.utils import kwargs_from_env
from requests.exceptions import RequestException

from runners.container_settings import WORKER_LABEL

IMAGE_DIR = Path(__file__).resolve().parent / "jobs" / "image"
BASE_IMAGE = "local/api-worker-test-base:1"
TOOL_IMAGE = "local/api-worker-test-tool:1"
PYTHON_BASE_IMAGE = "local/python-base:3.11-bookworm"  # made by .ci/make-python-base
BUSYBOX = "/bin/busybox"


def reach_engine() -> APIClient | str:
    """A client for the engine DOCKER_HOST names, or why there is none."""
    try:
        api = APIClient(version="auto", timeout=60, **kwargs_from_env())
        api.ping()
    except (DockerException, RequestException) as exc:
        return f"no Docker engine reachable ({os.environ.get('DOCKER_HOST', 'default socket')}): {exc}"
    if not os.path.exists(BUSYBOX):
        return f"{BUSYBOX} is missing (apt-get install busybox-static) to build the test image"
    return api


def busybox_root_filesystem() -> bytes:
    """A tar of /bin/busybox and a link per applet: a whole image with no registry."""
    applets = subprocess.run([BUSYBOX, "--list-full"], capture_output=True, text=True, check=True).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory, mode in (("bin", 0o755), ("sbin", 0o755), ("usr/bin", 0o755), ("usr/sbin", 0o755),
                                ("usr/local/bin", 0o755), ("etc", 0o755), ("tmp", 0o1777)):  # fmt: skip
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(BUSYBOX, "bin/busybox")
        for applet in applets:
            if applet != "bin/busybox":
                info = tarfile.TarInfo(applet)
                info.type, info.linkname = tarfile.SYMTYPE, "/bin/busybox"
                tar.addfile(info)
    return buffer.getvalue()


def build_test_images(api: APIClient, context: Path) -> str:
    """The base (imported) and the tool image (built from tests/jobs/image); the tool's name."""
    api.import_image_from_data(
        busybox_root_filesystem(), repository=BASE_IMAGE.split(":", maxsplit=1)[0], tag=BASE_IMAGE.split(":")[1],
        changes=['ENTRYPOINT ["/bin/sh", "-c"]'],
    )  # fmt: skip
    shutil.copytree(IMAGE_DIR, context, dirs_exist_ok=True)
    for event in api.build(path=str(context), tag=TOOL_IMAGE, buildargs={"BASE": BASE_IMAGE}, rm=True, decode=True):
        if "error" in event:
            raise RuntimeError(f"building {TOOL_IMAGE} failed: {event['error']}")
    return TOOL_IMAGE


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
