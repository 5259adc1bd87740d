"""Memory sizes as operators write them: `512M`, `2G`, `1.5GiB`, or plain bytes.

Units are binary, as in `docker run -m`: K = 1024, M = 1024², G = 1024³, T = 1024⁴.
"""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_FACTORS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str | int) -> int:
    """Bytes in `text`; ValueError naming the accepted forms when it is not a size."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text <= 0:
            raise ValueError("must be a positive number of bytes")
        return text
    shown = repr(str(text)[:40] + ("..." if len(str(text)) > 40 else ""))
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"{shown} is not a size: use bytes or a number with K, M, G or T (e.g. 512M)")
    try:
        size = int(float(match.group(1)) * _FACTORS[match.group(2).lower()])
    except OverflowError:
        raise ValueError(f"{shown} is too large a size") from None
    if size <= 0:
        raise ValueError(f"{shown} must be more than 0 bytes")
    return size


def format_size(size: int) -> str:
    for unit in ("T", "G", "M", "K"):
        factor = _FACTORS[unit.lower()]
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def human_size(size: int) -> str:
    """For messages people act on: 3 GiB for an exact multiple, else 2.7 GiB; 512 B."""
    for power, unit in ((4, "TiB"), (3, "GiB"), (2, "MiB"), (1, "KiB")):
        factor = 1024**power
        if size >= factor:
            return f"{size // factor} {unit}" if size % factor == 0 else f"{size / factor:.1f} {unit}"
    return f"{size} B"


def describe_size(size: float) -> str:
    """For people: 512 B, 1.5 KiB, 21.2 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
