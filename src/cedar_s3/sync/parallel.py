"""Work on many files ``jobs`` at a time: a problem with one file is that file's, an S3 error ends the run.

At most twice ``jobs`` items are queued at once, so a tree of 100,000 files costs no futures per file. A local
``OSError`` (unreadable, changed or vanished file) becomes that item's failure and the others go on; an
``S3Error`` (credentials, bucket, network after retries) would fail every other item the same way, so the first
one stops new work and is raised once the running items have finished.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from cedar_s3.s3.errors import S3Error

__all__ = ["eachInParallel"]

Item = TypeVar("Item")
Result = TypeVar("Result")


def eachInParallel(
    items: Iterable[Item],
    work: Callable[[Item], Result],
    jobs: int,
    done: Callable[[Item, Result | None, OSError | None], None],
) -> None:
    """Call ``work`` on every item, ``jobs`` at a time; ``done(item, result, problem)`` in the calling thread."""
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="cedar-s3-sync")
    running: dict[Future[Result], Item] = {}
    fatal: BaseException | None = None

    def settle(finished: set[Future[Result]]) -> None:
        nonlocal fatal
        for future in finished:
            item = running.pop(future)
            error = future.exception()
            if error is None:
                done(item, future.result(), None)
            elif isinstance(error, OSError) and not isinstance(error, S3Error):
                done(item, None, error)
            elif fatal is None:
                fatal = error

    try:
        for item in items:
            if fatal is not None:
                break
            running[pool.submit(work, item)] = item
            if len(running) >= 2 * jobs:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                settle(finished)
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            settle(finished)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if fatal is not None:
        raise fatal
