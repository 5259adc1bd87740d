"""The process's one asyncio loop for transfers, on a daemon thread, made on first use.

Callers on any thread hand it a coroutine and wait for its result; every transfer of the
process shares the loop, so the bounds on requests in flight and open files are global.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _running_loop() -> asyncio.AbstractEventLoop:
    global _loop  # noqa: PLW0603 (one loop per process, made lazily)
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="transfer-loop", daemon=True).start()
            _loop = loop
        return _loop


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on the transfer loop and wait for its result (or its exception)."""
    return asyncio.run_coroutine_threadsafe(coroutine, _running_loop()).result()
