"""What the shared job table costs: DynamoDB requests per job, and the throughput of short jobs
with the table against the same worker without it (the baseline, in the same run).

A worker (`--workers 2 native -- sleep`) drains an SQS queue on one moto server while its
job table lives on a second one, whose access log counts every DynamoDB request the worker
made (claims, lease renewals, outcomes, cancel polls). Short jobs (`sleep 0`) show the fixed
cost per job; long ones (`--long-s`, with a 10 s visibility timeout: a renewal every 5 s) show
what running costs per minute.

Usage: python bench/job_table.py [--jobs 200] [--long-jobs 2] [--long-s 30]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import boto3  # noqa: E402

from bench.sqs_servers import moto_request_count as request_count  # noqa: E402
from testkit.moto_server import MotoServer, create_job_table, moto_in_environment  # noqa: E402
from testkit.waiting import wait_until  # noqa: E402

VISIBILITY_S = 10


def run(root: Path, jobs: int, sleep_s: float, table: str | None, dynamodb_log: Path) -> tuple[float, int]:
    """Seconds to drain `jobs` jobs of `sleep_s`, and the DynamoDB requests made meanwhile."""
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName=f"bench-{time.monotonic_ns()}")["QueueUrl"]
    body = json.dumps({"service": "bench", "queue": "native", "command": {"arguments": [
        {"type": "parameter", "value": str(sleep_s)}]}})  # fmt: skip
    for start in range(0, jobs, 10):
        entries = [{"Id": str(i), "MessageBody": body} for i in range(start, min(jobs, start + 10))]
        sqs.send_message_batch(QueueUrl=queue, Entries=entries)
    directory = root / f"worker-{time.monotonic_ns()}"
    log_path = directory / "worker.log"
    directory.mkdir()
    command = [
        sys.executable, str(REPO / "supervisor.py"), "--workers", "2", "--queue", queue,
        "--scratch-dir", str(directory / "scratch"), "--journal", str(directory / "journal.sqlite3"),
        "--log-format", "json", "--visibility-timeout", str(VISIBILITY_S),
        *(["--job-table", table] if table else []), "native", "--service", "bench", "--", "sleep",
    ]  # fmt: skip
    before = request_count(dynamodb_log)
    with log_path.open("wb") as log:
        worker = subprocess.Popen(command, stdout=log, stderr=log)
    try:
        wait_until(lambda: _count(log_path, "pool ready"), 60, "the worker's pool")
        began = time.monotonic()
        wait_until(lambda: _count(log_path, "job finished") >= jobs, 600, "every job to finish")
        seconds = time.monotonic() - began
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    return seconds, request_count(dynamodb_log) - before


def _count(log_path: Path, message: str) -> int:
    return sum(1 for line in log_path.read_text().splitlines() if f'"message":"{message}"' in line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--long-jobs", type=int, default=2)
    parser.add_argument("--long-s", type=float, default=30.0)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        dynamodb_log = root / "dynamodb.log"
        with moto_in_environment(root / "moto.log"):
            tables = MotoServer(dynamodb_log)
            os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = tables.endpoint
            try:
                create_job_table("bench-jobs")
                plain_s, _ = run(root, options.jobs, 0, None, dynamodb_log)
                table_s, short_requests = run(root, options.jobs, 0, "bench-jobs", dynamodb_log)
                _, long_requests = run(root, options.long_jobs, options.long_s, "bench-jobs", dynamodb_log)
            finally:
                tables.stop()
    print(f"{options.jobs} short jobs (sleep 0), supervisor.py --workers 2, SQS on moto:")
    print(f"  without --job-table (baseline): {options.jobs / plain_s:6.1f} jobs/s")
    cost = f"{table_s / plain_s:.2f}x the time, {short_requests / options.jobs:.2f} DynamoDB requests per job"
    print(f"  with --job-table:               {options.jobs / table_s:6.1f} jobs/s ({cost})")
    per_job = long_requests / options.long_jobs
    print(
        f"{options.long_jobs} jobs of {options.long_s:g} s, --visibility-timeout {VISIBILITY_S} (a renewal every "
        f"{VISIBILITY_S / 2:g} s), --cancel-poll 5 (one read per poll for all running jobs):"
    )
    print(f"  {per_job:.1f} DynamoDB requests per job, {per_job / (options.long_s / 60):.1f} per job-minute")


if __name__ == "__main__":
    main()
