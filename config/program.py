"""The native runner's command, as the operator gives it: checked and found at start-up."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence


def parse_program(words: Sequence[str]) -> list[str]:
    """`-- CMD ARG...` or the seed's single JSON list `'["python", "x.py"]'`."""
    words = list(words)
    if words and words[0] == "--":
        words = words[1:]
    if len(words) == 1 and words[0].lstrip().startswith("["):
        try:
            program = json.loads(words[0])
        except json.JSONDecodeError as exc:
            raise ValueError(f"the command is not a valid JSON list: {exc}") from None
        if not isinstance(program, list) or not program or not all(isinstance(w, str) for w in program):
            raise ValueError("the command's JSON form must be a non-empty list of strings")
        return program
    if not words:
        raise ValueError("native needs the command to run, e.g. native -- python my_script.py")
    return words


def resolve_executable(program: list[str]) -> list[str]:
    """Jobs run in their own directory: find the command now, as the operator meant it."""
    found = shutil.which(program[0])
    if found is None:
        raise ValueError(f"the command {program[0]!r} is not an executable file here or on PATH")
    if "/" in program[0]:
        return [os.path.abspath(program[0]), *program[1:]]
    return program
