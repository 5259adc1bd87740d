"""Headless Chromium (Debian's `chromium` package) reading a page: its DOM after load, or a
screenshot. As root it runs without its sandbox; the flags keep it off the network but for the
page it is given."""

from __future__ import annotations

import subprocess
from pathlib import Path

QUIET_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


class Browser:
    def __init__(self, binary: str, profile: Path) -> None:
        self.binary = binary
        self.profile = profile

    def _run(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        command = [self.binary, *QUIET_FLAGS, f"--user-data-dir={self.profile}", *arguments]
        return subprocess.run(command, capture_output=True, text=True, timeout=90, check=True)

    def dom(self, url: str) -> str:
        """The page's DOM as Chromium built it, serialized."""
        return self._run("--dump-dom", url).stdout

    def screenshot(self, url: str, path: Path, width: int = 1280, height: int = 1700) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._run(f"--screenshot={path}", f"--window-size={width},{height}", "--hide-scrollbars", url)
        return path
