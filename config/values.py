"""Types of the command line's values: each checks its text and names what is wrong."""

from __future__ import annotations

import argparse
import ipaddress
import re

from common.durations import parse_duration
from common.sizes import parse_size
from runners.container_settings import parse_user


def _number(text: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}") from None


def positive_int(text: str) -> int:
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {value}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, not {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {text}")
    return value


def port(text: str) -> int:
    value = int(_number(text, int))
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, not {value}")
    return value


def network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address or a network in CIDR notation: 10.0.0.0/8, 192.0.2.7, ::1."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an address or a network like 10.0.0.0/8, not {text!r}") from None


def size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def duration_or_zero(text: str) -> float:
    """A duration, or 0 for none."""
    return 0.0 if text.strip() in ("0", "0s") else duration(text)


def container_user(text: str) -> tuple[int, int]:
    try:
        return parse_user(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_INSTANCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def instance_name(text: str) -> str:
    if not _INSTANCE_NAME.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is no instance name: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return text
