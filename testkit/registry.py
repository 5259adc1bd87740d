"""A real image registry on loopback (Debian's `docker-registry`, htpasswd auth), and images
pushed to it, for the tests of pulls, credentials and the image cache."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from docker import APIClient

from testkit.images import busybox_root_filesystem
from testkit.moto_server import free_port
from testkit.waiting import wait_until

REGISTRY_BINARY = "docker-registry"
HTPASSWD = "htpasswd"


def registry_missing() -> str | None:
    """Why no registry can be started here, if none can."""
    for binary in (REGISTRY_BINARY, HTPASSWD):
        if shutil.which(binary) is None:
            return f"{binary} is missing (apt-get install docker-registry apache2-utils)"
    return None


class LocalRegistry:
    def __init__(self, directory: Path, users: dict[str, str]) -> None:
        """`users`: user name -> password, the only ones it lets in."""
        self.directory = directory
        self.users = dict(users)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = directory / "registry.log"
        lines = [
            subprocess.run(
                [HTPASSWD, "-Bbn", user, password], capture_output=True, text=True, check=True
            ).stdout.strip()
            for user, password in users.items()
        ]
        (directory / "htpasswd").write_text("\n".join(lines) + "\n")
        config = directory / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {directory / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.address}\n"
            f"auth:\n  htpasswd:\n    realm: api-worker-tests\n    path: {directory / 'htpasswd'}\n"
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([REGISTRY_BINARY, "serve", str(config)], stdout=log, stderr=log)
        wait_until(self._answers, 30, f"docker-registry on {self.address}")

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(f"http://{self.address}/v2/", timeout=1)
        except urllib.error.HTTPError:
            return True  # 401: it is up, and wants credentials
        except OSError:
            assert self.process.poll() is None, f"docker-registry exited: {self.log_path.read_text()[-2000:]}"
            return False
        return True

    def credentials(self, user: str) -> dict[str, str]:
        return {"username": user, "password": self.users[user], "serveraddress": self.address}

    def push_image(self, api: APIClient, repository: str, tag: str = "1", marker: str = "") -> str:
        """A busybox image (with a file of `marker`, so each marker makes an image of its own)
        pushed as ADDRESS/repository:tag, then removed from the engine; its reference."""
        reference = f"{self.address}/{repository}:{tag}"
        api.import_image_from_data(
            _with_marker(busybox_root_filesystem(), marker), repository=f"{self.address}/{repository}", tag=tag,
            changes=['ENTRYPOINT ["/bin/sh", "-c"]'],
        )  # fmt: skip
        user = next(iter(self.users))
        for event in api.push(f"{self.address}/{repository}", tag, auth_config=self.credentials(user), stream=True,
                              decode=True):  # fmt: skip
            if "error" in event:
                raise RuntimeError(f"pushing {reference} failed: {event['error']}")
        api.remove_image(reference)
        return reference

    def manifest_requests(self, repository: str, tag: str = "1") -> int:
        """Requests for the image's manifest that the registry answered 200 (a pull makes one)."""
        pattern = re.compile(rf'"(HEAD|GET) /v2/{re.escape(repository)}/manifests/{re.escape(tag)} HTTP/[\d.]+" 200 ')
        return len(pattern.findall(self.log_path.read_text(errors="replace")))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def _with_marker(root_filesystem: bytes, marker: str) -> bytes:
    if not marker:
        return root_filesystem
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(root_filesystem)) as source, tarfile.open(fileobj=out, mode="w") as tar:
        for member in source.getmembers():
            tar.addfile(member, source.extractfile(member) if member.isfile() else None)
        data = marker.encode()
        info = tarfile.TarInfo("etc/marker")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
