"""Progress for long transfers: a live bar on a terminal (rich), plain periodic log lines otherwise.

Under cron or a pipe there is no terminal to redraw, so progress becomes a log line every ``LOG_EVERY`` seconds
(files, bytes, rate, time left) and each finished file a debug line; ``--quiet`` silences both.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType
from typing import Any

from CedarBackup3.util import displayBytes

__all__ = ["Progress", "makeProgress"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.progress")

LOG_EVERY = 30.0


class Progress:
    """Counts bytes and files; reports nothing (``--quiet``). Subclasses show it. Thread-safe."""

    def __init__(self, what: str, totalBytes: int, totalFiles: int) -> None:
        self.what = what
        self.totalBytes = totalBytes
        self.totalFiles = totalFiles
        self.bytes = 0
        self.files = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def advance(self, count: int) -> None:
        with self._lock:
            self.bytes += count
        self._shown()

    def fileDone(self, name: str, ok: bool) -> None:
        with self._lock:
            self.files += 1
        logger.debug("%s %s: %s", self.what, "done" if ok else "FAILED", name)
        self._shown()

    def _shown(self) -> None:
        """Hook for subclasses, called after every change."""

    def close(self) -> None:
        """Hook for subclasses."""

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.bytes / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        rate = self.rate
        left = (self.totalBytes - self.bytes) / rate if rate > 0 else None
        eta = f", about {_duration(left)} left" if left is not None and self.files < self.totalFiles else ""
        return (
            f"{self.what}: {self.files}/{self.totalFiles} files, {displayBytes(self.bytes)} of "
            f"{displayBytes(self.totalBytes)}, {displayBytes(rate)}/s{eta}"
        )


class LogProgress(Progress):
    """A log line at most every ``LOG_EVERY`` seconds, and one at the end."""

    def __init__(self, what: str, totalBytes: int, totalFiles: int) -> None:
        super().__init__(what, totalBytes, totalFiles)
        self._last = self.started

    def _shown(self) -> None:
        now = time.monotonic()
        if now - self._last >= LOG_EVERY:
            self._last = now
            logger.info("%s", self.line())

    def close(self) -> None:
        logger.info("%s", self.line())


class TerminalProgress(Progress):
    """rich's live bar: files, bytes, rate and time left, redrawn on stderr."""

    def __init__(self, what: str, totalBytes: int, totalFiles: int) -> None:
        super().__init__(what, totalBytes, totalFiles)
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichProgress

        self._bar: Any = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[files]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task = self._bar.add_task(what, total=totalBytes, files=self._files())
        self._bar.start()

    def _files(self) -> str:
        return f"{self.files}/{self.totalFiles} files"

    def _shown(self) -> None:
        self._bar.update(self._task, completed=self.bytes, files=self._files())

    def close(self) -> None:
        self._bar.stop()
        logger.info("%s", self.line())


def makeProgress(what: str, totalBytes: int, totalFiles: int, *, style: str) -> Progress:
    """``style``: ``terminal`` (a live bar), ``log`` (periodic lines) or ``quiet`` (nothing)."""
    if style == "terminal":
        return TerminalProgress(what, totalBytes, totalFiles)
    if style == "log":
        return LogProgress(what, totalBytes, totalFiles)
    return Progress(what, totalBytes, totalFiles)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
