"""`file://` URIs, confined to the directories the operator allows (`--file-root`)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

from protocol.uris import ObjectUri
from staging.errors import StagingFault, StagingRejected
from staging.parallel import run_all
from staging.prefix_walk import walk_prefix
from staging.stores import StoredObject
from staging.watch import TransferWatch

COPIES_AT_ONCE = 8


class LocalFileStore:
    def __init__(self, roots: list[Path]) -> None:
        self.roots = [root.resolve() for root in roots]

    def _allowed_path(self, uri: ObjectUri) -> Path:
        """The real path behind `uri`, refused unless it lies inside an allowed root."""
        if not self.roots:
            raise StagingRejected(f"{uri}: file:// URIs are disabled on this worker (no --file-root)")
        path = Path(os.path.realpath("/" + uri.key))
        if not any(path.is_relative_to(root) for root in self.roots):
            raise StagingRejected(f"{uri}: outside the worker's allowed file roots")
        return path

    def stat(self, uri: ObjectUri) -> StoredObject:
        path = self._allowed_path(uri)
        if not path.is_file():
            raise StagingRejected(f"{uri}: no such file")
        return StoredObject(uri, path.stat().st_size)

    def list_pages(self, prefix: ObjectUri) -> Iterator[list[StoredObject]]:
        """One page: the directory walk is quick next to the copies."""
        directory = prefix.directory()
        base = self._allowed_path(directory)
        found: list[StoredObject] = []
        if base.is_dir():
            for _, relative in walk_prefix(base, prefix.name_start):
                try:
                    found.append(self.stat(directory.child(relative)))
                except StagingRejected:
                    continue  # a link leading out of the allowed roots, or a special file
        yield found

    def authorize_upload(self, destination: ObjectUri) -> None:
        self._allowed_path(destination)

    def download_all(self, downloads: Sequence[tuple[StoredObject, Path]], watch: TransferWatch) -> None:
        run_all([partial(self._watched_download, stored, path, watch) for stored, path in downloads], COPIES_AT_ONCE)

    def upload_all(self, uploads: Sequence[tuple[Path, ObjectUri]], watch: TransferWatch) -> list[int]:
        return run_all([partial(self._watched_upload, path, uri, watch) for path, uri in uploads], COPIES_AT_ONCE)

    def _watched_download(self, source: StoredObject, destination: Path, watch: TransferWatch) -> None:
        with watch.moving(str(source.uri)):
            self.download(source, destination)

    def _watched_upload(self, source: Path, destination: ObjectUri, watch: TransferWatch) -> int:
        with watch.moving(str(destination)):
            return self.upload(source, destination)

    def download(self, source: StoredObject, destination: Path) -> None:
        path = self._allowed_path(source.uri)
        try:
            shutil.copyfile(path, destination)
        except OSError as exc:
            raise StagingFault(f"{source.uri}: copy failed: {exc}") from exc

    def upload(self, source: Path, destination: ObjectUri) -> int:
        target = self._allowed_path(destination)
        partial = target.with_name(target.name + f".partial-{os.getpid()}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, partial)
            partial.rename(target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise StagingFault(f"{destination}: write failed: {exc}") from exc
        return target.stat().st_size
