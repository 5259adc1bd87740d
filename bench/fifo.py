"""Message groups on SQS FIFO queues, in one run, on an SQS server on loopback (LocalStack by
default, `--server moto` on request; both lock groups):

- ordering cost: two groups of six 0.4 s jobs through `supervisor.py --workers 4` on a FIFO
  queue (ideal 2.4 s: one job of a group at a time, the two groups side by side; target < 10 s);
- throughput cost: N trivial jobs (`true`) spread round-robin over G groups, through
  `supervisor.py --workers 4`, on a FIFO queue and, as the baseline, the same jobs on a
  standard queue, results to a standard queue (target: FIFO at most 1.5x the standard queue's
  time); and once more with the results on a FIFO queue as well (on moto, FIFO sends check
  every message for a duplicate: they slow as the queue grows).

The jobs are queued before the worker starts; a run's time is from its first job's start to its
last job's end, from the results' own timestamps, which also show each group's order (checked).

Usage: python bench/fifo.py [--server localstack|moto] [--jobs 200] [--groups 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import boto3  # noqa: E402

from bench.sqs_servers import SERVERS, ServerLoad, start_server  # noqa: E402
from testkit.timestamps import epoch_seconds  # noqa: E402

WORKERS = 4


def job(sleep_s: float) -> str:
    arguments = [{"type": "parameter", "value": f"{sleep_s}"}] if sleep_s else []
    return json.dumps({"service": "bench", "queue": "native", "command": {"arguments": arguments}})


def new_queue(sqs: Any, prefix: str, fifo: bool) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}" + (".fifo" if fifo else "")
    attributes = {"FifoQueue": "true"} if fifo else {}
    return str(sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])


def send(sqs: Any, queue: str, bodies: list[tuple[str, str]], fifo: bool) -> list[str]:
    """Send (body, group) pairs in order, ten per call; their message ids."""
    ids = []
    for start in range(0, len(bodies), 10):
        entries = []
        for index, (body, group) in enumerate(bodies[start : start + 10]):
            entry = {"Id": str(index), "MessageBody": body}
            if fifo:
                entry |= {"MessageGroupId": group, "MessageDeduplicationId": uuid.uuid4().hex}
            entries.append(entry)
        response = sqs.send_message_batch(QueueUrl=queue, Entries=entries)
        by_id = {entry["Id"]: entry["MessageId"] for entry in response["Successful"]}
        ids += [by_id[str(index)] for index in range(len(entries))]
    return ids


def collect(sqs: Any, queue: str, count: int, timeout: float = 600) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(results) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(results)} of {count} results arrived")
        response = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in response.get("Messages", []):
            result = json.loads(message["Body"])
            if result["final"]:
                results[result["message_id"]] = result
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return results


def run(
    root: Path, sqs: Any, jobs: list[tuple[str, str]], *, fifo: bool, fifo_results: bool, program: list[str]
) -> float:
    """Seconds from the first job's start to the last job's end (the results' own timestamps),
    the jobs queued before the worker starts; order within each group checked."""
    queue, results_queue = new_queue(sqs, "jobs", fifo), new_queue(sqs, "results", fifo_results)
    ids = send(sqs, queue, jobs, fifo)
    directory = root / uuid.uuid4().hex[:8]
    directory.mkdir()
    log_path = directory / "worker.log"
    command = [
        sys.executable, str(REPO / "supervisor.py"), "--workers", str(WORKERS), "--queue", queue,
        "--result-queue", results_queue, "--scratch-dir", str(directory / "scratch"),
        "--journal", str(directory / "journal.sqlite3"), "--log-format", "json",
        "native", "--service", "bench", "--", *program,
    ]  # fmt: skip
    with log_path.open("wb") as log:
        worker = subprocess.Popen(command, stdout=log, stderr=log)
    try:
        results = collect(sqs, results_queue, len(ids))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    assert all(r["status"] == "succeeded" for r in results.values())
    if fifo:
        _check_order(ids, [group for _, group in jobs], results)
    starts = [epoch_seconds(r["started_at"]) for r in results.values()]
    return max(epoch_seconds(r["finished_at"]) for r in results.values()) - min(starts)


def _check_order(ids: list[str], groups: list[str], results: dict[str, dict[str, Any]]) -> None:
    by_group: dict[str, list[dict[str, Any]]] = {}
    for message_id, group in zip(ids, groups, strict=True):
        by_group.setdefault(group, []).append(results[message_id])
    for group_results in by_group.values():
        for earlier, later in itertools.pairwise(group_results):
            assert later["started_at"] >= earlier["finished_at"], "a group ran out of order"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=SERVERS, default="localstack", help="the SQS server to run on")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        server = start_server(options.server, root / "server")
        try:
            load = ServerLoad(server)
            sqs = boto3.client("sqs")
            two_groups = [(job(0.4), group) for _ in range(6) for group in ("a", "b")]
            ordering = [
                run(root, sqs, two_groups, fifo=True, fifo_results=True, program=["sleep"])
                for _ in range(options.rounds)
            ]
            spread = [(job(0), f"g{index % options.groups}") for index in range(options.jobs)]
            standard, fifo, all_fifo = [], [], []
            for _ in range(options.rounds):  # alternating, so that drift hits all alike
                standard.append(run(root, sqs, spread, fifo=False, fifo_results=False, program=["true"]))
                fifo.append(run(root, sqs, spread, fifo=True, fifo_results=False, program=["true"]))
                all_fifo.append(run(root, sqs, spread, fifo=True, fifo_results=True, program=["true"]))
            busy = load.busy()
        finally:
            server.stop()
    print(f"supervisor.py --workers {WORKERS} on {server.name} (server busy {busy:.0%}), "
          f"median of {options.rounds} rounds (all in brackets):")  # fmt: skip
    print(
        f"  2 groups x 6 jobs of 0.4 s, FIFO: {statistics.median(ordering):.2f} s "
        f"{[round(t, 2) for t in ordering]} (ideal 2.4 s, target < 10 s)"
    )
    print(f"  {options.jobs} trivial jobs over {options.groups} groups, results to a standard queue:")
    print(f"    standard jobs queue {_summary(standard)}")
    print(f"    FIFO jobs queue     {_summary(fifo)}, FIFO/standard {_ratios(fifo, standard)} (target <= 1.5x)")
    print(f"  the same with results to a FIFO queue too: {_summary(all_fifo)}, {_ratios(all_fifo, standard)}")


def _summary(times: list[float]) -> str:
    return f"{statistics.median(times):.2f} s {[round(t, 2) for t in times]}"


def _ratios(times: list[float], baseline: list[float]) -> str:
    ratios = [t / b for t, b in zip(times, baseline, strict=True)]
    return f"{statistics.median(ratios):.2f}x {[round(r, 2) for r in ratios]}"


if __name__ == "__main__":
    main()
