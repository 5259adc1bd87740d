"""What S3 says an object's bytes must hash to, and checking downloaded bytes against it.

In order of preference: a full-object CRC (CRC32, CRC32C, CRC64NVME: computed per part in
parallel and combined), a composite CRC32/CRC32C of a multipart upload (the CRC of the parts'
CRCs), a single-part MD5 ETag, a multipart ETag (the MD5 of the parts' MD5s), a full-object
SHA-1/SHA-256. The per-part kinds follow the object's own part size. Composite SHA checksums
are not read: the multipart ETag of the same object is checked instead.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

# hashlib (OpenSSL) and awscrt are imported where used: a pool child that never sees an s3://
# URI does not load them.
Kind = Literal[
    "crc32", "crc32c", "crc64nvme", "composite-crc32", "composite-crc32c", "md5", "multipart-md5", "sha1", "sha256"
]
READ_CHUNK = 8 * 1024 * 1024
_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART_MD5 = re.compile(r"^([0-9a-f]{32})-([0-9]+)$")
_CRCS: dict[str, Kind] = {"ChecksumCRC32": "crc32", "ChecksumCRC32C": "crc32c", "ChecksumCRC64NVME": "crc64nvme"}
_COMPOSITE_CRCS: dict[str, Kind] = {"ChecksumCRC32": "composite-crc32", "ChecksumCRC32C": "composite-crc32c"}
_COMPOSITE_BASE: dict[Kind, Kind] = {"composite-crc32": "crc32", "composite-crc32c": "crc32c"}
_SHAS: dict[str, Kind] = {"ChecksumSHA1": "sha1", "ChecksumSHA256": "sha256"}


class ChecksumMismatch(Exception):
    pass


@dataclass(frozen=True)
class Expected:
    """`value`: hex for MD5 kinds, base64 for the others; `parts`: a multipart object's part count."""

    kind: Kind
    value: str
    parts: int = 1

    @property
    def combinable(self) -> bool:
        """Whether parts can be digested independently and in any order."""
        return self.kind in ("crc32", "crc32c", "crc64nvme", "multipart-md5") or self.per_part

    @property
    def per_part(self) -> bool:
        """Whether the value is made of the parts' own digests: parts must follow the object's."""
        return self.kind in ("multipart-md5", "composite-crc32", "composite-crc32c")


def bare_etag(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None


def from_etag(etag: str | None) -> Expected | None:
    bare = bare_etag(etag) or ""
    if _PLAIN_MD5.match(bare):
        return Expected("md5", bare)
    match = _MULTIPART_MD5.match(bare)
    if match:
        return Expected("multipart-md5", match.group(1), int(match.group(2)))
    return None


def from_head(head: Mapping[str, Any]) -> Expected | None:
    """The best check a HeadObject answer (asked with ChecksumMode=ENABLED) offers."""
    composite = head.get("ChecksumType") == "COMPOSITE"
    for field, kind in _CRCS.items():
        if field in head and not composite:
            return Expected(kind, str(head[field]))
    for field, kind in _COMPOSITE_CRCS.items():
        value, _, parts = str(head.get(field, "")).partition("-")
        if composite and value and parts.isdigit():
            return Expected(kind, value, int(parts))
    by_etag = from_etag(head.get("ETag"))
    if by_etag is not None:
        return by_etag
    for field, kind in _SHAS.items():
        if field in head and not composite:
            return Expected(kind, str(head[field]))
    return None


@dataclass(frozen=True)
class PartDigest:
    """One contiguous range's digest: a CRC as an int, an MD5 as bytes."""

    crc: int
    md5: bytes
    length: int


def digest_part(expected: Expected, data: memoryview | bytes) -> PartDigest:
    """A part's digest for a combinable kind (releases the GIL on large buffers)."""
    import hashlib  # noqa: PLC0415

    if expected.kind == "multipart-md5":
        return PartDigest(0, hashlib.md5(data).digest(), len(data))  # noqa: S324 (S3's ETag, not security)
    return PartDigest(_crc(_crc_kind(expected), data), b"", len(data))


def combined(expected: Expected, parts: Sequence[PartDigest]) -> str:
    """The value the parts add up to, in `expected`'s notation."""
    import hashlib  # noqa: PLC0415

    if expected.kind == "multipart-md5":
        return hashlib.md5(b"".join(part.md5 for part in parts)).hexdigest()  # noqa: S324
    if expected.per_part:  # the CRC of the parts' CRCs, each as 4 big-endian bytes
        joined = b"".join(part.crc.to_bytes(4, "big") for part in parts)
        return base64.b64encode(_crc(_crc_kind(expected), joined).to_bytes(4, "big")).decode()
    total = parts[0].crc
    for part in parts[1:]:
        total = _combine(expected.kind, total, part.crc, part.length)
    width = 8 if expected.kind == "crc64nvme" else 4
    return base64.b64encode(total.to_bytes(width, "big")).decode()


def whole(expected: Expected, data: memoryview | bytes) -> str:
    """The value of one buffer holding the whole object."""
    hasher = _sequential_hasher(expected)
    if hasher is None:
        return combined(expected, [digest_part(expected, data)])
    hasher.update(data)
    return _notation(expected, hasher)


def file_value(expected: Expected, path: Path, part_size: int | None = None) -> str:
    """The value of a file's bytes, read in chunks (a multipart ETag's parts need `part_size`)."""
    if expected.per_part:
        if part_size is None:
            return ""  # cannot be told: no match
        chunk_size = part_size
    else:
        chunk_size = READ_CHUNK
    parts = []
    hasher = _sequential_hasher(expected)
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            if hasher is not None:
                hasher.update(chunk)
            else:
                parts.append(digest_part(expected, chunk))
    if hasher is None:
        return combined(expected, parts) if parts else whole(expected, b"")
    return _notation(expected, hasher)


def check(expected: Expected, actual: str, what: str) -> None:
    if actual != expected.value:
        raise ChecksumMismatch(f"{what}: checksum mismatch ({expected.kind} {actual}, S3 says {expected.value})")


def _sequential_hasher(expected: Expected) -> Any:
    """A hashlib object for the kinds that must see every byte in order, else None."""
    import hashlib  # noqa: PLC0415

    return hashlib.new(expected.kind) if expected.kind in ("md5", "sha1", "sha256") else None


def _notation(expected: Expected, hasher: Any) -> str:
    """A finished hash as S3 writes it: hex for an MD5 ETag, base64 for checksum headers."""
    return str(hasher.hexdigest()) if expected.kind == "md5" else base64.b64encode(hasher.digest()).decode()


def _crc_kind(expected: Expected) -> Kind:
    """The CRC a kind computes over each part (a composite's parts use its base CRC)."""
    return _COMPOSITE_BASE.get(expected.kind, expected.kind)


def _crc(kind: Kind, data: memoryview | bytes) -> int:
    from awscrt import checksums as crt  # noqa: PLC0415

    if kind == "crc32":
        return int(crt.crc32(data))
    if kind == "crc32c":
        return int(crt.crc32c(data))
    return int(crt.crc64nvme(data))


def _combine(kind: Kind, first: int, second: int, second_length: int) -> int:
    from awscrt import checksums as crt  # noqa: PLC0415

    if kind == "crc32":
        return int(crt.combine_crc32(first, second, second_length))
    if kind == "crc32c":
        return int(crt.combine_crc32c(first, second, second_length))
    return int(crt.combine_crc64nvme(first, second, second_length))
