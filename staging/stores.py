"""The object-store interface staging talks to, one implementation per URI scheme."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from protocol.uris import ObjectUri


@dataclass(frozen=True)
class StoredObject:
    uri: ObjectUri
    size: int


class ObjectStore(Protocol):
    def stat(self, uri: ObjectUri) -> StoredObject:
        """Size of one object; StagingRejected when it does not exist or is not allowed."""
        ...

    def list_prefix(self, prefix: ObjectUri) -> list[StoredObject]:
        """Every object whose key starts with the prefix's key."""
        ...

    def authorize_upload(self, destination: ObjectUri) -> None:
        """Refuse (StagingRejected) a destination this worker may never write to."""
        ...

    def download(self, source: StoredObject, destination: Path) -> None:
        """Write the object's bytes to `destination` (a temporary name: Stager.fetch checks the
        size and renames it into place)."""
        ...

    def upload(self, source: Path, destination: ObjectUri) -> int:
        """Store a local file at `destination`; return the bytes written."""
        ...
