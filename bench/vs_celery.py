"""Trivial jobs over SQS: supervisor.py against Celery, in one run, on one moto server.

Both consume the same number of jobs (each runs `true` as a subprocess) from an SQS queue on
a moto server: `supervisor.py --workers 2 native -- true` with its defaults (prefetch on),
once sending results to a result queue and once to the log only, and a Celery worker (kombu's
SQS transport, prefork `-c 2`, `task_acks_late`, prefetch multiplier 1, `task_ignore_result`)
tuned the way a Celery user tunes it for short jobs: `wait_time_seconds: 1` (a 1 s long poll
instead of 20 s when its prefetch runs dry) and `polling_interval: 0.1`. The jobs are queued
before each consumer starts. Printed for each, for each job count: jobs/s from the first
job's start to the last job's end (from the consumers' own timestamps), the SQS requests per
job, counted in the server's request log from the consumer's start to its last job (the
producer's sends are not counted), and how busy the moto server was meanwhile: moto's SQS
does work in proportion to the queue's length for every message it hands out, so with
hundreds of messages queued the server, not the consumer, can set the pace. Targets: >= 3x
Celery's jobs/s, <= 0.5 SQS requests per job.

Usage: python bench/vs_celery.py [--jobs 200 500]
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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import boto3  # noqa: E402
import psutil  # noqa: E402

from testkit.moto_server import MotoServer, moto_in_environment  # noqa: E402

CELERY_APP = """
import os, subprocess, time
from celery import Celery

app = Celery("bench", broker=os.environ["BENCH_BROKER"])
app.conf.update(
    broker_transport_options={
        "region": "us-east-1",
        "is_secure": False,
        "wait_time_seconds": 1,
        "polling_interval": 0.1,
        "predefined_queues": {"celery": {"url": os.environ["BENCH_QUEUE"],
                                         "access_key_id": "bench", "secret_access_key": "bench"}},
    },
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
)


@app.task(name="run_true")
def run_true():
    started = time.time()
    subprocess.run(["true"], check=True)
    with open(os.environ["BENCH_TIMES"], "a") as times:
        times.write(f"{started} {time.time()}\\n")
"""


def request_count(moto_log: Path) -> int:
    """Requests moto has answered so far (one access-log line each)."""
    return sum(1 for line in moto_log.read_text(errors="replace").splitlines() if '"POST ' in line or '"GET ' in line)


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


@dataclass(frozen=True)
class Run:
    jobs_per_s: float
    requests_per_job: float
    moto_busy: float  # moto's CPU time over the consumer's time, from its start to its last job


class Meter:
    """Requests and moto's CPU time from a consumer's start to its last job."""

    def __init__(self, moto: MotoServer, moto_log: Path) -> None:
        self.moto_log = moto_log
        self.process = psutil.Process(moto.process.pid)
        self.requests = request_count(moto_log)
        self.cpu = _cpu_seconds(self.process)
        self.started = time.monotonic()

    def run(self, jobs: int, jobs_per_s: float) -> Run:
        busy = (_cpu_seconds(self.process) - self.cpu) / (time.monotonic() - self.started)
        return Run(jobs_per_s, (request_count(self.moto_log) - self.requests) / jobs, busy)


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def run_ours(root: Path, sqs: Any, moto: MotoServer, moto_log: Path, jobs: int, *, results: bool) -> Run:
    name = f"{jobs}-{'results' if results else 'log'}"
    queue = sqs.create_queue(QueueName=f"ours-jobs-{name}")["QueueUrl"]
    result_options = (
        ["--result-queue", sqs.create_queue(QueueName=f"ours-results-{name}")["QueueUrl"]] if results else []
    )
    body = json.dumps({"service": "bench", "queue": "native", "command": {"arguments": []}})
    for start in range(0, jobs, 10):
        entries = [{"Id": str(i), "MessageBody": body} for i in range(min(10, jobs - start))]
        sqs.send_message_batch(QueueUrl=queue, Entries=entries)
    log_path = root / f"ours-{name}.log"
    meter = Meter(moto, moto_log)
    command = [
        sys.executable, str(REPO / "supervisor.py"), "--workers", "2", "--queue", queue, *result_options,
        "--scratch-dir", str(root / f"scratch-{name}"), "--journal", str(root / f"journal-{name}.sqlite3"),
        "native", "--service", "bench", "--", "true",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        worker = subprocess.Popen(command, stdout=log, stderr=log)

    def records(message: str) -> list[dict[str, Any]]:
        found = []
        for line in log_path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("message") == message:
                found.append(record)
        return found

    wait_for(lambda: len(records("job finished")) >= jobs, 600, "our worker's jobs")
    starts = [_epoch(r["time"]) for r in records("job started")]
    ends = [_epoch(r["time"]) for r in records("job finished")]
    run = meter.run(jobs, jobs / (max(ends) - min(starts)))
    worker.send_signal(signal.SIGTERM)
    worker.wait(60)
    return run


def run_celery(root: Path, sqs: Any, moto: MotoServer, moto_log: Path, jobs: int) -> Run:
    queue = sqs.create_queue(QueueName=f"celery-{jobs}")["QueueUrl"]
    (root / "celery_bench_app.py").write_text(CELERY_APP)
    times = root / f"celery-times-{jobs}.txt"
    times.touch()
    environment = dict(
        os.environ,
        BENCH_BROKER=f"sqs://bench:bench@127.0.0.1:{moto.port}",
        BENCH_QUEUE=queue,
        BENCH_TIMES=str(times),
        PYTHONPATH=str(root),
    )
    producer = subprocess.run(
        [sys.executable, "-c", f"from celery_bench_app import run_true\nfor _ in range({jobs}): run_true.delay()"],
        env=environment, cwd=root, check=True, capture_output=True,
    )  # fmt: skip
    del producer
    meter = Meter(moto, moto_log)
    with (root / f"celery-{jobs}.log").open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_bench_app", "worker", "-c", "2", "-P", "prefork",
             "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            env=environment, cwd=root, stdout=log, stderr=log,
        )  # fmt: skip
    wait_for(lambda: len(times.read_text().splitlines()) >= jobs, 900, "Celery's jobs")
    spans = [tuple(map(float, line.split())) for line in times.read_text().splitlines()]
    run = meter.run(jobs, jobs / (max(end for _, end in spans) - min(start for start, _ in spans)))
    worker.send_signal(signal.SIGTERM)
    worker.wait(60)
    return run


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, nargs="+", default=[200, 500], help="job counts, each run on both")
    options = parser.parse_args()
    figures = []
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        moto_log = root / "moto.log"
        with moto_in_environment(moto_log) as moto:
            sqs = boto3.client("sqs")
            for jobs in options.jobs:
                ours = run_ours(root, sqs, moto, moto_log, jobs, results=True)
                ours_log_only = run_ours(root, sqs, moto, moto_log, jobs, results=False)
                celery = run_celery(root, sqs, moto, moto_log, jobs)
                figures.append((jobs, ours, ours_log_only, celery))
    print("trivial jobs over SQS (moto), 2 worker processes each; Celery: wait_time_seconds 1, polling_interval 0.1")
    print("(moto busy: the moto server's CPU time over the consumer's run; near 100% the server is the bottleneck)")
    for jobs, ours, ours_log_only, celery in figures:
        print(f"{jobs} jobs:")
        for name, run in (
            ("supervisor.py, results to a queue", ours),
            ("supervisor.py, results to the log only", ours_log_only),
            ("Celery (task_ignore_result)", celery),
        ):
            print(
                f"  {name:40} {run.jobs_per_s:6.1f} jobs/s, {run.requests_per_job:.2f} SQS requests per job, "
                f"moto busy {run.moto_busy:4.0%}"
            )
        print(
            f"  ratio: {ours.jobs_per_s / celery.jobs_per_s:.2f}x Celery's jobs/s with results to a queue, "
            f"{ours_log_only.jobs_per_s / celery.jobs_per_s:.2f}x without (target >= 3x); "
            "requests per job target <= 0.5"
        )


if __name__ == "__main__":
    main()
