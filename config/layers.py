"""Settings from a TOML file and the environment, under the command line.

Precedence: a flag on the command line > an `API_WORKER_*` environment variable > a key in the
`--config` file > the built-in default. The layers are applied as argparse defaults, so every
flag keeps one definition (type, choices, help) whichever layer sets it, and `--help` shows
the values in effect.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ENV_PREFIX = "API_WORKER_"
CONFIG_FLAG = "--config"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


class ReplacingAppend(argparse.Action):
    """`append`, except that flags given on the command line replace a list set by a lower
    layer instead of adding to it."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        current = getattr(namespace, self.dest, None)
        items = [] if current is None or current is self.default else list(current)
        items.append(values)
        setattr(namespace, self.dest, items)


def setting_name(action: argparse.Action) -> str | None:
    """The name a flag goes by in the config file: `--job-memory` -> `job-memory`."""
    long_options = [option for option in action.option_strings if option.startswith("--")]
    if not long_options or long_options[0] in ("--help", CONFIG_FLAG):
        return None
    return long_options[0].removeprefix("--")


def env_name(setting: str) -> str:
    return ENV_PREFIX + setting.upper().replace("-", "_")


def config_path(argv: Sequence[str], environ: Mapping[str, str]) -> Path | None:
    """`--config FILE` from the command line, else API_WORKER_CONFIG."""
    finder = argparse.ArgumentParser(add_help=False)
    finder.add_argument(CONFIG_FLAG, type=Path)
    found, _ = finder.parse_known_args(list(argv))
    if found.config is not None:
        return Path(found.config)
    configured = environ.get(env_name("config"))
    return Path(configured) if configured else None


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ValueError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"the config file {path} is not valid TOML: {exc}") from None
    return {key.replace("_", "-"): value for key, value in data.items()}


def apply_layers(
    parsers: Iterable[argparse.ArgumentParser], file_settings: Mapping[str, Any], environ: Mapping[str, str]
) -> None:
    """Make the file's and the environment's values the defaults of the parsers' flags."""
    known: set[str] = set()
    for parser in parsers:
        defaults: dict[str, Any] = {}
        for action in parser._actions:  # argparse has no public way to list a parser's flags
            setting = setting_name(action)
            if setting is None:
                continue
            known.add(setting)
            if env_name(setting) in environ:
                defaults[action.dest] = _from_text(action, env_name(setting), environ[env_name(setting)])
            elif setting in file_settings:
                defaults[action.dest] = from_file(action, setting, file_settings[setting])
        parser.set_defaults(**defaults)
    unknown = sorted(set(file_settings) - known)
    if unknown:
        raise ValueError(f"unknown settings in the config file: {', '.join(unknown)}")


def _from_text(action: argparse.Action, source: str, text: str) -> Any:
    """A value from an environment variable; lists are comma-separated."""
    if isinstance(action, argparse._StoreTrueAction):
        lowered = text.strip().lower()
        if lowered not in TRUE_WORDS + FALSE_WORDS:
            raise ValueError(f"{source}: must be one of {', '.join(TRUE_WORDS + FALSE_WORDS)}, not {text!r}")
        return lowered in TRUE_WORDS
    if isinstance(action, ReplacingAppend | argparse._AppendAction):
        return [_convert(action, source, item.strip()) for item in text.split(",") if item.strip()]
    return _convert(action, source, text)


def from_file(action: argparse.Action, setting: str, value: Any) -> Any:
    source = f"config key {setting!r}"
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise ValueError(f"{source}: must be true or false, not {value!r}")
        return value
    if isinstance(action, ReplacingAppend | argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        return [_convert(action, source, _scalar(source, item)) for item in items]
    return _convert(action, source, _scalar(source, value))


def _scalar(source: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{source}: must be a string or a number, not {value!r}")
    return str(value)


def _convert(action: argparse.Action, source: str, text: str) -> Any:
    """The flag's own type and choices, so a layer is checked exactly as the flag would be."""
    value: Any = text
    if action.type is not None:
        try:
            value = action.type(text)  # type: ignore[operator]  # argparse types it loosely
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ValueError(f"{source}: must be one of {choices}, not {text!r}")
    return value
