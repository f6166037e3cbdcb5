"""Delete whole stored days that a retention policy no longer keeps, so that no day is ever lost silently.

The policy keeps the newest day and the newest complete day always, the ``--keep-last`` newest days, and every
day younger than ``--keep-days``; a day goes only if nothing keeps it. A day with any version under object-lock
retention or legal hold is kept whole, with the date it can go, rather than half-deleted.

A day is deleted in the order that keeps it recognisable at every step: first the incomplete marker is
written (so ``list`` and ``verify`` call it incomplete), then its data objects, then its manifest, and last the
marker. If S3 refuses anything on the way, the day stays marked incomplete and the report says what is left.
On a versioned bucket every version and delete marker under the day's prefix is deleted, so the storage is
really freed.
"""

from __future__ import annotations

import datetime
import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cedar_s3.bucketformat import INCOMPLETE_MARKER, MANIFEST_NAME, SIGNATURE_NAME, DayKind, IncompleteMarker
from cedar_s3.catalog import DayListing
from cedar_s3.s3.errors import S3Error

if TYPE_CHECKING:
    from cedar_s3.s3.store import RemoteVersion, S3Store

__all__ = ["DayPlan", "Policy", "planPrune", "pruneDay"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.prune")


@dataclass(frozen=True)
class Policy:
    """``keepDays``: keep days younger than this many days; ``keepLast``: keep this many newest days."""

    keepDays: int | None = None
    keepLast: int | None = None

    def kept(self, days: list[DayListing], today: datetime.date) -> set[datetime.date]:
        """The days this policy keeps (``days`` newest first)."""
        keep: set[datetime.date] = set()
        if days:
            keep.add(days[0].day)
        complete = [listing.day for listing in days if listing.kind == DayKind.COMPLETE]
        keep |= set(complete[:1])
        if self.keepLast is not None:
            keep |= {listing.day for listing in days[: self.keepLast]}
        if self.keepDays is not None:
            keep |= {listing.day for listing in days if (today - listing.day).days < self.keepDays}
        return keep


@dataclass
class DayPlan:
    """One day the policy does not keep: what would be deleted, or why it is kept after all."""

    listing: DayListing
    versions: list[RemoteVersion] | None = None  # every version under the prefix on a versioned bucket
    lockedReason: str | None = None

    @property
    def deletable(self) -> bool:
        return self.lockedReason is None


@dataclass
class PruneResult:
    """What deleting one day did: ``problems`` is empty when the day is gone entirely."""

    plan: DayPlan
    deleted: int = 0
    problems: list[str] = field(default_factory=list)


def planPrune(
    store: S3Store, days: list[DayListing], policy: Policy, today: datetime.date, *, jobs: int
) -> list[DayPlan]:
    """The days to delete, oldest first, each checked for object lock (a locked one carries its reason)."""
    kept = policy.kept(days, today)
    plans = [DayPlan(listing) for listing in reversed(days) if listing.day not in kept]
    if not plans or store.versioningStatus() is None:
        return plans  # no versions, so no object lock either
    locking = _lockEnabled(store)
    for plan in plans:
        plan.versions = list(store.listVersions(plan.listing.prefix))
        if locking:
            plan.lockedReason = _lockReason(store, plan.versions, jobs)
    return plans


def _lockEnabled(store: S3Store) -> bool:
    try:
        return store.objectLockEnabled()
    except PermissionError as error:
        logger.warning("Cannot read the bucket's object lock setting; checking every version for locks: %s", error)
        return True


def _lockReason(store: S3Store, versions: list[RemoteVersion], jobs: int) -> str | None:
    """Why S3 would refuse to delete some of these versions, or None when none is locked."""
    now = datetime.datetime.now(datetime.UTC)
    stored = [version for version in versions if not version.deleteMarker]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        locks = list(pool.map(lambda version: store.versionLock(version.key, version.versionId), stored))
    held = [lock for lock in locks if lock.holds(now)]
    if not held:
        return None
    dates = [lock.until for lock in held if lock.until is not None and lock.until > now]
    until = f" until {max(dates).isoformat(timespec='seconds')}" if dates else ""
    holds = sum(lock.legalHold for lock in held)
    legal = f" ({holds} under legal hold)" if holds else ""
    return f"{len(held)} object version(s) are under object lock{until}{legal}; prune again after that"


def pruneDay(store: S3Store, plan: DayPlan) -> PruneResult:
    """Delete one day: mark it incomplete, delete its data, then its manifest, then the marker."""
    result = PruneResult(plan)
    prefix = plan.listing.prefix
    marker = IncompleteMarker.forPrune(socket.gethostname())
    try:
        store.putBytes(prefix + INCOMPLETE_MARKER, marker.toJson(), contentType="application/json", kind="bookkeeping")
    except OSError as error:
        result.problems.append(f"could not mark the day as being pruned, so nothing was deleted: {error}")
        return result
    try:
        entries = _entries(store, prefix, versioned=plan.versions is not None)
        manifest = (prefix + MANIFEST_NAME, prefix + SIGNATURE_NAME)
        bookkeeping = (*manifest, prefix + INCOMPLETE_MARKER)
        phases = (
            ("data", [entry for entry in entries if entry[0] not in bookkeeping]),
            ("manifest", [entry for entry in entries if entry[0] in manifest]),
            ("incomplete marker", [entry for entry in entries if entry[0] == prefix + INCOMPLETE_MARKER]),
        )
        for name, batch in phases:
            refused = store.deleteVersions(batch)
            result.deleted += len(batch) - len(refused)
            if refused:
                raise S3Error(f"S3 refused to delete {len(refused)} {name} object(s): {'; '.join(refused[:5])}")
    except OSError as error:
        result.problems.append(f"{error}; the day is left marked incomplete")
    return result


def _entries(store: S3Store, prefix: str, *, versioned: bool) -> list[tuple[str, str | None]]:
    """Everything under the prefix now (the marker just written included), as ``(key, versionId)`` pairs."""
    if versioned:
        return [(version.key, version.versionId) for version in store.listVersions(prefix)]
    return [(entry.key, None) for entry in store.listObjects(prefix)]
