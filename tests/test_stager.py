"""File staging: inputs in, outputs out, prefixes, and every escape attempt refused."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from protocol.body import decode_body
from protocol.request import Command
from staging.errors import StagingRejected
from staging.file_store import LocalFileStore
from staging.stager import Stager
from staging.workspace import Workspace, remove_stale_workspaces


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "shapes").mkdir(parents=True)
    for name in ("poly.shp", "poly.shx", "poly.dbf", "polygon-notes.txt", "other.shp"):
        (root / "shapes" / name).write_text(name)
    (root / "input.txt").write_text("hello\n")
    (root / "results").mkdir()
    return root


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace.create(tmp_path / "scratch")
    yield workspace
    workspace.remove()


@pytest.fixture
def stager(data: Path) -> Stager:
    return Stager({"file": LocalFileStore([data])})


def command(**fields: object) -> Command:
    return msgspec.convert(fields, Command)


def test_input_argument_is_copied_into_the_mirror_and_replaced_by_its_path(
    stager: Stager, workspace: Workspace, data: Path
) -> None:
    staged = stager.stage_in(
        command(
            arguments=[
                {"type": "input", "name": "--in", "value": f"file://{data}/input.txt"},
                {"type": "parameter", "value": "-v"},
            ]
        ),
        workspace,
    )
    local = workspace.inputs / str(data).lstrip("/") / "input.txt"
    assert staged.argument_values == [str(local), "-v"]
    assert local.read_text() == "hello\n"
    assert not list(local.parent.glob("*.partial*"))


def test_input_prefix_fetches_every_file_starting_with_it(stager: Stager, workspace: Workspace, data: Path) -> None:
    stager.stage_in(command(input=[f"file://{data}/shapes/poly"]), workspace)
    local = workspace.inputs / str(data).lstrip("/") / "shapes"
    assert sorted(p.name for p in local.iterdir()) == ["poly.dbf", "poly.shp", "poly.shx", "polygon-notes.txt"]


def test_missing_input_is_rejected_naming_field_and_uri(stager: Stager, workspace: Workspace, data: Path) -> None:
    uri = f"file://{data}/absent.txt"
    with pytest.raises(StagingRejected, match=rf"^command.arguments\[0\].value: {uri}: no such file"):
        stager.stage_in(command(arguments=[{"type": "input", "value": uri}]), workspace)


def test_empty_input_prefix_is_rejected(stager: Stager, workspace: Workspace, data: Path) -> None:
    with pytest.raises(StagingRejected, match=r"^command.input\[0\]: no objects match the prefix"):
        stager.stage_in(command(input=[f"file://{data}/shapes/nothing"]), workspace)


def test_files_outside_the_allowed_roots_are_refused(stager: Stager, workspace: Workspace) -> None:
    with pytest.raises(StagingRejected, match="outside the worker's allowed file roots"):
        stager.stage_in(command(arguments=[{"type": "input", "value": "file:///etc/passwd"}]), workspace)
    with pytest.raises(StagingRejected, match=r"command.output\[0\]: .*outside"):
        stager.stage_in(command(output=["file:///etc/cron.d/"]), workspace)


def test_a_link_inside_a_root_leading_out_of_it_is_refused(stager: Stager, workspace: Workspace, data: Path) -> None:
    (data / "sneaky").symlink_to("/etc/passwd")
    with pytest.raises(StagingRejected, match="outside the worker's allowed file roots"):
        stager.stage_in(command(arguments=[{"type": "input", "value": f"file://{data}/sneaky"}]), workspace)


def test_file_uris_are_refused_without_any_root(workspace: Workspace, data: Path) -> None:
    with pytest.raises(StagingRejected, match="file:// URIs are disabled"):
        Stager({"file": LocalFileStore([])}).stage_in(
            command(arguments=[{"type": "input", "value": f"file://{data}/input.txt"}]), workspace
        )


def test_unconfigured_scheme_is_rejected(workspace: Workspace) -> None:
    with pytest.raises(StagingRejected, match=r"s3:// is not enabled"):
        Stager({}).stage_in(command(arguments=[{"type": "input", "value": "s3://b/k"}]), workspace)


def test_dotdot_in_an_output_uri_is_rejected_as_the_body_is_decoded(data: Path) -> None:
    body = {"service": "s", "queue": "native", "command": {"arguments": [
        {"type": "output", "value": f"file://{data}/../escape"}]}}  # fmt: skip
    decoded = decode_body(json.dumps(body))
    assert decoded.request is None and decoded.rejection is not None
    assert decoded.rejection.field == "command.arguments[0].value"
    assert "'..' segment" in decoded.rejection.problem


def test_outputs_and_output_prefixes_are_uploaded(stager: Stager, workspace: Workspace, data: Path) -> None:
    staged = stager.stage_in(
        command(
            arguments=[{"type": "output", "name": "--out", "value": f"file://{data}/results/main.txt"}],
            output=[f"file://{data}/results/run1-"],
            stdout={"type": "uri", "value": f"file://{data}/results/stdout.txt"},
        ),
        workspace,
    )
    out_dir = workspace.outputs / str(data).lstrip("/") / "results"
    assert staged.argument_values == [str(out_dir / "main.txt")]
    (out_dir / "main.txt").write_text("main")
    (out_dir / "run1-a.txt").write_text("a")
    (out_dir / "run1-sub").mkdir()
    (out_dir / "run1-sub" / "b.txt").write_text("b")
    (out_dir / "unrelated.txt").write_text("not mine")
    staged.stdout_path.write_text("printed")

    report = stager.stage_out(staged, workspace)

    assert sorted(o.uri.rsplit("/", 1)[1] for o in report.uploaded) == ["b.txt", "main.txt", "run1-a.txt", "stdout.txt"]
    assert (data / "results" / "main.txt").read_text() == "main"
    assert (data / "results" / "run1-sub" / "b.txt").read_text() == "b"
    assert (data / "results" / "stdout.txt").read_text() == "printed"
    assert not (data / "results" / "unrelated.txt").exists()
    assert report.skipped == []


def test_output_symlink_to_a_host_file_is_not_uploaded(stager: Stager, workspace: Workspace, data: Path) -> None:
    secret = data.parent / "secret.txt"
    secret.write_text("do not leak")
    staged = stager.stage_in(command(output=[f"file://{data}/results/"]), workspace)
    out_dir = workspace.outputs / str(data).lstrip("/") / "results"
    (out_dir / "leak.txt").symlink_to(secret)
    (out_dir / "real.txt").write_text("fine")
    (out_dir / "inside-link.txt").symlink_to(out_dir / "real.txt")

    report = stager.stage_out(staged, workspace)

    assert [o.uri for o in report.uploaded] == [
        f"file://{data}/results/inside-link.txt",
        f"file://{data}/results/real.txt",
    ]
    assert [(s.path.rsplit("/", 1)[1], s.reason) for s in report.skipped] == [
        ("leak.txt", "links outside the job directory")
    ]
    assert not (data / "results" / "leak.txt").exists()


def test_an_output_directory_replaced_by_a_link_is_not_followed(
    stager: Stager, workspace: Workspace, data: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "report.txt").write_text("host file")
    target = f"file://{data}/results/report.txt"
    staged = stager.stage_in(command(arguments=[{"type": "output", "value": target}]), workspace)
    out_dir = workspace.outputs / str(data).lstrip("/") / "results"
    out_dir.rmdir()
    out_dir.symlink_to(outside)

    report = stager.stage_out(staged, workspace)

    assert report.uploaded == []
    assert report.skipped[0].reason == "links outside the job directory"
    assert not (data / "results" / "report.txt").exists()


def test_missing_output_is_reported_as_skipped(stager: Stager, workspace: Workspace, data: Path) -> None:
    staged = stager.stage_in(command(arguments=[{"type": "output", "value": f"file://{data}/results/x"}]), workspace)
    report = stager.stage_out(staged, workspace)
    assert [(s.path, s.reason) for s in report.skipped] == [(f"file://{data}/results/x", "not produced by the command")]


def test_stdin_from_a_uri_and_inline(stager: Stager, workspace: Workspace, data: Path) -> None:
    staged = stager.stage_in(command(stdin={"type": "uri", "value": f"file://{data}/input.txt"}), workspace)
    assert staged.stdin_path.read_text() == "hello\n"
    inline = Workspace.create(workspace.root.parent)
    try:
        assert stager.stage_in(command(stdin={"type": "pipe", "value": "inline"}), inline).stdin_path.read_text() == (
            "inline"
        )
        assert stager.stage_in(command(), inline).stdin_path.read_text() == ""
    finally:
        inline.remove()


def test_workspace_removal_copes_with_read_only_directories(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    locked = workspace.outputs / "locked"
    locked.mkdir(parents=True)
    (locked / "file").write_text("x")
    os.chmod(locked, 0o500)
    workspace.remove()
    assert not workspace.root.exists()


def test_a_job_directory_left_empty_and_private_is_the_next_jobs(tmp_path: Path) -> None:
    first = Workspace.create(tmp_path)
    first.stdout.write_text("")
    first.stderr.write_text("said something")
    spare = first.remove()
    assert spare == first.root and first.root.is_dir()
    assert first.stdout.exists() and not first.stderr.exists()  # empty streams stay, others go
    second = Workspace.create(tmp_path, reuse=spare)
    assert second.root == first.root
    second.discard()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "leave", [lambda root: (root / "file").write_text("x"), lambda root: root.chmod(0o755)], ids=["files", "opened"]
)
def test_a_job_directory_left_with_files_or_opened_up_is_replaced(tmp_path: Path, leave: Any) -> None:
    first = Workspace.create(tmp_path)
    leave(first.root)
    assert first.remove() is None and not first.root.exists()
    spare = Workspace.create(tmp_path)
    assert spare.remove() == spare.root
    leave(spare.root)  # after the job: whatever touched it, it is not taken again
    second = Workspace.create(tmp_path, reuse=spare.root)
    assert second.root != spare.root and not spare.root.exists()


def test_stale_workspaces_are_removed_at_start_up(tmp_path: Path) -> None:
    Workspace.create(tmp_path, slot=0)
    Workspace.create(tmp_path, slot=1)
    (tmp_path / "not-ours").mkdir()
    assert remove_stale_workspaces(tmp_path) == 4  # two job directories, two slots' stream files
    assert [p.name for p in tmp_path.iterdir()] == ["not-ours"]
