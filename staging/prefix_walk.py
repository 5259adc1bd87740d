"""The files under a local directory that match a prefix, in a stable order: how both the
file store lists a `file://` prefix and stage-out collects what a job wrote under an output prefix."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def walk_prefix(directory: Path, name_start: str) -> Iterator[tuple[Path, str]]:
    """Each file below `directory` whose `/`-joined path relative to it starts with
    `name_start`, as (path, that relative key), sorted within each directory."""
    for current, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        relative_dir = os.path.relpath(current, directory)
        for filename in sorted(filenames):
            relative = filename if relative_dir == "." else f"{relative_dir}/{filename}"
            if relative.startswith(name_start):
                yield Path(current) / filename, relative
