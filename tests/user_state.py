"""Keeps the test session off the user's own state: HOME and the XDG directories point into a
directory of the session's, and whatever the session changed under the real ones is reported."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

XDG_VARIABLES = ("XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR")
# Where this program (and the tools the tests drive) would keep state under a home directory.
WATCHED = (".local/state", ".config", ".docker", ".aws")


class UserStateGuard:
    def __init__(self) -> None:
        self.real_home = Path(os.environ.get("HOME") or Path.home())
        self.real_xdg = {name: os.environ.get(name) for name in XDG_VARIABLES}
        self.session_home: Path | None = None
        self._before: dict[str, tuple[int, int]] = {}

    def isolate(self) -> None:
        self._before = self._snapshot()
        self.session_home = Path(tempfile.mkdtemp(prefix="api-worker-tests-home-"))
        os.environ["HOME"] = str(self.session_home)
        for name in XDG_VARIABLES:
            directory = self.session_home / name.lower()
            directory.mkdir(mode=0o700)
            os.environ[name] = str(directory)

    def changes(self) -> list[str]:
        """Paths under the real home's state directories that appeared, changed or went."""
        after = self._snapshot()
        if self.session_home is not None:
            shutil.rmtree(self.session_home, ignore_errors=True)
        changed = {path for path in after.keys() | self._before.keys() if after.get(path) != self._before.get(path)}
        return sorted(changed)

    def _snapshot(self) -> dict[str, tuple[int, int]]:
        """(mtime, size) of every file and folder in the real state directories."""
        roots = [self.real_home / name for name in WATCHED]
        roots += [Path(value) for value in self.real_xdg.values() if value]
        found: dict[str, tuple[int, int]] = {}
        for root in roots:
            for directory, folders, files in os.walk(root):
                for name in [*folders, *files]:
                    path = os.path.join(directory, name)
                    try:
                        status = os.lstat(path)
                    except OSError:
                        continue
                    found[path] = (status.st_mtime_ns, status.st_size)
        return found
