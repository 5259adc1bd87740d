"""Waiting on a condition with a deadline, never a fixed sleep; stopping a server process in time."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T | None], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def stop_process(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM, `grace_s` seconds to exit, then SIGKILL; reaped either way."""
    process.terminate()  # nothing is sent to a process already reaped
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
