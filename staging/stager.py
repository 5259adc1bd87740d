"""Stage a job's files in before the run and out after it.

Inputs (argument files, `stdin`, `command.input` prefixes) are fetched into the job's
`in/` mirror; outputs are taken from its `out/` mirror. Every path the command sees is
inside the job directory, and nothing outside it is ever uploaded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar

from common.sizes import format_size
from protocol.request import Argument, Command, Stream
from protocol.result import SkippedPath, UploadedObject
from protocol.uris import ObjectUri, UriRejected, parse_uri
from staging.errors import StagingFault, StagingRejected
from staging.input_cache import CacheCounters, CachedLink, InputCache
from staging.mirror import mirror_path
from staging.prefix_walk import walk_prefix
from staging.read_ahead import ReadAhead
from staging.stores import ObjectStore, StoredObject
from staging.watch import TransferWatch
from staging.workspace import Workspace, is_empty_file

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class StagedJob:
    """What the runner needs, and what stage-out must collect afterwards."""

    argument_values: list[str]
    stdin_path: Path
    stdout_path: Path
    stderr_path: Path
    stdout_uri: ObjectUri | None = None
    stderr_uri: ObjectUri | None = None
    output_files: list[tuple[Path, ObjectUri]] = field(default_factory=list)
    output_prefixes: list[ObjectUri] = field(default_factory=list)
    bytes_in: int = 0  # downloaded for the job, or linked from the input cache
    cache: CacheCounters | None = None  # what its inputs took from the input cache, when there is one


@dataclass
class StageOutReport:
    uploaded: list[UploadedObject] = field(default_factory=list)
    skipped: list[SkippedPath] = field(default_factory=list)


class Stager:
    def __init__(
        self,
        stores: Mapping[str, ObjectStore],
        *,
        job_disk_bytes: int | None = None,
        cache: InputCache | None = None,
    ) -> None:
        """`cache`: where s3:// inputs are kept between jobs on this box (none: every job downloads)."""
        self.stores = stores
        self.job_disk_bytes = job_disk_bytes
        self.cache = cache
        self._cached_links: dict[Path, list[CachedLink]] = {}  # by job directory, until released

    def _store(self, uri: ObjectUri) -> ObjectStore:
        store = self.stores.get(uri.scheme)
        if store is None:
            raise StagingRejected(f"{uri}: {uri.scheme}:// is not enabled on this worker")
        return store

    def stage_in(
        self,
        command: Command,
        workspace: Workspace,
        watch: TransferWatch | None = None,
        *,
        disk_limit_bytes: int | None = None,
    ) -> StagedJob:
        """`watch`: shows what is in transfer, and stops new transfers once abandoned;
        `disk_limit_bytes`: what the job may hold when its message asks for less than --job-disk."""
        watch = watch or TransferWatch()
        downloads: list[tuple[StoredObject, Path]] = []
        staged = StagedJob(
            argument_values=[],
            stdin_path=workspace.stdin,
            stdout_path=workspace.stdout,
            stderr_path=workspace.stderr,
        )
        prefixes = [(f"command.input[{index}]", text) for index, text in enumerate(command.input)]
        listing = self._prefix_pages(prefixes, workspace, watch)
        # The prefixes are listed a page ahead of the downloads, starting now; no thread without any.
        with ReadAhead(listing) if prefixes else contextlib.nullcontext(listing) as pages:
            self._name_files(command, workspace, staged, downloads, watch)
            before = self.cache.counters.copy() if self.cache else None
            objects, staged.bytes_in = self._fetch_inputs(chain([downloads], pages), workspace, watch, disk_limit_bytes)
        if self.cache and before:
            staged.cache = self.cache.counters.since(before)
        if objects:
            log.info("staged in", extra={"objects": objects, "bytes": staged.bytes_in})
        return staged

    def _name_files(
        self,
        command: Command,
        workspace: Workspace,
        staged: StagedJob,
        downloads: list[tuple[StoredObject, Path]],
        watch: TransferWatch,
    ) -> None:
        """Local paths for the arguments, streams and output prefixes; the single objects to fetch."""
        for index, argument in enumerate(command.arguments):
            self._stage_argument(
                f"command.arguments[{index}].value",
                argument=argument,
                workspace=workspace,
                staged=staged,
                downloads=downloads,
                watch=watch,
            )
        staged.output_prefixes = [
            self._output_prefix(index, text, workspace) for index, text in enumerate(command.output)
        ]
        staged.stdout_uri = self._stream_destination("command.stdout.value", command.stdout)
        staged.stderr_uri = self._stream_destination("command.stderr.value", command.stderr)
        with watch.moving("command.stdin"):
            self._stage_stdin(command.stdin, staged.stdin_path, downloads)

    def _prefix_pages(
        self, prefixes: list[tuple[str, str]], workspace: Workspace, watch: TransferWatch
    ) -> Iterator[list[tuple[StoredObject, Path]]]:
        """The objects each input prefix matches, with where each goes, a page at a time; a
        prefix that matches nothing is rejected."""
        for where, text in prefixes:
            prefix = _parse(where, text, prefix=True)
            pages = _ask(where, self._store(prefix).list_pages, prefix)
            found = 0
            while True:
                with watch.moving(str(prefix)):
                    page = _ask(where, next, pages, None)
                if page is None:
                    break
                found += len(page)
                yield [(stored, _mirror(where, workspace.inputs, stored.uri)) for stored in page]
            if not found:
                raise StagingRejected(f"{where}: no objects match the prefix {text}")

    def _fetch_inputs(
        self,
        batches: Iterable[list[tuple[StoredObject, Path]]],
        workspace: Workspace,
        watch: TransferWatch,
        asked: int | None,
    ) -> tuple[int, int]:
        """Fetch batch after batch, each file once (an input argument may also be matched by an
        input prefix), checking before each batch that the inputs fit; (objects, bytes)."""
        fetched: set[Path] = set()
        needed = 0
        links = self._cached_links.setdefault(workspace.root, [])
        for batch in batches:
            fresh = list({local: (stored, local) for stored, local in batch if local not in fetched}.values())
            fetched.update(local for _, local in fresh)
            batch_bytes = sum(stored.size for stored, _ in fresh)
            needed += batch_bytes
            self._check_disk(needed, batch_bytes, workspace, asked)
            links.extend(self.fetch_all(fresh, watch))
        return len(fetched), needed

    def _output_prefix(self, index: int, text: str, workspace: Workspace) -> ObjectUri:
        """An output prefix, allowed for upload, its directory ready for the command."""
        where = f"command.output[{index}]"
        prefix = _parse(where, text, prefix=True)
        _ask(where, self._store(prefix).authorize_upload, prefix)
        _mirror(where, workspace.outputs, prefix.directory()).mkdir(parents=True, exist_ok=True)
        return prefix

    def _stage_argument(
        self,
        where: str,
        *,
        argument: Argument,
        workspace: Workspace,
        staged: StagedJob,
        downloads: list[tuple[StoredObject, Path]],
        watch: TransferWatch,
    ) -> None:
        """A parameter as it is; an input to download, an output to collect, as local paths."""
        if argument.type == "parameter":
            staged.argument_values.append(argument.text)
        elif argument.type == "input":
            uri = _parse(where, argument.text)
            with watch.moving(str(uri)):
                stored = _ask(where, self._store(uri).stat, uri)
            local = _mirror(where, workspace.inputs, uri)
            downloads.append((stored, local))
            staged.argument_values.append(str(local))
        else:
            uri = _parse(where, argument.text)
            _ask(where, self._store(uri).authorize_upload, uri)
            local = _mirror(where, workspace.outputs, uri)
            local.parent.mkdir(parents=True, exist_ok=True)
            staged.output_files.append((local, uri))
            staged.argument_values.append(str(local))

    def fetch(self, stored: StoredObject, local: Path, watch: TransferWatch | None = None) -> list[CachedLink]:
        """Download one object (see fetch_all)."""
        return self.fetch_all([(stored, local)], watch or TransferWatch())

    def fetch_all(self, downloads: list[tuple[StoredObject, Path]], watch: TransferWatch) -> list[CachedLink]:
        """Download objects under temporary names, and rename each into place only once complete
        and of the size its listing gave: the command never sees a partial file. s3:// objects
        come through the input cache when there is one: the links it made are returned."""
        links: list[CachedLink] = []
        for scheme, group in _by_scheme(downloads, lambda download: download[0].uri).items():
            store = self._store(group[0][0].uri)
            if scheme == "s3" and self.cache is not None:
                links += self.cache.provide(group, partial(self._fetch_into, store, watch=watch))
            else:
                self._fetch_into(store, group, watch=watch)
        return links

    def release(self, workspace: Workspace) -> None:
        """Give a job's cached inputs back to the cache, before its directory is removed."""
        links = self._cached_links.pop(workspace.root, [])
        if self.cache is not None and links:
            self.cache.release(links)

    def _fetch_into(self, store: ObjectStore, group: list[tuple[StoredObject, Path]], *, watch: TransferWatch) -> None:
        parents: dict[Path, ObjectUri] = {}  # each made once: many inputs share a directory
        for stored, local in group:
            parents.setdefault(local.parent, stored.uri)
        for parent, uri in parents.items():
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StagingFault(f"{uri}: could not store it locally: {exc}") from exc
        temporaries = [
            (stored, local.with_name(f"{local.name}.partial-{uuid.uuid4().hex[:8]}")) for stored, local in group
        ]
        settled = 0
        try:
            store.download_all(temporaries, watch)
            for (stored, temporary), (_, local) in zip(temporaries, group, strict=True):
                _settle(stored, temporary, local)
                settled += 1
        finally:
            for _, temporary in temporaries[settled:]:
                temporary.unlink(missing_ok=True)

    def _check_disk(self, needed: int, batch_bytes: int, workspace: Workspace, asked: int | None) -> None:
        """Refuse, before a batch is fetched, inputs that cannot fit: `needed` bytes in all so
        far, of which `batch_bytes` are still to come."""
        if asked is not None and asked < (self.job_disk_bytes or asked + 1) and needed > asked:
            raise StagingFault(
                f"the inputs need {format_size(needed)}, more than its resources.disk of {format_size(asked)}",
                retryable=False,
            )
        if self.job_disk_bytes is not None and needed > self.job_disk_bytes:
            raise StagingFault(
                f"the inputs need {format_size(needed)}, more than this worker's --job-disk "
                f"of {format_size(self.job_disk_bytes)}",
                retryable=False,
            )
        free = shutil.disk_usage(workspace.root).free
        if batch_bytes > free:
            raise StagingFault(
                f"the inputs need {format_size(needed)}, but the scratch filesystem has only {format_size(free)} free"
            )

    def _stream_destination(self, where: str, stream: Stream | None) -> ObjectUri | None:
        if stream is None or stream.type == "pipe" or stream.value is None:
            return None
        uri = _parse(where, stream.value)
        _ask(where, self._store(uri).authorize_upload, uri)
        return uri

    def _stage_stdin(self, stream: Stream | None, path: Path, downloads: list[tuple[StoredObject, Path]]) -> None:
        if stream is not None and stream.type == "uri" and stream.value is not None:
            where = "command.stdin.value"
            uri = _parse(where, stream.value)
            downloads.append((_ask(where, self._store(uri).stat, uri), path))
        else:
            data = stream.value if stream is not None and stream.value is not None else ""
            if data or not is_empty_file(path):  # the slot's last stdin, if empty, will do
                path.write_text(data, encoding="utf-8")

    def stage_out(self, staged: StagedJob, workspace: Workspace, watch: TransferWatch | None = None) -> StageOutReport:
        """Upload whatever the command produced; raise StagingFault on a storage failure."""
        watch = watch or TransferWatch()
        report = StageOutReport()
        # The stream files lie outside the job directory, out of the job's reach.
        uploads = [
            (local, uri)
            for local, uri in ((staged.stdout_path, staged.stdout_uri), (staged.stderr_path, staged.stderr_uri))
            if uri is not None
        ]
        seen: set[str] = set()
        for local, uri in self._produced_files(staged, workspace, report):
            if str(uri) in seen:
                continue  # an output argument that an output prefix names too
            seen.add(str(uri))
            real = Path(os.path.realpath(local))
            if not real.is_relative_to(workspace.root):
                report.skipped.append(SkippedPath(str(uri), "links outside the job directory"))
                log.warning("refused an output that links outside the job directory", extra={"uri": str(uri)})
            elif not real.is_file():
                report.skipped.append(SkippedPath(str(uri), "not a regular file"))
            else:
                uploads.append((real, uri))
        for group in _by_scheme(uploads, lambda upload: upload[1]).values():
            sizes = self._store(group[0][1]).upload_all(group, watch)
            report.uploaded += [UploadedObject(str(uri), size) for (_, uri), size in zip(group, sizes, strict=True)]
        return report

    def _produced_files(
        self, staged: StagedJob, workspace: Workspace, report: StageOutReport
    ) -> list[tuple[Path, ObjectUri]]:
        produced: list[tuple[Path, ObjectUri]] = []
        for local, uri in staged.output_files:
            if os.path.lexists(local):
                produced.append((local, uri))
            else:
                report.skipped.append(SkippedPath(str(uri), "not produced by the command"))
        for prefix in staged.output_prefixes:
            directory = prefix.directory()
            local_directory = mirror_path(workspace.outputs, directory)
            produced += [(path, directory.child(key)) for path, key in walk_prefix(local_directory, prefix.name_start)]
        return produced


def _settle(stored: StoredObject, temporary: Path, local: Path) -> None:
    """A downloaded object into its place, once it has the size its listing gave."""
    try:
        size = temporary.stat().st_size
        if size != stored.size:
            raise StagingFault(f"{stored.uri}: got {size} bytes, expected {stored.size}")
        temporary.rename(local)
    except OSError as exc:
        raise StagingFault(f"{stored.uri}: could not store it locally: {exc}") from exc


def _by_scheme(items: Iterable[T], uri_of: Callable[[T], ObjectUri]) -> dict[str, list[T]]:
    """Transfers grouped by their URI's scheme (one store each), in their order."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(uri_of(item).scheme, []).append(item)
    return groups


def _parse(where: str, text: str, *, prefix: bool = False) -> ObjectUri:
    try:
        return parse_uri(text, prefix=prefix)
    except UriRejected as exc:
        raise StagingRejected(f"{where}: {exc}") from None


def _mirror(where: str, root: Path, uri: ObjectUri) -> Path:
    return _ask(where, mirror_path, root, uri)


def _ask(where: str, action: Callable[..., T], *arguments: Any) -> T:
    """Call `action`, naming the message field in any rejection it raises."""
    try:
        return action(*arguments)
    except StagingRejected as exc:
        raise StagingRejected(f"{where}: {exc}") from None
