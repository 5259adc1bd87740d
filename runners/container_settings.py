"""How a docker worker runs its containers; picklable, free of the docker SDK (imported by
every process, while only docker workers load the SDK)."""

from __future__ import annotations

from dataclasses import dataclass, field

from runners.image_policy import ImagePolicy
from runners.pulls import PullSettings

WORKER_LABEL = "api-worker.worker"
SLOT_LABEL = "api-worker.slot"


@dataclass(frozen=True)
class ContainerSettings:
    worker_label: str  # the worker's scratch directory: one per worker on a host
    images: ImagePolicy = field(default_factory=ImagePolicy)
    pulls: PullSettings = field(default_factory=PullSettings)
    # (uid, gid) the job runs as; None: the worker's own. Another user is given the job
    # directory for the run (the worker must be root for that).
    user: tuple[int, int] | None = None
    network: str | None = None  # None: the engine's default bridge
    pids_limit: int | None = None
    pass_env: tuple[str, ...] = ()


def parse_user(text: str) -> tuple[int, int]:
    """`UID[:GID]`, numeric (an image need not know the worker's user names); GID defaults to UID."""
    uid_text, _, gid_text = text.partition(":")
    try:
        uid, gid = int(uid_text), int(gid_text or uid_text)
    except ValueError:
        raise ValueError(f"a container user must be UID or UID:GID in numbers, not {text!r}") from None
    if uid < 0 or gid < 0:
        raise ValueError(f"a container user must be UID or UID:GID in numbers, not {text!r}")
    return uid, gid
