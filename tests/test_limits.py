"""Per-job limits: sizes, ceilings, and messages that ask for more than the worker allows."""

from __future__ import annotations

import json

import pytest

from common.sizes import format_size, human_size, parse_size
from pool.child.limits import resolve_limits
from protocol.request import RequestRejected
from runners.limits import JobLimits, cores_for
from tests.support import parse_request

CEILINGS = JobLimits(timeout_s=60, memory_bytes=parse_size("1G"), cpus=2, cpu_seconds=100, transfer_timeout_s=600)


def request(**fields: object) -> object:
    message = {"service": "s", "queue": "native", "command": {}, **fields}
    return parse_request(json.dumps(message))


@pytest.mark.parametrize(
    ("text", "size"),
    [("512M", 512 * 1024**2), ("2G", 2 * 1024**3), ("1.5GiB", 3 * 1024**3 // 2), ("100k", 102400), ("4096", 4096)],
)
def test_sizes_are_binary_like_docker(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "12X", "-5M", "0", "M"])
def test_bad_sizes_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r"size|more than 0"):
        parse_size(text)


def test_format_size() -> None:
    assert (format_size(512 * 1024**2), format_size(3 * 1024**3), format_size(1000)) == ("512M", "3G", "1000B")


def test_ceilings_apply_when_the_message_asks_for_nothing() -> None:
    assert resolve_limits(request(), CEILINGS) == CEILINGS  # type: ignore[arg-type]


def test_a_message_may_ask_for_less() -> None:
    limits = resolve_limits(
        request(timeout=5, transfer_timeout=30, resources={"memory": "256M", "cpus": 1, "cpu_seconds": 3}),  # type: ignore[arg-type]
        CEILINGS,
    )
    assert limits == JobLimits(timeout_s=5, memory_bytes=256 * 1024**2, cpus=1, cpu_seconds=3, transfer_timeout_s=30)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"timeout": 61}, "timeout: asks for 61s, more than this worker's limit of 60s"),
        ({"transfer_timeout": 601}, "transfer_timeout: asks for 601s, more than this worker's limit of 600s"),
        ({"resources": {"memory": "2G"}}, "resources.memory: asks for 2 GiB, more than this worker's limit of 1 GiB"),
        ({"resources": {"memory": 2 * 1024**3}}, "resources.memory: asks for 2 GiB"),
        ({"resources": {"cpus": 4}}, "resources.cpus: asks for 4 CPUs, more than this worker's limit of 2 CPUs"),
        ({"resources": {"cpu_seconds": 101}}, "resources.cpu_seconds: asks for 101 CPU-s"),
        ({"resources": {"memory": "lots"}}, "resources.memory: 'lots' is not a size"),
    ],
)
def test_asking_for_more_than_a_ceiling_is_rejected(fields: dict[str, object], expected: str) -> None:
    with pytest.raises(RequestRejected) as raised:
        resolve_limits(request(**fields), CEILINGS)  # type: ignore[arg-type]
    assert str(raised.value).startswith(expected)


def test_without_ceilings_anything_goes() -> None:
    limits = resolve_limits(request(timeout=10**6), JobLimits())  # type: ignore[arg-type]
    assert limits.timeout_s == 10**6


def test_slots_get_different_cores() -> None:
    available = [0, 1, 2, 3]
    assert cores_for(1, 0, available) == {0}
    assert cores_for(1, 1, available) == {1}
    assert cores_for(2, 1, available) == {2, 3}
    assert cores_for(1.5, 0, available) == {0, 1}
    assert cores_for(16, 0, available) == {0, 1, 2, 3}


def test_sizes_in_messages_read_as_people_write_them() -> None:
    assert [human_size(n) for n in (512, 3 * 1024**3, 2_900_000_000, 1536, 1024**4)] == [
        "512 B",
        "3 GiB",
        "2.7 GiB",
        "1.5 KiB",
        "1 TiB",
    ]
