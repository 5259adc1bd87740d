"""Object URIs and their mirror paths inside a job directory.

`s3://bucket/key` lives at `<root>/bucket/key`; `file:///abs/path` at `<root>/abs/path`.
Keys that could leave the root (`..`, `.`, empty segments, absolute keys, NUL) are refused.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from staging.errors import StagingRejected

MAX_NAME_BYTES = 255  # the longest file name Linux filesystems take
_BUCKET = re.compile(r"^[A-Za-z0-9._-]{1,255}$")


@dataclass(frozen=True)
class ObjectUri:
    scheme: str
    bucket: str
    key: str

    def __str__(self) -> str:
        if self.scheme == "file":
            return f"file:///{self.key}"
        return f"{self.scheme}://{self.bucket}/{self.key}"

    @property
    def is_directory_prefix(self) -> bool:
        return self.key.endswith("/") or self.key == ""

    def child(self, relative_key: str) -> ObjectUri:
        """The object `relative_key` below this directory prefix."""
        assert self.is_directory_prefix, self
        return ObjectUri(self.scheme, self.bucket, self.key + relative_key)

    def mirror_parts(self) -> list[str]:
        return ([self.bucket] if self.scheme != "file" else []) + [part for part in self.key.split("/") if part]


def parse_uri(text: str, *, prefix: bool = False) -> ObjectUri:
    """Parse and check a URI; `prefix` allows a trailing `/` or an empty key."""
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # e.g. an unclosed '[' read as an IPv6 host
        raise StagingRejected(f"{text}: not a valid URI ({exc})") from None
    if parts.query or parts.fragment:
        raise StagingRejected(f"{text}: query strings and fragments are not supported")
    if parts.scheme == "s3":
        bucket, key = parts.netloc, parts.path.removeprefix("/")
        if not _BUCKET.match(bucket) or bucket in (".", ".."):
            raise StagingRejected(f"{text}: names no valid bucket")
    elif parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StagingRejected(f"{text}: file URIs must be local (file:///path)")
        bucket, key = "", unquote(parts.path).removeprefix("/")
    else:
        raise StagingRejected(f"{text}: unsupported scheme {parts.scheme!r}")
    _check_key(text, key, prefix=prefix)
    return ObjectUri(parts.scheme, bucket, key)


def _check_key(text: str, key: str, *, prefix: bool) -> None:
    if "\x00" in key:
        raise StagingRejected(f"{text}: key contains a NUL byte")
    if key.startswith("/"):
        raise StagingRejected(f"{text}: absolute keys are not allowed")
    segments = key.split("/")
    if prefix and segments and segments[-1] == "":
        segments = segments[:-1]
    if not segments and prefix:
        return
    if not segments or any(segment in ("", ".", "..") for segment in segments):
        raise StagingRejected(f"{text}: key has an empty, '.' or '..' segment")
    if any(len(segment.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for segment in segments):
        raise StagingRejected(f"{text}: a key segment is longer than {MAX_NAME_BYTES} bytes, too long for a file name")


def mirror_path(root: Path, uri: ObjectUri) -> Path:
    """The local path of `uri` under `root`, guaranteed to stay inside it."""
    path = Path(os.path.normpath(root.joinpath(*uri.mirror_parts())))
    if not path.is_relative_to(root) or path == root:
        raise StagingRejected(f"{uri}: would leave the job directory")
    return path
