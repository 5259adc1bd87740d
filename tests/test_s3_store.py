"""S3 staging against moto's standalone server, over HTTP."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import msgspec
import pytest

from protocol.request import Command
from protocol.uris import ObjectUri, parse_uri
from staging import s3_store
from staging.errors import StagingFault, StagingRejected
from staging.s3_store import S3Store
from staging.stager import Stager
from staging.stores import StoredObject
from staging.watch import TransferWatch
from staging.workspace import Workspace
from testkit.moto_server import MotoServer, free_port
from tests.support import SEED_INPUTS, Worker, check_seed_result, job, seed_job

WorkerFactory = Callable[..., Worker]


@pytest.fixture
def s3(moto: MotoServer) -> Any:
    return boto3.client("s3")


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace.create(tmp_path / "scratch")
    yield workspace
    workspace.remove()


def command(**fields: object) -> Command:
    return msgspec.convert(fields, Command)


def test_seed_format_message_round_trips_through_s3(worker_factory: WorkerFactory, bucket: str, s3: Any) -> None:
    for path, content in SEED_INPUTS.items():
        s3.put_object(Bucket=bucket, Key=path, Body=content)
    worker = worker_factory().start()
    result = worker.result(worker.submit(seed_job(f"s3://{bucket}")))

    check_seed_result(result, f"s3://{bucket}", lambda key: s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert worker.leftovers() == []


def test_input_prefix_lands_beside_its_argument(bucket: str, s3: Any, workspace: Workspace) -> None:
    for name in ("poly.shp", "poly.shx", "poly.dbf", "polygon.txt", "other.shp"):
        s3.put_object(Bucket=bucket, Key=f"maps/{name}", Body=name.encode())
    stager = Stager({"s3": S3Store()})
    staged = stager.stage_in(
        command(
            arguments=[{"type": "input", "name": "--input", "value": f"s3://{bucket}/maps/poly.shp"}],
            input=[f"s3://{bucket}/maps/poly"],
        ),
        workspace,
    )
    directory = workspace.inputs / bucket / "maps"
    assert staged.argument_values == [str(directory / "poly.shp")]
    assert sorted(p.name for p in directory.iterdir()) == ["poly.dbf", "poly.shp", "poly.shx", "polygon.txt"]
    assert (directory / "poly.shx").read_bytes() == b"poly.shx"


def test_missing_object_and_empty_prefix_are_rejected_naming_the_uri(
    bucket: str, workspace: Workspace, worker_factory: WorkerFactory
) -> None:
    stager = Stager({"s3": S3Store()})
    missing = f"s3://{bucket}/absent.txt"
    with pytest.raises(StagingRejected, match=rf"command.arguments\[0\].value: {missing}: no such object"):
        stager.stage_in(command(arguments=[{"type": "input", "value": missing}]), workspace)
    with pytest.raises(StagingRejected, match=rf"command.input\[0\]: no objects match the prefix s3://{bucket}/nope"):
        stager.stage_in(command(input=[f"s3://{bucket}/nope"]), workspace)
    with pytest.raises(StagingRejected, match="no such object or bucket"):
        stager.stage_in(command(arguments=[{"type": "input", "value": "s3://no-such-bucket-here/x"}]), workspace)

    worker = worker_factory().start()
    result = worker.result(worker.submit(job([{"type": "input", "value": missing}])))
    assert (result["status"], result["final"]) == ("rejected", True)
    assert missing in result["error"]["message"]


def test_listed_keys_that_would_escape_are_refused(bucket: str, s3: Any, workspace: Workspace) -> None:
    s3.put_object(Bucket=bucket, Key="data/../../../etc/cron.d/evil", Body=b"x")
    with pytest.raises(StagingRejected, match=r"'\.\.' segment"):
        Stager({"s3": S3Store()}).stage_in(command(input=[f"s3://{bucket}/data/"]), workspace)
    assert not (workspace.root.parent / "etc").exists()


def test_a_link_to_a_host_file_is_not_uploaded(
    worker_factory: WorkerFactory, bucket: str, s3: Any, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not leak")
    worker = worker_factory().start()
    arguments = [
        {"type": "output", "name": "--out-prefix", "value": f"s3://{bucket}/out/p"},
        {"type": "parameter", "name": "--symlink", "value": str(secret)},
        {"type": "output", "value": f"s3://{bucket}/out/leak.txt"},
    ]
    message = job(command={"arguments": arguments, "output": [f"s3://{bucket}/out/"]})
    result = worker.result(worker.submit(message))
    assert result["status"] == "succeeded", result
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert sorted(keys) == ["out/p.a", "out/p.b"]
    assert [(s["path"], s["reason"]) for s in result["skipped"]] == [
        (f"s3://{bucket}/out/p", "not produced by the command"),  # the tool wrote p.a and p.b instead
        (f"s3://{bucket}/out/leak.txt", "links outside the job directory"),
    ]


def test_inputs_over_the_job_disk_limit_are_refused_before_downloading(
    worker_factory: WorkerFactory, bucket: str, s3: Any
) -> None:
    s3.put_object(Bucket=bucket, Key="big.bin", Body=b"x" * 4096)
    worker = worker_factory(options=["--job-disk", "1K"]).start()
    result = worker.result(worker.submit(job([{"type": "input", "value": f"s3://{bucket}/big.bin"}])))
    assert (result["status"], result["final"], result["attempt"]) == ("error", True, 1)
    assert result["error"]["message"] == "the inputs need 4K, more than this worker's --job-disk of 1K"
    assert worker.leftovers() == []


class _HugeStore:
    """A store whose one object is larger than any disk: the guard must stop before fetching."""

    def __init__(self) -> None:
        self.downloads = 0

    def stat(self, uri: ObjectUri) -> StoredObject:
        return StoredObject(uri, 2**62)

    def list_pages(self, prefix: ObjectUri) -> Iterator[list[StoredObject]]:
        yield []

    def authorize_upload(self, destination: ObjectUri) -> None:
        pass

    def download_all(self, downloads: Sequence[tuple[StoredObject, Path]], watch: TransferWatch) -> None:
        self.downloads += len(downloads)

    def upload_all(self, uploads: Sequence[tuple[Path, ObjectUri]], watch: TransferWatch) -> list[int]:
        return [0 for _ in uploads]


def test_inputs_larger_than_the_free_space_are_a_retryable_error(workspace: Workspace) -> None:
    store = _HugeStore()
    with pytest.raises(StagingFault, match="but the scratch filesystem has only") as raised:
        Stager({"s3": store}).stage_in(command(arguments=[{"type": "input", "value": "s3://b/huge"}]), workspace)
    assert raised.value.retryable
    assert store.downloads == 0


def test_an_object_that_changes_after_its_listing_is_not_kept(bucket: str, s3: Any, workspace: Workspace) -> None:
    s3.put_object(Bucket=bucket, Key="moving.txt", Body=b"12345")
    store = S3Store()
    stored = store.stat(ObjectUri("s3", bucket, "moving.txt"))
    s3.put_object(Bucket=bucket, Key="moving.txt", Body=b"1234567890")
    destination = workspace.root / "moving.txt"
    with pytest.raises(StagingFault, match=r"moving\.txt: changed while being read") as raised:
        Stager({"s3": store}).fetch(stored, destination)
    assert raised.value.retryable
    assert list(workspace.root.iterdir()) == []


@pytest.mark.integration
def test_access_denied_is_a_final_error(tmp_path: Path, workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    # A second server that checks credentials: these are unknown to it.
    guarded = MotoServer(tmp_path / "guarded.log", {"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", guarded.endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWN000000000")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nope")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        with pytest.raises(StagingFault, match=r"s3://locked/x: access denied") as raised:
            S3Store().stat(ObjectUri("s3", "locked", "x"))
        assert not raised.value.retryable
    finally:
        guarded.stop()


def test_an_unreachable_store_is_a_retryable_error(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setattr(s3_store, "MAX_ATTEMPTS", 2)
    with pytest.raises(StagingFault, match=r"s3://b/k: EndpointConnectionError") as raised:
        S3Store().stat(ObjectUri("s3", "b", "k"))
    assert raised.value.retryable


def test_many_small_files_move_concurrently_and_long_transfers_log_progress(
    bucket: str, s3: Any, workspace: Workspace, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(40):
        s3.put_object(Bucket=bucket, Key=f"many/{index:03}.txt", Body=f"{index}".encode())
    s3.put_object(Bucket=bucket, Key="many/zz-large.bin", Body=b"z" * (9 * 1024 * 1024))
    monkeypatch.setattr(s3_store, "PROGRESS_EVERY_S", 0.0)
    caplog.set_level(logging.INFO, logger="staging.s3_store")
    Stager({"s3": S3Store(concurrency=8)}).stage_in(command(input=[f"s3://{bucket}/many/"]), workspace)
    directory = workspace.inputs / bucket / "many"
    assert len(list(directory.iterdir())) == 41
    assert (directory / "007.txt").read_text() == "7"
    assert (directory / "zz-large.bin").stat().st_size == 9 * 1024 * 1024
    assert not list(directory.glob("*.partial*"))
    progress = [r for r in caplog.records if r.getMessage() == "transfer progress"]
    assert progress and all(hasattr(r, "mb_per_s") for r in progress)


def test_a_listing_whose_client_cannot_be_made_is_a_fault_naming_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")  # boto3 refuses to make the session
    with pytest.raises(StagingFault, match="s3://bucket/inputs/"):
        next(S3Store().list_pages(parse_uri("s3://bucket/inputs/", prefix=True)))
