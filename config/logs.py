"""Logging set-up: JSON lines for production, readable text for a terminal."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.msgspec import MsgspecFormatter

LOG_FORMATS = ("json", "text")
# Attributes every LogRecord has; anything else came from `extra=` and is a field.
_STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value ...`, with the structured fields appended."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = {key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRIBUTES}
        if fields:
            text += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        return text


def configure_logging(log_format: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(
            MsgspecFormatter(
                "%(levelname)s %(name)s %(process)d %(message)s",
                rename_fields={"levelname": "level", "name": "logger", "process": "pid"},
                timestamp="time",
            )
        )
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
