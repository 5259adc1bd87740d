"""Getting a job's image onto the engine, as the pull policy says."""

from __future__ import annotations

import logging

from docker import APIClient
from docker.errors import APIError, ImageNotFound

from runners.image_policy import ImagePolicy, split_reference
from runners.process import ImageRejected, RunnerFault

log = logging.getLogger(__name__)

# What engines say, whatever the HTTP status (older ones answer 500), when the registry is
# reachable and the image is not there or not for us: another attempt cannot help.
NOT_PULLABLE_MARKERS = (
    "manifest unknown",
    "not found",
    "name unknown",
    "repository does not exist",
    "pull access denied",
    "unauthorized",
    "no basic auth credentials",
    "denied",
    "invalid reference format",
)


def ensure_image(api: APIClient, image: str, policy: ImagePolicy) -> None:
    """Make the image present as the pull policy says; ImageRejected when it cannot be had."""
    if policy.pull != "always":
        try:
            api.inspect_image(image)  # type: ignore[no-untyped-call]  # untyped in the stubs
            return
        except ImageNotFound:
            if policy.pull == "never":
                raise ImageRejected(
                    f"image {image!r} is not present and this worker never pulls (--pull never)"
                ) from None
        except APIError as exc:
            _raise_for(image, exc, "inspect")
    pull(api, image)


def pull(api: APIClient, image: str) -> None:
    """Registry credentials come from the standard Docker config (~/.docker/config.json)."""
    repository, tag = split_reference(image)
    log.info("pulling image", extra={"image": image})
    try:
        for event in api.pull(repository, tag=tag, stream=True, decode=True):
            if "error" in event:
                _raise_for(image, None, "pull", str(event["error"]))
    except APIError as exc:
        _raise_for(image, exc, "pull")
    log.info("pulled image", extra={"image": image})


def _raise_for(image: str, exc: Exception | None, action: str, detail: str | None = None) -> None:
    if detail is None:
        detail = str(exc.explanation if isinstance(exc, APIError) and exc.explanation else exc)
    not_pullable = (isinstance(exc, APIError) and exc.status_code in (400, 401, 403, 404)) or any(
        marker in detail.lower() for marker in NOT_PULLABLE_MARKERS
    )
    if not_pullable:
        raise ImageRejected(f"image {image!r} cannot be had: {detail}")
    raise RunnerFault(f"cannot {action} image {image!r}: {detail}")
