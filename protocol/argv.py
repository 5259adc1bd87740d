"""argv from a message's arguments: `name value` or `value`, in order, never via a shell."""

from __future__ import annotations

from collections.abc import Sequence

from protocol.request import Argument


def build_argv(base_command: Sequence[str], arguments: Sequence[Argument], values: Sequence[str]) -> list[str]:
    """`values[i]` is argument i's value as the command must see it (local path or literal)."""
    if len(arguments) != len(values):
        raise ValueError("one resolved value is needed per argument")
    argv = list(base_command)
    for argument, value in zip(arguments, values, strict=True):
        if argument.name is not None:
            argv.append(argument.name)
        argv.append(value)
    return argv
