"""The `integration` marker: every test that starts a worker, a child process, a container or a
server carries it, so `pytest -m "not integration"` is a fast inner loop.

A test is marked when it uses a fixture that starts such a part (a server for the session, a
worker factory, the Docker engine, ...) or when its own code starts processes (it names the
worker or process helpers). A test left unmarked that starts a process all the same fails,
naming itself: the subset stays honest as tests are added.
"""

from __future__ import annotations

import inspect
import multiprocessing.process
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

MARKER = "integration"
# Fixtures that start (or stand for) a real part: a session server, workers, the engine.
STARTING_FIXTURES = frozenset({
    "moto", "seaweed", "worker_factory", "sqs_worker", "docker_api", "tool_image", "registry",
    "pair", "browser", "small_scratch", "intake", "executor", "parts",
})  # fmt: skip
# What a test's own code calls when it starts processes.
STARTING_CALLS = ("Worker(", "subprocess.", "Popen(", ".start()", "Process(", "run_cli(", "run_supervisor(")


def mark(items: list[pytest.Item]) -> None:
    for item in items:
        if _starts_parts(item):
            item.add_marker(MARKER)


def _starts_parts(item: pytest.Item) -> bool:
    if STARTING_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    function = getattr(item, "function", None)
    try:
        source = inspect.getsource(function) if function is not None else ""
    except (OSError, TypeError):
        return True  # cannot tell: the slow side is the safe side
    return any(call in source for call in STARTING_CALLS)


@pytest.fixture(autouse=True)
def _no_processes_outside_integration_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker(MARKER) is not None:
        yield
        return
    name = request.node.nodeid
    popen_init, process_start = subprocess.Popen.__init__, multiprocessing.process.BaseProcess.start

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError(f"{name} starts a process: mark it {MARKER!r} (see tests/integration.py)")

    subprocess.Popen.__init__ = refuse  # type: ignore[method-assign]
    multiprocessing.process.BaseProcess.start = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        subprocess.Popen.__init__ = popen_init  # type: ignore[method-assign]
        multiprocessing.process.BaseProcess.start = process_start  # type: ignore[method-assign]
