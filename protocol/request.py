"""The job request message (docs/messages.md, "The request message"): its schema and validation.

Bodies are decoded by `protocol.body.decode_body`; one that fails is never run, and the
`RequestRejected` it gives becomes a `rejected` result whose message names the offending field.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from protocol.uris import URI_SCHEMES, UriRejected, parse_uri

ARGUMENT_TYPES = ("input", "parameter", "output")
STREAM_TYPES = ("pipe", "uri")
WORKER_KINDS = ("docker", "native")

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
MAX_URI_CHARS = 4096
Uri = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URI_CHARS)]
Positive = Annotated[float, msgspec.Meta(gt=0)]


MAX_FIELD_PATH = 200  # a field path echoes the body's own keys: cut them short in messages


class RequestRejected(Exception):
    """The message is invalid or not meant for this worker."""

    def __init__(self, field: str, problem: str) -> None:
        if len(field) > MAX_FIELD_PATH:
            field = field[:MAX_FIELD_PATH] + "..."
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class FieldProblem(ValueError):
    """Raised in `__post_init__`: `field` is relative to the struct being checked."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{problem} - at `$.{field}`")


def _check_no_nul(field: str, value: str) -> None:
    """A NUL byte cannot be part of a command-line word, a path or an image name."""
    if "\0" in value:
        raise FieldProblem(field, "must not contain a NUL character")


def _one_of(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise FieldProblem(field, "must be one of " + ", ".join(choices))


def _check_uri(field: str, value: str, *, prefix: bool = False) -> None:
    """Parsed here, as the body is decoded: a bad URI is rejected before any image pull or
    transfer."""
    _check_no_nul(field, value)
    if len(value) > MAX_URI_CHARS:
        raise FieldProblem(field, f"must be a URI of at most {MAX_URI_CHARS} characters, not {len(value)}")
    starts = tuple(f"{scheme}://" for scheme in URI_SCHEMES)
    if not value.startswith(starts):
        raise FieldProblem(field, "must be a URI starting with " + " or ".join(starts))
    try:
        parse_uri(value, prefix=prefix)
    except UriRejected as exc:
        raise FieldProblem(field, str(exc)) from None


class Stream(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """stdin / stdout / stderr: inline data (`pipe`) or a file at a URI (`uri`)."""

    type: str
    value: str | None = None

    def __post_init__(self) -> None:
        _one_of("type", self.type, STREAM_TYPES)
        if self.type == "uri":
            if self.value is None:
                raise FieldProblem("value", "a uri stream needs a URI")
            _check_uri("value", self.value)


class Argument(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One argv entry: `name value`, or `value` alone when there is no name."""

    type: str
    value: str | int | float
    name: NonEmpty | None = None

    def __post_init__(self) -> None:
        _one_of("type", self.type, ARGUMENT_TYPES)
        if isinstance(self.value, bool):
            raise FieldProblem("value", "must be a string or a number")
        if self.name is not None:
            _check_no_nul("name", self.name)
        if isinstance(self.value, str):
            _check_no_nul("value", self.value)
        if self.type != "parameter":
            if not isinstance(self.value, str):
                raise FieldProblem("value", f"an {self.type} argument needs a URI")
            _check_uri("value", self.value)

    @property
    def text(self) -> str:
        return str(self.value)


class Command(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    stdin: Stream | None = None
    stdout: Stream | None = None
    stderr: Stream | None = None
    arguments: list[Argument] = []
    input: list[Uri] = []
    output: list[Uri] = []

    def __post_init__(self) -> None:
        for field in ("input", "output"):
            for index, value in enumerate(getattr(self, field)):
                _check_uri(f"{field}[{index}]", value, prefix=True)

    @property
    def names_files(self) -> bool:
        """Whether any file is staged in or out for it (else staging is a local write of stdin)."""
        streams = (self.stdin, self.stdout, self.stderr)
        return bool(
            self.input
            or self.output
            or any(argument.type != "parameter" for argument in self.arguments)
            or any(stream is not None and stream.type == "uri" for stream in streams)
        )


class Resources(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    cpus: Positive | None = None
    memory: Annotated[int, msgspec.Meta(gt=0)] | NonEmpty | None = None
    cpu_seconds: Positive | None = None
    disk: Annotated[int, msgspec.Meta(gt=0)] | NonEmpty | None = None  # bytes, or a size: "2G"
    gpus: Annotated[int, msgspec.Meta(ge=0, le=1024)] | None = None  # devices of its own


RESERVED_ID_PREFIX = "api-worker-fleet:"  # the job table's items of the fleet's boxes


class JobRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    service: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    queue: str
    test: bool = False
    command: Command | None = None
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    reply_to: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)] | None = None
    timeout: Positive | None = None
    transfer_timeout: Positive | None = None
    resources: Resources | None = None
    events: bool = False  # also send non-final `running` and `progress` messages

    def __post_init__(self) -> None:
        _one_of("queue", self.queue, WORKER_KINDS)
        _check_no_nul("service", self.service)
        if not self.test and self.command is None:
            raise FieldProblem("command", "is required unless test is true")
        if self.id is not None and self.id.startswith(RESERVED_ID_PREFIX):
            raise FieldProblem("id", f"must not start with {RESERVED_ID_PREFIX!r}: the job table keeps the fleet there")


_AT = re.compile(r"^(?P<problem>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_TYPE_NAMES = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


def describe_validation_error(error: str) -> tuple[str, str]:
    """msgspec's `problem - at `$.a.b[2]`` as ("a.b[2]", a plain problem)."""
    match = _AT.match(error)
    assert match is not None
    path = (match.group("path") or "").removeprefix(".")
    problem = match.group("problem")
    # A problem raised in __post_init__ carries its own path inside the struct's.
    nested = _AT.match(problem)
    if nested and nested.group("path"):
        inner = nested.group("path").removeprefix(".")
        path = f"{path}.{inner}" if path else inner
        problem = nested.group("problem")
    if problem.startswith("Object missing required field"):
        field = problem.split("`")[1]
        return _join(path, field), "is required"
    if problem.startswith("Object contains unknown field"):
        field = problem.split("`")[1]
        return _join(path, field), "is not a known field"
    if problem == "Expected `object`, got `array`" and not path:
        return "body", "must be a JSON object"
    return path or "body", _plain(problem)


def _join(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


def _plain(problem: str) -> str:
    expected = re.match(r"^Expected `([^`]*)`(?:, got `([^`]*)`)?(.*)$", problem)
    if not expected:
        return problem
    kinds, got, rest = expected.groups()
    if kinds == "object" and got == "array":
        return "must be an object"
    if rest == " of length >= 1":
        return "must be a non-empty string"
    if " of length" in kinds or rest:
        bound = rest.replace(" > 0.0", " greater than 0").replace(" > 0", " greater than 0")
        return "must be " + _describe_kinds(kinds) + bound
    names = [_TYPE_NAMES.get(kind.strip(), kind.strip()) for kind in kinds.split("|")]
    if "a number" in names and "an integer" in names:
        names.remove("an integer")
    wanted = " or ".join(names)
    return f"must be {wanted}" + (f", not {_TYPE_NAMES.get(got, got)}" if got else "")


def _describe_kinds(kinds: str) -> str:
    head, _, tail = kinds.partition(" ")
    return f"{_TYPE_NAMES.get(head, head)} {tail}".strip()
