"""A container's own accounting, read from its cgroup: peak memory and CPU time.

Cheap to read (two small files), so a container can be sampled often enough that a job of a
fraction of a second still reports its usage. Only where the worker sees the host's cgroup
tree (it runs on the host); elsewhere there is none and the engine's stats serve instead.
The cgroup goes with the container's exit, so the last sample before it is the figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runners.watch import UsageSample

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class CgroupAccounting:
    peak_memory: Path
    cpu_usage: Path
    cpu_in_stat: bool  # cgroup v2: `usage_usec` in cpu.stat; v1: nanoseconds in cpuacct.usage

    @classmethod
    def of_container(cls, container_id: str, root: Path = CGROUP_ROOT) -> CgroupAccounting | None:
        """The container's accounting files, under the cgroupfs or the systemd driver's names,
        cgroup v1 or v2; None if none is visible."""
        for name in (f"docker/{container_id}", f"system.slice/docker-{container_id}.scope"):
            memory, cpu = root / "memory" / name, root / "cpuacct" / name
            v1 = cls(memory / "memory.max_usage_in_bytes", cpu / "cpuacct.usage", False)
            v2 = cls(root / name / "memory.peak", root / name / "cpu.stat", True)
            for accounting in (v1, v2):
                if accounting.peak_memory.is_file() and accounting.cpu_usage.is_file():
                    return accounting
        return None

    def sample(self) -> UsageSample:
        try:
            peak = int(self.peak_memory.read_text())
            cpu_text = self.cpu_usage.read_text()
        except (OSError, ValueError):  # the container has exited: its cgroup is gone
            return UsageSample(None, None)
        if self.cpu_in_stat:
            fields = dict(line.split(maxsplit=1) for line in cpu_text.splitlines() if " " in line)
            cpu_seconds = int(fields.get("usage_usec", "0")) / 1e6
        else:
            cpu_seconds = int(cpu_text) / 1e9
        return UsageSample(peak, round(cpu_seconds, 3))
