"""The job request message (DESIGN.md section 2): parsing and validation.

A body that fails here is never run; the caller turns `RequestRejected` into a
`rejected` result whose message names the offending field.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

WorkerKind = Literal["docker", "native"]
SUPPORTED_URI_SCHEMES = ("s3://", "file://")


class RequestRejected(Exception):
    """The message is invalid or not meant for this worker."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def _check_uri(value: str) -> str:
    if not value.startswith(SUPPORTED_URI_SCHEMES):
        raise ValueError("must be a URI starting with " + " or ".join(SUPPORTED_URI_SCHEMES))
    return value


Uri = Annotated[StrictStr, Field(min_length=1, max_length=4096)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Stream(_Strict):
    """stdin / stdout / stderr: inline data (`pipe`) or a file at a URI (`uri`)."""

    type: Literal["pipe", "uri"]
    value: StrictStr | None = None

    @model_validator(mode="after")
    def _uri_needs_value(self) -> Stream:
        if self.type == "uri":
            if self.value is None:
                raise ValueError("value: a uri stream needs a URI")
            try:
                _check_uri(self.value)
            except ValueError as exc:
                raise ValueError(f"value: {exc}") from None
        return self


class Argument(_Strict):
    """One argv entry: `name value`, or `value` alone when there is no name."""

    type: Literal["input", "parameter", "output"]
    name: Annotated[StrictStr, Field(min_length=1)] | None = None
    value: StrictStr | int | float

    @field_validator("value", mode="before")
    @classmethod
    def _scalar(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError("must be a string or a number")
        return value

    @model_validator(mode="after")
    def _files_are_uris(self) -> Argument:
        if self.type != "parameter":
            if not isinstance(self.value, str):
                raise ValueError(f"value: an {self.type} argument needs a URI")
            try:
                _check_uri(self.value)
            except ValueError as exc:
                raise ValueError(f"value: {exc}") from None
        return self

    @property
    def text(self) -> str:
        return str(self.value)


class Command(_Strict):
    stdin: Stream | None = None
    stdout: Stream | None = None
    stderr: Stream | None = None
    arguments: list[Argument] = Field(default_factory=list)
    input: list[Uri] = Field(default_factory=list)
    output: list[Uri] = Field(default_factory=list)

    @field_validator("input", "output")
    @classmethod
    def _prefixes_are_uris(cls, values: list[str]) -> list[str]:
        for index, value in enumerate(values):
            try:
                _check_uri(value)
            except ValueError as exc:
                raise ValueError(f"[{index}]: {exc}") from None
        return values


class Resources(_Strict):
    cpus: Annotated[float, Field(gt=0)] | None = None
    memory: Annotated[int, Field(gt=0)] | Annotated[StrictStr, Field(min_length=1)] | None = None


class JobRequest(_Strict):
    test: StrictBool = False
    service: Annotated[StrictStr, Field(min_length=1, max_length=1024)]
    queue: WorkerKind
    command: Command | None = None
    id: Annotated[StrictStr, Field(min_length=1, max_length=256)] | None = None
    reply_to: Annotated[StrictStr, Field(min_length=1, max_length=2048)] | None = None
    timeout: Annotated[float, Field(gt=0)] | None = None
    resources: Resources | None = None

    @model_validator(mode="after")
    def _command_unless_test(self) -> JobRequest:
        if not self.test and self.command is None:
            raise ValueError("command: is required unless test is true")
        return self


def parse_request(body: str) -> JobRequest:
    """Parse a raw message body; raise `RequestRejected` naming the first bad field."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestRejected("body", f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RequestRejected("body", "must be a JSON object")
    try:
        return JobRequest.model_validate(data)
    except ValidationError as exc:
        field, problem = _describe_first_error(exc)
        raise RequestRejected(field, problem) from None


def peek_field(body: str, name: str, max_length: int = 256) -> str | None:
    """A top-level string field of a body that may be invalid (to address its rejection)."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= max_length else None


def _describe_first_error(exc: ValidationError) -> tuple[str, str]:
    error = exc.errors(include_url=False)[0]
    location = [part for part in error["loc"] if not _is_union_branch(part)]
    problem = _problem_text(error)
    # Model-level validators name their sub-field as "field: problem".
    nested = re.match(r"^(\[\d+\]|[a-z_]+): (.*)$", problem, re.DOTALL)
    if error["type"] == "value_error" and nested:
        location.append(nested.group(1))
        problem = nested.group(2)
    return _dotted(location), problem


def _is_union_branch(part: str | int) -> bool:
    # pydantic names union members in the location, e.g. "str", "int", "function-after[...]".
    return isinstance(part, str) and (
        part in {"str", "int", "float", "bool"} or "[" in part or part.startswith("constrained-")
    )


def _dotted(location: list[str | int]) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.startswith("["):
            text += part
        else:
            text += f".{part}" if text else part
    return text or "body"


def _problem_text(error: Any) -> str:
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(context.get("expected", "")))
        return "must be one of " + ", ".join(choices)
    if kind == "value_error":
        return str(context.get("error", error["msg"]))
    message = str(error["msg"])
    if message.startswith("Input should"):
        return "must" + message[len("Input should") :]
    return message[:1].lower() + message[1:]
