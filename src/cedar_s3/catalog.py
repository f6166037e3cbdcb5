"""The days stored under a bucket/prefix: which there are, what each holds, and what state each is in.

A day is the key prefix ``[prefix/]YYYY/MM/DD/``. Its kind comes from the bookkeeping objects the nightly run
writes: the manifest (written last, so a day with one is complete) and the incomplete marker (written first and
removed last, by the nightly run and by ``prune``, so a day caught half-way says so). Days stored by upstream's
extension have neither: they are "upstream" days. ``verify`` leaves a small record of its last success beside
the manifest, so ``list`` can say when a day was last proven; a nightly re-run of the day removes it with the
rest of the stale objects.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cedar_s3.bucketformat import (
    INCOMPLETE_MARKER,
    MANIFEST_NAME,
    RECORD_LIMIT,
    SIGNATURE_NAME,
    VERIFIED_RECORD,
    DayKind,
    Manifest,
    VerifiedRecord,
    dateSuffix,
    isBookkeeping,
    parseDay,
)
from cedar_s3.manifests import readManifest

if TYPE_CHECKING:
    from cedar_s3.s3.store import RemoteObject, S3Store

__all__ = ["DayListing", "DaySummary", "findDays", "listDay", "listDays", "summarizeDays", "writeVerified"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.catalog")

SUMMARY_WORKERS = 8
_STATES = {
    DayKind.COMPLETE: "complete",
    DayKind.INCOMPLETE: "incomplete",
    DayKind.UPSTREAM: "no manifest",
    DayKind.BAD_MANIFEST: "bad manifest",
}

_YEAR = re.compile(r"^\d{4}$")
_TWO = re.compile(r"^\d{2}$")


@dataclass(frozen=True)
class DayListing:
    """What a listing of one day's prefix shows: its data objects and which bookkeeping objects exist."""

    day: datetime.date
    prefix: str
    objects: list[RemoteObject]  # data objects only, in key order
    hasManifest: bool
    hasMarker: bool
    hasVerified: bool
    hasSignature: bool = False

    @property
    def bytes(self) -> int:
        return sum(entry.size for entry in self.objects)

    @property
    def listing(self) -> dict[str, RemoteObject]:
        return {entry.key: entry for entry in self.objects}

    @property
    def kind(self) -> DayKind:
        """Complete, incomplete (a run or prune was interrupted, or is running) or upstream's (no bookkeeping)."""
        if self.hasMarker:
            return DayKind.INCOMPLETE
        return DayKind.COMPLETE if self.hasManifest else DayKind.UPSTREAM


@dataclass(frozen=True)
class DaySummary:
    """One row of ``list``."""

    day: datetime.date
    prefix: str
    objects: int
    bytes: int
    encryption: str | None  # the manifest's mode; None when unknown (no readable manifest)
    kind: DayKind
    verifiedAt: str | None
    verifiedBy: str | None
    problem: str | None = None  # why the manifest could not be read, where it could not

    @property
    def complete(self) -> bool:
        return self.kind == DayKind.COMPLETE

    def toJson(self) -> dict[str, Any]:
        return {
            "date": self.day.isoformat(),
            "prefix": self.prefix,
            "objects": self.objects,
            "bytes": self.bytes,
            "encrypted": None if self.encryption is None else self.encryption != "none",
            "encryption": self.encryption,
            "complete": self.complete,
            "kind": self.kind.value,
            "state": _STATES[self.kind],  # the name list --json gave before "kind": kept for scripts
            "verifiedAt": self.verifiedAt,
            "verifiedBy": self.verifiedBy,
            "problem": self.problem,
        }


def _numbered(prefixes: Iterable[str], parent: str, pattern: re.Pattern[str]) -> list[str]:
    return [prefix for prefix in prefixes if pattern.match(prefix[len(parent) :].rstrip("/"))]


def findDays(store: S3Store) -> list[datetime.date]:
    """Every ``YYYY/MM/DD/`` under the configured prefix, newest first (anything else there is ignored)."""
    root = store.location.rootPrefix
    days: list[datetime.date] = []
    for year in _numbered(store.listCommonPrefixes(root), root, _YEAR):
        for month in _numbered(store.listCommonPrefixes(year), year, _TWO):
            for day in _numbered(store.listCommonPrefixes(month), month, _TWO):
                try:
                    days.append(parseDay(day[len(root) :].rstrip("/")))
                except ValueError:
                    logger.debug("Ignoring [%s]: not a valid date.", day)
    return sorted(days, reverse=True)


def listDay(store: S3Store, day: datetime.date) -> DayListing:
    prefix = store.location.dayPrefix(dateSuffix(day))
    objects: list[RemoteObject] = []
    present: set[str] = set()
    for entry in store.listObjects(prefix):
        name = entry.key[len(prefix) :]
        if isBookkeeping(name):
            present.add(name)
        else:
            objects.append(entry)
    return DayListing(
        day=day,
        prefix=prefix,
        objects=objects,
        hasManifest=MANIFEST_NAME in present,
        hasMarker=INCOMPLETE_MARKER in present,
        hasVerified=VERIFIED_RECORD in present,
        hasSignature=SIGNATURE_NAME in present,
    )


def listDays(store: S3Store, days: list[datetime.date]) -> list[DayListing]:
    """``listDay`` for each day, in the order given, a few at a time."""
    with ThreadPoolExecutor(max_workers=min(SUMMARY_WORKERS, store.concurrency)) as pool:
        return list(pool.map(lambda day: listDay(store, day), days))


def _readVerified(store: S3Store, prefix: str, manifest: Manifest) -> tuple[str, str] | None:
    """``(when, how)`` from verify's record, if it is about this manifest (a re-stored day makes it stale)."""
    try:
        record = VerifiedRecord.parse(store.getJson(prefix + VERIFIED_RECORD, limit=RECORD_LIMIT))
    except (OSError, ValueError) as error:
        logger.debug("Ignoring the verification record under [%s]: %s", prefix, error)
        return None
    if record is None or record.manifestFinished != manifest.header.finished:
        return None
    return record.verifiedAt, record.verifiedBy


def writeVerified(store: S3Store, prefix: str, manifest: Manifest, how: str) -> None:
    """Leave a record that ``verify`` proved this day, for ``list``; failing to write it is only a warning."""
    record = VerifiedRecord.now(how, manifest.header.finished, len(manifest.objects))
    try:
        store.putBytes(prefix + VERIFIED_RECORD, record.toJson(), contentType="application/json", kind="bookkeeping")
    except OSError as error:
        logger.warning("Verified, but could not record it in the bucket (list will not show it): %s", error)


def _summarize(store: S3Store, day: datetime.date) -> DaySummary:
    listing = listDay(store, day)
    encryption = verifiedAt = verifiedBy = problem = None
    kind = listing.kind
    if listing.hasManifest:
        try:
            manifest = readManifest(store, listing.prefix)
        except ValueError as error:
            manifest, problem = None, str(error)
            kind = DayKind.BAD_MANIFEST
        if manifest is not None:
            encryption = manifest.header.encryption
            verifiedAt, verifiedBy = manifest.header.finished or None, "upload"
            if listing.hasVerified:
                verifiedAt, verifiedBy = _readVerified(store, listing.prefix, manifest) or (verifiedAt, verifiedBy)
    return DaySummary(
        day=day,
        prefix=listing.prefix,
        objects=len(listing.objects),
        bytes=listing.bytes,
        encryption=encryption,
        kind=kind,
        verifiedAt=verifiedAt,
        verifiedBy=verifiedBy,
        problem=problem,
    )


def summarizeDays(store: S3Store, days: list[datetime.date]) -> list[DaySummary]:
    """A summary of each day, in the order given (one listing and at most two small reads per day)."""
    with ThreadPoolExecutor(max_workers=min(SUMMARY_WORKERS, store.concurrency)) as pool:
        return list(pool.map(lambda day: _summarize(store, day), days))
