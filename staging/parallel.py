"""Blocking transfers on a few threads, for stores without an engine of their own (file://)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")


def run_all(transfers: Sequence[Callable[[], T]], concurrency: int) -> list[T]:
    """Run transfers at most `concurrency` at a time; the first failure stops the rest."""
    if len(transfers) <= 1:
        return [transfer() for transfer in transfers]
    with ThreadPoolExecutor(min(concurrency, len(transfers)), thread_name_prefix="transfer") as pool:
        futures = [pool.submit(transfer) for transfer in transfers]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((future for future in futures if future in done and future.exception()), None)
        if failed is not None:
            for future in futures:
                future.cancel()
            exception = failed.exception()
            assert exception is not None
            raise exception
        return [future.result() for future in futures]
