"""The engine's images as the image cache sees them: how full the engine's disk is, how large an
image is, and removing one (untagging the reference; its layers go once nothing else holds them)."""

from __future__ import annotations

import shutil
from collections.abc import Callable

from docker import APIClient
from docker.errors import APIError, ImageNotFound

from runners.container import connect, engine_errors


class EngineImages:
    def __init__(self, client: Callable[[], APIClient] = connect) -> None:
        self._connect = client
        self._api: APIClient | None = None
        self._data_root: str | None = None

    @property
    def api(self) -> APIClient:
        if self._api is None:
            self._api = self._connect()
        return self._api

    def disk_share(self) -> float | None:
        """How much of the engine's data-root filesystem is used (0..1); None when this process
        cannot see that filesystem (a remote engine, say)."""
        if self._data_root is None:
            with engine_errors("asking where its data is"):
                self._data_root = str(self.api.info()["DockerRootDir"])
        try:
            usage = shutil.disk_usage(self._data_root)
        except OSError:
            return None
        return usage.used / usage.total if usage.total else None

    def size_of(self, reference: str) -> int | None:
        """The image's size in bytes; None when the engine has no such image."""
        with engine_errors("inspecting an image"):
            try:
                found = self.api.inspect_image(reference)  # type: ignore[no-untyped-call]  # untyped in the stubs
            except ImageNotFound:
                return None
            return int(found["Size"])

    def remove(self, reference: str) -> str | None:
        """Untag the image; why it could not be, if it could not (a container uses it, say).
        RunnerFault when the engine cannot be reached."""
        with engine_errors("removing an image"):
            try:
                self.api.remove_image(reference, force=False, noprune=False)
            except ImageNotFound:
                return None
            except APIError as exc:
                return str(exc.explanation or exc)
        return None
