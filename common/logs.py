"""Logging set-up: JSON lines for production, readable text for a terminal.

Every line a child logs while it runs a job carries that job's fields (`job_context`), and
every line is scrubbed of secrets (`redact`) after formatting, whatever logged it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

from pythonjsonlogger.msgspec import MsgspecFormatter

LOG_FORMATS = ("json", "text")
JOB_FIELDS = ("job_id", "message_id", "attempt", "service", "slot")
# Attributes every LogRecord has; anything else came from `extra=` and is a field.
_STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
REDACTED = "REDACTED"
# A value runs to the next character that ends it in a URL, a header, a text or a JSON string.
_VALUE = r"[^\s&\"'\\,;]+"
_SIGNED_QUERY_KEYS = (  # presigned URLs and signed queries: S3 SigV4 and SigV2, GCS, Azure SAS
    "X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|AWSAccessKeyId|"
    "X-Goog-Signature|X-Goog-Credential|sig"
)
_SECRET_KEYS = "(?:aws_)?secret_access_key|session_token|password|passwd|secret|token"  # noqa: S105 (names, not a value)
# (words, pattern, replacement): a pattern runs only on a line holding one of its lowercase
# words, a cheap test that spares nearly every line the regular expressions.
_SECRETS = [
    (
        ("signature", "sig=", "credential", "token", "awsaccesskeyid"),
        rf"(?i)\b({_SIGNED_QUERY_KEYS})={_VALUE}",
        rf"\1={REDACTED}",
    ),
    (("@",), r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/:@\"]+):[^\s/@\"]+@", rf"\1:{REDACTED}@"),  # user:password@host
    (("authorization",), r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\n]+", rf"\1{REDACTED}"),
    (("secret", "token", "passw"), rf"(?i)\b({_SECRET_KEYS})([\"']?\s*[:=]\s*[\"']?){_VALUE}", rf"\1\2{REDACTED}"),
    (("akia", "asia"), r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", REDACTED),  # AWS access key ids
]
_COMPILED = [(words, re.compile(pattern), replacement) for words, pattern, replacement in _SECRETS]


def redact(text: str) -> str:
    """`text` with credentials, signatures and passwords replaced by REDACTED."""
    lowered = text.lower()
    for words, pattern, replacement in _COMPILED:
        if any(word in lowered for word in words):
            text = pattern.sub(replacement, text)
    return text


# The fields of the job this process is running. A pool child runs one job at a time and its
# staging threads log about that same job, so process-wide state is what is wanted here.
_job_fields: dict[str, Any] = {}


@contextlib.contextmanager
def job_context(**fields: Any) -> Iterator[None]:
    """Within it, every log line of this process carries `fields` (see JOB_FIELDS)."""
    _job_fields.clear()
    _job_fields.update(fields)
    try:
        yield
    finally:
        _job_fields.clear()


def add_job_fields(**fields: Any) -> None:
    """Fields learnt during the job (its id and service, once the message is read)."""
    _job_fields.update(fields)


class _JobFields(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _job_fields.items():
            record.__dict__.setdefault(key, value)
        return True


class JsonFormatter(MsgspecFormatter):
    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(process)d %(message)s",
            rename_fields={"levelname": "level", "name": "logger", "process": "pid"},
            timestamp="time",
        )

    def format(self, record: logging.LogRecord) -> str:
        try:
            return redact(super().format(record))
        except UnicodeEncodeError:
            # Text that is not valid Unicode (a job's file name in no UTF-8) is escaped, never
            # allowed to lose the line.
            _escape_surrogates(record)
            return redact(super().format(record))


def _escape_surrogates(record: logging.LogRecord) -> None:
    record.msg, record.args = record.getMessage(), None
    for key, value in list(vars(record).items()):
        if isinstance(value, str):
            setattr(record, key, value.encode("utf-8", "backslashreplace").decode("utf-8"))


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value ...`, with the structured fields appended."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = {key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRIBUTES}
        if fields:
            text += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        return redact(text)


def configure_logging(log_format: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(_JobFields())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
