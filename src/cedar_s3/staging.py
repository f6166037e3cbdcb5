"""The local side of a night: which staged day to store, what is in it, its size limit, its store indicator.

Day selection and size limits follow upstream's ``_findCorrectDailyDir`` and ``_applySizeLimits`` exactly, so
a night picks the same directory and refuses the same sizes as before. The file listing is stricter than
upstream's: anything S3 cannot represent faithfully (a special file, a name that is not UTF-8, a dangling or
directory symlink) is refused by name before a byte is sent, instead of being skipped or half-uploaded.
"""

from __future__ import annotations

import datetime
import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from CedarBackup3.actions.constants import DIR_TIME_FORMAT, STAGE_INDICATOR
from CedarBackup3.actions.util import writeIndicatorFile
from CedarBackup3.util import displayBytes, isStartOfWeek

__all__ = [
    "STORE_INDICATOR",
    "StagedFile",
    "applySizeLimits",
    "findCorrectDailyDir",
    "isIndicatorName",
    "listStagedFiles",
    "writeStoreIndicator",
]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3")

STORE_INDICATOR = "cback.amazons3"
INDICATOR_PREFIX = "cback."
MAX_KEY_BYTES = 1024


@dataclass(frozen=True)
class StagedFile:
    """One regular file of a staged day: where it is, the key suffix it gets, and what it looked like."""

    path: str
    relative: str  # POSIX path relative to the staging dir; the S3 key suffix
    size: int
    mtimeNs: int


def isIndicatorName(name: str) -> bool:
    """Cedar Backup's own marker files (``cback.collect``, ``cback.stage`` ...) are never backup data.

    Upstream excluded ``*cback.*`` on upload but only basenames starting with ``cback.`` on verify, so a file
    such as ``foo.cback.tar`` was silently skipped and then reported missing. We exclude exactly the basenames
    that start with ``cback.``, on every path.
    """
    return name.startswith(INDICATOR_PREFIX)


def _today() -> datetime.date:
    return datetime.date.today()


def findCorrectDailyDir(
    options: Any, config: Any, local: Any, today: Callable[[], datetime.date] = _today
) -> dict[str, str]:
    """Upstream's day selection: today only with ``--full``; else today, yesterday, tomorrow, in that order.

    A day qualifies when its stage indicator exists and (without ``--full``) its store indicator does not.
    Returns ``{stagingDir: "YYYY/MM/DD"}`` as upstream does.
    """
    oneDay = datetime.timedelta(days=1)
    now = today()
    candidates = [("current", now), ("previous", now - oneDay), ("next", now + oneDay)]
    if options.full:
        candidates = candidates[:1]
    for label, day in candidates:
        dateSuffix = day.strftime(DIR_TIME_FORMAT)
        path = os.path.join(config.stage.targetDir, dateSuffix)
        staged = os.path.isdir(path) and os.path.exists(os.path.join(path, STAGE_INDICATOR))
        stored = not options.full and os.path.exists(os.path.join(path, STORE_INDICATOR))
        if staged and not stored:
            logger.info("Amazon S3 process will use %s day's staging directory [%s]", label, path)
            if label != "current" and local.amazons3.warnMidnite:
                logger.warning("Warning: Amazon S3 process crossed midnite boundary to find data.")
            return {path: dateSuffix}
    if options.full:
        raise OSError(
            "Unable to find staging directory to process (only tried today due to full option): "
            f"no {STAGE_INDICATOR} in {os.path.join(config.stage.targetDir, now.strftime(DIR_TIME_FORMAT))}."
        )
    raise OSError(
        "Unable to find unused staging directory to process (tried today, yesterday, tomorrow) "
        f"under {config.stage.targetDir}: each lacks {STAGE_INDICATOR} or already has {STORE_INDICATOR}."
    )


def _relativeKey(stagingDir: str, path: str) -> str:
    relative = os.path.relpath(path, stagingDir).replace(os.sep, "/")
    try:
        encoded = relative.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"Staged file name is not valid UTF-8, so it cannot be an S3 key: {path!r}") from None
    if len(encoded) > MAX_KEY_BYTES - 64:
        raise ValueError(f"Staged file path is too long for an S3 key ({len(encoded)} bytes): {path!r}")
    return relative


def _walk(stagingDir: str) -> Iterator[os.DirEntry[str]]:
    """Depth-first over non-indicator entries, without recursion (a deep tree must not hit the stack limit)."""
    pending = [stagingDir]
    while pending:
        directory = pending.pop()
        with os.scandir(directory) as entries:
            children = sorted(entries, key=lambda entry: entry.name, reverse=True)
        for entry in children:
            if isIndicatorName(entry.name):
                continue
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
            else:
                yield entry


def listStagedFiles(stagingDir: str) -> list[StagedFile]:
    """Every file of a staged day that belongs in S3, sorted by key.

    Symlinks to regular files are followed (as the AWS CLI upstream used does); anything else that is not a
    regular file or a directory is refused with its path, because silently skipping it would make the backup
    incomplete without anyone noticing.
    """
    files = []
    for entry in _walk(stagingDir):
        try:
            info = entry.stat(follow_symlinks=True)
        except FileNotFoundError:
            raise ValueError(f"Staged path is a dangling symlink or vanished while listing: {entry.path!r}") from None
        if stat.S_ISDIR(info.st_mode):
            raise ValueError(f"Staged path is a symlink to a directory, which is not followed: {entry.path!r}")
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"Staged path is not a regular file (fifo, socket or device): {entry.path!r}")
        files.append(StagedFile(entry.path, _relativeKey(stagingDir, entry.path), info.st_size, info.st_mtime_ns))
    files.sort(key=lambda staged: staged.relative)
    return files


def applySizeLimits(options: Any, config: Any, local: Any, stagingDirs: dict[str, str], total: int) -> None:
    """Upstream's size limits: the full limit with ``--full`` or on the week's starting day, else incremental.

    ``total`` is the byte count of what will be stored; the check runs before any byte is sent.
    """
    full = bool(options.full) or isStartOfWeek(config.options.startingDay)
    element = "full_size_limit" if full else "incr_size_limit"
    limit = local.amazons3.fullBackupSizeLimit if full else local.amazons3.incrementalBackupSizeLimit
    logger.debug("Using Amazon S3 size limit for %s backups.", "full" if full else "incremental")
    if limit is None:
        logger.debug("No Amazon S3 size limit will be applied.")
        return
    logger.debug("Amazon S3 backup size is: %s (limit %s)", displayBytes(total), limit)
    if total > limit.bytes:
        where = ", ".join(stagingDirs)
        message = f"Amazon S3 size limit exceeded: {displayBytes(total)} > {limit} (<{element}>, {where})"
        logger.error(message)
        raise ValueError(message)
    logger.info("Total size does not exceed Amazon S3 size limit, so backup can continue.")


def writeStoreIndicator(config: Any, stagingDirs: dict[str, str]) -> None:
    """Mark each stored day, owned by the backup user, so the next night (and cback3 purge) knows it is done."""
    for stagingDir in stagingDirs:
        writeIndicatorFile(stagingDir, STORE_INDICATOR, config.options.backupUser, config.options.backupGroup)
