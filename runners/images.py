"""Getting a job's image onto the engine, as the pull policy says.

An absent image is pulled once for the whole pool: the child that finds it absent first takes
the image's pull lock and pulls; the others wait on the lock (within the pull timeout), then
find it present. Each pull resolves its registry's credentials afresh; a refusal gets one
refresh and one retry. A pull over its timeout is abandoned (its connection closed, which
stops the engine's pull) and the job ends in a retryable error.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from docker import APIClient
from docker.errors import APIError, DockerException, ImageNotFound
from filelock import FileLock
from filelock import Timeout as LockTimeout
from requests.exceptions import RequestException

from runners.image_policy import ImagePolicy, qualified_name, split_reference
from runners.process import ImageRejected, RunnerFault
from runners.pulls import PullFailure, PullNote, PullSettings, disk_short_reason
from runners.registry_auth import Credentials, RegistryCredentials, registry_of

log = logging.getLogger(__name__)
PROGRESS_LOG_EVERY_S = 5.0

# What engines say, whatever the HTTP status (older ones answer 500), when the registry is
# reachable and the image is not there or not for us: another attempt cannot help.
NOT_PULLABLE_MARKERS = (
    "manifest unknown",
    "not found",
    "name unknown",
    "repository does not exist",
    "invalid reference format",
)
# ...and when it refused the credentials (or wants some): worth one refresh of them.
REFUSED_MARKERS = ("unauthorized", "no basic auth credentials", "denied", "authentication required")


class _Refused(Exception):
    """The registry refused the pull's credentials."""


class ImageFetcher:
    def __init__(
        self,
        policy: ImagePolicy,
        pulls: PullSettings,
        connect: Callable[[], APIClient],
        *,
        on_pull: Callable[[PullNote], None] | None = None,
    ) -> None:
        """`connect` makes the client pulls go through (one of their own, closed to abandon a
        pull)."""
        self.policy = policy
        self.pulls = pulls
        self._connect = connect
        self._client: APIClient | None = None
        self._on_pull = on_pull or (lambda _note: None)
        self.credentials = RegistryCredentials(pulls.ecr_registries)

    @property
    def api(self) -> APIClient:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def ensure(self, image: str) -> None:
        """Make the image present as the pull policy says; ImageRejected when it cannot be had,
        RunnerFault when it cannot be had now."""
        if self.policy.pull != "always" and self._present(image):
            return
        with self._pull_lock(image) as waited:
            # Another job pulled it while this one waited: that pull is this one's.
            if (waited or self.policy.pull != "always") and self._present(image):
                return
            self._pull(image)

    def _present(self, image: str) -> bool:
        try:
            self.api.inspect_image(image)  # type: ignore[no-untyped-call]  # untyped in the stubs
            return True
        except ImageNotFound:
            if self.policy.pull == "never":
                raise ImageRejected(
                    f"image {image!r} is not present and this worker never pulls (--pull never)"
                ) from None
            return False
        except APIError as exc:
            _raise_for(image, exc, "inspect")
        return False

    @contextlib.contextmanager
    def _pull_lock(self, image: str) -> Iterator[bool]:
        """The image's pull lock, shared by the pool; yields whether another holder was waited for."""
        if self.pulls.state_dir is None:
            yield False
            return
        self.pulls.state_dir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(qualified_name(image).encode()).hexdigest()[:32]
        lock = FileLock(self.pulls.state_dir / f"{name}.lock", thread_local=False)
        try:
            lock.acquire(blocking=False)
            waited = False
        except LockTimeout:
            log.info("waiting for another job's pull of the image", extra={"image": image})
            try:
                lock.acquire(timeout=self.pulls.timeout_s)
            except LockTimeout:
                raise RunnerFault(
                    f"waited {self.pulls.timeout_s:g} s for another job's pull of image {image!r} (--pull-timeout)"
                ) from None
            waited = True
        try:
            yield waited
        finally:
            lock.release()

    def _pull(self, image: str) -> None:
        started = time.monotonic()
        registry = registry_of(image)
        try:
            short = disk_short_reason(self.pulls.state_dir)
            if short is not None:
                raise _Failed(PullFailure.DISK, RunnerFault(f"image {image!r} is pulled later: {short}"))
            self._pull_with_fresh_credentials(image, registry)
        except _Failed as failed:
            self._on_pull(PullNote(image, time.monotonic() - started, failed.reason))
            raise failed.error from None
        self._on_pull(PullNote(image, time.monotonic() - started))

    def _pull_with_fresh_credentials(self, image: str, registry: str) -> None:
        for attempt in (1, 2):
            try:
                credentials = self.credentials.for_registry(registry)
            except RunnerFault as exc:
                raise _Failed(PullFailure.CREDENTIALS, exc) from None
            try:
                self._pull_within_timeout(image, credentials)
                return
            except _Refused as refused:
                if attempt == 2:
                    rejected = ImageRejected(f"image {image!r} cannot be had: registry {registry} refused: {refused}")
                    raise _Failed(PullFailure.AUTH, rejected) from None
                log.info("registry refused the credentials; resolving them afresh", extra={"registry": registry})
                self.credentials.forget(registry)

    def _pull_within_timeout(self, image: str, credentials: Credentials | None) -> None:
        """On a thread of its own, so that a pull over its timeout can be left behind."""
        failure: list[BaseException] = []
        api = self.api

        def pull() -> None:
            try:
                _stream_pull(api, image, credentials)
            except BaseException as exc:  # handed to the job's thread
                failure.append(exc)

        thread = threading.Thread(target=pull, name="image-pull", daemon=True)
        thread.start()
        thread.join(self.pulls.timeout_s)
        if thread.is_alive():
            self._client = None
            with contextlib.suppress(Exception):
                api.close()  # the engine stops a pull whose client went away
            fault = RunnerFault(f"pulling image {image!r} took longer than {self.pulls.timeout_s:g} s (--pull-timeout)")
            raise _Failed(PullFailure.TIMEOUT, fault)
        if failure:
            error = failure[0]
            if isinstance(error, _Refused):
                raise error
            reason = PullFailure.NOT_FOUND if isinstance(error, ImageRejected) else PullFailure.ENGINE
            raise _Failed(reason, error)


class _Failed(Exception):
    def __init__(self, reason: str, error: BaseException) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


def _stream_pull(api: APIClient, image: str, credentials: Credentials | None) -> None:
    """Always with credentials of the worker's own resolving (empty: anonymous), never the
    client's copy of the Docker config read once at its start."""
    repository, tag = split_reference(image)
    log.info("pulling image", extra={"image": image})
    progress = _Progress(image)
    try:
        for event in api.pull(repository, tag=tag, stream=True, decode=True, auth_config=credentials or {}):
            if "error" in event:
                _raise_for(image, None, "pull", str(event["error"]))
            progress.seen(event)
    except APIError as exc:
        _raise_for(image, exc, "pull")
    except (DockerException, RequestException) as exc:
        raise RunnerFault(f"Docker engine unreachable while pulling image {image!r}: {exc}") from exc
    log.info("pulled image", extra={"image": image, "bytes": progress.total()})


class _Progress:
    """Bytes downloaded so far, by layer, for the debug log."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.layers: dict[str, int] = {}
        self.logged = time.monotonic()

    def seen(self, event: dict[str, Any]) -> None:
        detail = event.get("progressDetail") or {}
        if event.get("status") == "Downloading" and isinstance(detail.get("current"), int):
            self.layers[str(event.get("id"))] = detail["current"]
        if time.monotonic() - self.logged >= PROGRESS_LOG_EVERY_S:
            self.logged = time.monotonic()
            log.debug("pulling image", extra={"image": self.image, "bytes": self.total()})

    def total(self) -> int:
        return sum(self.layers.values())


def _raise_for(image: str, exc: Exception | None, action: str, detail: str | None = None) -> None:
    if detail is None:
        detail = str(exc.explanation if isinstance(exc, APIError) and exc.explanation else exc)
    lowered = detail.lower()
    status = exc.status_code if isinstance(exc, APIError) else None
    refused = status in (401, 403) or any(marker in lowered for marker in REFUSED_MARKERS)
    if refused and action == "pull":
        raise _Refused(detail)
    not_pullable = refused or status in (400, 404) or any(marker in lowered for marker in NOT_PULLABLE_MARKERS)
    if not_pullable:
        raise ImageRejected(f"image {image!r} cannot be had: {detail}")
    raise RunnerFault(f"cannot {action} image {image!r}: {detail}")
