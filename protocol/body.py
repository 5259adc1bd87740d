"""The one guarded decode of a message body, which someone else wrote.

`decode_body` never raises: whatever the body holds (any size, any nesting, text that is not
valid Unicode, numbers out of range), it returns either a request or a rejection naming what
is wrong, plus the addressing fields read leniently so that a rejection still reaches its
client. Every string it hands on can be encoded as UTF-8, so nothing downstream (logging,
result encoding, the command line) can trip over it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import msgspec

from protocol.request import JobRequest, RequestRejected, describe_validation_error

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
# No valid request nests deeper than 5 levels; the limit only bounds what the lenient reader
# of an invalid body (for its id and reply_to) will parse.
MAX_NESTING_DEPTH = 32

_DECODER = msgspec.json.Decoder(JobRequest)
# A JSON string, matched possessively so that no input makes the pattern backtrack.
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


@dataclass(frozen=True)
class Envelope:
    """The addressing fields of a body, read leniently: None where absent or unusable."""

    id: str | None = None
    service: str | None = None
    queue: str | None = None
    reply_to: str | None = None


@dataclass(frozen=True)
class DecodedBody:
    envelope: Envelope
    request: JobRequest | None = None
    rejection: RequestRejected | None = None


def decode_body(body: str, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> DecodedBody:
    """A request, or a rejection naming the field (or `body`) at fault; never an exception."""
    try:
        return _decode(body, max_bytes)
    except RequestRejected as exc:
        return DecodedBody(Envelope(), rejection=exc)
    except MemoryError:
        return DecodedBody(Envelope(), rejection=RequestRejected("body", "too large to decode in memory"))
    except RecursionError:
        return DecodedBody(Envelope(), rejection=RequestRejected("body", f"nests deeper than {MAX_NESTING_DEPTH}"))


def _decode(body: str, max_bytes: int) -> DecodedBody:
    try:
        raw = body.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RequestRejected("body", f"is not valid Unicode text (character {exc.start})") from None
    if len(raw) > max_bytes:
        raise RequestRejected("body", f"is {len(raw)} bytes, more than the {max_bytes} a message may hold")
    try:
        request = _DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        rejection = RequestRejected(*describe_validation_error(str(exc)))
        return DecodedBody(_envelope_of(_parse_leniently(body, strict=False)), rejection=rejection)
    except msgspec.DecodeError:
        # Not JSON to msgspec; the standard library says where, or accepts what msgspec refuses
        # (lone surrogates), which lets the rejection name the field that holds it.
        data = _parse_leniently(body, strict=True)
        return DecodedBody(_envelope_of(data), rejection=_undecodable(data))
    return DecodedBody(Envelope(request.id, request.service, request.queue, request.reply_to), request)


def _parse_leniently(body: str, *, strict: bool) -> Any:
    """The standard library's reading of an invalid body, within the nesting limit; None (or,
    when `strict`, a rejection saying why) if it cannot read it either."""
    depth = nesting_depth(body)
    if depth > MAX_NESTING_DEPTH:
        raise RequestRejected("body", f"nests {depth} levels deep; at most {MAX_NESTING_DEPTH} are allowed")
    try:
        return json.loads(body)
    except ValueError as exc:  # JSONDecodeError, or an integer of more digits than Python converts
        if strict:
            raise RequestRejected("body", f"not valid JSON ({exc})") from None
        return None


def nesting_depth(body: str) -> int:
    """How deeply arrays and objects nest in a JSON text (brackets inside strings ignored)."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", body))
    depth = deepest = 0
    for bracket in brackets:
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _undecodable(data: Any) -> RequestRejected:
    where = _first_unencodable(data, "")
    if where is None:
        return RequestRejected("body", "not valid JSON")
    path, text = where
    bad = next(char for char in text if 0xD800 <= ord(char) <= 0xDFFF)
    return RequestRejected(path or "body", f"holds a lone surrogate (\\u{ord(bad):04x}), which is not valid Unicode")


def _first_unencodable(data: Any, path: str) -> tuple[str, str] | None:
    if isinstance(data, str):
        return None if _encodable(data) else (path, data)
    if isinstance(data, list):
        for index, item in enumerate(data):
            found = _first_unencodable(item, f"{path}[{index}]")
            if found:
                return found
    if isinstance(data, dict):
        for key, value in data.items():
            if not _encodable(key):
                return (f"{path}.{key!a}".removeprefix("."), key)
            found = _first_unencodable(value, f"{path}.{key}".removeprefix("."))
            if found:
                return found
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _envelope_of(data: Any) -> Envelope:
    if not isinstance(data, dict):
        return Envelope()

    def text(name: str, max_length: int = 256) -> str | None:
        value = data.get(name)
        usable = isinstance(value, str) and 0 < len(value) <= max_length and _encodable(value)
        return value if usable else None

    return Envelope(text("id"), text("service", 1024), text("queue"), text("reply_to", 2048))


class Addressing(msgspec.Struct):
    """What the supervisor reads of a body to place it: its kind, service and resources; any
    field may hold anything (the child checks the body in full)."""

    queue: Any = None
    service: Any = None
    resources: Any = None

    def native_service(self) -> str | None:
        """The service it names for a native job; None when it names none or is a docker job."""
        return self.service if self.queue == "native" and isinstance(self.service, str) else None

    def asked_resources(self) -> tuple[object, object, object]:
        """(memory, cpus, gpus) as the body asks for them, unchecked; None where it does not."""
        if not isinstance(self.resources, dict):
            return None, None, None
        return self.resources.get("memory"), self.resources.get("cpus"), self.resources.get("gpus")


_ADDRESSING = msgspec.json.Decoder(Addressing)
_NOWHERE = Addressing()


def read_addressing(body: str) -> Addressing:
    """Cheap and never raising: an empty Addressing for a body that is no JSON object."""
    try:
        return _ADDRESSING.decode(body)
    except Exception:  # any body at all: the supervisor only wants to know where it belongs
        return _NOWHERE
