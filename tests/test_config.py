"""Settings from the command line, the environment and a TOML file, in that order of precedence."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from config.layers import apply_layers, config_path, env_name, read_config_file, setting_name
from config.parser import build_parser, worker_parsers
from config.settings import (
    NativeSettings,
    StatusSettings,
    SubmitSettings,
    WorkerSettings,
    check_worker_settings,
    parse_settings,
)
from tests.support import REPO, Worker, job


def parse(argv: list[str], environ: dict[str, str] | None = None, file_text: str | None = None,
          tmp_path: Path | None = None) -> argparse.Namespace:  # fmt: skip
    parser = build_parser()
    settings = {}
    if file_text is not None:
        assert tmp_path is not None
        config = tmp_path / "worker.toml"
        config.write_text(file_text)
        settings = read_config_file(config)
    apply_layers(worker_parsers(parser), settings, environ or {})
    return parser.parse_args(argv)


def test_flag_beats_environment_beats_file_beats_default(tmp_path: Path) -> None:
    file_text = "workers = 3\njob-memory = '1G'\nvisibility_timeout = 30\n"
    environ = {"API_WORKER_WORKERS": "5"}
    assert parse(["--workers", "7", "native", "--", "true"], environ, file_text, tmp_path).workers == 7
    layered = parse(["native", "--", "true"], environ, file_text, tmp_path)
    assert (layered.workers, layered.job_memory, layered.visibility_timeout) == (5, 1024**3, 30.0)
    assert parse(["native", "--", "true"], {}, file_text, tmp_path).workers == 3
    assert parse(["native", "--", "true"]).job_memory is None


def test_lists_come_comma_separated_or_as_arrays_and_a_flag_replaces_them(tmp_path: Path) -> None:
    environ = {"API_WORKER_FILE_ROOT": "/data/a, /data/b"}
    assert parse(["native", "--", "true"], environ).file_root == [Path("/data/a"), Path("/data/b")]
    flagged = parse(["--file-root", "/data/c", "native", "--", "true"], environ)
    assert flagged.file_root == [Path("/data/c")]
    file_text = "allow-image = ['hub.example.org/*', 'local/*']\npull = 'always'\nnetwork = 'none'\n"
    docker = parse(["docker"], {}, file_text, tmp_path)
    assert (docker.allow_image, docker.pull, docker.network) == (["hub.example.org/*", "local/*"], "always", "none")
    assert parse(["docker", "--allow-image", "x/*"], {}, file_text, tmp_path).allow_image == ["x/*"]


def test_subcommand_settings_come_from_the_environment_too() -> None:
    native = parse(["native", "--", "true"], {"API_WORKER_SERVICE": "wc", "API_WORKER_PASS_ENV": "LD_LIBRARY_PATH"})
    assert (native.service, native.pass_env) == ("wc", ["LD_LIBRARY_PATH"])
    assert parse(["docker"], {"API_WORKER_CONTAINER_USER": "1000:50"}).container_user == (1000, 50)


@pytest.mark.parametrize(
    ("environ", "file_text", "expected"),
    [
        ({"API_WORKER_JOB_MEMORY": "lots"}, None, "API_WORKER_JOB_MEMORY: 'lots' is not a size"),
        ({"API_WORKER_WORKERS": "0"}, None, "API_WORKER_WORKERS: must be at least 1"),
        ({"API_WORKER_LOG_FORMAT": "xml"}, None, "API_WORKER_LOG_FORMAT: must be one of json, text, not 'xml'"),
        ({}, "pull = 'sometimes'", "config key 'pull': must be one of missing, always, never"),
        ({}, "workers = 'many'", "config key 'workers': must be a whole number, not 'many'"),
        ({}, "wrokers = 4", "unknown settings in the config file: wrokers"),
        ({}, "file-root = {a = 1}", "config key 'file-root': must be a string or a number"),
    ],
)
def test_a_bad_layered_value_is_named(
    tmp_path: Path, environ: dict[str, str], file_text: str | None, expected: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(expected)):
        parse(["native", "--", "true"], environ, file_text, tmp_path)


def test_config_file_from_the_flag_or_the_environment(tmp_path: Path) -> None:
    assert config_path(["--config", "a.toml", "native"], {"API_WORKER_CONFIG": "b.toml"}) == Path("a.toml")
    assert config_path(["native"], {"API_WORKER_CONFIG": "b.toml"}) == Path("b.toml")
    assert config_path(["native"], {}) is None
    broken = tmp_path / "broken.toml"
    broken.write_text("workers = ")
    with pytest.raises(ValueError, match="is not valid TOML"):
        read_config_file(broken)
    with pytest.raises(ValueError, match="cannot read the config file"):
        read_config_file(tmp_path / "absent.toml")


def test_a_worker_runs_on_settings_from_its_config_file_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "worker.toml"
    config.write_text("job-timeout = 0.5\nkill-grace = 0.2\n")
    worker = Worker(tmp_path, options=["--config", str(config)], environment={"API_WORKER_MAX_ATTEMPTS": "1"})
    try:
        worker.start()
        result = worker.result(worker.submit(job([{"type": "parameter", "name": "--sleep", "value": 30}])))
        assert result["status"] == "timeout", result
    finally:
        worker.stop()


def test_the_manuals_settings_table_lists_every_worker_option_with_its_variable() -> None:
    readme = (REPO / "docs" / "configuration.md").read_text()
    rows = {}
    for line in readme.splitlines():
        cells = (
            [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))] if line.startswith("| `") else []
        )
        if len(cells) >= 2 and cells[1].startswith("`API_WORKER_"):
            flag = cells[0].strip("`").split()
            rows[flag[1] if flag[0] in ("native", "docker") else flag[0]] = cells[1].strip("`")
    for parser in worker_parsers(build_parser()):
        for action in parser._actions:
            setting = setting_name(action)
            if setting is not None:
                assert rows.get(f"--{setting}") == env_name(setting), f"--{setting} is not in the manual's table"
    assert rows["--config"] == "API_WORKER_CONFIG"


def test_each_subcommand_reads_into_frozen_typed_settings_of_its_own() -> None:
    native = parse_settings(["--workers", "3", "--file-root", "/data", "native", "--service", "wc", "--", "true"], {})
    assert isinstance(native, WorkerSettings) and native.docker is None and native.native is not None
    assert (native.workers, native.file_root, native.native.service) == (3, (Path("/data"),), "wc")
    with pytest.raises(dataclasses.FrozenInstanceError):
        native.workers = 4  # type: ignore[misc]
    docker = parse_settings(["docker", "--allow-image", "local/*", "--pids-limit", "64"], {})
    assert isinstance(docker, WorkerSettings) and docker.native is None and docker.docker is not None
    assert (docker.docker.allow_image, docker.docker.pids_limit, docker.docker.pull) == (("local/*",), 64, "missing")
    submit = parse_settings(["submit", "--wait", "--group", "g", "job.json"], {})
    assert isinstance(submit, SubmitSettings) and (submit.wait, submit.group, submit.file) == (True, "g", "job.json")
    status = parse_settings(["status", "--json"], {})
    assert isinstance(status, StatusSettings) and status.json


def test_checking_the_settings_changes_nothing_and_returns_the_command_found() -> None:
    settings = parse_settings(["native", "--", "true", "--flag"], {})
    assert isinstance(settings, WorkerSettings)
    checked = check_worker_settings(settings)
    assert checked.native is not None and checked.native.program == ("true", "--flag")
    assert settings.native is not None and settings.native.program == ("--", "true", "--flag")
    with pytest.raises(ValueError, match="is not an executable file"):
        check_worker_settings(dataclasses.replace(settings, native=NativeSettings(("no-such-command-here",), None)))


def test_the_image_options_read_percentages_sizes_and_durations_and_check_the_watermarks(tmp_path: Path) -> None:
    file_text = "[docker]\nkeep-image = ['base/*']\nimage-cache-max = '20G'\n"
    docker = parse(["docker", "--image-cache-high", "90%", "--image-cache-low", "70", "--pull-timeout", "2m"])
    assert (docker.image_cache_high, docker.image_cache_low, docker.pull_timeout) == (0.9, 0.7, 120.0)
    assert (docker.image_cache_max, docker.image_min_idle, docker.ecr_registry) == (None, 600.0, [])
    with pytest.raises(SystemExit):
        parse(["docker", "--image-cache-high", "100%"])
    settings = parse_settings(["docker", "--image-cache-low", "90%"], {})
    assert isinstance(settings, WorkerSettings)
    with pytest.raises(ValueError, match="--image-cache-low must be below --image-cache-high"):
        check_worker_settings(settings)
    config = tmp_path / "worker.toml"
    config.write_text(file_text)
    services = parse_settings(["--config", str(config), "services"], {})
    assert isinstance(services, WorkerSettings) and services.docker is not None
    assert (services.docker.keep_image, services.docker.image_cache_max) == (("base/*",), 20 * 1024**3)
