"""Archived objects: whether one can be read now, and if not, exactly what the operator has to run.

GLACIER and DEEP_ARCHIVE objects (and INTELLIGENT_TIERING objects in an opt-in archive tier) answer HEAD and
LIST but refuse GET until restored ("thawed"); ``verify`` and ``restore`` explain instead of failing on
InvalidObjectState.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

__all__ = ["ARCHIVED_STORAGE_CLASSES", "MAYBE_ARCHIVED", "ThawStatus", "thawStatus"]

ARCHIVED_STORAGE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")  # a GET needs a restore first
MAYBE_ARCHIVED = (*ARCHIVED_STORAGE_CLASSES, "INTELLIGENT_TIERING")  # a GET may need one: ask HEAD
ARCHIVED_TIERS = ("ARCHIVE_ACCESS", "DEEP_ARCHIVE_ACCESS")  # INTELLIGENT_TIERING's opt-in archive tiers
THAW_DAYS = 7


@dataclass(frozen=True)
class ThawStatus:
    """Whether an object can be read now, and if not, what the operator has to do about it."""

    needed: bool  # a GET fails now: archived and not (yet) thawed
    inProgress: bool  # a thaw was requested and is still running
    message: str  # empty when the object is readable without any thaw

    @property
    def readable(self) -> bool:
        return not self.needed


def thawStatus(
    *, bucket: str, key: str, storageClass: str, archiveStatus: str | None, restoreHeader: str | None
) -> ThawStatus:
    """Read a HEAD's storage class, archive tier and ``Restore`` header the way S3 means them."""
    archivedTier = archiveStatus in ARCHIVED_TIERS
    if storageClass not in ARCHIVED_STORAGE_CLASSES and not archivedTier:
        return ThawStatus(needed=False, inProgress=False, message="")
    where = f"s3://{bucket}/{key}"
    kind = archiveStatus if archivedTier else storageClass
    restore = restoreHeader or ""
    if 'ongoing-request="true"' in restore:
        return ThawStatus(
            needed=True,
            inProgress=True,
            message=f"{where} is archived ({kind}) and its restore is still running; retry once it has finished "
            "(hours for GLACIER, up to 48 hours for DEEP_ARCHIVE).",
        )
    if 'ongoing-request="false"' in restore:
        expiry = restore.partition("expiry-date=")[2].strip().strip('"')
        until = f" until {expiry}" if expiry else ""
        return ThawStatus(needed=False, inProgress=False, message=f"{where} is restored and readable{until}.")
    request = (
        '{"GlacierJobParameters":{"Tier":"Standard"}}'
        if archivedTier  # INTELLIGENT_TIERING takes no Days: the object moves back to its frequent tier
        else f'{{"Days":{THAW_DAYS},"GlacierJobParameters":{{"Tier":"Standard"}}}}'
    )
    command = (
        f"aws s3api restore-object --bucket {shlex.quote(bucket)} --key {shlex.quote(key)} "
        f"--restore-request '{request}'"
    )
    return ThawStatus(
        needed=True,
        inProgress=False,
        message=f"{where} is archived ({kind}) and must be restored before it can be read: run {command} "
        "(Tier Bulk is cheaper, Expedited faster; DEEP_ARCHIVE has no Expedited), wait until "
        "'aws s3api head-object' shows Restore: ongoing-request=\"false\", then retry.",
    )
