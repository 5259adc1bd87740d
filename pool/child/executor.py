"""One job from message to result: validate, stage in, run, stage out, clean up."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from common import faults
from common.logs import add_job_fields
from common.sizes import format_size
from journal.base import JobJournal, JournalError
from pool.child.attempt import Attempt
from pool.child.gate import (
    Canceled,
    ClaimLost,
    FinishedElsewhere,
    Go,
    HeldElsewhere,
    JobGate,
    RunningJobLink,
    Verdict,
    owner_name,
)
from pool.child.limits import resolve_limits
from pool.child.progress import ProgressWatcher
from pool.child.routes import Route, Runners, route
from pool.child.status import classify, fail
from pool.child_settings import ChildSettings
from pool.notice_board import JobAccepted
from pool.outcomes import new_result
from pool.wire import (
    AnyReport,
    DuplicateReport,
    JobAssignment,
    JobEventNote,
    StaleReport,
    TableNote,
)
from protocol.argv import build_argv
from protocol.body import DecodedBody, Envelope, decode_body
from protocol.request import JobRequest, RequestRejected
from protocol.result import (
    JobEvent,
    JobResult,
    SkippedPath,
    Status,
    Usage,
    WorkerIdentity,
    utc_timestamp,
)
from queues import check_reply_to
from runners.native import NativeRunner
from runners.process import ImageRejected, Runner, RunnerFault, RunOutcome, RunSpec, StopReason
from runners.pulls import PullNote
from staging.errors import StagingFault, StagingRejected
from staging.file_store import LocalFileStore
from staging.input_cache import InputCache
from staging.s3_store import S3Store
from staging.stager import Stager
from staging.watch import bounded_transfer
from staging.workspace import Workspace, read_stream

log = logging.getLogger(__name__)


class JobExecutor:
    def __init__(
        self,
        settings: ChildSettings,
        slot: int,
        *,
        on_job_start: Callable[[int], None] | None = None,
        on_accepted: Callable[[JobAccepted], None] | None = None,
        journal: JobJournal | None = None,
        on_event: Callable[[JobEventNote], None] | None = None,
        link: RunningJobLink | None = None,
        on_pull: Callable[[PullNote], None] | None = None,
        on_table: Callable[[TableNote], None] | None = None,
    ) -> None:
        """`journal`: where to look up job ids already finished (deduplication by job id);
        `on_event`: where a job's events go, for a request that asks for them; `on_pull`: where
        word of its image pulls goes; `on_table`: word of the job table's state."""
        self.settings = settings
        self.journal = journal
        self._on_accepted = on_accepted or (lambda _notice: None)
        self._on_event = on_event or (lambda _note: None)
        self.link = link
        self.identity = WorkerIdentity.of_this_host(settings.supervisor_pid, settings.instance)
        cache = settings.input_cache
        self.stager = Stager(
            {"file": LocalFileStore(list(settings.file_roots)), "s3": S3Store(settings.transfer_concurrency)},
            job_disk_bytes=settings.job_disk_bytes,
            cache=None if cache is None else InputCache(cache.directory, cache.size_bytes, cache.reserve_bytes),
        )
        self.slot = slot
        tell_table = on_table or (lambda _note: None)
        owner = owner_name(settings.instance, settings.supervisor_pid)
        self.gate = JobGate(settings.gate, owner, lambda problem: tell_table(TableNote(problem)))
        docker: Runner | None = None
        if settings.docker is not None:
            from runners.container import DockerRunner  # noqa: PLC0415 (the docker SDK only where it is used)

            docker = DockerRunner(settings.docker, slot, on_pull=on_pull)
        native = NativeRunner(settings.pass_env, slot, on_job_start) if settings.native else None
        self.runners = Runners(native, docker)
        self._last_workspace: Workspace | None = None  # removed for good as the child leaves
        self._spare_directory: Path | None = None  # the last job's directory, left empty: the next one's

    def close(self) -> None:
        """Remove what the executor keeps between jobs: its last job's emptied directory and
        stream files."""
        if self._last_workspace is not None:
            self._last_workspace.discard()
            self._last_workspace = self._spare_directory = None

    def execute(self, assignment: JobAssignment) -> AnyReport:
        attempt = self._begin(assignment)
        duplicate = self._finished_before(attempt)
        if duplicate is not None:
            return duplicate
        verdict = self._admit(attempt)
        if isinstance(verdict, FinishedElsewhere | HeldElsewhere):
            return attempt.not_run_here(verdict)
        claim = attempt.claim = verdict.claim
        result = attempt.result
        try:
            if isinstance(verdict, Canceled):
                fail(result, Status.CANCELED, "canceled", f"{verdict.cancel.describe()} (before it started)")
                attempt.retryable = False
            else:
                log.info("job started", extra={"fence": claim.fence} if claim else None)
                with self.gate.leased(claim, self.link):
                    attempt.retryable = self._attempt(attempt)
            attempt.finish()
            final = self.settings.policy.is_final(result.status, attempt.retryable, assignment.receive_count)
            self.gate.settle(result.id, claim, str(result.status), result.to_json(), final)
        except ClaimLost:  # the supervisor says so, and publishes nothing of it
            return StaleReport(assignment.message_id, result.id, claim.fence if claim else 0)
        return attempt.report()

    def _begin(self, assignment: JobAssignment) -> Attempt:
        """The one decode of the body: even a rejection knows its job id and reply queue."""
        result = new_result(assignment.message_id, assignment.receive_count, self.identity, datetime.now(UTC))
        decoded = self._decode(assignment)
        envelope = decoded.envelope
        reply_to, reply_to_problem = self._check_reply_to(envelope.reply_to)
        result.id = envelope.id or assignment.message_id
        result.service, result.queue = envelope.service, envelope.queue
        self._on_accepted(JobAccepted(assignment.message_id, result.id, result.service, reply_to, result.queue))
        add_job_fields(job_id=result.id, service=result.service)
        return Attempt(assignment, decoded, result, reply_to, reply_to_problem, time.monotonic())

    def _admit(self, attempt: Attempt) -> Verdict:
        """The gate's verdict for a request to run (a rejection or a test message needs none)."""
        request = attempt.decoded.request
        if request is None or request.test:  # a body with a defect has no request
            return Go(None)
        return self.gate.admit(attempt.job_id, attempt.message_id)

    def _attempt(self, attempt: Attempt) -> bool:
        """Run the job, filling in its result; whether an error is worth another attempt."""
        result, defect, decoded = attempt.result, attempt.assignment.defect, attempt.decoded
        try:
            if defect is not None and defect.retryable:
                raise StagingFault(defect.problem)
            if decoded.rejection is not None:
                raise decoded.rejection
            request = decoded.request
            assert request is not None
            found = self._check_addressed_to_us(request, attempt.reply_to_problem)
            self._run(attempt, request, found)
        except ClaimLost:
            raise
        except RequestRejected as exc:
            fail(result, Status.REJECTED, "invalid_request", str(exc))
        except ImageRejected as exc:
            fail(result, Status.REJECTED, "image", str(exc))
        except StagingRejected as exc:
            fail(result, Status.REJECTED, "staging", str(exc))
        except StagingFault as exc:
            fail(result, Status.ERROR, "staging", str(exc))
            return exc.retryable
        except RunnerFault as exc:
            fail(result, Status.ERROR, "runner", str(exc))
        except OSError as exc:  # the scratch disk: full, read-only, gone
            fail(result, Status.ERROR, "system", f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug must cost one job, never the child
            log.exception("job failed unexpectedly")
            fail(result, Status.ERROR, "internal", f"{type(exc).__name__}: {exc}")
        return True

    def _finished_before(self, attempt: Attempt) -> DuplicateReport | None:
        """With deduplication by job id: a job the journal has as finished under another
        message is not run again (the supervisor deletes this message)."""
        decoded = attempt.decoded
        if self.journal is None or decoded.request is None or decoded.envelope.id is None:
            return None
        try:
            finished = self.journal.finished_job(attempt.job_id)
        except JournalError as exc:
            log.error("cannot look the job up in the journal; running it", extra={"error": str(exc)})
            return None
        if finished is None or finished.message_id == attempt.message_id:
            return None
        log.info("job already finished under another message", extra={"finished_as": finished.message_id})
        return DuplicateReport(attempt.message_id, attempt.job_id, str(finished.status), finished.message_id)

    def _decode(self, assignment: JobAssignment) -> DecodedBody:
        """The request; or, for a body the queue could not fetch, a rejection or nothing to read."""
        defect = assignment.defect
        if defect is None:
            return decode_body(assignment.body, self.settings.max_body_bytes)
        rejection = None if defect.retryable else RequestRejected("body", defect.problem)
        return DecodedBody(Envelope(), rejection=rejection)

    def _inline_stream(self, name: str, path: Path, result: JobResult) -> str:
        """A `pipe` stream for the result, cut at --max-inline-output (say so in `skipped`)."""
        limit = self.settings.max_inline_output_bytes
        text, size = read_stream(path, limit)
        if size > limit:
            reason = f"cut to its first {format_size(limit)} of {size} bytes; use a uri stream for more"
            result.skipped.append(SkippedPath(name, reason))
        return text

    def _check_reply_to(self, name: str | None) -> tuple[str | None, str | None]:
        """The reply queue a body names, checked once: (name, None) if usable, else (None,
        why not); a rejection's result then goes to the worker's result queue."""
        if name is None:
            return None, None
        try:
            check_reply_to(self.settings.queue_spec, name)
        except ValueError as exc:
            return None, str(exc)
        return name, None

    def _check_addressed_to_us(self, request: JobRequest, reply_to_problem: str | None) -> Route:
        found = route(self.settings, self.runners, request)
        if reply_to_problem is not None:
            raise RequestRejected("reply_to", reply_to_problem)
        return found

    def _run(self, attempt: Attempt, request: JobRequest, found: Route) -> None:
        """Stage in, run and stage out, in a job directory of its own."""
        result = attempt.result
        if request.test:
            result.status = Status.ALIVE
            return
        assert request.command is not None
        limits = resolve_limits(request, found.ceilings, self.settings.capacity)
        found.runner.prepare(request.service)
        workspace = Workspace.create(self.settings.scratch_dir, self.slot, reuse=self._spare_directory)
        self._last_workspace, self._spare_directory = workspace, None
        try:
            command = request.command
            # A thread per transfer direction only where there is something to transfer.
            transfer_s = limits.transfer_timeout_s if command.names_files else None
            stage_in = partial(self.stager.stage_in, command, workspace, disk_limit_bytes=limits.disk_bytes)
            staged = attempt.staged = bounded_transfer("stage-in", transfer_s, stage_in)
            argv = build_argv(found.command, request.command.arguments, staged.argument_values)
            spec = RunSpec(
                argv,
                workspace.root,
                staged.stdin_path,
                staged.stdout_path,
                staged.stderr_path,
                limits,
                self.settings.kill_grace_s,
                image=request.service,
                labels={"api-worker.job-id": result.id, "api-worker.message-id": result.message_id},
                link=self.link,
                gpus=attempt.assignment.gpus if self.settings.capacity.gpus else None,
            )
            outcome = self._run_command(found.runner, spec, request, attempt)
            classify(result, outcome, limits)
            if outcome.stopped_for is StopReason.CANCELED:
                cancel = self.gate.cancel_of(result.id)
                fail(result, Status.CANCELED, "canceled", cancel.describe() if cancel else "canceled")
            else:
                if outcome.stopped_for is StopReason.CLAIM_LOST or not self.gate.still_ours(attempt.claim):
                    raise ClaimLost(result.id)
                report = bounded_transfer("stage-out", transfer_s, partial(self.stager.stage_out, staged, workspace))
                result.outputs, result.skipped = report.uploaded, report.skipped
            if staged.stdout_uri is None:
                result.stdout = self._inline_stream("stdout", staged.stdout_path, result)
            if staged.stderr_uri is None:
                result.stderr = self._inline_stream("stderr", staged.stderr_path, result)
        finally:
            self._spare_directory = self._clean(workspace)

    def _clean(self, workspace: Workspace) -> Path | None:
        """Give cached inputs back to the input cache, then empty the job's directory."""
        self.stager.release(workspace)
        return workspace.remove()

    def _run_command(self, runner: Runner, spec: RunSpec, request: JobRequest, attempt: Attempt) -> RunOutcome:
        """Run it, unless a cancel came while its inputs were staged."""
        if self.link is not None and self.link.stop_requested() is StopReason.CANCELED:
            return RunOutcome(None, None, StopReason.CANCELED, Usage())
        watcher = self._announce_start(request, attempt.result, spec, attempt.reply_to)
        try:
            return runner.run(spec)
        finally:
            if watcher is not None:
                watcher.finish()

    def _announce_start(
        self, request: JobRequest, result: JobResult, spec: RunSpec, reply_to: str | None
    ) -> ProgressWatcher | None:
        """For a request that asks for events: a watcher that sends a `running` event (as of
        now) and turns the job's progress file into `progress` events until the job ends."""
        if not request.events:
            return None
        events = _EventSender(self._on_event, result.message_id, reply_to)
        started_at = utc_timestamp()
        watcher = ProgressWatcher(
            spec.progress_path,
            self.settings.progress_interval_s,
            lambda progress: events.send(JobEvent.about(result, "progress", progress=progress)),
            announce=lambda: events.send(JobEvent.about(result, "running", started_at=started_at, slot=self.slot)),
        )
        watcher.start()
        return watcher


class _EventSender:
    """Numbers one job's events as they go to the supervisor."""

    def __init__(self, emit: Callable[[JobEventNote], None], message_id: str, reply_to: str | None) -> None:
        self.emit = emit
        self.message_id = message_id
        self.reply_to = reply_to
        self.sequence = 0

    def send(self, event: JobEvent) -> None:
        self.sequence += 1
        try:
            faults.check("event")
            self.emit(JobEventNote(self.message_id, event.to_json(), self.reply_to, self.sequence, event.progress))
        except Exception:  # an event is never worth the job
            log.warning("could not pass on an event of the job", exc_info=True)
