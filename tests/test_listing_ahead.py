"""Input prefixes listed a page ahead of the downloads, and the read-ahead iterator under it."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec
import pytest

from protocol.request import Command
from protocol.uris import ObjectUri
from staging.errors import StagingFault, StagingRejected
from staging.read_ahead import ReadAhead
from staging.stager import Stager
from staging.stores import StoredObject
from staging.watch import TransferWatch
from staging.workspace import Workspace

DEADLINE_S = 10.0


class _PagedStore:
    """A store whose listing comes in pages; each page's listing and download can be held."""

    def __init__(self, pages: list[list[int]]) -> None:
        self.pages = pages  # each object's size, page by page
        self.listed = [threading.Event() for _ in pages]
        self.events: list[str] = []
        self.hold_download_until_listed: int | None = None  # page 0's download waits for this page's listing

    def stat(self, uri: ObjectUri) -> StoredObject:
        return StoredObject(uri, 1)

    def list_pages(self, prefix: ObjectUri) -> Iterator[list[StoredObject]]:
        for index, sizes in enumerate(self.pages):
            self.events.append(f"listed {index}")
            self.listed[index].set()
            yield [StoredObject(prefix.child(f"{index}-{number}"), size) for number, size in enumerate(sizes)]

    def authorize_upload(self, destination: ObjectUri) -> None:
        pass

    def download_all(self, downloads: Sequence[tuple[StoredObject, Path]], watch: TransferWatch) -> None:
        page = int(downloads[0][0].uri.key.rsplit("/", 1)[1].split("-")[0])
        self.events.append(f"downloading {page}")
        if page == 0 and self.hold_download_until_listed is not None:
            assert self.listed[self.hold_download_until_listed].wait(DEADLINE_S), "the next page was not listed ahead"
        for stored, path in downloads:
            path.write_bytes(b"x" * stored.size)

    def upload_all(self, uploads: Sequence[tuple[Path, ObjectUri]], watch: TransferWatch) -> list[int]:
        return [0 for _ in uploads]


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace.create(tmp_path / "scratch")
    yield workspace
    workspace.remove()


def stage(store: _PagedStore, workspace: Workspace, job_disk_bytes: int | None = None) -> tuple[int, list[str]]:
    stager = Stager({"s3": store}, job_disk_bytes=job_disk_bytes)
    staged = stager.stage_in(msgspec.convert({"input": ["s3://b/data/"]}, Command), workspace)
    return staged.bytes_in, sorted(path.name for path in (workspace.inputs / "b" / "data").iterdir())


def test_the_next_page_is_listed_while_the_page_before_downloads(workspace: Workspace) -> None:
    store = _PagedStore([[1, 1], [2], [3]])
    store.hold_download_until_listed = 1  # deadlocks unless page 1 is listed during page 0's download
    assert stage(store, workspace) == (7, ["0-0", "0-1", "1-0", "2-0"])
    assert store.events.index("listed 1") < store.events.index("downloading 1")


def test_inputs_over_the_job_disk_stop_at_the_page_that_passes_it(workspace: Workspace) -> None:
    store = _PagedStore([[100], [100]])
    with pytest.raises(StagingFault, match="the inputs need 200B, more than this worker's --job-disk of 150B"):
        stage(store, workspace, job_disk_bytes=150)
    assert "downloading 1" not in store.events


def test_a_prefix_whose_pages_are_all_empty_is_rejected(workspace: Workspace) -> None:
    with pytest.raises(StagingRejected, match=r"command.input\[0\]: no objects match the prefix s3://b/data/"):
        stage(_PagedStore([[], []]), workspace)


def test_read_ahead_takes_the_next_item_while_the_caller_works() -> None:
    taken: list[int] = []
    second_taken = threading.Event()

    def items() -> Iterator[int]:
        for number in range(3):
            taken.append(number)
            if number == 1:
                second_taken.set()
            yield number

    with ReadAhead(items()) as ahead:
        assert next(ahead) == 0
        assert second_taken.wait(DEADLINE_S)  # taken before it was asked for
        assert list(ahead) == [1, 2]
    assert taken == [0, 1, 2]


def test_read_ahead_raises_what_its_items_raise_and_stops_when_closed() -> None:
    def failing() -> Iterator[int]:
        yield 1
        raise StagingFault("the listing broke off")

    with ReadAhead(failing()) as ahead:
        assert next(ahead) == 1
        with pytest.raises(StagingFault, match="the listing broke off"):
            next(ahead)
    endless = ReadAhead(iter(range(10**9)))
    assert next(endless) == 0
    endless.close()
    with pytest.raises(StopIteration):
        next(endless)
