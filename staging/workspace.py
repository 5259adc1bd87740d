"""The per-job scratch directory and its layout."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

JOB_DIR_PREFIX = "job-"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Workspace:
    """A job's directory (`in/` mirrors inputs, `out/` collects outputs; it is also the job's
    HOME and TMPDIR), plus its slot's stream files, kept outside the job directory and reused
    from job to job."""

    root: Path
    streams: Path

    @property
    def inputs(self) -> Path:
        return self.root / "in"

    @property
    def outputs(self) -> Path:
        return self.root / "out"

    @property
    def stdin(self) -> Path:
        return self.streams / "stdin"

    @property
    def stdout(self) -> Path:
        return self.streams / "stdout"

    @property
    def stderr(self) -> Path:
        return self.streams / "stderr"

    @classmethod
    def create(cls, scratch_dir: Path, slot: int = 0) -> Workspace:
        """`scratch_dir` must be absolute and free of links (the supervisor resolves it once)."""
        streams = scratch_dir / f"{JOB_DIR_PREFIX}streams-{slot}"
        if not streams.is_dir():
            streams.mkdir(parents=True)
        root = Path(tempfile.mkdtemp(prefix=JOB_DIR_PREFIX, dir=scratch_dir))
        # `in/` and `out/` appear when staging first needs them.
        return cls(root, streams)

    def remove(self) -> None:
        try:
            self.root.rmdir()  # the common case of a job that left nothing behind
        except OSError:
            remove_tree(self.root)
        for stream in (self.stdin, self.stdout, self.stderr):
            stream.unlink(missing_ok=True)


def remove_tree(path: Path) -> None:
    """Remove a job directory even where the job left read-only files or directories."""

    def make_writable_and_retry(function, failed_path, _exc_info):  # type: ignore[no-untyped-def]
        parent = os.path.dirname(failed_path)
        os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR | stat.S_IXUSR)
        if not os.path.islink(failed_path) and os.path.isdir(failed_path):
            os.chmod(failed_path, stat.S_IRWXU)
        function(failed_path)

    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path, onerror=make_writable_and_retry)


def remove_stale_workspaces(scratch_dir: Path) -> int:
    """Remove job directories left by a previous run; return how many there were."""
    if not scratch_dir.is_dir():
        return 0
    removed = 0
    for entry in scratch_dir.iterdir():
        if entry.name.startswith(JOB_DIR_PREFIX) and entry.is_dir() and not entry.is_symlink():
            remove_tree(entry)
            removed += 1
    if removed:
        log.info("removed stale job directories", extra={"count": removed, "scratch_dir": str(scratch_dir)})
    return removed


def read_stream(path: Path, limit_bytes: int) -> tuple[str, int]:
    """A captured stream as text (its first `limit_bytes`) and its whole size, never read
    through a link the job may have put in its place."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(descriptor, "rb") as stream:
        status = os.fstat(stream.fileno())
        if not stat.S_ISREG(status.st_mode):
            return "", 0
        return stream.read(limit_bytes).decode("utf-8", errors="replace"), status.st_size
