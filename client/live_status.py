"""`submit --wait` on a terminal: one status line, rewritten in place as the job moves
(queued, running on HOST slot N, 40% message, finished), with the time since it was sent."""

from __future__ import annotations

import time
from typing import Any, TextIO

CLEAR_LINE = "\r\x1b[K"


class LiveStatus:
    def __init__(self, terminal: TextIO) -> None:
        self.terminal = terminal
        self.sent = time.monotonic()
        self.state = "queued"

    def tick(self) -> None:
        """Rewrite the line with the time elapsed."""
        self._show()

    def update(self, message: dict[str, Any]) -> None:
        """A non-final message about the job: `running` or `progress`."""
        status = message.get("status")
        if status == "running":
            worker = message.get("worker") or {}
            self.state = f"running on {worker.get('host', '?')} slot {message.get('slot', '?')}"
        elif status == "progress":
            progress = message.get("progress") or {}
            percent, text = progress.get("percent"), progress.get("message")
            parts = [f"{percent:g}%" if isinstance(percent, int | float) else None, text]
            self.state = " ".join(str(part) for part in parts if part) or self.state
        self._show()

    def note(self, text: str) -> None:
        """A line of its own (a retried attempt), above the status line."""
        self.terminal.write(f"{CLEAR_LINE}{text}\n")
        self._show()

    def finish(self, result: dict[str, Any] | None) -> None:
        self.state = f"finished: {result.get('status')}" if result is not None else "no result"
        self._show()
        self.terminal.write("\n")
        self.terminal.flush()

    def _show(self) -> None:
        self.terminal.write(f"{CLEAR_LINE}{self.state} ({time.monotonic() - self.sent:.0f} s)")
        self.terminal.flush()
