"""Property-based fuzzing of the body decoder: whatever a producer writes, decoding ends in
exactly one outcome (a request or a rejection), never an exception, and everything it hands
on encodes as UTF-8."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pool.child.limits import resolve_limits
from protocol.argv import build_argv
from protocol.body import DecodedBody, decode_body, read_addressing
from protocol.request import Command, RequestRejected
from protocol.result import ErrorInfo, JobResult, Status, WorkerIdentity
from protocol.uris import UriRejected, parse_uri
from runners.limits import JobLimits
from staging.errors import StagingRejected
from staging.mirror import mirror_path
from tests.test_request import SEED as README_SEED

# The README's request message with every optional field and a numeric parameter added.
SEED: dict[str, Any] = copy.deepcopy(README_SEED) | {
    "id": "job-1",
    "reply_to": "replies",
    "timeout": 10,
    "resources": {"cpus": 1, "memory": "1G", "cpu_seconds": 5},
}
SEED["command"]["arguments"].append({"type": "parameter", "value": 3.5})

JOB_ROOT = Path("/scratch/job-1/in")
CEILINGS = JobLimits(timeout_s=3600, memory_bytes=2**34, cpus=2, cpu_seconds=3600)

# Text as hostile as JSON can carry: lone surrogates (category Cs), NUL, controls, any plane.
ODD_URIS = ["s3://[bucket/key", "s3://b/" + "k" * 300, "file:///%2e%2e/etc", "s3://b/a/../../x", "s3://", "file:///"]
ODD_STRINGS = [*ODD_URIS, "", "\udc80", "a\ud800b", "\x00", "s3://", "file:///../../etc/passwd", "..", "x" * 5000]
ODD_SIZES = ["1e999", "9" * 400 + "G", "0.5", "-1G", "1" * 20 + "T"]
odd_text = st.text(st.characters(codec=None, categories=None), max_size=40) | st.sampled_from(ODD_STRINGS + ODD_SIZES)
odd_numbers = (
    st.integers()
    | st.integers(min_value=10**30, max_value=10**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, -1, 2**63, -(2**63) - 1, 1e308])
)
json_values = st.recursive(
    st.none() | st.booleans() | odd_numbers | odd_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(odd_text, children, max_size=4),
    max_leaves=20,
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


SEED_PATHS = _paths(SEED)[1:]


@st.composite
def mutated_seeds(draw: st.DrawFn) -> str:
    """The seed message with a few fields replaced by wrong types, odd text or odd numbers, or deleted."""
    message = copy.deepcopy(SEED)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(SEED_PATHS))
        parent: Any = message
        try:
            for step in path[:-1]:
                parent = parent[step]
            if draw(st.booleans()):
                parent[path[-1]] = draw(json_values)
            elif isinstance(parent, dict):
                del parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation changed the shape under this path
    return json.dumps(message, ensure_ascii=draw(st.booleans()))


# Sizes as text, from ordinary to more digits than a float holds.
size_texts = (
    st.tuples(st.integers(1, 500), st.sampled_from(["", "K", "M", "G", "T", "GiB"])).map(lambda n: "9" * n[0] + n[1])
    | st.sampled_from(ODD_SIZES)
    | odd_text
)


@st.composite
def odd_limits(draw: st.DrawFn) -> str:
    """The seed asking for limits written in every odd way: sizes, huge and tiny numbers."""
    message = copy.deepcopy(SEED)
    numbers = st.floats(min_value=1e-3, max_value=1e300) | odd_numbers
    resources = {"memory": size_texts | odd_numbers, "cpus": numbers, "cpu_seconds": numbers}
    message["resources"] = draw(st.fixed_dictionaries({}, optional=resources))
    message["timeout"] = draw(numbers)
    return json.dumps(message)


uri_texts = st.sampled_from(ODD_URIS) | st.builds(
    "{}://{}/{}".format, st.sampled_from(["s3", "file"]), odd_text, odd_text
)


@st.composite
def odd_uris(draw: st.DrawFn) -> str:
    """The seed with its input, output and stream URIs written in every odd way."""
    message = copy.deepcopy(SEED)
    command = message["command"]
    for argument in command["arguments"]:
        if argument["type"] != "parameter":
            argument["value"] = draw(uri_texts)
    command["input"], command["output"] = draw(st.lists(uri_texts, max_size=2)), draw(st.lists(uri_texts, max_size=2))
    command["stderr"]["value"] = draw(uri_texts)
    return json.dumps(message)


@st.composite
def nested(draw: st.DrawFn) -> str:
    depth = draw(st.integers(0, 3000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('{"service":', "}")]))
    inner = draw(st.sampled_from(["1", '"\\udc80"', "", "null"]))
    closed = draw(st.booleans())
    return opener * depth + inner + (closer * depth if closed else "")


@st.composite
def duplicate_keys(draw: st.DrawFn) -> str:
    key = draw(st.sampled_from(["service", "queue", "test", "command", "id", "reply_to"]))
    first, second = json.dumps(draw(json_values)), json.dumps(draw(json_values))
    return f'{{"service": "s", "queue": "native", "{key}": {first}, "{key}": {second}}}'


hostile_bodies = (
    mutated_seeds()
    | odd_limits()
    | nested()
    | duplicate_keys()
    | json_values.map(json.dumps)
    | st.text(max_size=200)
    | st.binary(max_size=200).map(lambda raw: raw.decode("utf-8", "surrogateescape"))
)


def _utf8(text: str | None) -> None:
    if text is not None:
        text.encode("utf-8")


def _check_one_outcome(decoded: DecodedBody) -> None:
    assert (decoded.request is None) != (decoded.rejection is None)
    for text in (decoded.envelope.id, decoded.envelope.service, decoded.envelope.queue, decoded.envelope.reply_to):
        _utf8(text)
    result = JobResult(
        id=decoded.envelope.id or "message-id",
        message_id="message-id",
        status=Status.REJECTED if decoded.rejection else Status.SUCCEEDED,
        worker=WorkerIdentity(host="h", pid=1),
        attempt=1,
        started_at="t",
        service=decoded.envelope.service,
        queue=decoded.envelope.queue,
        error=ErrorInfo("invalid_request", str(decoded.rejection)) if decoded.rejection else None,
    )
    msgspec.json.decode(result.to_json().encode("utf-8"))  # strictly encoded, and read back
    request = decoded.request
    if request is not None:
        # What the child does next with an accepted request rejects, never raises otherwise.
        try:
            resolve_limits(request, CEILINGS)
        except RequestRejected as exc:
            str(exc).encode("utf-8")
            assert len(str(exc)) < 1000
    if request is not None and request.command is not None:
        _check_uris(request.command)
        arguments = request.command.arguments
        values = [a.text if a.type == "parameter" else f"/job/in/{i}" for i, a in enumerate(arguments)]
        for word in build_argv(("tool",), arguments, values):
            word.encode("utf-8")
            assert "\0" not in word


def _check_uris(command: Command) -> None:
    """Every URI an accepted request names maps inside the job directory or is rejected."""
    uris = [(a.text, False) for a in command.arguments if a.type != "parameter"]
    uris += [(uri, True) for uri in [*command.input, *command.output]]
    streams = (command.stdin, command.stdout, command.stderr)
    uris += [(s.value, False) for s in streams if s and s.type == "uri" and s.value]
    for text, prefix in uris:
        try:
            path = mirror_path(JOB_ROOT, parse_uri(text, prefix=prefix))
        except (UriRejected, StagingRejected) as exc:
            str(exc).encode("utf-8", "surrogateescape")
            continue
        assert path.is_relative_to(JOB_ROOT) and path != JOB_ROOT


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_bodies)
def test_every_hostile_body_ends_in_exactly_one_outcome(body: str) -> None:
    _check_one_outcome(decode_body(body, max_bytes=64 * 1024))


@settings(max_examples=200, deadline=None)
@given(mutated_seeds())
def test_mutated_seeds_within_a_small_size_limit(body: str) -> None:
    _check_one_outcome(decode_body(body, max_bytes=300))


@settings(max_examples=300, deadline=None)
@given(odd_limits())
def test_limits_written_oddly(body: str) -> None:
    _check_one_outcome(decode_body(body))


@settings(max_examples=300, deadline=None)
@given(odd_uris())
def test_uris_written_oddly(body: str) -> None:
    _check_one_outcome(decode_body(body))


def test_the_unmutated_seed_is_accepted() -> None:
    decoded = decode_body(json.dumps(SEED))
    assert decoded.request is not None and decoded.envelope.reply_to == "replies"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_bodies)
def test_the_supervisors_look_at_a_bodys_service_never_raises(body: str) -> None:
    """Where a service's jobs are capped, the supervisor reads a body's service (and nothing
    more); whatever the body, that gives a string or None."""
    service = read_addressing(body).native_service()
    assert service is None or isinstance(service, str)
