"""GPUs: which devices this box has, and how a job is handed the ones reserved for it."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence

VISIBLE_DEVICE_VARIABLES = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
_UUID = re.compile(r"\(UUID: ([^)]+)\)")


def discover_gpus() -> tuple[str, ...]:
    """The UUIDs `nvidia-smi -L` lists; none where there is no driver (or it fails)."""
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(_UUID.findall(listed.stdout))


def visible_devices(gpus: Sequence[str]) -> dict[str, str]:
    """A native job's environment naming its devices (none: it sees none)."""
    return {name: ",".join(gpus) if gpus else "none" for name in VISIBLE_DEVICE_VARIABLES}
