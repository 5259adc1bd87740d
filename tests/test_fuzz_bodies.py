"""Property-based fuzzing of the body decoder: whatever a producer writes, decoding ends in
exactly one outcome (a request or a rejection), never an exception, and everything it hands
on encodes as UTF-8."""

from __future__ import annotations

import copy
import json
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.body import DecodedBody, decode_body
from protocol.result import ErrorInfo, JobResult, Status, WorkerIdentity
from runners.argv import build_argv
from tests.test_request import SEED as DESIGN_SEED

# The design's seed message with every optional field and a numeric parameter added.
SEED: dict[str, Any] = copy.deepcopy(DESIGN_SEED) | {
    "id": "job-1",
    "reply_to": "replies",
    "timeout": 10,
    "resources": {"cpus": 1, "memory": "1G", "cpu_seconds": 5},
}
SEED["command"]["arguments"].append({"type": "parameter", "value": 3.5})

# Text as hostile as JSON can carry: lone surrogates (category Cs), NUL, controls, any plane.
odd_text = st.text(st.characters(codec=None, categories=None), max_size=40) | st.sampled_from(
    ["", "\udc80", "a\ud800b", "\x00", "s3://", "file:///../../etc/passwd", "..", "x" * 5000, "1e999"]
)
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
    if request is not None and request.command is not None:
        arguments = request.command.arguments
        values = [a.text if a.type == "parameter" else f"/job/in/{i}" for i, a in enumerate(arguments)]
        for word in build_argv(("tool",), arguments, values):
            word.encode("utf-8")
            assert "\0" not in word


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_bodies)
def test_every_hostile_body_ends_in_exactly_one_outcome(body: str) -> None:
    _check_one_outcome(decode_body(body, max_bytes=64 * 1024))


@settings(max_examples=200, deadline=None)
@given(mutated_seeds())
def test_mutated_seeds_within_a_small_size_limit(body: str) -> None:
    _check_one_outcome(decode_body(body, max_bytes=300))


def test_the_unmutated_seed_is_accepted() -> None:
    decoded = decode_body(json.dumps(SEED))
    assert decoded.request is not None and decoded.envelope.reply_to == "replies"
