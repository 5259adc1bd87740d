"""Object URIs as messages name them: the one registry of the schemes a job may use, and
their syntax. `s3://bucket/key`, `file:///abs/path`. Keys that could leave a directory they
are mirrored into (`..`, `.`, empty segments, absolute keys, NUL) are refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

MAX_NAME_BYTES = 255  # the longest file name Linux filesystems take
_BUCKET = re.compile(r"^[A-Za-z0-9._-]{1,255}$")


class UriRejected(ValueError):
    """The text is no URI a job may name; the message starts with the text."""


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

    def directory(self) -> ObjectUri:
        """`s3://b/path/to/poly` -> `s3://b/path/to/`; a `/`-ended prefix is its own directory."""
        if self.is_directory_prefix:
            return self
        head, _, _ = self.key.rpartition("/")
        return ObjectUri(self.scheme, self.bucket, head + "/" if head else "")

    @property
    def name_start(self) -> str:
        """What the names below `directory()` must start with to match this prefix."""
        return self.key.removeprefix(self.directory().key)

    def mirror_parts(self) -> list[str]:
        return ([self.bucket] if self.scheme != "file" else []) + [part for part in self.key.split("/") if part]


def _s3_location(text: str, parts: SplitResult) -> tuple[str, str]:
    bucket, key = parts.netloc, parts.path.removeprefix("/")
    if not _BUCKET.match(bucket) or bucket in (".", ".."):
        raise UriRejected(f"{text}: names no valid bucket")
    return bucket, key


def _file_location(text: str, parts: SplitResult) -> tuple[str, str]:
    if parts.netloc not in ("", "localhost"):
        raise UriRejected(f"{text}: file URIs must be local (file:///path)")
    return "", unquote(parts.path).removeprefix("/")


# Each scheme a job may name, with how its URIs give a bucket and a key.
_LOCATIONS: dict[str, Callable[[str, SplitResult], tuple[str, str]]] = {"s3": _s3_location, "file": _file_location}
URI_SCHEMES = tuple(_LOCATIONS)


def parse_uri(text: str, *, prefix: bool = False) -> ObjectUri:
    """Parse and check a URI; `prefix` allows a trailing `/` or an empty key."""
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # e.g. an unclosed '[' read as an IPv6 host
        raise UriRejected(f"{text}: not a valid URI ({exc})") from None
    if parts.query or parts.fragment:
        raise UriRejected(f"{text}: query strings and fragments are not supported")
    locate = _LOCATIONS.get(parts.scheme)
    if locate is None:
        raise UriRejected(f"{text}: unsupported scheme {parts.scheme!r}")
    bucket, key = locate(text, parts)
    _check_key(text, key, prefix=prefix)
    return ObjectUri(parts.scheme, bucket, key)


def _check_key(text: str, key: str, *, prefix: bool) -> None:
    if "\x00" in key:
        raise UriRejected(f"{text}: key contains a NUL byte")
    if key.startswith("/"):
        raise UriRejected(f"{text}: absolute keys are not allowed")
    segments = key.split("/")
    if prefix and segments and segments[-1] == "":
        segments = segments[:-1]
    if not segments and prefix:
        return
    if not segments or any(segment in ("", ".", "..") for segment in segments):
        raise UriRejected(f"{text}: key has an empty, '.' or '..' segment")
    if any(len(segment.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for segment in segments):
        raise UriRejected(f"{text}: a key segment is longer than {MAX_NAME_BYTES} bytes, too long for a file name")
