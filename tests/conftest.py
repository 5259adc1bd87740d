from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Worker


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[type[Worker] | object]:
    started: list[Worker] = []

    def make(**kwargs: object) -> Worker:
        worker = Worker(tmp_path, **kwargs)  # type: ignore[arg-type]
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.stop()
