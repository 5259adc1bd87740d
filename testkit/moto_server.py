"""moto's standalone server on loopback: SQS and S3 over the wire."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testkit.waiting import wait_until


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class MotoServer:
    """moto's standalone server (S3 and SQS over HTTP) on a loopback port."""

    def __init__(self, log_path: Path, environment: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        command = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log, env={**os.environ, **(environment or {})})
        wait_until(self._answers, 30, f"moto_server on port {self.port}")

    def aws_environment(self) -> dict[str, str]:
        """Variables that point boto3 (in this process or any child) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):
                return True
        except OSError:
            assert self.process.poll() is None, "moto_server exited"
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@contextmanager
def moto_in_environment(log_path: Path) -> Iterator[MotoServer]:
    """A moto server that boto3 in this process (and its children) talks to, until the end."""
    server = MotoServer(log_path)
    os.environ.update(server.aws_environment())
    try:
        yield server
    finally:
        server.stop()


def create_job_table(name: str) -> None:
    """A job table as docs/guarantees.md defines it, on whatever endpoint boto3 is pointed at."""
    import boto3  # noqa: PLC0415 (only the callers that make a table need it)

    boto3.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
