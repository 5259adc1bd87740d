from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import MotoServer, Worker

AWS_TEST_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def make(**kwargs: Any) -> Worker:
        worker = Worker(tmp_path, **kwargs)
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto server for the session; the AWS environment points at it (workers inherit it)."""
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    saved = {name: os.environ.get(name) for name in [*AWS_TEST_ENVIRONMENT, "AWS_ENDPOINT_URL", "AWS_PROFILE"]}
    os.environ.update(AWS_TEST_ENVIRONMENT, AWS_ENDPOINT_URL=server.endpoint)
    os.environ.pop("AWS_PROFILE", None)
    yield server
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    server.stop()
