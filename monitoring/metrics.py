"""Prometheus metrics of the supervisor, in a registry of their own."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from monitoring.state import WorkerState
from protocol.result import Status

_services_seen: set[str] = set()  # each gauge once set is kept current, down to 0
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # the supervisor's own memory, CPU and open files
DURATION_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600)
BYTES_BUCKETS = tuple(float(2**power) for power in range(10, 41, 3))  # 1 KiB .. 1 TiB

JOBS = Counter("api_worker_jobs", "Jobs finished, by result status", ["status"], registry=REGISTRY)
JOB_DURATION = Histogram(
    "api_worker_job_duration_seconds",
    "Time from a job's start in its child to its result, by status",
    ["status"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
STAGED_BYTES = Histogram(
    "api_worker_staged_bytes",
    "Bytes one job downloaded (in) or uploaded (out)",
    ["direction"],
    buckets=BYTES_BUCKETS,
    registry=REGISTRY,
)
SLOTS = Gauge("api_worker_slots", "Pool slots by state: busy, idle or starting", ["state"], registry=REGISTRY)
IN_FLIGHT = Gauge(
    "api_worker_messages_in_flight",
    "Messages received and not yet answered (waiting, running, or their result not yet sent)",
    registry=REGISTRY,
)
HELD = Gauge(
    "api_worker_messages_held",
    "Messages received and waiting for a slot: prefetched, or behind their group's running job",
    registry=REGISTRY,
)
QUEUE_ERRORS = Counter("api_worker_queue_errors", "Failed queue calls, by call", ["call"], registry=REGISTRY)
QUEUE_CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25)
QUEUE_CALLS = Histogram(
    "api_worker_queue_call_seconds",
    "How long each call to a remote queue (SQS) took, by call; a receive's time includes its long poll",
    ["call"],
    buckets=QUEUE_CALL_BUCKETS,
    registry=REGISTRY,
)
QUEUE_CALL_NAMES = ("receive", "send", "delete", "change_visibility")
DUPLICATE_DELIVERIES = Counter(
    "api_worker_duplicate_deliveries",
    "Messages received again after their job had finished: deleted from the journal's record, not run",
    registry=REGISTRY,
)
THREAD_FAILURES = Counter(
    "api_worker_thread_failures",
    "Unexpected exceptions in a helper thread of the supervisor (intake, outbox), which then restarts",
    ["thread"],
    registry=REGISTRY,
)
CHILD_RESTARTS = Counter("api_worker_child_restarts", "Children that died and were replaced", registry=REGISTRY)
LOOP_LAST_RUN = Gauge(
    "api_worker_loop_last_run_timestamp_seconds", "When the supervisor loop last ran (epoch)", registry=REGISTRY
)
JOBS_STARTED = Counter("api_worker_jobs_started", "Jobs handed to a slot", registry=REGISTRY)
QUEUE_WAIT = Histogram(
    "api_worker_queue_wait_seconds",
    "Time from a message's sending to its job's start here (on the queue, then held)",
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "api_worker_dead_letters", "Messages whose outcome copies them to the dead-letter queue", registry=REGISTRY
)
HEALTHY = Gauge("api_worker_healthy", "1 when /healthz answers 200, else 0", registry=REGISTRY)
JOURNAL_WRITABLE = Gauge(
    "api_worker_journal_writable", "1 while the journal's writes go through, 0 after one failed", registry=REGISTRY
)
DRAINING = Gauge("api_worker_draining", "1 while the worker is drained: it receives no new jobs", registry=REGISTRY)
# Label values known from the start, exported at 0, so that rates and alerts see them before the first event.
HELPER_THREADS = (
    "intake",
    "outbox",
    "journal-pruner",
    "image-cache",
    "cancel-watch",
    "monitoring",
    "hand-over",
    "fleet-watch",
)
INTERRUPTION_SOURCES = ("spot", "rebalance", "lifecycle", "sigterm")


SERVICE_JOBS = Counter(
    "api_worker_service_jobs", "Jobs finished, by service and result status", ["service", "status"], registry=REGISTRY
)
SERVICE_RUNNING = Gauge(
    "api_worker_service_jobs_running", "Jobs running now, by service", ["service"], registry=REGISTRY
)
SCRATCH_FREE = Gauge(
    "api_worker_scratch_free_bytes", "Free bytes on the scratch filesystem at the last look", registry=REGISTRY
)
SCRATCH_RESERVE = Gauge(
    "api_worker_scratch_reserve_bytes", "The scratch filesystem's reserve (--disk-reserve)", registry=REGISTRY
)
CAPACITY = Gauge(
    "api_worker_capacity", "The box's capacity jobs are admitted against, by resource", ["resource"], registry=REGISTRY
)
RESERVED = Gauge("api_worker_reserved", "What the running jobs reserve, by resource", ["resource"], registry=REGISTRY)
INPUT_CACHE = Counter(
    "api_worker_input_cache",
    "Inputs linked from the box's input cache (hit), downloaded into it (miss), and entries evicted",
    ["event"],
    registry=REGISTRY,
)
INPUT_CACHE_BYTES = Counter(
    "api_worker_input_cache_bytes",
    "Input bytes linked from the cache (saved: not downloaded) or downloaded into it (fetched)",
    ["kind"],
    registry=REGISTRY,
)
INTERRUPTIONS = Counter(
    "api_worker_interruptions",
    "Notices that the box is going (spot, lifecycle, sigterm) or should be left (rebalance)",
    ["source"],
    registry=REGISTRY,
)
JOBS_RELEASED = Counter(
    "api_worker_jobs_released",
    "Messages given back to the queue unfinished (held or interrupted), by reason",
    ["reason"],
    registry=REGISTRY,
)
SLOTS_WANTED = Gauge(
    "api_worker_slots_wanted",
    "Slots the queue wants: jobs running and held here plus the queue's visible backlog (see /scaling)",
    registry=REGISTRY,
)
SCALE_IN_PROTECTED = Gauge(
    "api_worker_scale_in_protected", "1 while this worker keeps its box protected from scale-in", registry=REGISTRY
)
JOBS_WAITING_FOR_SHAPE = Gauge(
    "api_worker_jobs_waiting_for_shape",
    "Jobs this worker passed on lately to wait for a box of another shape, by shape",
    ["shape"],
    registry=REGISTRY,
)
_SHAPES_WAITED_FOR: set[str] = set()
OTHER_SERVICE = "other"  # a service this worker was not configured with: no label of its own


def service_label(service: str | None, queue: str | None, known: frozenset[str]) -> str:
    """A job's service as a label: a configured service by name; a docker or unconfigured native
    job by its kind. A message names its own service, so a label never takes it on trust."""
    if service is not None and service in known:
        return service
    return queue if queue in ("docker", "native") else OTHER_SERVICE


def record_job(status: str, duration_s: float, bytes_in: int, bytes_out: int, service: str = OTHER_SERVICE) -> None:
    JOBS.labels(status).inc()
    SERVICE_JOBS.labels(service, status).inc()
    JOB_DURATION.labels(status).observe(duration_s)
    STAGED_BYTES.labels("in").observe(bytes_in)
    STAGED_BYTES.labels("out").observe(bytes_out)


def record_input_cache(*, hits: int, misses: int, evicted: int, bytes_saved: int, bytes_fetched: int) -> None:
    INPUT_CACHE.labels("hit").inc(hits)
    INPUT_CACHE.labels("miss").inc(misses)
    INPUT_CACHE.labels("evicted").inc(evicted)
    INPUT_CACHE_BYTES.labels("saved").inc(bytes_saved)
    INPUT_CACHE_BYTES.labels("fetched").inc(bytes_fetched)


def input_cache_totals() -> dict[str, int]:
    """The cache's counts since start-up: hit, miss, evicted, saved and fetched (bytes)."""
    return {**_totals(INPUT_CACHE), **_totals(INPUT_CACHE_BYTES)}


def start_metrics() -> None:
    """Every known label value at 0 (a rate over a series that does not exist yet is no rate)."""
    for status in Status:
        JOBS.labels(status)
        JOB_DURATION.labels(status)
    for thread in HELPER_THREADS:
        THREAD_FAILURES.labels(thread)
    for direction in ("in", "out"):
        STAGED_BYTES.labels(direction)
    record_input_cache(hits=0, misses=0, evicted=0, bytes_saved=0, bytes_fetched=0)
    for call in QUEUE_CALL_NAMES:
        QUEUE_CALLS.labels(call)
    for source in INTERRUPTION_SOURCES:
        INTERRUPTIONS.labels(source)


def record_start(sent_at: float | None, now: float) -> None:
    JOBS_STARTED.inc()
    if sent_at is not None:
        QUEUE_WAIT.observe(max(0.0, now - sent_at))


def watch_slots_wanted(wanted: Callable[[], float]) -> None:
    """`api_worker_slots_wanted` from `wanted()` at each scrape."""
    SLOTS_WANTED.set_function(wanted)


def watch_health(healthy: Callable[[], bool]) -> None:
    """`api_worker_healthy` from `healthy()` at each scrape, as /healthz answers: a loop that
    stopped publishing its state still shows as stuck."""
    HEALTHY.set_function(lambda: 1.0 if healthy() else 0.0)


def record_dead_letter() -> None:
    DEAD_LETTERS.inc()


def record_queue_call(call: str, seconds: float) -> None:
    QUEUE_CALLS.labels(call).observe(seconds)


def record_queue_error(call: str) -> None:
    QUEUE_ERRORS.labels(call).inc()


def record_duplicate_delivery() -> None:
    DUPLICATE_DELIVERIES.inc()


def record_thread_failure(thread: str) -> None:
    THREAD_FAILURES.labels(thread).inc()


def record_child_restart() -> None:
    CHILD_RESTARTS.inc()


def record_interruption(source: str) -> None:
    INTERRUPTIONS.labels(source).inc()


def record_released(reason: str, count: int) -> None:
    JOBS_RELEASED.labels(reason).inc(count)


def set_jobs_waiting_for_shape(counts: dict[str, int]) -> None:
    """One series per shape waited for; a shape no longer waited for drops to 0."""
    _SHAPES_WAITED_FOR.update(counts)
    for shape in _SHAPES_WAITED_FOR:
        JOBS_WAITING_FOR_SHAPE.labels(shape).set(counts.get(shape, 0))


def released_counts() -> dict[str, int]:
    """Messages given back unfinished since start-up, by reason."""
    return _totals(JOBS_RELEASED)


def set_scale_in_protected(protected: bool) -> None:
    SCALE_IN_PROTECTED.set(1 if protected else 0)


def _totals(counter: Counter) -> dict[str, int]:
    """A counter's totals by the value of its one label ("" for an unlabelled counter)."""
    return {
        next(iter(sample.labels.values()), ""): int(sample.value)
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


def jobs_by_status() -> dict[str, int]:
    return {status: count for status, count in _totals(JOBS).items() if count}


def jobs_by_service() -> dict[str, dict[str, int]]:
    """Finished jobs by service, then by status."""
    found: dict[str, dict[str, int]] = {}
    for metric in SERVICE_JOBS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                found.setdefault(sample.labels["service"], {})[sample.labels["status"]] = int(sample.value)
    return found


def queue_error_count() -> int:
    return sum(_totals(QUEUE_ERRORS).values())


def child_restart_count() -> int:
    return sum(_totals(CHILD_RESTARTS).values())


def publish_gauges(state: WorkerState) -> None:
    SLOTS.labels("busy").set(state.busy)
    SLOTS.labels("idle").set(state.idle)
    SLOTS.labels("starting").set(state.starting)
    IN_FLIGHT.set(state.in_flight)
    HELD.set(state.held)
    if state.scratch_free_bytes is not None:
        SCRATCH_FREE.set(state.scratch_free_bytes)
    SCRATCH_RESERVE.set(state.scratch_reserve_bytes)
    for name, resource in state.resources.items():
        CAPACITY.labels(name).set(resource.capacity)
        RESERVED.labels(name).set(resource.reserved)
    running = Tally(job.service or OTHER_SERVICE for job in state.running)
    for service in _services_seen | running.keys():
        SERVICE_RUNNING.labels(service).set(running.get(service, 0))
    _services_seen.update(running)
    LOOP_LAST_RUN.set(state.updated_at)
    JOURNAL_WRITABLE.set(0 if state.journal_problem else 1)
    DRAINING.set(1 if state.draining else 0)
