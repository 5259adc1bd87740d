"""How a docker worker pulls images, and what a child tells the supervisor of each pull; free of
the docker SDK (the supervisor reads the notes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_PULL_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class PullSettings:
    timeout_s: float = DEFAULT_PULL_TIMEOUT_S  # one pull, and the wait for another job's pull of the image
    ecr_registries: tuple[str, ...] = ()  # registries to treat as ECR beyond *.dkr.ecr.*.amazonaws.com
    # The pool's per-image pull locks, and the image cache's word that the engine's disk is
    # short (None: each child pulls on its own, whatever the disk).
    state_dir: Path | None = None


class PullFailure:
    """Why a pull failed: the `reason` label of api_worker_image_pull_failures_total."""

    AUTH = "auth"  # the registry refused the credentials, after one refresh
    NOT_FOUND = "not_found"  # the registry has no such image, or the reference is malformed
    TIMEOUT = "timeout"  # over --pull-timeout
    ENGINE = "engine"  # the engine or the registry failed otherwise
    DISK = "disk"  # the engine's disk is full past its watermark even after cleaning: pulled later
    CREDENTIALS = "credentials"  # no ECR token could be had


@dataclass(frozen=True)
class PullNote:
    """A child pulled an image (or failed to): for the image cache and the metrics."""

    image: str
    seconds: float
    failure: str | None = None  # a PullFailure reason; None: pulled


DISK_SHORT_FILE = "engine-disk-short"


def disk_short_reason(state_dir: Path | None) -> str | None:
    """Why the engine's disk has no room for a pull now, as the image cache last found it."""
    if state_dir is None:
        return None
    try:
        return (state_dir / DISK_SHORT_FILE).read_text().strip() or None
    except OSError:
        return None


def set_disk_short(state_dir: Path, reason: str | None) -> None:
    """Written (or removed) by the image cache after each cleaning."""
    path = state_dir / DISK_SHORT_FILE
    if reason is None:
        path.unlink(missing_ok=True)
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".new")
    temporary.write_text(reason + "\n")
    temporary.replace(path)
