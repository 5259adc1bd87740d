"""An iterator whose next item is taken on a helper thread while the caller works on the
current one: the next page of a listing is fetched while the current page downloads."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")
_END = object()


class ReadAhead(Generic[T]):
    """Starts taking the first item at once. Close it (or use it as a context manager) when
    done: a step still running is left to finish on its own, and nothing more is taken."""

    def __init__(self, items: Iterator[T]) -> None:
        self._items = items
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="read-ahead")
        self._pending: Future[object] | None = self._executor.submit(next, items, _END)

    def __iter__(self) -> ReadAhead[T]:
        return self

    def __next__(self) -> T:
        if self._pending is None:
            raise StopIteration
        item = self._pending.result()  # an error the items raised is raised here
        if item is _END:
            self.close()
            raise StopIteration
        self._pending = self._executor.submit(next, self._items, _END)
        return item  # type: ignore[return-value]

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
