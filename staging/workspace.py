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

SCRATCH_LOCK_NAME = ".api-worker.lock"  # held by the worker that owns the scratch directory
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
    def create(cls, scratch_dir: Path, slot: int = 0, *, reuse: Path | None = None) -> Workspace:
        """`scratch_dir` must be absolute and free of links (the supervisor resolves it once).
        `reuse`: the slot's previous job directory, taken again if it is still empty and private."""
        streams = scratch_dir / f"{JOB_DIR_PREFIX}streams-{slot}"
        if not streams.is_dir():
            streams.mkdir(parents=True)
        if reuse is not None and is_empty_and_private(reuse):
            root = reuse
        else:
            if reuse is not None:
                remove_tree(reuse)
            root = Path(tempfile.mkdtemp(prefix=JOB_DIR_PREFIX, dir=scratch_dir))
        # `in/` and `out/` appear when staging first needs them.
        return cls(root, streams)

    def remove(self) -> Path | None:
        """Remove what the job left behind. A job directory the job left empty and private is
        kept and returned, for the slot's next job: it is as good as a new one, and making and
        removing a directory for every job costs the filesystem journal writes. Likewise empty
        stream files stay, to be written again."""
        for stream in (self.stdin, self.stdout, self.stderr):
            if not is_empty_file(stream):
                stream.unlink(missing_ok=True)
        if is_empty_and_private(self.root):
            return self.root
        remove_tree(self.root)
        return None

    def discard(self) -> None:
        """Remove the job directory and the slot's stream files, whatever is in them."""
        remove_tree(self.root)
        remove_tree(self.streams)


def is_empty_file(path: Path) -> bool:
    """A regular file (not a link to one) with nothing in it."""
    try:
        status = path.lstat()
    except FileNotFoundError:
        return False
    return stat.S_ISREG(status.st_mode) and status.st_size == 0


def is_empty_and_private(directory: Path) -> bool:
    """A real directory of this user's, readable by nobody else, with nothing in it."""
    try:
        status = directory.lstat()
        if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.geteuid() or stat.S_IMODE(status.st_mode) != 0o700:
            return False
        with os.scandir(directory) as entries:
            return next(entries, None) is None
    except OSError:
        return False


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
