"""Prometheus metrics of the image cache and the pulls behind it."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from monitoring.metrics import REGISTRY

PULL_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800)

IMAGE_PULL_SECONDS = Histogram(
    "api_worker_image_pull_seconds",
    "Time one image pull took, for pulls that succeeded",
    buckets=PULL_BUCKETS,
    registry=REGISTRY,
)
IMAGE_PULL_FAILURES = Counter(
    "api_worker_image_pull_failures",
    "Image pulls that failed, by reason: auth, not_found, timeout, engine, disk, credentials",
    ["reason"],
    registry=REGISTRY,
)
IMAGE_REMOVALS = Counter(
    "api_worker_image_removals",
    "Images the cache removed, by reason: disk (over --image-cache-high) or cap (over --image-cache-max)",
    ["reason"],
    registry=REGISTRY,
)
IMAGE_CACHE_BYTES = Gauge(
    "api_worker_image_cache_bytes",
    "What the images this worker pulled take on the engine, at the last look",
    registry=REGISTRY,
)


def record_image_pull(seconds: float, failure: str | None) -> None:
    if failure is None:
        IMAGE_PULL_SECONDS.observe(seconds)
    else:
        IMAGE_PULL_FAILURES.labels(failure).inc()


def record_image_removal(reason: str) -> None:
    IMAGE_REMOVALS.labels(reason).inc()


def set_image_cache_bytes(size_bytes: int) -> None:
    IMAGE_CACHE_BYTES.set(size_bytes)
