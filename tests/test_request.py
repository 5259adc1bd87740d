"""The request message: the seed's format is accepted unchanged; anything invalid is named."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from protocol.body import Envelope, decode_body
from protocol.request import RequestRejected
from tests.support import parse_request

SEED: dict[str, Any] = {
    "test": False,
    "service": "my_service",
    "queue": "docker",
    "command": {
        "stdin": {"type": "pipe", "value": "raw input data"},
        "stdout": {"type": "pipe", "value": None},
        "stderr": {"type": "uri", "value": "s3://bucket/path/to/stderr.txt"},
        "arguments": [
            {"type": "input", "name": "--infile", "value": "s3://bucket/path/to/input.txt"},
            {"type": "parameter", "name": "--arg1", "value": "myargvalue"},
            {"type": "output", "name": "--outfile", "value": "s3://bucket/path/to/output.txt"},
        ],
        "input": ["s3://bucket/path/to/some/input"],
        "output": ["s3://bucket/path/to/some/output"],
    },
}


def test_seed_message_is_accepted_with_every_field() -> None:
    request = parse_request(json.dumps(SEED))
    assert request.service == "my_service"
    assert request.queue == "docker"
    assert request.test is False
    command = request.command
    assert command is not None
    assert command.stdin is not None and command.stdin.value == "raw input data"
    assert command.stderr is not None and command.stderr.type == "uri"
    assert [(a.type, a.name, a.text) for a in command.arguments] == [
        ("input", "--infile", "s3://bucket/path/to/input.txt"),
        ("parameter", "--arg1", "myargvalue"),
        ("output", "--outfile", "s3://bucket/path/to/output.txt"),
    ]
    assert command.input == ["s3://bucket/path/to/some/input"]
    assert command.output == ["s3://bucket/path/to/some/output"]


def test_optional_fields_beyond_the_seed() -> None:
    message = dict(SEED, id="job-1", reply_to="replies", timeout=30, resources={"cpus": 1.5, "memory": "512M"})
    request = parse_request(json.dumps(message))
    assert (request.id, request.reply_to, request.timeout) == ("job-1", "replies", 30)
    assert request.resources is not None and request.resources.memory == "512M"


def test_test_message_needs_no_command() -> None:
    assert parse_request('{"test": true, "service": "s", "queue": "native"}').test is True


def test_numbers_are_accepted_as_parameter_values() -> None:
    message = copy.deepcopy(SEED)
    message["command"]["arguments"] = [{"type": "parameter", "value": 3}, {"type": "parameter", "value": 0.5}]
    command = parse_request(json.dumps(message)).command
    assert command is not None
    assert [a.text for a in command.arguments] == ["3", "0.5"]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(message: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = message
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is _DELETE:
            del target[int(last) if last.isdigit() else last]
        else:
            target[int(last) if last.isdigit() else last] = value

    return mutate


_DELETE = object()


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            _set("command.arguments.2.type", "file"),
            "command.arguments[2].type: must be one of input, parameter, output",
        ),
        (_set("command.arguments.0.value", "/etc/passwd"), "command.arguments[0].value: must be a URI starting with"),
        (
            _set("command.arguments.1.value", [1]),
            "command.arguments[1].value: must be a number or a string, not a list",
        ),
        (_set("command.arguments.1.value", True), "command.arguments[1].value: must be a number or a string, not true"),
        (_set("command.arguments.1.name", 5), "command.arguments[1].name: must be a string or null, not an integer"),
        (_set("command.arguments.1.value", _DELETE), "command.arguments[1].value: is required"),
        (_set("command.arguments", {}), "command.arguments: must be a list, not an object"),
        (_set("command.stderr.value", None), "command.stderr.value: a uri stream needs a URI"),
        (_set("command.stdin.type", "socket"), "command.stdin.type: must be one of pipe, uri"),
        (_set("command.input", ["http://example.org/x"]), "command.input[0]: must be a URI starting with"),
        (_set("command.output", "s3://b/x"), "command.output: must be a list, not a string"),
        (_set("test", "yes"), "test: must be true or false, not a string"),
        (_set("queue", "gpu"), "queue: must be one of docker, native"),
        (_set("service", _DELETE), "service: is required"),
        (_set("service", ""), "service: must be a non-empty string"),
        (_set("command", _DELETE), "command: is required unless test is true"),
        (_set("timeout", -1), "timeout: must be a number greater than 0"),
        (_set("resources", {"cpus": 0}), "resources.cpus: must be a number greater than 0"),
        (_set("extra_field", 1), "extra_field: is not a known field"),
        (_set("id", "api-worker-fleet:https://q"), "id: must not start with 'api-worker-fleet:'"),
        (_set("command.argumnets", []), "command.argumnets: is not a known field"),
    ],
)
def test_invalid_fields_are_named(mutate: Callable[[dict[str, Any]], None], expected: str) -> None:
    message = copy.deepcopy(SEED)
    mutate(message)
    with pytest.raises(RequestRejected) as raised:
        parse_request(json.dumps(message))
    assert str(raised.value).lower().startswith(expected.lower())


@pytest.mark.parametrize(
    ("body", "expected"),
    [("not json", "body: not valid JSON"), ("[1, 2]", "body: must be a JSON object"), ("", "body: not valid JSON")],
)
def test_bodies_that_are_not_json_objects(body: str, expected: str) -> None:
    with pytest.raises(RequestRejected, match=expected):
        parse_request(body)


def test_envelope_is_read_leniently_from_invalid_messages() -> None:
    assert decode_body('{"id": "a", "queue": 5, "reply_to": "r"}').envelope == Envelope(id="a", reply_to="r")
    assert decode_body("not json").envelope == Envelope()
    assert decode_body("[1]").envelope == Envelope()


@pytest.mark.parametrize(
    ("where", "expected_field"),
    [
        (lambda body, uri: body["command"]["arguments"][0].update(value=uri), "command.arguments[0].value"),
        (lambda body, uri: body["command"]["stderr"].update(value=uri), "command.stderr.value"),
        (lambda body, uri: body["command"]["input"].__setitem__(0, uri), "command.input[0]"),
    ],
)
def test_every_uri_is_at_most_4096_characters(where: Callable[[Any, str], None], expected_field: str) -> None:
    for length, accepted in ((4096, True), (4097, False)):
        body = copy.deepcopy(SEED)
        where(body, _uri_of_length(length))
        decoded = decode_body(json.dumps(body))
        assert (decoded.rejection is None) is accepted, decoded.rejection
        if not accepted:
            assert decoded.rejection is not None and decoded.rejection.field == expected_field
            assert re.search("at most 4096 characters|of length <= 4096", decoded.rejection.problem)


def test_a_uri_that_would_escape_its_directory_is_rejected_before_anything_runs() -> None:
    body = copy.deepcopy(SEED)
    body["command"]["arguments"][0]["value"] = "s3://bucket/a/../../etc/passwd"
    decoded = decode_body(json.dumps(body))
    assert decoded.rejection is not None and decoded.rejection.field == "command.arguments[0].value"
    assert "'..' segment" in decoded.rejection.problem


def _uri_of_length(length: int) -> str:
    """An S3 URI of exactly `length` characters whose key segments are valid file names."""
    uri = "s3://bucket/"
    while len(uri) < length:
        uri += "k" * min(200, length - len(uri)) + "/"
    uri = uri[:length]
    return uri[:-1] + "k" if uri.endswith("/") else uri
