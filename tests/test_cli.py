"""The command line: both native forms, docker flags, --help everywhere, clear errors."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from config.parser import build_parser
from config.program import parse_program, resolve_executable
from tests.support import REPO, SUPERVISOR, TOOL, Worker, job


def run_cli(*arguments: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SUPERVISOR), *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        timeout=60,
    )


def test_program_after_a_double_dash() -> None:
    assert parse_program(["--", "python", "x.py", "--flag"]) == ["python", "x.py", "--flag"]
    assert parse_program(["wc", "-l"]) == ["wc", "-l"]


def test_program_in_the_seed_json_form() -> None:
    assert parse_program(['["python", "my_script.py"]']) == ["python", "my_script.py"]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ([], "native needs the command to run"),
        (["--"], "native needs the command to run"),
        (["[python"], "not a valid JSON list"),
        (["[]"], "non-empty list of strings"),
        (["[1, 2]"], "non-empty list of strings"),
    ],
)
def test_bad_programs_are_refused(words: list[str], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        parse_program(words)


def test_every_flag_of_every_command_is_explained() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in [parser, *subparsers.choices.values()]:
        for action in command._actions:
            assert action.help, f"{command.prog} {action.dest} has no help"
    for command in ([], ["native"], ["docker"], ["submit"]):
        completed = run_cli(*command, "--help")
        assert completed.returncode == 0
        assert "usage: supervisor.py" in completed.stdout


def test_native_without_a_command_is_a_usage_error(tmp_path: Path) -> None:
    completed = run_cli("--queue", f"local:{tmp_path}/q.sqlite3", "native")
    assert completed.returncode == 2
    assert "native needs the command to run" in completed.stderr


def test_an_unusable_queue_file_is_reported_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    completed = run_cli("--queue", f"local:{tmp_path}/file/q.sqlite3", "native", "--", "true")
    assert completed.returncode == 1
    record = json.loads(completed.stderr.strip().splitlines()[-1])
    assert record["message"] == "the queue cannot be used"
    assert f"{tmp_path}/file/q.sqlite3" in record["error"]
    assert "Traceback" not in completed.stderr


def test_submit_of_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    completed = run_cli("--queue", f"local:{tmp_path}/q.sqlite3", "submit", str(tmp_path / "absent.json"))
    assert completed.returncode == 2
    assert "cannot read the job file" in completed.stderr


def test_worker_started_with_the_seed_json_command_runs_jobs(tmp_path: Path) -> None:
    worker = Worker(tmp_path, program=[json.dumps([sys.executable, str(TOOL)])])
    worker.start()
    try:
        result = worker.result(worker.submit(job(command={"stdin": {"type": "pipe", "value": "seed"}})))
        assert (result["status"], result["stdout"]) == ("succeeded", "SEED")
    finally:
        worker.stop()


def test_a_command_that_does_not_exist_is_refused_at_start(tmp_path: Path) -> None:
    completed = run_cli("--queue", f"local:{tmp_path}/q.sqlite3", "native", "--", "no-such-tool-here")
    assert completed.returncode == 2
    assert "'no-such-tool-here' is not an executable file here or on PATH" in completed.stderr


def test_a_relative_command_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tmp_path / "bin" / "tool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    assert resolve_executable(["bin/tool", "x.py"]) == [str(tool), "x.py"]
    assert resolve_executable(["true"]) == ["true"]


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--job-memory", "lots", "'lots' is not a size"),
        ("--job-timeout", "0", "must be greater than 0"),
        ("--shutdown-grace", "-1", "must not be negative"),
        ("--workers", "0", "must be at least 1"),
    ],
)
def test_bad_flag_values_are_named(tmp_path: Path, flag: str, value: str, expected: str) -> None:
    completed = run_cli("--queue", f"local:{tmp_path}/q.sqlite3", flag, value, "native", "--", "true")
    assert completed.returncode == 2
    assert flag in completed.stderr and expected in completed.stderr


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--container-user", "alice", "UID or UID:GID in numbers"),
        ("--pull", "sometimes", "invalid choice: 'sometimes'"),
        ("--pids-limit", "0", "must be at least 1"),
    ],
)
def test_bad_docker_flag_values_are_named(tmp_path: Path, flag: str, value: str, expected: str) -> None:
    completed = run_cli("--queue", f"local:{tmp_path}/q.sqlite3", "docker", flag, value)
    assert completed.returncode == 2
    assert flag in completed.stderr and expected in completed.stderr
