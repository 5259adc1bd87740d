"""Log lines: JSON with the job's fields on every line about a job, and no secrets."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from common.logs import JOB_FIELDS, configure_logging, job_context, redact
from tests.support import Worker, job


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        (
            "GET https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE"
            "%2F20261128%2Fus-east-1%2Fs3&X-Amz-Signature=0123abcd&X-Amz-Expires=60",
            ["X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Signature=REDACTED", "X-Amz-Expires=60"],
            ["0123abcd", "AKIAIOSFODNN7EXAMPLE"],
        ),
        ("https://alice:hunter2@registry.example.org/v2/", ["https://alice:REDACTED@registry"], ["hunter2"]),
        ('{"Authorization": "AWS4-HMAC-SHA256 Credential=x, Signature=y"}', ['"Authorization": "REDACTED"'], ["y"]),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG", ["aws_secret_access_key = REDACTED"], ["wJalr"]),
        ('{"password": "hunter2", "user": "alice"}', ['"password": "REDACTED"', '"user": "alice"'], ["hunter2"]),
        ("key id ASIAY34FZKBOKMUTVV7A in a message", ["key id REDACTED in"], ["ASIAY34FZKBOKMUTVV7A"]),
        ("s3://bucket/path/to/file.txt and 12:token-free receipt", ["s3://bucket/path/to/file.txt", "12:"], []),
    ],
)
def test_redact(text: str, kept: list[str], gone: list[str]) -> None:
    cleaned = redact(text)
    for piece in kept:
        assert piece in cleaned
    for piece in gone:
        assert piece not in cleaned


def test_text_that_is_not_unicode_is_escaped_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging("json")
    logging.getLogger("test").warning("cannot upload %s", "out/\udcff.txt", extra={"path": "a\udc80"})
    line = json.loads(stream.getvalue())
    assert (line["message"], line["path"]) == ("cannot upload out/\\udcff.txt", "a\\udc80")


def test_json_lines_carry_the_job_fields_and_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging("json")
    logger = logging.getLogger("test")
    with job_context(slot=2, message_id="m-1", attempt=1, job_id="j-1", service="wc"):
        logger.info("fetching %s", "https://b/k?X-Amz-Signature=abc", extra={"uri": "https://u:pw@h/x"})
    logger.info("between jobs")

    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert {key: first[key] for key in JOB_FIELDS} == {
        "job_id": "j-1", "message_id": "m-1", "attempt": 1, "service": "wc", "slot": 2,
    }  # fmt: skip
    assert first["message"] == "fetching https://b/k?X-Amz-Signature=REDACTED"
    assert first["uri"] == "https://u:REDACTED@h/x"
    assert (first["level"], first["logger"]) == ("INFO", "test")
    assert not set(JOB_FIELDS) & set(second)


def test_every_line_a_child_logs_about_a_job_has_its_fields(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "in.txt").write_text("hello\n")
    worker = Worker(tmp_path, options=["--file-root", str(store)])
    try:
        worker.start()
        arguments = [
            {"type": "input", "name": "--infile", "value": f"file://{store}/in.txt"},
            {"type": "output", "name": "--outfile", "value": f"file://{store}/out.txt"},
        ]
        message_id = worker.submit(job(arguments, id="job-42"))
        assert worker.result(message_id)["status"] == "succeeded"
    finally:
        worker.stop()

    lines = [line for line in worker.log_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    about_the_job = [r for r in records if r.get("message_id") == message_id]
    assert {"job started", "staged in", "job finished"} <= {r["message"] for r in about_the_job}
    for record in about_the_job:
        assert record["job_id"] == "job-42", record
        assert (record["attempt"], record["service"], record["slot"]) == (1, "tool", 0), record
