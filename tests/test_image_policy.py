"""Which images a docker worker accepts, and how references are read (no engine needed)."""

from __future__ import annotations

import pytest

from runners.container_settings import parse_user
from runners.image_policy import ImagePolicy, qualified_name, split_reference
from runners.process import ImageRejected


@pytest.mark.parametrize(
    ("image", "qualified"),
    [
        ("ubuntu", "docker.io/library/ubuntu:latest"),
        ("ubuntu:22.04", "docker.io/library/ubuntu:22.04"),
        ("biocontainers/bwa:0.7", "docker.io/biocontainers/bwa:0.7"),
        ("hub.example.org/tools/bwa", "hub.example.org/tools/bwa:latest"),
        ("localhost:5000/x", "localhost:5000/x:latest"),
        ("localhost/x:1", "localhost/x:1"),
        ("hub.example.org/x@sha256:abc", "hub.example.org/x@sha256:abc"),
    ],
)
def test_qualified_name(image: str, qualified: str) -> None:
    assert qualified_name(image) == qualified


@pytest.mark.parametrize(
    ("image", "parts"),
    [
        ("ubuntu", ("ubuntu", "latest")),
        ("ubuntu:22.04", ("ubuntu", "22.04")),
        ("localhost:5000/x", ("localhost:5000/x", "latest")),
        ("localhost:5000/x:2", ("localhost:5000/x", "2")),
        ("hub.example.org/x@sha256:abc", ("hub.example.org/x", "sha256:abc")),
    ],
)
def test_split_reference(image: str, parts: tuple[str, str]) -> None:
    assert split_reference(image) == parts


def test_no_patterns_allow_every_image() -> None:
    ImagePolicy().check_allowed("anything/at:all")


def test_patterns_match_the_reference_as_written_or_qualified() -> None:
    policy = ImagePolicy(allowed=("hub.example.org/*", "docker.io/library/ubuntu:*"))
    policy.check_allowed("hub.example.org/tools/bwa:1")
    policy.check_allowed("ubuntu:22.04")
    for refused in ("hub.example.org.evil.net/x", "evil.net/hub.example.org/x", "debian", "ubuntu-evil"):
        with pytest.raises(ImageRejected, match="is not allowed on this worker"):
            policy.check_allowed(refused)


@pytest.mark.parametrize(("text", "user"), [("1000", (1000, 1000)), ("1000:50", (1000, 50)), ("0:0", (0, 0))])
def test_container_user(text: str, user: tuple[int, int]) -> None:
    assert parse_user(text) == user


@pytest.mark.parametrize("text", ["alice", "1000:staff", "-1", ""])
def test_container_user_must_be_numeric(text: str) -> None:
    with pytest.raises(ValueError, match="UID or UID:GID in numbers"):
        parse_user(text)
