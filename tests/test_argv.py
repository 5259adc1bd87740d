from __future__ import annotations

import pytest

from protocol.argv import build_argv
from protocol.request import Argument


def test_arguments_follow_the_base_command_in_order() -> None:
    arguments = [
        Argument(type="input", name="--infile", value="s3://b/in.txt"),
        Argument(type="parameter", value="positional"),
        Argument(type="parameter", name="--n", value=3),
        Argument(type="output", name="--outfile", value="s3://b/out.txt"),
    ]
    values = ["/job/in/b/in.txt", "positional", "3", "/job/out/b/out.txt"]
    assert build_argv(["python", "tool.py"], arguments, values) == [
        "python",
        "tool.py",
        "--infile",
        "/job/in/b/in.txt",
        "positional",
        "--n",
        "3",
        "--outfile",
        "/job/out/b/out.txt",
    ]


def test_values_are_passed_literally_not_through_a_shell() -> None:
    arguments = [Argument(type="parameter", value="$(rm -rf /); echo *")]
    assert build_argv(["echo"], arguments, ["$(rm -rf /); echo *"]) == ["echo", "$(rm -rf /); echo *"]


def test_one_value_per_argument_is_required() -> None:
    with pytest.raises(ValueError, match="one resolved value"):
        build_argv(["x"], [Argument(type="parameter", value="a")], [])
