"""URIs map to paths inside the job directory; nothing can point outside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.uris import ObjectUri, UriRejected, parse_uri
from staging.errors import StagingRejected
from staging.mirror import mirror_path


def test_s3_uri_mirrors_bucket_and_key(tmp_path: Path) -> None:
    uri = parse_uri("s3://bucket/path/to/input.txt")
    assert uri == ObjectUri("s3", "bucket", "path/to/input.txt")
    assert mirror_path(tmp_path, uri) == tmp_path / "bucket" / "path" / "to" / "input.txt"


def test_file_uri_mirrors_its_absolute_path(tmp_path: Path) -> None:
    uri = parse_uri("file:///data/run%201/x.txt")
    assert str(uri) == "file:///data/run 1/x.txt"
    assert mirror_path(tmp_path, uri) == tmp_path / "data" / "run 1" / "x.txt"


def test_prefixes_may_end_in_a_slash() -> None:
    assert parse_uri("s3://bucket/path/", prefix=True).is_directory_prefix
    assert parse_uri("s3://bucket", prefix=True).key == ""
    with pytest.raises(UriRejected):
        parse_uri("s3://bucket/path/")


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/../etc/passwd",
        "s3://bucket/a/../../x",
        "s3://bucket/./x",
        "s3://bucket//etc/passwd",
        "s3://bucket/a//b",
        "file:///data/%2e%2e/etc/shadow",
        "file:///data/x%00y",
        "s3:///key-without-bucket",
        "s3://../x",
        "s3://a:b@bucket/x",
        "file://otherhost/x",
        "http://example.org/x",
        "s3://bucket/x?versionId=1",
    ],
)
def test_escaping_or_unsupported_uris_are_refused(uri: str) -> None:
    with pytest.raises(UriRejected, match="^" + uri.replace("?", r"\?")):
        parse_uri(uri, prefix=True)


def test_mirror_path_never_leaves_the_root(tmp_path: Path) -> None:
    with pytest.raises(StagingRejected, match="leave the job directory"):
        mirror_path(tmp_path, ObjectUri("s3", "..", "x"))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("s3://[bucket/key", "not a valid URI (Invalid IPv6 URL)"),
        ("s3://b/" + "k" * 256, "a key segment is longer than 255 bytes, too long for a file name"),
        ("s3://b/" + "\u00e9" * 128 + "/x", "a key segment is longer than 255 bytes"),
    ],
)
def test_uris_no_file_system_can_hold_are_rejected(text: str, problem: str) -> None:
    with pytest.raises(UriRejected, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_uri(text)
    parse_uri("s3://b/" + "k" * 255)  # the longest name that fits
