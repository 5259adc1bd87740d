"""Staging against the best S3 clients, on a real S3 server (SeaweedFS on loopback, signatures
checked), same server and data, medians of rounds:

- 1,000 objects of 64 KiB under a prefix, down and up;
- one 1 GiB object, down and up;
- the same 1 GiB input for 5 jobs in a row: the input cache against no cache.

This worker's staging code (Stager and its S3 engine, the worker's defaults) runs in a fresh
process for each figure, timed inside it after its client is made, as in a pool child that
has staged before: without the input cache, and for small objects also through it, cold (every
object a miss) and warm (every object a hit). The peers run alone, as their users would run them, timed as whole
commands: s5cmd (its defaults: 256 workers), rclone (`--transfers 64 --checkers 64`, as its
docs advise for many small files), obstore (one async script: list, then every object at
once under a semaphore of 64, as its docs show).

Usage: python bench/staging.py [--rounds 3] [--small-count 1000] [--large-mib 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import boto3  # noqa: E402
import boto3.s3.transfer  # noqa: E402

from testkit.seaweedfs import seaweed_in_environment  # noqa: E402

BUCKET = "bench"
SMALL_SIZE = 64 * 1024
BIN = Path(sys.executable).parent
CACHE_JOBS = 5

OBSTORE_SCRIPT = """
import asyncio, os, sys, time
from pathlib import Path
import obstore
from obstore.store import S3Store
mode, prefix, local = sys.argv[1], sys.argv[2], Path(sys.argv[3])
store = S3Store("bench", endpoint=os.environ["AWS_ENDPOINT_URL_S3"], region="us-east-1",
                client_options={"allow_http": True})
async def main():
    gate = asyncio.Semaphore(64)
    async def down(path):
        async with gate:
            data = await (await obstore.get_async(store, path)).bytes_async()
        target = local / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    async def up(path):
        async with gate:
            await obstore.put_async(store, prefix + path.name, path.read_bytes())
    if mode == "download":
        tasks = []
        async for batch in obstore.list(store, prefix, chunk_size=1000):
            tasks += [asyncio.create_task(down(meta["path"])) for meta in batch]
        await asyncio.gather(*tasks)
    else:
        await asyncio.gather(*(up(path) for path in sorted(local.iterdir())))
asyncio.run(main())
sys.stdout.flush()
os._exit(0)  # obstore sometimes aborts in interpreter clean-up once asyncio.run closed its loop
"""


def staged_child(mode: str, uri: str, local: Path, cache: str, jobs: int) -> None:
    """In a fresh process: staging through Stager, as `jobs` jobs in a row would."""
    import msgspec

    from protocol.request import Command
    from protocol.uris import parse_uri
    from staging.input_cache import InputCache
    from staging.s3_store import S3Store
    from staging.stager import StagedJob, Stager
    from staging.workspace import Workspace

    store = S3Store()
    # The client made (and the server asked once) before the clock starts, as in a child that has staged before.
    if uri.endswith("/"):
        next(store.list_pages(parse_uri(uri, prefix=True)))
    else:
        store.stat(parse_uri(uri))
    stager = Stager({"s3": store}, cache=InputCache(Path(cache), 8 << 30) if cache else None)
    started = time.perf_counter()
    if mode == "download":
        for _ in range(jobs):
            workspace = Workspace.create(local / "scratch")
            field = "input" if uri.endswith("/") else "arguments"
            value = [uri] if field == "input" else [{"type": "input", "value": uri}]
            stager.stage_in(msgspec.convert({field: value}, Command), workspace)
            stager.release(workspace)
            workspace.discard()
    else:
        workspace = Workspace.create(local / "scratch")
        outputs = workspace.outputs / BUCKET / uri.removeprefix(f"s3://{BUCKET}/").rstrip("/")
        outputs.parent.mkdir(parents=True)
        shutil.copytree(local / "source", outputs, copy_function=os.link)
        staged = StagedJob([], workspace.stdin, workspace.stdout, workspace.stderr)
        staged.output_prefixes = [parse_uri(uri, prefix=True)]
        stager.stage_out(staged, workspace)
    print(json.dumps({"seconds": time.perf_counter() - started}), flush=True)
    os._exit(0)  # as a pool child leaves: the engine's native threads may still be winding down


def ours(mode: str, uri: str, local: Path, cache: str = "", jobs: int = 1) -> float:
    output = subprocess.run(
        [sys.executable, __file__, "--child", mode, uri, str(local), cache, str(jobs)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return float(json.loads(output)["seconds"])


def timed(command: list[str], environment: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, **(environment or {})})
    return time.perf_counter() - started


def rclone_environment() -> dict[str, str]:
    return {
        "RCLONE_CONFIG_SW_TYPE": "s3",
        "RCLONE_CONFIG_SW_PROVIDER": "SeaweedFS",
        "RCLONE_CONFIG_SW_ENDPOINT": os.environ["AWS_ENDPOINT_URL_S3"],
        "RCLONE_CONFIG_SW_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "RCLONE_CONFIG_SW_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        "RCLONE_CONFIG_SW_REGION": "us-east-1",
        "RCLONE_CONFIG": "/dev/null",
    }


def peers(mode: str, prefix: str, local: Path, fresh: Callable[[], str]) -> dict[str, Callable[[], float]]:
    """Each peer's command for one transfer of `prefix` (a key prefix ending in /) to or from `local`."""
    endpoint = os.environ["AWS_ENDPOINT_URL_S3"]
    s5 = [str(BIN / "s5cmd"), "--endpoint-url", endpoint, "--log", "error", "cp"]
    rclone = [str(BIN / "rclone"), "copy", "--transfers", "64", "--checkers", "64", "--s3-no-check-bucket"]
    if mode == "download":
        return {
            "s5cmd": lambda: timed([*s5, f"s3://{BUCKET}/{prefix}*", f"{fresh()}/"]),
            "rclone": lambda: timed([*rclone, f"sw:{BUCKET}/{prefix}", fresh()], rclone_environment()),
            "obstore": lambda: timed([sys.executable, "-c", OBSTORE_SCRIPT, mode, prefix, fresh()]),
        }
    return {
        "s5cmd": lambda: timed([*s5, f"{local}/", f"s3://{BUCKET}/{fresh()}/"]),
        "rclone": lambda: timed([*rclone, str(local), f"sw:{BUCKET}/{fresh()}"], rclone_environment()),
        "obstore": lambda: timed([sys.executable, "-c", OBSTORE_SCRIPT, mode, f"{fresh()}/", str(local)]),
    }


def measure(label: str, units: float, unit: str, runs: dict[str, Callable[[], float]], rounds: int) -> None:
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for round_index in range(rounds):
        # Each round starts with another client: the first read after a write finds the server cold.
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            seconds[name].append(runs[name]())
    rates = {name: units / statistics.median(values) for name, values in seconds.items()}
    ours_rate = rates["this worker"]
    print(f"{label}:")
    for name, rate in rates.items():
        each = ", ".join(f"{units / value:.0f}" for value in seconds[name])
        ours_too = name == "this worker" or name.startswith(" ")  # the same code another way: no ratio
        ratio = "" if ours_too else f"   this worker at {ours_rate / rate:.2f}x"
        print(f"  {name:12} {rate:8.0f} {unit} [{each}]{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small-count", type=int, default=1000)
    parser.add_argument("--large-mib", type=int, default=1024)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        mode, uri, local, cache, jobs = options.child
        staged_child(mode, uri, Path(local), cache, int(jobs))
        return
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as temporary:
        root = Path(temporary)
        with seaweed_in_environment(root / "seaweedfs", (BUCKET,)):
            run_all(root, options)


def run_all(root: Path, options: argparse.Namespace) -> None:
    client = boto3.client("s3")
    counter = iter(range(1_000_000))

    def fresh() -> str:
        path = root / f"run-{next(counter)}"
        return str(path)

    def fresh_and_clean() -> str:
        clean(root)
        return fresh()

    def key() -> str:
        return f"up-{next(counter)}"

    small = root / "small" / "source"
    small.mkdir(parents=True)
    for index in range(options.small_count):
        (small / f"{index:05}.bin").write_bytes(os.urandom(SMALL_SIZE))
    subprocess.run([str(BIN / "s5cmd"), "--endpoint-url", os.environ["AWS_ENDPOINT_URL_S3"], "--log", "error",
                    "cp", f"{small}/", f"s3://{BUCKET}/small/"], check=True)  # fmt: skip
    count = options.small_count
    warm_cache = fresh()
    ours("download", f"s3://{BUCKET}/small/", Path(fresh()), warm_cache)
    print(f"SeaweedFS on loopback; {os.cpu_count()} cores; medians of {options.rounds} rounds (each round's figure)")
    measure(f"{count} x 64 KiB, download", count, "obj/s", {
        "this worker": lambda: ours("download", f"s3://{BUCKET}/small/", Path(fresh())),
        "  cold cache": lambda: ours("download", f"s3://{BUCKET}/small/", Path(fresh()), fresh()),
        "  warm cache": lambda: ours("download", f"s3://{BUCKET}/small/", Path(fresh()), warm_cache),
        **peers("download", "small/", small, fresh),
    }, options.rounds)  # fmt: skip
    measure(f"{count} x 64 KiB, upload", count, "obj/s", {
        "this worker": lambda: ours("upload", f"s3://{BUCKET}/{key()}/", small.parent),
        **peers("upload", "", small, key),
    }, options.rounds)  # fmt: skip
    shutil.rmtree(root / "small")
    clean(root)

    large = root / "large" / "source"
    large.mkdir(parents=True)
    chunk = os.urandom(1 << 20)
    with (large / "large.bin").open("wb") as handle:
        for _ in range(options.large_mib):
            handle.write(chunk)
    # Never "auto": the CRT client it may pick ignores the endpoint. Parts carry CRC32s (composite).
    classic = boto3.s3.transfer.TransferConfig(preferred_transfer_client="classic")
    client.upload_file(str(large / "large.bin"), BUCKET, "large/large.bin", Config=classic)
    mib = options.large_mib
    measure(f"one {mib} MiB object, download", mib, "MiB/s", {
        "this worker": lambda: ours("download", f"s3://{BUCKET}/large/large.bin", Path(fresh_and_clean())),
        **peers("download", "large/", large, fresh_and_clean),
    }, options.rounds)  # fmt: skip
    clean(root)
    measure(f"one {mib} MiB object, upload", mib, "MiB/s", {
        "this worker": lambda: ours("upload", f"s3://{BUCKET}/{key()}/", large.parent),
        **peers("upload", "", large, key),
    }, options.rounds)  # fmt: skip
    clean(root)
    measure(f"the same {mib} MiB input for {CACHE_JOBS} jobs in a row", CACHE_JOBS * mib, "MiB/s", {
        "this worker": lambda: ours("download", f"s3://{BUCKET}/large/large.bin", Path(fresh()), fresh(), CACHE_JOBS),
        "no cache": lambda: sum(ours("download", f"s3://{BUCKET}/large/large.bin", Path(fresh()))
                                for _ in range(CACHE_JOBS)),
    }, options.rounds)  # fmt: skip


def clean(root: Path) -> None:
    """Remove earlier runs' local copies: the disk and the page cache are the box's."""
    for path in root.glob("run-*"):
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
