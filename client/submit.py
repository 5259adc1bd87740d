"""`supervisor.py submit`: put a job on a queue and, optionally, wait for its final result."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from client.live_status import LiveStatus
from queues import default_result_queue
from queues.base import BATCH_MAX, JobQueue, OutgoingMessage, VisibilityChange

EXIT_SUCCEEDED = 0
EXIT_NOT_SUCCEEDED = 1
EXIT_NO_RESULT = 4
SUCCESS_STATUSES = {"succeeded", "alive"}
EVENT_STATUSES = {"running", "progress"}  # non-final messages about a running job


def submit(
    queue: JobQueue,
    body: str,
    *,
    wait: bool,
    timeout_s: float | None,
    group: str | None = None,
    out: TextIO = sys.stdout,
    terminal: TextIO | None = None,
) -> int:
    """ValueError naming the problem when `group` cannot be used with this queue. With
    `terminal` (stderr, when it is one), `--wait` asks for the job's events and shows them
    there on a status line; the result alone still goes to `out`."""
    message = queue.job_message(body, group, _job_id(body))
    reply_queue = None
    private_reply_queue = False
    live = LiveStatus(terminal) if wait and terminal is not None else None
    if wait:
        body, reply_queue, private_reply_queue = _with_reply_queue(queue, body, events=live is not None)
    message_id = queue.send(OutgoingMessage(body, message.group_id, message.deduplication_id))
    if not wait or reply_queue is None:
        print(json.dumps({"message_id": message_id, "queue": queue.spec}), file=out)
        return EXIT_SUCCEEDED
    try:
        result = _await_final_result(reply_queue, message_id, timeout_s, live)
    finally:
        if private_reply_queue:
            _drop(reply_queue)
        if live is not None:
            live.finish(result)
    if result is None:
        print(f"no final result for message {message_id} within {timeout_s} s", file=sys.stderr)
        return EXIT_NO_RESULT
    print(json.dumps(result, indent=2), file=out)
    return EXIT_SUCCEEDED if result.get("status") in SUCCESS_STATUSES else EXIT_NOT_SUCCEEDED


def _job_id(body: str) -> str | None:
    data = _parse(body)
    job_id = data.get("id") if data is not None else None
    return job_id if isinstance(job_id, str) and job_id else None


def _with_reply_queue(queue: JobQueue, body: str, *, events: bool) -> tuple[str, JobQueue | None, bool]:
    """Route the result to a private reply queue unless the job already names one; with
    `events`, ask for the job's events too (unless the job says whether it wants them)."""
    data = _parse(body)
    if data is None:  # not a JSON object: the worker will reject it and answer on its result queue
        return body, default_result_queue(queue), False
    if events and "events" not in data:
        data["events"] = True
        body = json.dumps(data)
    if isinstance(data.get("reply_to"), str):
        return body, queue.sibling(data["reply_to"]), False
    reply_queue = queue.private_reply_queue()
    data["reply_to"] = reply_queue.reply_address
    return json.dumps(data), reply_queue, True


def _await_final_result(
    reply_queue: JobQueue, message_id: str, timeout_s: float | None, live: LiveStatus | None
) -> dict[str, Any] | None:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while deadline is None or time.monotonic() < deadline:
        wait_s = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
        for message in reply_queue.receive(BATCH_MAX, wait_s, visibility_timeout=30):
            result = _parse(message.body)
            if result is None or result.get("message_id") != message_id:
                reply_queue.change_visibility([VisibilityChange(message.receipt, 0)])
                continue
            reply_queue.delete([message.receipt])
            if result.get("final", True):
                return result
            if result.get("status") in EVENT_STATUSES:
                if live is not None:
                    live.update(result)
                continue
            retried = (
                f"attempt {result.get('attempt')} ended in {result.get('status')}: "
                f"{(result.get('error') or {}).get('message')}; the job will be retried"
            )
            if live is not None:
                live.note(retried)
            else:
                print(retried, file=sys.stderr)
        if live is not None:
            live.tick()
    return None


def _parse(body: str) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _drop(queue: JobQueue) -> None:
    queue.drop()
