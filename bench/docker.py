"""Trivial container jobs per second: `supervisor.py --workers 4 docker` against a plain docker
SDK loop (`containers.run(..., remove=True)` from 4 threads), in the same run, on the same engine.
Target: >= 0.9x the plain loop.

The image is built locally (busybox-static, `docker import`), so no registry is needed.
Usage: python bench/docker.py [--jobs N] [--rounds R]   (DOCKER_HOST names the engine)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path and its name would hide the
# docker package: look from the repository instead.
BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:] = [str(REPO), *(entry for entry in sys.path if Path(entry or ".").resolve() != BENCH)]

import docker  # noqa: E402

from bench.throughput import Supervisor  # noqa: E402
from testkit.images import BASE_IMAGE, build_test_images  # noqa: E402

WORKERS = 4


def plain_rate(client: docker.DockerClient, image: str, jobs: int) -> float:
    def run(_: int) -> None:
        client.containers.run(image, ["true"], remove=True)

    started = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(run, range(jobs)))
    return jobs / (time.perf_counter() - started)


def supervisor_rate(directory: Path, image: str, jobs: int) -> float:
    job = json.dumps(
        {"service": image, "queue": "docker", "command": {"arguments": [{"type": "parameter", "value": "true"}]}}
    )
    supervisor = Supervisor(directory, WORKERS, [], runner=["docker", "--pull", "never"])
    try:
        return supervisor.rate(job, jobs)
    finally:
        supervisor.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100, help="jobs per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of both; medians are reported")
    options = parser.parse_args()
    client = docker.from_env()
    with tempfile.TemporaryDirectory() as scratch:
        build_test_images(client.api, Path(scratch) / "image")
        image = BASE_IMAGE  # bare busybox, ENTRYPOINT sh -c
        plain_rate(client, image, 8)  # warm the engine up
        ratios, plains, ours = [], [], []
        for round_number in range(options.rounds):
            plain = plain_rate(client, image, options.jobs)
            mine = supervisor_rate(Path(scratch) / f"round-{round_number}", image, options.jobs)
            plains.append(plain)
            ours.append(mine)
            ratios.append(mine / plain)
            print(f"round {round_number + 1}: plain SDK loop {plain:.2f} jobs/s, supervisor {mine:.2f} jobs/s, "
                  f"{mine / plain:.2f}x")  # fmt: skip
    print(
        f"median of {options.rounds} rounds of {options.jobs} `true` containers, {WORKERS} at once: "
        f"plain SDK loop {statistics.median(plains):.2f} jobs/s, supervisor.py --workers {WORKERS} docker "
        f"{statistics.median(ours):.2f} jobs/s, ratio {statistics.median(ratios):.2f}x (target >= 0.9x)"
    )


if __name__ == "__main__":
    main()
