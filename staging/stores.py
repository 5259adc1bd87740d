"""The object-store interface staging talks to, one implementation per URI scheme."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from protocol.uris import ObjectUri
from staging.checksums import Expected
from staging.watch import TransferWatch


@dataclass(frozen=True)
class StoredObject:
    """An object as its store described it: `etag` and `version` name the bytes (the input
    cache's key); `expected` is the check its bytes must pass, when the store offers one."""

    uri: ObjectUri
    size: int
    etag: str | None = None
    version: str | None = None
    expected: Expected | None = None
    part_size: int | None = None  # of a multipart object whose ETag is its check


class ObjectStore(Protocol):
    def stat(self, uri: ObjectUri) -> StoredObject:
        """Size of one object; StagingRejected when it does not exist or is not allowed."""
        ...

    def list_pages(self, prefix: ObjectUri) -> Iterator[list[StoredObject]]:
        """Every object whose key starts with the prefix's key, a page of the listing at a time."""
        ...

    def authorize_upload(self, destination: ObjectUri) -> None:
        """Refuse (StagingRejected) a destination this worker may never write to."""
        ...

    def download_all(self, downloads: Sequence[tuple[StoredObject, Path]], watch: TransferWatch) -> None:
        """Write each object's bytes to its path (a temporary name: the Stager checks the size
        and renames it into place); the first failure stops the rest and is raised."""
        ...

    def upload_all(self, uploads: Sequence[tuple[Path, ObjectUri]], watch: TransferWatch) -> list[int]:
        """Store each local file at its destination; the bytes written, in order."""
        ...
