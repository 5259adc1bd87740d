"""Hostile message bodies: each ends as one clear rejection, never as an exception."""

from __future__ import annotations

import json

import msgspec
import pytest

from pool.child.limits import resolve_limits
from protocol.body import MAX_NESTING_DEPTH, Envelope, decode_body, nesting_depth
from protocol.request import RequestRejected
from protocol.result import ErrorInfo, JobResult, Status, WorkerIdentity
from runners.limits import JobLimits

VALID = {"service": "tool", "queue": "native", "command": {"arguments": []}}


def _rejection(body: str, max_bytes: int = 1 << 20) -> str:
    decoded = decode_body(body, max_bytes)
    assert decoded.request is None and decoded.rejection is not None
    return str(decoded.rejection)


def test_deeply_nested_body_is_rejected_naming_the_depth() -> None:
    body = '{"a":' * 5000 + "1" + "}" * 5000
    assert _rejection(body) == f"body: nests 5000 levels deep; at most {MAX_NESTING_DEPTH} are allowed"


def test_deep_nesting_beside_valid_fields_is_rejected() -> None:
    body = json.dumps({**VALID, "id": "j1", "reply_to": "r"})[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    decoded = decode_body(body)
    assert str(decoded.rejection).startswith("body: nests 100001 levels deep")


def test_unclosed_deep_nesting_is_rejected() -> None:
    assert _rejection("[" * 200_000).startswith("body:")
    assert _rejection('{"service": ' + "[" * 200_000).startswith("body:")


def test_lone_surrogate_is_rejected_naming_the_field() -> None:
    body = '{"service": "\\udc80", "queue": "native", "test": true, "id": "job-1"}'
    decoded = decode_body(body)
    assert str(decoded.rejection) == "service: holds a lone surrogate (\\udc80), which is not valid Unicode"
    assert decoded.envelope == Envelope(id="job-1", queue="native")  # the unusable field is left out


def test_lone_surrogate_deep_in_the_command_is_named() -> None:
    message = {**VALID, "command": {"arguments": [{"type": "parameter", "value": "ok"}, {"type": "parameter"}]}}
    body = json.dumps(message).replace('{"type": "parameter"}', '{"type": "parameter", "value": "x\\ud800y"}')
    assert _rejection(body).startswith("command.arguments[1].value: holds a lone surrogate (\\ud800)")


def test_lone_surrogate_in_a_key_is_rejected() -> None:
    assert "lone surrogate" in _rejection('{"\\udc80": 1, "service": "s", "queue": "native"}')


def test_body_text_that_is_not_unicode_is_rejected() -> None:
    assert _rejection('{"service": "\udc80"}') == "body: is not valid Unicode text (character 13)"


def test_body_over_the_size_limit_is_rejected_before_parsing() -> None:
    body = json.dumps({**VALID, "command": {"stdin": {"type": "pipe", "value": "x" * 2000}}})
    assert _rejection(body, max_bytes=1000) == f"body: is {len(body)} bytes, more than the 1000 a message may hold"
    assert decode_body(body, max_bytes=len(body)).request is not None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"service": "s", "queue": "native", "timeout": 1e999}', "timeout: Number out of range"),
        (
            '{"service": "s", "queue": "native", "command": {"arguments": [{"type": "parameter", "value": '
            + "9" * 5000
            + "}]}}",
            "command.arguments[0].value: Integer value out of range",
        ),
        ('{"service": "s\\u0000", "queue": "native", "test": true}', "service: must not contain a NUL character"),
        (
            '{"service": "s", "queue": "native", "command": {"arguments": [{"type": "parameter", '
            '"value": "a\\u0000"}]}}',
            "command.arguments[0].value: must not contain a NUL character",
        ),
        ('{"service": "s", "queue": "native", "' + "k" * 10_000 + '": 1}', "k" * 200 + "...: is not a known field"),
        ("null", "body: must be an object, not null"),
    ],
)
def test_odd_values_are_rejected_with_a_clear_message(body: str, expected: str) -> None:
    assert _rejection(body) == expected


def test_a_memory_size_too_large_for_a_number_is_rejected() -> None:
    decoded = decode_body(json.dumps({**VALID, "resources": {"memory": "9" * 400 + "G"}}))
    assert decoded.request is not None
    with pytest.raises(RequestRejected, match=r"^resources.memory: '9{40}\.\.\.' is too large a size$"):
        resolve_limits(decoded.request, JobLimits())


def test_nesting_depth_ignores_brackets_inside_strings() -> None:
    assert nesting_depth('{"a": "[[[{{{", "b": [1, {"c": "\\"]]"}]}') == 3


def test_results_with_unencodable_text_still_encode() -> None:
    """Text from the job's own files (names that are not UTF-8) never breaks a result."""
    result = JobResult(
        id="j",
        message_id="m",
        status=Status.ERROR,
        worker=WorkerIdentity(host="h", pid=1),
        attempt=1,
        started_at="now",
        error=ErrorInfo("staging", "cannot read out/\udcff.txt"),
    )
    assert msgspec.json.decode(result.to_json())["error"]["message"] == "cannot read out/\\udcff.txt"
