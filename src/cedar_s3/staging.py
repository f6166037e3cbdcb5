"""The local side of a night: which staged day to store, its size limit, and its store indicator.

Day selection and size limits follow upstream's ``_findCorrectDailyDir`` and ``_applySizeLimits`` exactly, so a
night picks the same directory and refuses the same sizes as before. Every look at a day goes through
``StagedTree`` (descriptors, no links followed): a day directory that is a symlink fails the night instead of
being followed, and the indicator is written through a descriptor, never by path.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable
from typing import Any

from CedarBackup3.actions.constants import DIR_TIME_FORMAT, STAGE_INDICATOR
from CedarBackup3.util import displayBytes, getUidGid, isStartOfWeek

from cedar_s3.stagedtree import StagedTree

__all__ = ["STORE_INDICATOR", "applySizeLimits", "findCorrectDailyDir", "writeStoreIndicator"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3")

STORE_INDICATOR = "cback.amazons3"


def _today() -> datetime.date:
    return datetime.date.today()


def _dayState(targetDir: str, suffix: str) -> tuple[bool, bool]:
    """``(staged, stored)`` for one candidate day: its stage and store indicators, looked at without links."""
    try:
        tree = StagedTree.open(targetDir, suffix)
    except FileNotFoundError:
        return False, False
    with tree:
        return tree.hasEntry(STAGE_INDICATOR), tree.hasEntry(STORE_INDICATOR)


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
        suffix = day.strftime(DIR_TIME_FORMAT)
        staged, stored = _dayState(config.stage.targetDir, suffix)
        if staged and not (stored and not options.full):
            path = os.path.join(config.stage.targetDir, suffix)
            logger.info("Amazon S3 process will use %s day's staging directory [%s]", label, path)
            if label != "current" and local.amazons3.warnMidnite:
                logger.warning("Warning: Amazon S3 process crossed midnite boundary to find data.")
            return {path: suffix}
    if options.full:
        raise OSError(
            "Unable to find staging directory to process (only tried today due to full option): "
            f"no {STAGE_INDICATOR} in {os.path.join(config.stage.targetDir, now.strftime(DIR_TIME_FORMAT))}."
        )
    raise OSError(
        "Unable to find unused staging directory to process (tried today, yesterday, tomorrow) "
        f"under {config.stage.targetDir}: each lacks {STAGE_INDICATOR} or already has {STORE_INDICATOR}."
    )


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


def ownerIds(config: Any) -> tuple[int | None, int | None]:
    """The backup user's uid and gid when running as root (Cedar Backup's ``changeOwnership`` rule), else None."""
    options = config.options
    if os.geteuid() != 0 or options.backupUser is None or options.backupGroup is None:
        return None, None
    uid, gid = getUidGid(options.backupUser, options.backupGroup)
    return int(uid), int(gid)


def writeStoreIndicator(config: Any, stagingDirs: dict[str, str]) -> None:
    """Mark each stored day, owned by the backup user, so the next night (and cback3 purge) knows it is done."""
    uid, gid = ownerIds(config)
    for suffix in stagingDirs.values():
        with StagedTree.open(config.stage.targetDir, suffix) as tree:
            tree.writeIndicator(STORE_INDICATOR, uid, gid)
