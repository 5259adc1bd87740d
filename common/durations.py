"""Durations as operators write them: `90` or `90s`, `15m`, `12h`, `4d`."""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_FACTORS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | float) -> float:
    """Seconds in `text`; ValueError naming the accepted forms when it is not a duration."""
    shown = repr(str(text)[:40])
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{shown} is not a duration: use seconds or a number with s, m, h or d (e.g. 4d)")
    seconds = float(match.group(1)) * _FACTORS[match.group(2).lower()]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{shown} must be a positive, finite duration")
    return seconds
