"""What operators install: the systemd unit and the worker's own Docker image."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from docker import APIClient

from config.settings import WorkerSettings, parse_settings
from testkit.images import PYTHON_BASE_IMAGE
from tests.support import REPO, required_program, unavailable

UNIT = REPO / "api-worker.service"
TEMPLATE_UNIT = REPO / "api-worker@.service"
WORKER_IMAGE = "local/api-worker:test"


def unit_settings(unit: Path = UNIT) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def verify_units(*units: Path) -> None:
    """`systemd-analyze verify` passes on the units without a word (warnings mean ignored settings)."""
    command = [required_program("systemd-analyze", "systemd"), "verify", *map(str, units)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout + completed.stderr == "", "warnings mean ignored settings"


@pytest.mark.integration
def test_the_systemd_unit_verifies_cleanly(tmp_path: Path) -> None:
    # Verified as installed at this checkout (verify wants ExecStart's program to exist).
    unit = tmp_path / "api-worker.service"
    unit.write_text(UNIT.read_text().replace("/opt/api-worker", str(REPO)))
    verify_units(unit)


@pytest.mark.integration
def test_the_template_unit_verifies_for_two_instances_side_by_side(tmp_path: Path) -> None:
    template = tmp_path / "api-worker@.service"
    template.write_text(TEMPLATE_UNIT.read_text().replace("/opt/api-worker", str(REPO)))
    instances = [tmp_path / f"api-worker@{name}.service" for name in ("docker", "gdal")]
    for instance in instances:
        instance.symlink_to(template.name)
    verify_units(*instances)


def test_each_instance_has_its_own_name_settings_and_state_directory() -> None:
    settings = unit_settings(TEMPLATE_UNIT)
    assert "API_WORKER_NAME=%i" in settings["Environment"]
    assert "API_WORKER_CONFIG=/etc/api-worker/%i.toml" in settings["Environment"]
    assert settings["EnvironmentFile"] == ["-/etc/api-worker/%i.env"]
    assert settings["StateDirectory"] == ["api-worker api-worker/%i"]
    plain = unit_settings()
    for key in ("Type", "KillMode", "TimeoutStopSec", "Restart", "RestartPreventExitStatus", "WatchdogSec",
                "ProtectSystem", "NoNewPrivileges", "CapabilityBoundingSet", "ExecStart", "User"):  # fmt: skip
        assert settings[key] == plain[key], key


def test_the_systemd_unit_stops_gracefully_and_restarts_on_failure() -> None:
    settings = unit_settings()
    assert settings["Type"] == ["notify"] and settings["NotifyAccess"] == ["main"]
    assert settings["KillMode"] == ["mixed"]
    assert settings["Restart"] == ["on-failure"]
    assert settings["SupplementaryGroups"] == ["docker"]
    assert settings["User"] == ["api-worker"]
    assert any(path.startswith("-/etc/api-worker/") for path in settings["EnvironmentFile"])
    assert "WatchdogSec" in settings
    # Longer than the default shutdown grace (60 s) and kill grace (10 s) together.
    assert int(settings["TimeoutStopSec"][0]) > 60 + 10


def test_the_worker_image_builds_on_a_given_base_and_runs_a_native_job(docker_api: APIClient, tmp_path: Path) -> None:
    if not docker_api.images(name=PYTHON_BASE_IMAGE):
        unavailable(f"no {PYTHON_BASE_IMAGE} image: .ci/make-python-base makes it")
    for event in docker_api.build(
        path=str(REPO), tag=WORKER_IMAGE, buildargs={"BASE": PYTHON_BASE_IMAGE}, rm=True, decode=True
    ):
        assert "error" not in event, event["error"]

    usage = docker_api.create_container(WORKER_IMAGE, ["--help"])["Id"]
    docker_api.start(usage)
    assert docker_api.wait(usage, timeout=60)["StatusCode"] == 0
    assert "usage: supervisor.py" in docker_api.logs(usage).decode()
    docker_api.remove_container(usage)

    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)  # the image's own user writes its queue and scratch here
    queue = "local:/data/queue.sqlite3"
    worker = docker_api.create_container(
        WORKER_IMAGE,
        ["--queue", queue, "--scratch-dir", "/data/scratch", "--workers", "1", "native", "--service", "wc", "--", "wc"],
        host_config=docker_api.create_host_config(binds={str(data): {"bind": "/data", "mode": "rw"}}),
    )["Id"]
    try:
        docker_api.start(worker)
        submit = docker_api.exec_create(
            worker,
            ["supervisor.py", "--queue", queue, "submit", "--wait", "--timeout", "60",
             "/opt/api-worker/examples/wordcount.json"],
        )["Id"]  # fmt: skip
        output = docker_api.exec_start(submit).decode()
        assert docker_api.exec_inspect(submit)["ExitCode"] == 0, output
        assert re.search(r'"status": "succeeded"', output) and '"stdout": "6\\n"' in output, output
        # As an operator types it: supervisor.py and its venv are on the image's PATH.
        status = docker_api.exec_create(
            worker, ["supervisor.py", "--queue", queue, "--scratch-dir", "/data/scratch", "status"]
        )["Id"]
        output = docker_api.exec_start(status).decode()
        assert docker_api.exec_inspect(status)["ExitCode"] == 0 and "health:     ok" in output, output
        # SIGTERM reaches the supervisor through the image's init: it stops gracefully.
        docker_api.stop(worker, timeout=30)
        assert docker_api.wait(worker, timeout=60)["StatusCode"] == 0
        logs = docker_api.logs(worker).decode()
        assert '"message":"supervisor stopped"' in logs, logs
    finally:
        docker_api.remove_container(worker, force=True)


def test_the_manuals_instance_and_services_files_read_as_services_settings(tmp_path: Path) -> None:
    deployment = (REPO / "docs" / "deployment.md").read_text()
    files = dict(re.findall(r"sudo tee /etc/api-worker/(\w+)\.toml <<'TOML'\n(.*?)\nTOML", deployment, re.DOTALL))
    configuration = (REPO / "docs" / "configuration.md").read_text()
    section = configuration[configuration.index("## Several services in one worker") :]
    files["example"] = re.search(r"```toml\n(.*?)```", section, re.DOTALL).group(1)  # type: ignore[union-attr]
    assert set(files) == {"docker", "gdal", "example"}
    read = {}
    for name, text in files.items():
        config = tmp_path / f"{name}.toml"
        config.write_text(text)
        settings = parse_settings(["--config", str(config), "services"], {})
        assert isinstance(settings, WorkerSettings)
        read[name] = settings
    assert read["docker"].docker is not None and read["docker"].services == ()
    assert [s.name for s in read["gdal"].services] == ["gdal"] and read["gdal"].docker is None
    example = read["example"]
    assert [(s.name, s.max_running) for s in example.services] == [("wc", None), ("gdal", 2)]
    assert example.docker is not None and example.docker.allow_image == ("hub.example.org/*",)


def test_the_image_holds_every_package_of_the_worker() -> None:
    copied = {line.split()[1] for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")}
    packages = {path.parent.name for path in REPO.glob("*/__init__.py")} - {"tests", "testkit", "bench"}
    assert packages <= copied, f"the Dockerfile leaves out {sorted(packages - copied)}"
