"""`submit` (client/submit.py) and how each queue backend addresses a job (`job_message`)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from client.submit import EXIT_SUCCEEDED, submit
from queues.local import LocalQueue
from queues.sqs import SqsQueue

FIFO_URL = "http://127.0.0.1:1/123456789012/jobs.fifo"
STANDARD_URL = "http://127.0.0.1:1/123456789012/jobs"


def test_submit_without_wait_prints_the_message_id_and_the_job_is_queued(tmp_path: Path) -> None:
    queue = LocalQueue(tmp_path / "queue.sqlite3")
    out = io.StringIO()
    assert submit(queue, '{"service": "s"}', wait=False, timeout_s=None, group="g", out=out) == EXIT_SUCCEEDED
    printed = json.loads(out.getvalue())
    [message] = queue.receive(1, 0, 30)
    assert (printed["message_id"], message.group_id, message.body) == (message.message_id, "g", '{"service": "s"}')


def test_a_fifo_queue_groups_a_job_by_its_id_and_deduplicates_by_it() -> None:
    queue = SqsQueue(FIFO_URL)
    message = queue.job_message('{"id": "job-1"}', None, "job-1")
    assert (message.group_id, message.deduplication_id) == ("job-1", hashlib.sha256(b"job-1").hexdigest())
    assert queue.job_message("{}", "given", "job-1").group_id == "given"
    anonymous = queue.job_message("{}", None, None)
    assert anonymous.group_id and anonymous.deduplication_id
    with pytest.raises(ValueError, match="the job's id cannot be its message group"):
        queue.job_message("{}", None, "no spaces in a group")
    assert queue.profile.prefetch is False  # a held message would lock its whole group


def test_a_standard_queue_takes_no_group_and_the_embedded_queue_takes_one_if_given(tmp_path: Path) -> None:
    standard = SqsQueue(STANDARD_URL)
    assert standard.job_message("{}", None, "job-1").group_id is None and standard.profile.prefetch
    with pytest.raises(ValueError, match="--group needs a FIFO queue"):
        standard.job_message("{}", "g", None)
    local = LocalQueue(tmp_path / "queue.sqlite3")
    assert local.job_message("{}", "g", "job-1").group_id == "g"
    assert local.job_message("{}", None, "job-1").group_id is None
    assert local.profile.calls_in_loop and not standard.profile.calls_in_loop
