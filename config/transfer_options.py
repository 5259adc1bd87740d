"""The options of staging's transfers: the S3 engine's bound and the box-wide input cache."""

from __future__ import annotations

import argparse
from pathlib import Path

from common.sizes import parse_size
from config.values import positive_int, size
from staging.input_cache import DEFAULT_INPUT_CACHE_SIZE
from staging.s3_store import DEFAULT_REQUESTS_IN_FLIGHT


def add_transfer_options(parser: argparse.ArgumentParser, state: Path) -> None:
    parser.add_argument(
        "--transfer-concurrency",
        type=positive_int,
        default=DEFAULT_REQUESTS_IN_FLIGHT,
        help="S3 requests in flight at once in each pool child (objects and the parts of large ones); "
        "file:// copies run 8 at a time",
    )
    parser.add_argument(
        "--input-cache-size",
        type=size,
        default=parse_size(DEFAULT_INPUT_CACHE_SIZE),
        help="most bytes of s3:// inputs kept on the box between jobs, handed to each job by hard link; "
        "least recently used entries go first, and any entry no job holds while the scratch filesystem "
        "is below --disk-reserve; 0 turns the cache off",
    )
    parser.add_argument(
        "--input-cache-dir",
        type=Path,
        default=None,
        help=f"the input cache's directory; workers of one user on a box may share it "
        f"(default: {state}/input-cache; best on the scratch directory's filesystem, else inputs are copied)",
    )
