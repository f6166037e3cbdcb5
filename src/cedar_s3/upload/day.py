"""``DayUpload``: every file of one staged day stored (or reused), ``<max_concurrency>`` jobs at a time.

Jobs are made as they are needed and at most twice the concurrency are queued, so a day of 100,000 files costs
no memory per file here; each outcome is committed to the night's ``RecordTable`` by the one commit step. The
first failure stops the night: jobs not started are not started, a batch stops at its next file, and that
failure (not a "stopped" one) is what the night raises.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from cedar_s3.children import TerminatedError, killAllChildren
from cedar_s3.upload.jobs import Job, JobContext, Outcome, jobsFor
from cedar_s3.upload.records import RecordTable
from cedar_s3.upload.send import StoppedError

__all__ = ["DayUpload", "UploadReport"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.upload")


@dataclass
class UploadReport:
    """What a day's upload did, for the log: counts and bytes."""

    stored: int = 0
    skipped: int = 0
    bytesSent: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.bytesSent / self.seconds if self.seconds > 0 else 0.0


class DayUpload:
    """``DayUpload(context, concurrency).run(listing, records)``."""

    def __init__(self, context: JobContext, concurrency: int) -> None:
        self.context = context
        self.concurrency = concurrency
        self.report = UploadReport()
        self._lock = threading.Lock()

    def _commit(self, records: RecordTable, outcome: Outcome) -> None:
        """The one commit step: the record into its slot, the counts into the report."""
        records.put(outcome.index, outcome.record, reused=outcome.reused)
        with self._lock:
            if outcome.reused:
                self.report.skipped += 1
            else:
                self.report.stored += 1
                self.report.bytesSent += outcome.record.size

    def _runJob(self, job: Job, records: RecordTable) -> None:
        if self.context.stop.is_set():
            raise StoppedError
        try:
            for outcome in job.run(self.context):
                self._commit(records, outcome)
        except BaseException:
            self.context.stop.set()
            raise

    def run(self, files: Iterator[object], records: RecordTable) -> UploadReport:
        started = time.monotonic()
        pending: set[Future[None]] = set()
        jobs = jobsFor(self.context, files)  # type: ignore[arg-type]
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="cedar-s3")
        submitted: list[Future[None]] = []
        try:
            for job in jobs:
                future = pool.submit(self._runJob, job, records)
                pending.add(future)
                submitted.append(future)
                if len(pending) >= 2 * self.concurrency:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    _raiseFirst(done)
                    submitted = [future for future in submitted if not future.done()]
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                _raiseFirst(done)
        except BaseException as error:
            self.context.stop.set()
            if isinstance(error, TerminatedError) or not isinstance(error, Exception):
                killAllChildren()  # SIGTERM or Ctrl-C: gpg and the command go now, not at their deadlines

            pool.shutdown(wait=True, cancel_futures=True)
            raise _firstReal(error, submitted) from None
        pool.shutdown(wait=True)
        self.report.seconds = time.monotonic() - started
        return self.report


def _raiseFirst(done: set[Future[None]]) -> None:
    """Raise the first failure among ``done``, preferring a real one over a job that merely stopped."""
    errors = [future.exception() for future in done if not future.cancelled() and future.exception() is not None]
    for error in errors:
        if not isinstance(error, StoppedError):
            raise error  # type: ignore[misc]
    if errors:
        raise errors[0]  # type: ignore[misc]


def _firstReal(error: BaseException, futures: list[Future[None]]) -> BaseException:
    """The failure that lost the night, not a job that merely stopped because of it (all jobs have ended)."""
    if not isinstance(error, StoppedError):
        return error
    for future in futures:
        if future.done() and not future.cancelled():
            other = future.exception()
            if other is not None and not isinstance(other, StoppedError):
                return other
    return error
