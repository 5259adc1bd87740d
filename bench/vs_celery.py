"""Trivial jobs over SQS: supervisor.py against Celery at three settings, in one run, on one
SQS server, and against the same worker on the embedded queue.

Each consumer gets N jobs (each runs `true` as a subprocess), all queued before it starts:
`supervisor.py --workers 2 native -- true` with its defaults, results sent to a result queue;
the same worker on the embedded queue; and a Celery worker (kombu's SQS transport, prefork
`-c 2`, `task_ignore_result`, tuned for short jobs: `wait_time_seconds: 1`, `polling_interval:
0.1`) at the settings its users pick: prefetch x1 with late acks (the advice for long tasks),
prefetch x4 (Celery's default), and prefetch x16 with early acks (for throughput).

Printed for each: jobs/s from the first job's start to the last job's end, from the consumer's
own timestamps (so start-up is not counted); for this worker on SQS also the rate to the moment
its last result is on the result queue and its last job message deleted ("settled", seen by
polling the server directly: a worker whose sends and deletes lag its jobs shows there); the SQS
requests per job, counted by the server from the consumer's start to its last job (this worker
on SQS: until settled, the benchmark's own polls taken out; the producer's sends are not
counted), and the server's CPU share meanwhile. The server is LocalStack's own SQS provider by default (its
receive costs the same with 5 or 5,000 queued); `--server moto` runs on moto, whose receive
walks the whole queue, so that with hundreds queued moto, not the consumer, sets the pace.
Targets at N = 5,000: >= 2.5x Celery at prefetch x16, >= 0.8x the worker's own rate on the
embedded queue, <= 0.3 requests per job.

A shared machine's speed drifts by a fifth from one minute to the next, so each N runs in
rounds (`--rounds`, default 3): this worker on SQS, on the embedded queue and Celery at prefetch
x16, back to back; Celery's other two settings in the first round only. Rates are the rounds'
medians and each ratio the median of the rounds' own ratios.

Usage: python bench/vs_celery.py [--server localstack|moto] [--jobs 500 5000] [--rounds 3]
       python bench/vs_celery.py --latency-ms 0 5 10 [--jobs 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import boto3  # noqa: E402

from bench.sqs_servers import SERVERS, ServerLoad, SqsServer, start_server  # noqa: E402
from queues.local import LocalQueue  # noqa: E402
from testkit.tcp_proxy import TcpProxy  # noqa: E402
from testkit.timestamps import epoch_seconds  # noqa: E402

JOB = json.dumps({"service": "bench", "queue": "native", "command": {"arguments": []}})
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
    task_acks_late=os.environ["BENCH_ACKS_LATE"] == "1",
    worker_prefetch_multiplier=int(os.environ["BENCH_PREFETCH"]),
    task_ignore_result=True,
)


@app.task(name="run_true")
def run_true():
    started = time.time()
    subprocess.run(["true"], check=True)
    with open(os.environ["BENCH_TIMES"], "a") as times:
        times.write(f"{started} {time.time()}\\n")
"""


@dataclass(frozen=True)
class CelerySetting:
    label: str
    prefetch: int
    acks_late: bool


CELERY_THROUGHPUT = CelerySetting("Celery, prefetch x16, early ack", 16, False)
CELERY_SETTINGS = (
    CelerySetting("Celery, prefetch x1, late ack", 1, True),
    CelerySetting("Celery, prefetch x4 (default)", 4, False),
    CELERY_THROUGHPUT,
)
OURS_ON_SQS, OURS_EMBEDDED = "ours on SQS", "ours on the embedded queue"


@dataclass(frozen=True)
class Run:
    jobs_per_s: float
    requests_per_job: float | None  # None: no SQS involved
    server_busy: float | None  # the server's CPU time over the consumer's run
    settled_per_s: float | None = None  # to the last result sent and message deleted (this worker on SQS)
    in_job_ms: float | None = None  # of a job's time in its slot, that in the job itself (this worker)
    settle_lag_s: float | None = None  # from the last job's end until settled

    def slot_ms(self, slots: int = 2) -> float:
        """The slot time each job took, on average: the slots' time over the jobs (settled)."""
        return slots * 1000 / (self.settled_per_s or self.jobs_per_s)


class Meter:
    """A consumer's rate, and on SQS the server's requests and CPU share from its start to its last job."""

    def __init__(self, server: SqsServer | None) -> None:
        self.load = None if server is None else ServerLoad(server)

    def run(self, jobs: int, spans: list[tuple[float, float]], settled: Settled | None = None) -> Run:
        first = min(start for start, _ in spans)
        rate = jobs / (max(end for _, end in spans) - first)
        if self.load is None:
            return Run(rate, None, None)
        if settled is None:
            return Run(rate, self.load.requests() / jobs, self.load.busy())
        requests = self.load.requests() - settled.polls
        return Run(rate, requests / jobs, self.load.busy(), jobs / (settled.at - first))


@dataclass(frozen=True)
class Settled:
    at: float  # epoch seconds when every result was on the result queue and every job message gone
    polls: int  # the requests made to see it, not the consumer's


def wait_settled(sqs: Any, jobs_queue: str, results_queue: str, jobs: int) -> Settled:
    """Polls the server (not through any proxy) until the consumer has sent every result and
    deleted every job message: a worker whose sends and deletes fall behind its jobs shows here."""
    polls = 0
    deadline = time.monotonic() + 300
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    while time.monotonic() < deadline:
        left = sqs.get_queue_attributes(QueueUrl=jobs_queue, AttributeNames=names)["Attributes"]
        sent = sqs.get_queue_attributes(QueueUrl=results_queue, AttributeNames=names[:1])["Attributes"]
        polls += 2
        if sum(int(left[name]) for name in names) == 0 and int(sent[names[0]]) >= jobs:
            return Settled(time.time(), polls)
        time.sleep(0.02)
    raise RuntimeError("timed out waiting for the results to be sent and the messages deleted")


def _lag(settled: Settled | None, last_end: float) -> float | None:
    return None if settled is None else max(0.0, settled.at - last_end)


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


class LogTimes:
    """The times of a worker's "job started" and "job finished" log lines, read as the log
    grows: each line is parsed once, so that waiting costs the box next to nothing (a 2-core
    box shares its CPU between the worker and this benchmark)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.times: dict[str, list[float]] = {"job started": [], "job finished": []}
        self.job_seconds = 0.0  # the jobs' own durations, summed

    def read(self) -> int:
        """Reads the new complete lines; returns how many jobs have finished."""
        with self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.splitlines():
            if b"job started" not in line and b"job finished" not in line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("message") in self.times:
                self.times[record["message"]].append(epoch_seconds(record["time"]))
                self.job_seconds += float(record.get("duration_s") or 0)
        return len(self.times["job finished"])


def run_ours(
    root: Path,
    name: str,
    queue: str,
    *,
    result_queue: str | None,
    jobs: int,
    server: SqsServer | None,
    endpoint: str | None = None,
    settled: Callable[[], Settled] | None = None,
) -> Run:
    """`endpoint`: where the worker's SQS calls go, if not straight to the server (a delay proxy);
    `settled`: waits until every result is sent and every message deleted."""
    log_path = root / f"ours-{name}.log"
    meter = Meter(server)
    results = ["--result-queue", result_queue] if result_queue else []
    command = [
        sys.executable, str(REPO / "supervisor.py"), "--workers", "2", "--queue", queue, *results,
        "--scratch-dir", str(root / f"scratch-{name}"), "--journal", str(root / f"journal-{name}.sqlite3"),
        "native", "--service", "bench", "--", "true",
    ]  # fmt: skip
    environment = {**os.environ, **({"AWS_ENDPOINT_URL_SQS": endpoint} if endpoint else {})}
    with log_path.open("wb") as log:
        worker = subprocess.Popen(command, stdout=log, stderr=log, env=environment)

    logged = LogTimes(log_path)
    wait_for(lambda: logged.read() >= jobs, 900, f"our worker's jobs ({name})")
    done = None if settled is None else settled()
    starts, ends = logged.times["job started"], logged.times["job finished"]
    run = meter.run(jobs, [(min(starts), max(ends))], done)
    run = dataclasses.replace(run, in_job_ms=logged.job_seconds / jobs * 1000, settle_lag_s=_lag(done, max(ends)))
    worker.send_signal(signal.SIGTERM)
    worker.wait(60)
    return run


def run_ours_on_sqs(
    root: Path, sqs: Any, server: SqsServer, *, jobs: int, tag: str, proxy_port: int | None = None
) -> Run:
    queue = sqs.create_queue(QueueName=f"ours-jobs-{tag}")["QueueUrl"]
    results = sqs.create_queue(QueueName=f"ours-results-{tag}")["QueueUrl"]
    for start in range(0, jobs, 10):
        entries = [{"Id": str(i), "MessageBody": JOB} for i in range(min(10, jobs - start))]
        sqs.send_message_batch(QueueUrl=queue, Entries=entries)
    endpoint = None if proxy_port is None else f"http://127.0.0.1:{proxy_port}"
    settled = partial(wait_settled, sqs, queue, results, jobs)
    return run_ours(
        root, f"sqs-{tag}", queue, result_queue=results, jobs=jobs, server=server, endpoint=endpoint, settled=settled
    )


def run_ours_embedded(root: Path, jobs: int, tag: str) -> Run:
    path = root / f"embedded-{tag}.sqlite3"
    LocalQueue(path).send_batch([JOB] * jobs)
    return run_ours(root, f"embedded-{tag}", f"local:{path}", result_queue=None, jobs=jobs, server=None)


def run_celery(
    root: Path,
    sqs: Any,
    server: SqsServer,
    *,
    jobs: int,
    setting: CelerySetting,
    tag: str,
    proxy_port: int | None = None,
) -> Run:
    """`proxy_port`: a delay proxy in front of the server, which Celery's calls all go through."""
    name = f"{tag}-{setting.prefetch}-{int(setting.acks_late)}"
    queue = sqs.create_queue(QueueName=f"celery-{name}")["QueueUrl"]
    (root / "celery_bench_app.py").write_text(CELERY_APP)
    times = root / f"celery-times-{name}.txt"
    times.touch()
    port = server.port if proxy_port is None else proxy_port
    environment = dict(
        os.environ,
        BENCH_BROKER=f"sqs://bench:bench@127.0.0.1:{port}",
        BENCH_QUEUE=queue.replace(f":{server.port}/", f":{port}/"),  # kombu sends to the queue's URL
        BENCH_TIMES=str(times),
        BENCH_PREFETCH=str(setting.prefetch),
        BENCH_ACKS_LATE="1" if setting.acks_late else "0",
        PYTHONPATH=str(root),
    )
    subprocess.run(
        [sys.executable, "-c", f"from celery_bench_app import run_true\nfor _ in range({jobs}): run_true.delay()"],
        env=environment, cwd=root, check=True, capture_output=True,
    )  # fmt: skip
    meter = Meter(server)
    with (root / f"celery-{name}.log").open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_bench_app", "worker", "-c", "2", "-P", "prefork",
             "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            env=environment, cwd=root, stdout=log, stderr=log,
        )  # fmt: skip
    wait_for(lambda: len(times.read_text().splitlines()) >= jobs, 1800, f"Celery's jobs ({setting.label})")
    spans = [(float(start), float(end)) for start, end in (line.split() for line in times.read_text().splitlines())]
    run = meter.run(jobs, spans)
    worker.send_signal(signal.SIGTERM)
    worker.wait(60)
    return run


def _line(name: str, run: Run) -> str:
    figures = f"{run.jobs_per_s:7.1f} jobs/s"
    if run.settled_per_s is not None:
        figures += f" ({run.settled_per_s:.1f} settled)"
    if run.requests_per_job is not None and run.server_busy is not None:
        figures += f", {run.requests_per_job:.2f} SQS requests per job, server busy {run.server_busy:4.0%}"
    return f"  {name:42} {figures}"


def on_fresh_server(name: str, directory: Path, consume: Callable[[Any, SqsServer], Run]) -> Run:
    """`consume(sqs_client, server)` on a server of its own, so that no run inherits another's
    queues or load; returns its figures."""
    server = start_server(name, directory)
    try:
        return consume(boto3.client("sqs"), server)
    finally:
        server.stop()


def run_round(root: Path, server: str, jobs: int, index: int, runs: dict[str, list[Run]]) -> None:
    """One round at N = `jobs`: this worker on SQS and on the embedded queue, and Celery at its
    throughput setting; in the first round Celery's other settings too (far from the target,
    and minutes long at N = 5,000). Appends to `runs` by consumer."""
    tag = f"{jobs}-{index}"
    ours = on_fresh_server(server, root / f"server-ours-{tag}", partial(run_ours_on_sqs, root, jobs=jobs, tag=tag))
    runs[OURS_ON_SQS].append(ours)
    runs[OURS_EMBEDDED].append(run_ours_embedded(root, jobs, tag))
    for setting in CELERY_SETTINGS if index == 0 else (CELERY_THROUGHPUT,):
        directory = root / f"server-celery-{tag}-{setting.prefetch}"
        run = on_fresh_server(server, directory, partial(run_celery, root, jobs=jobs, setting=setting, tag=tag))
        runs[setting.label].append(run)


def _median_line(name: str, runs: list[Run]) -> str:
    median = Run(
        statistics.median(run.jobs_per_s for run in runs),
        None if runs[0].requests_per_job is None else statistics.median(r.requests_per_job or 0 for r in runs),
        None if runs[0].server_busy is None else statistics.median(r.server_busy or 0 for r in runs),
        None if runs[0].settled_per_s is None else statistics.median(r.settled_per_s or 0 for r in runs),
    )
    rounds = f"  [{', '.join(f'{run.jobs_per_s:.0f}' for run in runs)}]" if len(runs) > 1 else ""
    return _line(name, median) + rounds


def _ratio(ours: list[Run], theirs: list[Run]) -> str:
    """The median of the rounds' ratios, each round's runs taken minutes apart at most."""
    ratios = [mine.jobs_per_s / other.jobs_per_s for mine, other in zip(ours, theirs, strict=False)]
    listed = f" {[round(ratio, 2) for ratio in ratios]}" if len(ratios) > 1 else ""
    return f"{statistics.median(ratios):.2f}x{listed}"


def report(jobs: int, server_name: str, runs: dict[str, list[Run]]) -> None:
    print(f"{jobs} jobs (median of the rounds, each round's rate in brackets):")
    print(_median_line(f"supervisor.py on SQS ({server_name})", runs[OURS_ON_SQS]))
    print(_median_line("supervisor.py on the embedded queue", runs[OURS_EMBEDDED]))
    for setting in CELERY_SETTINGS:
        print(_median_line(setting.label, runs[setting.label]))
    ours = runs[OURS_ON_SQS]
    for setting in CELERY_SETTINGS:
        target = " (target >= 2.5x)" if setting is CELERY_THROUGHPUT else ""
        print(f"  against {setting.label}: {_ratio(ours, runs[setting.label])}{target}")
    print(
        f"  on SQS the worker runs at {_ratio(ours, runs[OURS_EMBEDDED])} its embedded-queue rate"
        " (target >= 0.8x); requests per job target <= 0.3"
    )


def behind_proxy(latency_ms: float, consume: Callable[..., Run]) -> Callable[[Any, SqsServer], Run]:
    """`consume` with every answer of the server held `latency_ms` on its way back."""

    def run(sqs: Any, server: SqsServer) -> Run:
        proxy = TcpProxy(server.port, latency_s=latency_ms / 1000)
        try:
            return consume(sqs, server, proxy_port=proxy.port)
        finally:
            proxy.stop()

    return run


def latency_table(root: Path, server: str, jobs: int, rounds: int, latencies: list[float]) -> None:
    """This worker and Celery at prefetch x16 behind a delay proxy, at each added latency."""
    ours: dict[float, list[Run]] = defaultdict(list)
    celery: dict[float, list[Run]] = defaultdict(list)
    for index in range(rounds):
        for latency in latencies:
            tag = f"latency-{latency:g}-{jobs}-{index}"
            consume = partial(run_ours_on_sqs, root, jobs=jobs, tag=tag)
            ours[latency].append(on_fresh_server(server, root / f"server-ours-{tag}", behind_proxy(latency, consume)))
            consume = partial(run_celery, root, jobs=jobs, setting=CELERY_THROUGHPUT, tag=tag)
            directory = root / f"server-celery-{tag}"
            celery[latency].append(on_fresh_server(server, directory, behind_proxy(latency, consume)))
    base = latencies[0]
    print(f"{jobs} jobs behind a delay proxy (medians of {rounds} rounds); this worker's rate to its last job's")
    print("end, and to its last result sent and message deleted (settled); the ratio is of settled rates:")
    print(
        "| added latency | this worker | settled | Celery x16, early ack | this worker vs its own "
        f"{base:g} ms rate | requests per job |"
    )
    print("|---|---|---|---|---|---|")
    for latency in latencies:
        mine = [_settled(run) / _settled(first) for run, first in zip(ours[latency], ours[base], strict=False)]
        ours_rate = statistics.median(run.jobs_per_s for run in ours[latency])
        settled_rate = statistics.median(_settled(run) for run in ours[latency])
        celery_rate = statistics.median(run.jobs_per_s for run in celery[latency])
        requests = statistics.median(run.requests_per_job or 0 for run in ours[latency])
        print(
            f"| {latency:g} ms | {ours_rate:.0f} jobs/s | {settled_rate:.0f} jobs/s | {celery_rate:.0f} jobs/s "
            f"| {statistics.median(mine):.2f}x | {requests:.2f} |"
        )
    print("Where this worker's slot time went, per job (2 slots' time over the jobs, to settled):")
    print("| added latency | slot time per job | in the job | waiting for work or the loop | settle lag |")
    print("|---|---|---|---|---|")
    for latency in latencies:
        slot = statistics.median(run.slot_ms() for run in ours[latency])
        in_job = statistics.median(run.in_job_ms or 0 for run in ours[latency])
        lag = statistics.median(run.settle_lag_s or 0 for run in ours[latency])
        print(f"| {latency:g} ms | {slot:.2f} ms | {in_job:.2f} ms | {slot - in_job:.2f} ms | {lag:.2f} s |")


def _settled(run: Run) -> float:
    return run.settled_per_s or run.jobs_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=SERVERS, default="localstack", help="the SQS server to run on")
    parser.add_argument("--jobs", type=int, nargs="+", default=[500, 5000], help="job counts, each run on all")
    parser.add_argument("--rounds", type=int, default=3, help="rounds at each job count (default 3)")
    parser.add_argument(
        "--latency-ms",
        type=float,
        nargs="+",
        default=None,
        metavar="MS",
        help="instead: this worker and Celery x16 behind a loopback proxy adding each latency (e.g. 0 5 10)",
    )
    options = parser.parse_args()
    if options.latency_ms is not None:
        with tempfile.TemporaryDirectory() as temporary:
            for jobs in options.jobs:
                latency_table(Path(temporary), options.server, jobs, options.rounds, options.latency_ms)
        return
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        print(f"trivial jobs, 2 worker processes each, on {options.server} (SQS; a fresh server for each run) and")
        print("on the embedded queue; jobs/s from the first job's start to the last job's end (start-up not counted);")
        print("server busy: the SQS server's CPU time over the consumer's run (near 100%: it sets the pace)")
        for jobs in options.jobs:
            runs: dict[str, list[Run]] = defaultdict(list)
            for index in range(options.rounds):
                run_round(root, options.server, jobs, index, runs)
            report(jobs, options.server, runs)


if __name__ == "__main__":
    main()
