"""Throughput, latency, memory and limit-reaction figures of the supervisor on the embedded queue.

Measured in one run, each against its baseline:
- trivial native jobs (`true`) through `supervisor.py --workers 2` vs the bare rate of spawning
  `true` from a 2-thread pool (target: >= 0.6x), and the same jobs asking for events (target:
  >= 0.95x the rate without);
- the same worker serving its status page and metrics (`--metrics-port`) with nobody looking, and
  with a viewer loading the page every second, vs without the listener (target: within 5%);
- the journal's bytes on disk per finished job once results are delivered (target: < 300);
- time from enqueue to job start, p50 and p99, one job at a time (target: p50 < 2 ms);
- RSS of the supervisor plus 8 idle children (target: < 250 MB in total);
- how long the memory limit takes to kill a job that exceeds it (target: < 1 s).

Usage: python bench/throughput.py [--jobs N]
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from queues.local import LocalQueue  # noqa: E402
from testkit.moto_server import free_port  # noqa: E402
from testkit.timestamps import epoch_seconds  # noqa: E402

TRIVIAL_JOB = json.dumps({"service": "bench", "queue": "native", "command": {"arguments": []}})
EVENTS_JOB = json.dumps({"service": "bench", "queue": "native", "events": True, "command": {"arguments": []}})


class Supervisor:
    def __init__(
        self,
        directory: Path,
        workers: int,
        program: list[str],
        options: list[str] | None = None,
        runner: list[str] | None = None,
    ) -> None:
        """Runs `native --service bench -- PROGRAM`, or the `runner` words instead (e.g. `docker`)."""
        directory.mkdir(parents=True, exist_ok=True)
        self.queue_path = directory / "queue.sqlite3"
        self.jobs = LocalQueue(self.queue_path)
        self.results = LocalQueue(self.queue_path, "results")
        self.log_path = directory / "worker.log"
        command = [
            sys.executable, str(REPO / "supervisor.py"), "--queue", f"local:{self.queue_path}",
            "--scratch-dir", str(directory / "scratch"), "--journal", str(directory / "journal.sqlite3"),
            "--workers", str(workers), *(options or []),
            *(runner or ["native", "--service", "bench", "--", *program]),
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log)
        self._wait_for("pool ready")

    def _wait_for(self, message: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(_message_of(line) == message for line in self.log_path.read_text().splitlines()):
                return
            time.sleep(0.05)
        raise RuntimeError(f"supervisor did not log {message!r}:\n{self.log_path.read_text()}")

    def collect(self, count: int, timeout: float = 600) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(results) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(results)} of {count} results arrived")
            batch = self.results.receive(10, 0.5, visibility_timeout=60)
            self.results.delete([m.receipt for m in batch])
            results.extend(json.loads(m.body) for m in batch)
        return results

    def rate(self, job: str, jobs: int, messages_per_job: int = 1) -> float:
        """Jobs per second for `jobs` copies of `job`, all enqueued at once; each must succeed.
        `messages_per_job`: the result and the events it asks for."""
        started = time.perf_counter()
        self.jobs.send_batch([job] * jobs)
        # Watch the result count without consuming, so the client does not compete for the queue.
        while self.results.count() < jobs * messages_per_job:
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        results = [r for r in self.collect(jobs * messages_per_job) if r["final"]]
        assert len(results) == jobs and all(r["status"] == "succeeded" for r in results), results[:3]
        return jobs / elapsed

    def rss_bytes(self) -> tuple[int, int]:
        """(RSS, PSS) summed over the supervisor and all its descendants."""
        root = psutil.Process(self.process.pid)
        rss = pss = 0
        for process in [root, *root.children(recursive=True)]:
            info = process.memory_full_info()
            rss += info.rss
            pss += info.pss
        return rss, pss

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)


def _message_of(log_line: str) -> str | None:
    try:
        record = json.loads(log_line)
    except json.JSONDecodeError:
        return None
    return record.get("message") if isinstance(record, dict) else None


def bare_spawn_rate(jobs: int) -> float:
    def spawn(_: int) -> None:
        subprocess.run(["true"], check=True)

    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(spawn, range(jobs)))
    return jobs / (time.perf_counter() - started)


def supervisor_rate(
    directory: Path, jobs: int, job: str = TRIVIAL_JOB, messages_per_job: int = 1, options: list[str] | None = None
) -> float:
    supervisor = Supervisor(directory, 2, ["true"], options)
    try:
        return supervisor.rate(job, jobs, messages_per_job)
    finally:
        supervisor.stop()


def status_page_rate(directory: Path, jobs: int, *, viewer: bool) -> float:
    """Jobs per second with the monitoring listener on; `viewer`: the page loaded every second."""
    port = free_port()
    supervisor = Supervisor(directory, 2, ["true"], ["--metrics-port", str(port)])
    stop = threading.Event()

    def view() -> None:
        while not stop.wait(1.0):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
                page.read()

    looker = threading.Thread(target=view, daemon=True)
    if viewer:
        looker.start()
    try:
        return supervisor.rate(TRIVIAL_JOB, jobs)
    finally:
        stop.set()
        supervisor.stop()


def start_latencies(directory: Path, jobs: int) -> list[float]:
    supervisor = Supervisor(directory, 2, ["true"])
    latencies = []
    try:
        for _ in range(jobs):
            sent = time.time()
            supervisor.jobs.send(TRIVIAL_JOB)
            (result,) = supervisor.collect(1)
            latencies.append(epoch_seconds(result["started_at"]) - sent)
    finally:
        supervisor.stop()
    return latencies


def idle_memory(directory: Path) -> tuple[int, int]:
    supervisor = Supervisor(directory, 8, ["true"])
    try:
        time.sleep(1)  # let start-up allocations settle before reading
        return supervisor.rss_bytes()
    finally:
        supervisor.stop()


def memory_kill_delays(directory: Path, runs: int) -> list[float]:
    # The job prints the moment it starts to go over the limit, then touches 300 MB at once.
    allocate = (
        "import time; print(time.time(), flush=True); "
        "b = bytearray(300 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); time.sleep(60)"
    )
    supervisor = Supervisor(directory, 1, [sys.executable, "-c", allocate], ["--job-memory", "100M"])
    delays = []
    try:
        for _ in range(runs):
            supervisor.jobs.send(TRIVIAL_JOB)
            (result,) = supervisor.collect(1)
            assert result["status"] == "killed", result
            if result["stdout"]:
                delays.append(epoch_seconds(result["finished_at"]) - float(result["stdout"]))
    finally:
        supervisor.stop()
    return delays


def journal_bytes_per_job(journal: Path, jobs: int) -> float:
    """The journal's size on disk per finished job, once its write-ahead log is folded in."""
    connection = sqlite3.connect(journal)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    return journal.stat().st_size / jobs


def _rounded(values: list[float]) -> list[int]:
    return [round(value) for value in values]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000, help="trivial jobs for each throughput round")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds, alternating both sides")
    parser.add_argument("--latency-jobs", type=int, default=200, help="jobs sent one at a time for latency")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        bare_rates, our_rates, unwatched_rates, watched_rates = [], [], [], []
        for round_number in range(options.rounds):
            bare_rates.append(bare_spawn_rate(options.jobs))
            our_rates.append(supervisor_rate(directory / f"throughput-{round_number}", options.jobs))
            unwatched_rates.append(status_page_rate(directory / f"page-{round_number}", options.jobs, viewer=False))
            watched_rates.append(status_page_rate(directory / f"viewed-{round_number}", options.jobs, viewer=True))
        bare, ours = statistics.median(bare_rates), statistics.median(our_rates)
        # Each round pairs a bare run with a supervisor run right after it, so the ratio is taken
        # per round: the machine's speed drifts between rounds more than within one.
        ratios = [o / b for o, b in zip(our_rates, bare_rates, strict=True)]
        print(f"throughput, median of {options.rounds} rounds of {options.jobs} jobs (all rounds in brackets):")
        print(f"  bare spawn of `true` from 2 threads: {bare:8.1f} jobs/s  {_rounded(bare_rates)}")
        print(f"  supervisor.py --workers 2:           {ours:8.1f} jobs/s  {_rounded(our_rates)}")
        print(
            f"  ratio: {statistics.median(ratios):.2f}x bare, median of the rounds' ratios "
            f"{[round(r, 2) for r in ratios]} (target >= 0.6x)"
        )

        for label, rates in (("nobody looking", unwatched_rates), ("the page loaded every second", watched_rates)):
            page_ratios = [r / o for r, o in zip(rates, our_rates, strict=True)]
            print(
                f"  with --metrics-port, {label + ':':29s} {statistics.median(rates):8.1f} jobs/s  {_rounded(rates)}"
                f"  {statistics.median(page_ratios):.3f}x without (target within 5%)"
            )

        with_events = supervisor_rate(directory / "events", options.jobs, EVENTS_JOB, messages_per_job=2)
        print(
            f'  the same jobs with "events": true:  {with_events:8.1f} jobs/s '
            f"({with_events / ours:.2f}x without; a running event per job, its progress file watched; target >= 0.95x)"
        )

        per_job = journal_bytes_per_job(directory / "throughput-0" / "journal.sqlite3", options.jobs)
        print(f"journal after a round, results delivered: {per_job:6.0f} bytes per finished job (target < 300)")

        latencies = start_latencies(directory / "latency", options.latency_jobs)
        print(
            f"enqueue -> start, one job at a time:  p50 {statistics.median(latencies) * 1000:6.1f} ms"
            f"  p99 {_percentile(latencies, 0.99) * 1000:6.1f} ms  ({len(latencies)} jobs; target p50 < 2 ms)"
        )

        rss, pss = idle_memory(directory / "idle")
        print(
            f"supervisor + 8 idle children:        RSS {rss / 2**20:6.1f} MB (target < 250 MB), "
            f"PSS {pss / 2**20:6.1f} MB"
        )

        delays = memory_kill_delays(directory / "memory", 5)
        print(
            f"memory limit: over-limit job killed after median {statistics.median(delays) * 1000:.0f} ms,"
            f" max {max(delays) * 1000:.0f} ms (target < 1000 ms)"
        )


if __name__ == "__main__":
    main()
