"""Staging on a real S3 server (SeaweedFS, signatures checked), through a logging proxy: the
transfer engine, checksums end to end, and the box-wide input cache."""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import msgspec
import pytest
from boto3.s3.transfer import TransferConfig

from protocol.request import Command
from protocol.uris import parse_uri
from staging.errors import StagingFault
from staging.input_cache import InputCache
from staging.s3_store import S3Store
from staging.stager import StagedJob, Stager
from staging.workspace import Workspace
from testkit.moto_server import free_port
from testkit.s3_proxy import S3Proxy
from testkit.waiting import wait_until
from tests.support import Worker, job, metrics

PART = 1024 * 1024  # the engine's part size in these tests: multipart without large objects
WorkerFactory = Callable[..., Worker]


@pytest.fixture
def s3(seaweed_s3: S3Proxy) -> Any:
    return boto3.session.Session().client("s3")  # not boto3's default session: it keeps the first keys it found


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def workspaces(tmp_path: Path) -> Iterator[Callable[[], Workspace]]:
    made: list[Workspace] = []

    def make() -> Workspace:
        workspace = Workspace.create(tmp_path / "scratch", len(made))
        made.append(workspace)
        return workspace

    yield make
    for workspace in made:
        workspace.discard()


def command(**fields: object) -> Command:
    return msgspec.convert(fields, Command)


def stage(stager: Stager, workspace: Workspace, uri: str) -> Path:
    """Stage one input argument; its local path."""
    staged = stager.stage_in(command(arguments=[{"type": "input", "value": uri}]), workspace)
    return Path(staged.argument_values[0])


def test_many_objects_and_a_multipart_one_come_down_verified_and_go_up_with_checksums(
    bucket: str, s3: Any, workspaces: Callable[[], Workspace], seaweed_s3: S3Proxy
) -> None:
    small = {f"data/{index:03}.bin": os.urandom(1000 + index) for index in range(60)}
    for key, body in small.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    big = os.urandom(11 * PART + 12345)  # three parts of S3's smallest part size, 5 MiB
    upload = s3.create_multipart_upload(Bucket=bucket, Key="data/zz-big.bin")
    parts = []
    for number, start in enumerate(range(0, len(big), 5 * PART), start=1):
        chunk = big[start : start + 5 * PART]
        answer = s3.upload_part(Bucket=bucket, Key="data/zz-big.bin", UploadId=upload["UploadId"],
                                PartNumber=number, Body=chunk)  # fmt: skip
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="data/zz-big.bin", UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": parts})  # fmt: skip

    workspace = workspaces()
    stager = Stager({"s3": S3Store(concurrency=16, part_size=PART)})
    stager.stage_in(command(input=[f"s3://{bucket}/data/"]), workspace)
    directory = workspace.inputs / bucket / "data"
    assert {
        f"data/{path.name}": path.read_bytes() for path in directory.iterdir() if path.name != "zz-big.bin"
    } == small
    assert seaweed_s3.gets("zz-big.bin") == 3  # ranged GETs aligned to its own parts (its ETag's check)
    assert not [method for method, _ in seaweed_s3.requests if method == "HEAD" and "/data/0" in _]

    produced = workspace.outputs / bucket / "results"
    produced.mkdir(parents=True)
    (produced / "small.txt").write_bytes(b"small result")
    (produced / "large.bin").write_bytes(big)
    staged = StagedJob([], workspace.stdin, workspace.stdout, workspace.stderr)
    staged.output_prefixes = [parse_uri(f"s3://{bucket}/results/", prefix=True)]
    report = stager.stage_out(staged, workspace)
    assert sorted((item.uri, item.bytes) for item in report.uploaded) == [
        (f"s3://{bucket}/results/large.bin", len(big)),
        (f"s3://{bucket}/results/small.txt", 12),
    ]
    head = s3.head_object(Bucket=bucket, Key="results/small.txt", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(__import__("hashlib").sha256(b"small result").digest()).decode()
    assert s3.get_object(Bucket=bucket, Key="results/large.bin")["Body"].read() == big


def test_a_full_object_crc_is_checked_on_a_ranged_download(
    bucket: str, s3: Any, workspaces: Callable[[], Workspace], seaweed_s3: S3Proxy
) -> None:
    body = os.urandom(2 * PART + 7)
    s3.put_object(Bucket=bucket, Key="crc.bin", Body=body, ChecksumAlgorithm="CRC32")
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert s3.head_object(Bucket=bucket, Key="crc.bin", ChecksumMode="ENABLED")["ChecksumCRC32"] == crc
    local = stage(Stager({"s3": S3Store(part_size=PART)}), workspaces(), f"s3://{bucket}/crc.bin")
    assert local.read_bytes() == body
    seaweed_s3.flip_byte_in = "crc.bin"
    with pytest.raises(StagingFault, match=rf"s3://{bucket}/crc.bin: checksum mismatch \(crc32") as raised:
        stage(Stager({"s3": S3Store(part_size=PART)}), workspaces(), f"s3://{bucket}/crc.bin")
    assert raised.value.retryable


def test_a_composite_crc_of_a_multipart_upload_is_checked_part_by_part(
    bucket: str, s3: Any, workspaces: Callable[[], Workspace], seaweed_s3: S3Proxy
) -> None:
    body = os.urandom(12 * PART + 99)
    parts = TransferConfig(
        multipart_threshold=5 * PART, multipart_chunksize=5 * PART, preferred_transfer_client="classic"
    )  # never "auto": the CRT client it may pick ignores the endpoint
    s3.upload_fileobj(io.BytesIO(body), bucket, "composite.bin", Config=parts)  # boto3's default: CRC32 per part
    head = s3.head_object(Bucket=bucket, Key="composite.bin", ChecksumMode="ENABLED")
    assert (head["ChecksumType"], head["ChecksumCRC32"][-2:]) == ("COMPOSITE", "-3")
    local = stage(Stager({"s3": S3Store(part_size=PART)}), workspaces(), f"s3://{bucket}/composite.bin")
    assert local.read_bytes() == body
    assert seaweed_s3.gets("composite.bin") == 3  # one ranged GET per part of the upload
    seaweed_s3.flip_byte_in = "composite.bin"
    with pytest.raises(StagingFault, match=r"composite.bin: checksum mismatch \(composite-crc32 "):
        stage(Stager({"s3": S3Store(part_size=PART)}), workspaces(), f"s3://{bucket}/composite.bin")


def test_corrupted_bytes_are_an_error_naming_the_object_and_never_cached(
    bucket: str, s3: Any, workspaces: Callable[[], Workspace], seaweed_s3: S3Proxy, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="in/data.txt", Body=b"the right bytes")
    seaweed_s3.flip_byte_in = "in/data.txt"
    cache = InputCache(tmp_path / "cache", 1 << 30)
    workspace = workspaces()
    with pytest.raises(StagingFault, match=rf"s3://{bucket}/in/data.txt: checksum mismatch") as raised:
        stage(Stager({"s3": S3Store()}, cache=cache), workspace, f"s3://{bucket}/in/data.txt")
    assert raised.value.retryable
    assert cache.usage() == (0, 0)
    assert not (workspace.inputs / bucket / "in" / "data.txt").exists()


def test_a_job_whose_input_comes_corrupted_is_retried_then_a_final_error(
    bucket: str, s3: Any, seaweed_s3: S3Proxy, tmp_path: Path, worker_factory: WorkerFactory
) -> None:
    s3.put_object(Bucket=bucket, Key="in/data.txt", Body=b"the right bytes")
    seaweed_s3.flip_byte_in = "in/data.txt"
    options = ["--input-cache-dir", str(tmp_path / "cache"), "--max-attempts", "2", "--retry-delay", "0.1"]
    worker = worker_factory(options=options).start()
    infile = {"type": "input", "name": "--infile", "value": f"s3://{bucket}/in/data.txt"}
    result = worker.result(worker.submit(job([infile])))
    assert (result["status"], result["attempt"], result["final"]) == ("error", 2, True)
    assert f"s3://{bucket}/in/data.txt: checksum mismatch" in result["error"]["message"]
    assert seaweed_s3.gets("in/data.txt") == 2


def test_a_wrong_secret_is_a_final_access_denied_error_naming_the_uri(
    bucket: str, s3: Any, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="secret.txt", Body=b"x")
    worker = worker_factory(environment={"AWS_SECRET_ACCESS_KEY": "not-the-secret"},
                            options=["--input-cache-dir", str(tmp_path / "cache")]).start()  # fmt: skip
    result = worker.result(
        worker.submit(job([{"type": "input", "name": "--infile", "value": f"s3://{bucket}/secret.txt"}]))
    )
    assert (result["status"], result["final"], result["attempt"]) == ("error", True, 1)
    assert f"s3://{bucket}/secret.txt: access denied" in result["error"]["message"]


def test_a_second_job_reads_its_input_from_the_cache_and_a_tampered_one_is_fetched_again(
    bucket: str, s3: Any, seaweed_s3: S3Proxy, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="ref/genome.txt", Body=b"acgt\n")
    cache_dir, port = tmp_path / "cache", free_port()
    worker = worker_factory(options=["--input-cache-dir", str(cache_dir), "--metrics-port", str(port)]).start()
    infile = {"type": "input", "name": "--infile", "value": f"s3://{bucket}/ref/genome.txt"}

    def run(*extra: dict[str, Any]) -> dict[str, Any]:
        result = worker.result(worker.submit(job([infile, *extra, {"type": "output", "name": "--outfile",
                                                  "value": f"s3://{bucket}/out/{uuid.uuid4().hex}.txt"}])))  # fmt: skip
        assert result["status"] == "succeeded", result
        return result

    def output(result: dict[str, Any]) -> bytes:
        key = result["outputs"][0]["uri"].removeprefix(f"s3://{bucket}/")
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    assert output(run()) == b"ACGT\n"
    assert output(run()) == b"ACGT\n"
    assert seaweed_s3.gets("ref/genome.txt") == 1  # the second job's input came from the cache

    s3.put_object(Bucket=bucket, Key="ref/genome.txt", Body=b"ttgg\n")  # changed in S3: never served stale
    assert output(run()) == b"TTGG\n"
    assert seaweed_s3.gets("ref/genome.txt") == 2

    result = worker.result(worker.submit(job([infile, {"type": "parameter", "value": "--tamper-infile"}])))
    assert result["status"] == "succeeded", result
    assert output(run()) == b"TTGG\n"  # the changed entry was caught and fetched again
    assert seaweed_s3.gets("ref/genome.txt") == 3

    # Linked: the second job's and the tampering job's input; downloaded: the other three.
    def status() -> dict[str, Any] | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as response:
            cache: dict[str, Any] = json.loads(response.read())["input_cache"]
        return cache if cache["misses"] == 3 else None

    cache = wait_until(status, 10, "the cache's counts in /status")
    assert {name: cache[name] for name in ("hits", "misses", "bytes_saved", "bytes_fetched")} == {
        "hits": 2, "misses": 3, "bytes_saved": 10, "bytes_fetched": 15}  # fmt: skip
    assert cache["directory"] == str(cache_dir.absolute())
    scraped = metrics(port)
    assert 'api_worker_input_cache_total{event="hit"} 2.0' in scraped
    assert 'api_worker_input_cache_bytes_total{kind="saved"} 10.0' in scraped
    text = worker.status_text()
    assert "inputs:     cache 2 hits, 3 misses (40% hits), 10B saved, 0 evicted; at most 10G in " in text


def test_two_jobs_at_once_needing_one_object_make_one_get(
    bucket: str, s3: Any, seaweed_s3: S3Proxy, workspaces: Callable[[], Workspace], tmp_path: Path
) -> None:
    body = os.urandom(3 * PART)
    s3.put_object(Bucket=bucket, Key="shared.bin", Body=body)
    first, second = workspaces(), workspaces()
    paths: list[Path] = []
    barrier = threading.Barrier(2)

    def one(workspace: Workspace) -> None:
        stager = Stager({"s3": S3Store()}, cache=InputCache(tmp_path / "cache", 1 << 30))  # like two pool children
        barrier.wait(10)
        paths.append(stage(stager, workspace, f"s3://{bucket}/shared.bin"))

    threads = [threading.Thread(target=one, args=(workspace,)) for workspace in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(paths) == 2 and all(path.read_bytes() == body for path in paths)
    assert seaweed_s3.gets("shared.bin") == 1
    assert paths[0].stat().st_ino == paths[1].stat().st_ino  # both linked to the one entry


def test_the_cache_over_its_size_drops_the_least_recently_used_entries_not_in_use(
    bucket: str, s3: Any, workspaces: Callable[[], Workspace], tmp_path: Path
) -> None:
    for name in ("a", "b", "c"):
        s3.put_object(Bucket=bucket, Key=name, Body=name.encode() * 1000)
    cache = InputCache(tmp_path / "cache", 2500)
    stager = Stager({"s3": S3Store()}, cache=cache)
    held = workspaces()
    stage(stager, held, f"s3://{bucket}/a")  # still held by its job: never evicted
    for name in ("b", "c"):
        workspace = workspaces()
        stage(stager, workspace, f"s3://{bucket}/{name}")
        stager.release(workspace)
    # a (held, 1000 B) and c (newest) stay; b went when c came in over 2,500 bytes.
    assert cache.usage() == (2, 2000)
    assert cache.counters.evicted == 1
    stager.release(held)
    workspace = workspaces()
    assert stage(stager, workspace, f"s3://{bucket}/c").read_bytes() == b"c" * 1000
    assert cache.counters.hits == 1


def test_an_empty_object_served_from_the_cache_counts_as_a_hit(
    bucket: str, s3: Any, workspaces: Callable[[], Workspace], tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    cache = InputCache(tmp_path / "cache", 1 << 30)
    stager = Stager({"s3": S3Store()}, cache=cache)
    for _ in range(2):
        workspace = workspaces()
        assert stage(stager, workspace, f"s3://{bucket}/empty").read_bytes() == b""
        stager.release(workspace)
    assert (cache.counters.hits, cache.counters.misses) == (1, 1)


def test_an_entry_whose_record_is_torn_is_fetched_again(
    bucket: str, s3: Any, seaweed_s3: S3Proxy, workspaces: Callable[[], Workspace], tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="torn", Body=b"the bytes")
    cache = InputCache(tmp_path / "cache", 1 << 30)
    stager = Stager({"s3": S3Store()}, cache=cache)
    workspace = workspaces()
    stage(stager, workspace, f"s3://{bucket}/torn")
    stager.release(workspace)
    (key,) = cache.keys.iterdir()
    key.write_text(key.read_text()[:-5])  # as a crash in the middle of its rewrite leaves it
    workspace = workspaces()
    assert stage(stager, workspace, f"s3://{bucket}/torn").read_bytes() == b"the bytes"
    assert seaweed_s3.gets("torn") == 2
    assert (cache.counters.hits, cache.counters.misses) == (0, 2)
