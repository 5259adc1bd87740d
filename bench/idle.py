"""What an idle worker costs on SQS: the requests it makes per minute to an empty queue.

A worker with its defaults (`supervisor.py --workers 2 native -- true`) watches an empty SQS
queue on an SQS server on loopback (LocalStack by default, `--server moto` on request) for
`--minutes`; every request the server answered from the moment its pool is ready to the end of
the window is counted (an idle worker only receives). Baseline: a bare boto3 loop of 20 s long
polls, the least any SQS consumer can do, over the same window in the same run. Target: at most
3.5 requests per minute.

Usage: python bench/idle.py [--server localstack|moto] [--minutes 5]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import boto3  # noqa: E402

from bench.sqs_servers import SERVERS, ServerLoad, SqsServer, start_server  # noqa: E402
from testkit.waiting import wait_until  # noqa: E402


def worker_requests(root: Path, server: SqsServer, queue: str, seconds: float) -> int:
    log_path = root / "worker.log"
    command = [
        sys.executable, str(REPO / "supervisor.py"), "--workers", "2", "--queue", queue,
        "--scratch-dir", str(root / "scratch"), "--journal", str(root / "journal.sqlite3"), "--log-format", "json",
        "native", "--service", "bench", "--", "true",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        worker = subprocess.Popen(command, stdout=log, stderr=log)
    try:
        wait_until(lambda: "pool ready" in _messages(log_path), 60, "the worker's pool")
        before = server.request_count()
        time.sleep(seconds)  # the measurement itself: a window of idle time
        return server.request_count() - before
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)


def bare_long_poll_requests(server: SqsServer, queue: str, seconds: float) -> int:
    sqs = boto3.client("sqs")
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=20)

    before = server.request_count()
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    time.sleep(seconds)
    requests = server.request_count() - before
    stop.set()
    return requests


def _messages(log_path: Path) -> set[str]:
    found = set()
    for line in log_path.read_text().splitlines():
        try:
            found.add(json.loads(line).get("message"))
        except (json.JSONDecodeError, AttributeError):
            continue
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=SERVERS, default="localstack", help="the SQS server to run on")
    parser.add_argument("--minutes", type=float, default=5.0)
    options = parser.parse_args()
    seconds = options.minutes * 60
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        server = start_server(options.server, root / "server")
        try:
            sqs = boto3.client("sqs")
            load = ServerLoad(server)
            ours = worker_requests(root, server, sqs.create_queue(QueueName="idle-ours")["QueueUrl"], seconds)
            bare = bare_long_poll_requests(server, sqs.create_queue(QueueName="idle-bare")["QueueUrl"], seconds)
            busy = load.busy()
        finally:
            server.stop()
    print(
        f"an idle worker on an empty SQS queue on {server.name} (server busy {busy:.1%}), {options.minutes:g} minutes:"
    )
    print(f"  supervisor.py --workers 2: {ours} requests, {ours / options.minutes:.2f} per minute (target <= 3.5)")
    print(f"  bare 20 s long polls:      {bare} requests, {bare / options.minutes:.2f} per minute")


if __name__ == "__main__":
    main()
