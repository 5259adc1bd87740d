"""Which images a docker worker may run, and when it pulls them: the operator's policy."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from runners.process import ImageRejected

PULL_POLICIES = ("missing", "always", "never")
DEFAULT_REGISTRY = "docker.io"


@dataclass(frozen=True)
class ImagePolicy:
    """`pull`: one of PULL_POLICIES; `allowed`: glob patterns, none meaning every image."""

    pull: str = "missing"
    allowed: tuple[str, ...] = ()

    def check_allowed(self, image: str) -> None:
        """A pattern may match the reference as written or its fully qualified form
        (`ubuntu` is also `docker.io/library/ubuntu:latest`)."""
        if self.allowed and not matches_any(image, self.allowed):
            raise ImageRejected(f"image {image!r} is not allowed on this worker (allowed: {', '.join(self.allowed)})")


def matches_any(image: str, patterns: tuple[str, ...]) -> bool:
    """Whether a glob matches the reference as written or its fully qualified form."""
    names = {image, qualified_name(image)}
    return any(fnmatch.fnmatchcase(name, pattern) for name in names for pattern in patterns)


def qualified_name(image: str) -> str:
    """`ubuntu` -> `docker.io/library/ubuntu:latest`; `host:5000/x/y@sha256:...` unchanged."""
    name, at, digest = image.partition("@")
    first, slash, _ = name.partition("/")
    if not slash:
        name = f"{DEFAULT_REGISTRY}/library/{name}"
    elif not ("." in first or ":" in first or first == "localhost"):
        name = f"{DEFAULT_REGISTRY}/{name}"
    if not at and ":" not in name.rpartition("/")[2]:
        name += ":latest"
    return name + at + digest


def split_reference(image: str) -> tuple[str, str]:
    """(repository, tag or digest) as the engine's pull wants them; `latest` when neither is given."""
    if "@" in image:
        repository, _, digest = image.partition("@")
        return repository, digest
    head, slash, last = image.rpartition("/")
    if ":" in last:
        last, _, tag = last.partition(":")
        return head + slash + last, tag
    return image, "latest"
