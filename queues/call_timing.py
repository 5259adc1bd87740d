"""How long each call to a remote queue took, for whoever watches (the metrics): the backend
reports every call, the composition root subscribes. The names are short: `receive`, `send`,
`delete`, `change_visibility`, else the API's own."""

from __future__ import annotations

import threading
from collections.abc import Callable

CallWatcher = Callable[[str, float], None]  # (call, seconds)
SHORT_NAMES = {
    "receive_message": "receive",
    "send_message_batch": "send",
    "delete_message_batch": "delete",
    "change_message_visibility_batch": "change_visibility",
}

_lock = threading.Lock()
_watchers: list[CallWatcher] = []


def watch_calls(watcher: CallWatcher) -> None:
    with _lock:
        _watchers.append(watcher)


def call_took(operation: str, seconds: float) -> None:
    """A call of `operation` (the API's name) took `seconds`, whether it succeeded or not."""
    with _lock:
        watchers = list(_watchers)
    for watcher in watchers:
        watcher(SHORT_NAMES.get(operation, operation), seconds)
