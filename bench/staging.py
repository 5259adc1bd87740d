"""S3 staging speed and memory against plain boto3, in one run, on one moto server.

- one 1 GiB object, downloaded and uploaded: the worker's staging code vs plain boto3
  `download_file` / `upload_file` with default settings (target: >= 0.9x);
- 1,000 objects of 64 KiB, by prefix: the staging code vs plain boto3, one file after
  another (target: >= 5x);
- the peak RSS of the process doing the staging of the 1 GiB object (target: < 200 MB).

The staging side runs in a fresh child process each time (so its peak RSS is its own), with the
worker's defaults (`--transfer-concurrency 8`).

Usage: python bench/staging.py [--large-mib 1024] [--small-count 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import boto3  # noqa: E402
import msgspec  # noqa: E402

from protocol.request import Command  # noqa: E402
from protocol.uris import parse_uri  # noqa: E402
from staging.s3_store import S3Store  # noqa: E402
from staging.stager import StagedJob, Stager  # noqa: E402
from staging.workspace import Workspace  # noqa: E402
from testkit.moto_server import moto_in_environment  # noqa: E402

BUCKET = "bench"
SMALL_SIZE = 64 * 1024


def staged_child(mode: str, prefix: str, local: Path) -> None:
    """Runs in the child: one staging operation through Stager, as a job would."""
    store = S3Store(concurrency=8)
    store.warm_up()  # a pool child makes its client once and keeps it; so does plain boto3 here
    stager = Stager({"s3": store}, concurrency=8)
    workspace = Workspace.create(local / "scratch")
    started = time.perf_counter()
    _stage(stager, workspace, mode, prefix, local)
    print(json.dumps({"seconds": time.perf_counter() - started}))


def _stage(stager: Stager, workspace: Workspace, mode: str, prefix: str, local: Path) -> None:
    if mode == "download":
        stager.stage_in(msgspec.convert({"input": [prefix]}, Command), workspace)
    else:
        outputs = workspace.outputs / BUCKET / prefix.removeprefix(f"s3://{BUCKET}/")
        outputs.parent.mkdir(parents=True)
        (local / "source").rename(outputs)  # as if the job had written the files there
        staged = StagedJob([], workspace.stdin, workspace.stdout, workspace.stderr)
        staged.output_prefixes = [parse_uri(prefix, prefix=True)]
        stager.stage_out(staged, workspace)


def run_staged(mode: str, prefix: str, local: Path) -> tuple[float, int]:
    """(seconds, peak RSS bytes) of one staging operation in a fresh process; the time is the
    operation's own, measured in the child, without the process's start-up."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", mode, prefix, str(local)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"staging child failed with {child.returncode}")
    return float(json.loads(output)["seconds"]), usage.ru_maxrss * 1024


def plain_download(client: Any, keys: list[str], directory: Path) -> float:
    started = time.perf_counter()
    for key in keys:
        target = directory / key
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(BUCKET, key, str(target))
    return time.perf_counter() - started


def plain_upload(client: Any, files: list[Path], prefix: str) -> float:
    started = time.perf_counter()
    for path in files:
        client.upload_file(str(path), BUCKET, f"{prefix}{path.name}")
    return time.perf_counter() - started


def report(label: str, total_bytes: int, plain_s: float, staged_s: float, target: str) -> None:
    plain_rate, staged_rate = total_bytes / plain_s / 1e6, total_bytes / staged_s / 1e6
    print(
        f"{label:34} plain boto3 {plain_rate:7.1f} MB/s   staging {staged_rate:7.1f} MB/s   "
        f"{staged_rate / plain_rate:5.2f}x ({target})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large-mib", type=int, default=1024)
    parser.add_argument("--small-count", type=int, default=1000)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "PREFIX", "DIR"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        staged_child(options.child[0], options.child[1], Path(options.child[2]))
        return

    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        with moto_in_environment(root / "moto.log"):
            client = boto3.client("s3")
            client.create_bucket(Bucket=BUCKET)
            run_large(client, root, options.large_mib)
            run_small(client, root, options.small_count)


def run_large(client: Any, root: Path, mib: int) -> None:
    source = root / "large" / "source"
    source.mkdir(parents=True)
    chunk = os.urandom(1024 * 1024)
    with (source / "large.bin").open("wb") as handle:
        for _ in range(mib):
            handle.write(chunk)
    size = mib * 1024 * 1024

    plain_up = plain_upload(client, [source / "large.bin"], "large-plain/")
    staged_up, up_rss = run_staged("upload", f"s3://{BUCKET}/large-staged/", root / "large")
    plain_down = plain_download(client, ["large-plain/large.bin"], root / "large-plain")
    (root / "large-plain" / "large-plain" / "large.bin").unlink()
    staged_down, down_rss = run_staged("download", f"s3://{BUCKET}/large-plain/", root / "large-down")
    print(f"one object of {mib} MiB:")
    report("  download", size, plain_down, staged_down, "target >= 0.9x")
    report("  upload", size, plain_up, staged_up, "target >= 0.9x")
    print(
        f"  peak RSS of the staging process: download {down_rss / 2**20:.0f} MB, upload {up_rss / 2**20:.0f} MB"
        " (target < 200 MB)"
    )


def run_small(client: Any, root: Path, count: int) -> None:
    source = root / "small" / "source"
    source.mkdir(parents=True)
    files = []
    for index in range(count):
        path = source / f"{index:05}.bin"
        path.write_bytes(os.urandom(SMALL_SIZE))
        files.append(path)
    total = count * SMALL_SIZE

    plain_up = plain_upload(client, files, "small-plain/")
    staged_up, _ = run_staged("upload", f"s3://{BUCKET}/small-staged/", root / "small")
    keys = [f"small-plain/{path.name}" for path in files]
    plain_down = plain_download(client, keys, root / "small-plain")
    staged_down, _ = run_staged("download", f"s3://{BUCKET}/small-plain/", root / "small-down")
    print(f"{count} objects of {SMALL_SIZE // 1024} KiB:")
    report("  download", total, plain_down, staged_down, "target >= 5x")
    report("  upload", total, plain_up, staged_up, "target >= 5x")


if __name__ == "__main__":
    main()
