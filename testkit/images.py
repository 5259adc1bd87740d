"""The Docker engine for tests and benchmarks: reach it and build the test images without a registry."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from docker import APIClient
from docker.errors import DockerException
from docker.utils import kwargs_from_env
from requests.exceptions import RequestException

IMAGE_DIR = Path(__file__).resolve().parent / "tool_image"
BASE_IMAGE = "local/api-worker-test-base:1"
TOOL_IMAGE = "local/api-worker-test-tool:1"
PYTHON_BASE_IMAGE = "local/python-base:3.11-bookworm"  # made by .ci/make-python-base
BUSYBOX = "/bin/busybox"


def reach_engine() -> APIClient | str:
    """A client for the engine DOCKER_HOST names, or why there is none."""
    try:
        api = APIClient(version="auto", timeout=60, **kwargs_from_env())
        api.ping()
    except (DockerException, RequestException) as exc:
        return f"no Docker engine reachable ({os.environ.get('DOCKER_HOST', 'default socket')}): {exc}"
    if not os.path.exists(BUSYBOX):
        return f"{BUSYBOX} is missing (apt-get install busybox-static) to build the test image"
    return api


def busybox_root_filesystem() -> bytes:
    """A tar of /bin/busybox and a link per applet: a whole image with no registry."""
    applets = subprocess.run([BUSYBOX, "--list-full"], capture_output=True, text=True, check=True).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory, mode in (("bin", 0o755), ("sbin", 0o755), ("usr/bin", 0o755), ("usr/sbin", 0o755),
                                ("usr/local/bin", 0o755), ("etc", 0o755), ("tmp", 0o1777)):  # fmt: skip
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(BUSYBOX, "bin/busybox")
        for applet in applets:
            if applet != "bin/busybox":
                info = tarfile.TarInfo(applet)
                info.type, info.linkname = tarfile.SYMTYPE, "/bin/busybox"
                tar.addfile(info)
    return buffer.getvalue()


def build_test_images(api: APIClient, context: Path) -> str:
    """The base (imported) and the tool image (built from testkit/tool_image); the tool's name."""
    api.import_image_from_data(
        busybox_root_filesystem(), repository=BASE_IMAGE.split(":", maxsplit=1)[0], tag=BASE_IMAGE.split(":")[1],
        changes=['ENTRYPOINT ["/bin/sh", "-c"]'],
    )  # fmt: skip
    shutil.copytree(IMAGE_DIR, context, dirs_exist_ok=True)
    for event in api.build(path=str(context), tag=TOOL_IMAGE, buildargs={"BASE": BASE_IMAGE}, rm=True, decode=True):
        if "error" in event:
            raise RuntimeError(f"building {TOOL_IMAGE} failed: {event['error']}")
    return TOOL_IMAGE
