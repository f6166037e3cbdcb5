"""Verify one stored day against its manifest, naming every object that is missing, extra or different.

Without ``download`` this is the nightly run's own check (``verify.verifyObjects``: the listing's sizes and
ETags, then HEAD checksums), which costs a request per thousand objects at best. With ``download`` every
object is streamed and hashed, and decrypted on a pipe where it is encrypted, so the plaintext SHA-256 the
manifest recorded is proven without writing plaintext anywhere. A day that passes gets a verification record
for ``list``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cedar_s3.bucketformat import DayKind, Manifest, StoredObject
from cedar_s3.catalog import DayListing, writeVerified
from cedar_s3.gpg.decrypt import DecryptKeys
from cedar_s3.manifests import SignaturePolicy, readManifest
from cedar_s3.progress import makeProgress
from cedar_s3.readback import ObjectReader, eachObject
from cedar_s3.s3.thaw import MAYBE_ARCHIVED
from cedar_s3.upload.reuse import RemoteListing
from cedar_s3.upstreamday import UpstreamObject, upstreamObjects
from cedar_s3.verify import VerificationError, verifyObjects

if TYPE_CHECKING:
    from cedar_s3.s3.store import S3Store

__all__ = ["DayCheck", "checkDay"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.dayverify")


@dataclass
class DayCheck:
    """The outcome for one day: how many objects were checked and every problem found."""

    listing: DayListing
    objects: int = 0
    problems: list[str] = field(default_factory=list)
    unverifiable: str = ""  # why what was checked cannot prove the day (an upstream day: no manifest)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unverifiable


def checkDay(
    store: S3Store,
    listing: DayListing,
    *,
    download: bool,
    keys: DecryptKeys,
    jobs: int,
    progressStyle: str,
    signatures: SignaturePolicy | None = None,
) -> DayCheck:
    """Check every object of the day; the result lists each problem (this raises only for S3 or usage errors)."""
    check = DayCheck(listing)
    url = store.location.url(listing.prefix)
    if listing.kind == DayKind.UPSTREAM:
        return _checkUpstreamDay(store, listing, check, download=download, keys=keys, jobs=jobs, style=progressStyle)
    if not listing.hasManifest:
        check.problems.append(f"{url}: marked incomplete and has no manifest (a night was interrupted)")
        return check

    try:
        manifest = readManifest(store, listing.prefix, signatures)
    except ValueError as error:
        check.problems.append(str(error))
        return check
    if manifest is None:  # deleted since the listing
        check.problems.append(f"{url}: the manifest disappeared while verifying")
        return check
    check.problems += manifest.rejected
    if listing.hasMarker:
        check.problems.append(f"{url}: marked incomplete (a nightly run or prune was interrupted, or is running)")
    known = {listing.prefix + record.relative for record in manifest.objects}
    check.problems += [f"{entry.key}: not in the manifest" for entry in listing.objects if entry.key not in known]
    check.objects = len(manifest.objects)
    if download:
        try:
            check.problems += _byDownload(store, listing, manifest, keys, jobs=jobs, progressStyle=progressStyle)
        except ValueError as error:  # cannot decrypt with what was given: this day fails, the others go on
            check.problems.append(str(error))
    else:
        try:
            verifyObjects(store, listing.prefix, manifest.objects, listing=RemoteListing(listing.objects))
        except VerificationError as error:
            check.problems += error.problems
    if check.ok:
        writeVerified(store, listing.prefix, manifest, "verify --download" if download else "verify")
    return check


def _byDownload(
    store: S3Store, listing: DayListing, manifest: Manifest, keys: DecryptKeys, *, jobs: int, progressStyle: str
) -> list[str]:
    for mode in sorted({record.encryption for record in manifest.objects}):
        keys.require(mode, store.location.url(listing.prefix))
    present = listing.listing
    problems = [
        f"{listing.prefix + record.relative}: missing"
        for record in manifest.objects
        if listing.prefix + record.relative not in present
    ]
    records = [record for record in manifest.objects if listing.prefix + record.relative in present]
    reader = ObjectReader(store, keys, {key: entry.storageClass for key, entry in present.items()})
    total = sum(record.size for record in records)
    with makeProgress(f"verify {listing.day}", total, len(records), style=progressStyle) as progress:

        def readOne(record: StoredObject) -> Exception | None:
            try:
                reader.read(listing.prefix + record.relative, record, None, progress.advance)
            except (OSError, ValueError) as error:
                progress.fileDone(record.relative, ok=False)
                return error
            progress.fileDone(record.relative, ok=True)
            return None

        problems += [str(error) for _record, error in eachObject(records, readOne, jobs=jobs) if error is not None]
    return problems


def _checkUpstreamDay(
    store: S3Store, listing: DayListing, check: DayCheck, *, download: bool, keys: DecryptKeys, jobs: int, style: str
) -> DayCheck:
    """What can be checked of a day upstream stored: every object listed under a name we would restore, readable
    now (not archived), and with ``download`` read whole, decrypted where encrypted (gpg's integrity check), and
    its size as listed. No digest was ever recorded, so the verdict is never OK: it is "unverifiable"."""
    objects, refused = upstreamObjects(listing)
    check.problems += refused
    check.objects = len(objects)
    archived = [item for item in objects if item.storageClass in MAYBE_ARCHIVED]
    for item in archived:
        thaw = store.thawStatus(listing.prefix + item.relative)
        if thaw.needed:
            check.problems.append(thaw.message)
    if download:
        reader = ObjectReader(store, keys)
        total = sum(item.size for item in objects)
        with makeProgress(f"verify {listing.day}", total, len(objects), style=style) as progress:

            def readOne(item: UpstreamObject) -> Exception | None:
                try:
                    reader.readUpstream(listing.prefix + item.relative, item, None, progress.advance)
                except (OSError, ValueError) as error:
                    progress.fileDone(item.relative, ok=False)
                    return error
                progress.fileDone(item.relative, ok=True)
                return None

            check.problems += [str(error) for _item, error in eachObject(objects, readOne, jobs=jobs) if error]
    how = "listed, read whole and decrypted where encrypted" if download else "listed and readable"
    check.unverifiable = f"no manifest (stored by upstream's extension); {len(objects)} object(s) {how}"
    return check
