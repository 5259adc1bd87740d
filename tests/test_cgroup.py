"""A container's usage read from its cgroup, in each layout the engine may use."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runners.cgroup import CgroupAccounting
from runners.watch import UsageSample

CONTAINER = "0123abcd" * 8


def test_cgroup_v1_under_the_cgroupfs_driver(tmp_path: Path) -> None:
    (tmp_path / "memory" / "docker" / CONTAINER).mkdir(parents=True)
    (tmp_path / "memory" / "docker" / CONTAINER / "memory.max_usage_in_bytes").write_text("4194304\n")
    (tmp_path / "cpuacct" / "docker" / CONTAINER).mkdir(parents=True)
    (tmp_path / "cpuacct" / "docker" / CONTAINER / "cpuacct.usage").write_text("1500000000\n")
    accounting = CgroupAccounting.of_container(CONTAINER, tmp_path)
    assert accounting is not None
    assert accounting.sample() == UsageSample(4194304, 1.5)


@pytest.mark.parametrize("name", [f"docker/{CONTAINER}", f"system.slice/docker-{CONTAINER}.scope"])
def test_cgroup_v2_under_either_driver(tmp_path: Path, name: str) -> None:
    (tmp_path / name).mkdir(parents=True)
    (tmp_path / name / "memory.peak").write_text("8388608\n")
    (tmp_path / name / "cpu.stat").write_text("usage_usec 250000\nuser_usec 200000\nsystem_usec 50000\n")
    accounting = CgroupAccounting.of_container(CONTAINER, tmp_path)
    assert accounting is not None
    assert accounting.sample() == UsageSample(8388608, 0.25)
    shutil.rmtree(tmp_path / name)  # the container exited: its cgroup went with it
    assert accounting.sample() == UsageSample(None, None)


def test_no_visible_cgroup_means_the_engines_stats(tmp_path: Path) -> None:
    assert CgroupAccounting.of_container(CONTAINER, tmp_path) is None
