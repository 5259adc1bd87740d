"""The SQS servers the benchmarks run on, on loopback: LocalStack's own SQS provider (the
default: it keeps messages in a heap, so a receive costs the same with 5 or 5,000 queued) or
moto's (`--server moto`: its receive walks the whole queue, so with hundreds queued moto, not
the consumer, sets the pace). Each counts the requests it answered and the CPU time it used, so
a benchmark can say who set the pace.

LocalStack lives in a virtual environment of its own, `.venv-localstack` at the top of the
checkout, made on first use from bench/localstack/requirements.txt (pinned whole).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Protocol

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testkit.moto_server import MotoServer, free_port  # noqa: E402
from testkit.waiting import stop_process, wait_until  # noqa: E402

LOCALSTACK_VENV = REPO / ".venv-localstack"
LOCALSTACK_REQUIREMENTS = REPO / "bench" / "localstack" / "requirements.txt"
LOCALSTACK_LAUNCHER = REPO / "bench" / "localstack" / "launch.py"
SERVERS = ("localstack", "moto")


class SqsServer(Protocol):
    name: str
    port: int
    process: subprocess.Popen[bytes]

    def request_count(self) -> int:
        """Requests answered so far."""
        ...

    def stop(self) -> None: ...


def cpu_seconds(server: SqsServer) -> float:
    """CPU time the server's process (and its children) used so far."""
    process = psutil.Process(server.process.pid)
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        times = each.cpu_times()
        total += times.user + times.system
    return total


class ServerLoad:
    """What a server has done since this was made: the requests it answered, and its CPU time
    over the time passed (near 1: the server, not its client, sets the pace)."""

    def __init__(self, server: SqsServer) -> None:
        self.server = server
        self.requests_before = server.request_count()
        self.cpu_before = cpu_seconds(server)
        self.started = time.monotonic()

    def requests(self) -> int:
        return self.server.request_count() - self.requests_before

    def busy(self) -> float:
        return (cpu_seconds(self.server) - self.cpu_before) / (time.monotonic() - self.started)


def start_server(name: str, directory: Path) -> SqsServer:
    """`name` (localstack or moto) started, its log in `directory`, and boto3 in this process
    and its children pointed at it."""
    directory.mkdir(parents=True, exist_ok=True)
    server: SqsServer = LocalStack(directory) if name == "localstack" else Moto(directory)
    os.environ.update({
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    })  # fmt: skip
    return server


class Moto:
    name = "moto"

    def __init__(self, directory: Path) -> None:
        self.log_path = directory / "moto.log"
        self.server = MotoServer(self.log_path)
        self.port = self.server.port
        self.process = self.server.process

    def request_count(self) -> int:
        return moto_request_count(self.log_path)

    def stop(self) -> None:
        self.server.stop()


def moto_request_count(log_path: Path) -> int:
    """Requests a moto server has answered so far: one access-log line each."""
    text = log_path.read_text(errors="replace")
    return sum(1 for line in text.splitlines() if '"POST ' in line or '"GET ' in line)


class LocalStack:
    name = "localstack"

    def __init__(self, directory: Path) -> None:
        python = ensure_localstack()
        self.port = free_port()
        self.log_path = directory / "localstack.log"
        environment = {
            **os.environ,
            "SERVICES": "sqs",
            "GATEWAY_LISTEN": f"127.0.0.1:{self.port}",
            "LOCALSTACK_HOST": f"127.0.0.1:{self.port}",  # queue URLs name loopback, needing no DNS
            "SQS_ENDPOINT_STRATEGY": "path",
            "DNS_ADDRESS": "0",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DISABLE_EVENTS": "1",
            "LOCALSTACK_VOLUME_DIR": str(directory / "localstack-volume"),
            "HOME": str(directory),  # LocalStack keeps a cache under HOME: not the user's
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([str(python), str(LOCALSTACK_LAUNCHER)], stdout=log, stderr=log,
                                            env=environment, cwd=directory)  # fmt: skip
        wait_until(self._ready, 90, f"LocalStack on port {self.port} (log: {self.log_path})")

    def _ready(self) -> bool:
        assert self.process.poll() is None, f"LocalStack exited: {self.log_path.read_text()[-2000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_localstack/health", timeout=2) as answer:
                health = answer.read()
        except OSError:
            return False
        return b'"sqs": "available"' in health or b'"sqs": "running"' in health

    def request_count(self) -> int:
        """One log line per request: `AWS sqs.ReceiveMessage => 200`."""
        return sum(1 for line in self.log_path.read_text(errors="replace").splitlines() if "AWS sqs." in line)

    def stop(self) -> None:
        stop_process(self.process, 20)


def ensure_localstack() -> Path:
    """LocalStack's interpreter, its virtual environment made first if it is missing."""
    python = LOCALSTACK_VENV / "bin" / "python"
    marker = LOCALSTACK_VENV / ".installed"
    wanted = LOCALSTACK_REQUIREMENTS.read_text()
    if marker.exists() and marker.read_text() == wanted:
        return python
    print(f"making LocalStack's virtual environment in {LOCALSTACK_VENV} (once)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(LOCALSTACK_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-r", str(LOCALSTACK_REQUIREMENTS)], check=True)  # fmt: skip
    marker.write_text(wanted)
    return python
