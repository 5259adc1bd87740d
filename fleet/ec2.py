"""Whether this machine is an EC2 instance, from what it says of itself: no network involved."""

from __future__ import annotations

from pathlib import Path

DMI_FILES = (Path("/sys/class/dmi/id/sys_vendor"), Path("/sys/class/dmi/id/board_vendor"))
HYPERVISOR_UUID = Path("/sys/hypervisor/uuid")
EC2_VENDOR = "amazon ec2"


def on_ec2(dmi_files: tuple[Path, ...] = DMI_FILES, hypervisor_uuid: Path = HYPERVISOR_UUID) -> bool:
    """DMI's vendor says "Amazon EC2" (Nitro), or the Xen hypervisor's uuid starts with `ec2`."""
    for path in dmi_files:
        if _read(path).lower() == EC2_VENDOR:
            return True
    return _read(hypervisor_uuid).lower().startswith("ec2")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
