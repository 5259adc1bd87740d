"""Where an object lives inside a job directory: `s3://bucket/key` at `<root>/bucket/key`,
`file:///abs/path` at `<root>/abs/path`; never outside `<root>`."""

from __future__ import annotations

import os
from pathlib import Path

from protocol.uris import ObjectUri
from staging.errors import StagingRejected


def mirror_path(root: Path, uri: ObjectUri) -> Path:
    """The local path of `uri` under `root`, guaranteed to stay inside it."""
    path = Path(os.path.normpath(root.joinpath(*uri.mirror_parts())))
    if not path.is_relative_to(root) or path == root:
        raise StagingRejected(f"{uri}: would leave the job directory")
    return path
