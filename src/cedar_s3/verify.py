"""Prove that what S3 holds is what we recorded, as cheaply as the endpoint allows.

In order of cost: the listing's size and ETag (an MD5 for single-part objects without SSE-KMS: one request per
thousand objects); then a HEAD with the flexible SHA-256 checksum (whole-object or multipart composite); and,
on request, downloading and hashing the bytes (the only proof left when an endpoint gives neither). Every
object is checked; every bad one is named.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cedar_s3.bucketformat import StoredObject
from cedar_s3.digest import READ_CHUNK, hexToBase64
from cedar_s3.s3.errors import S3Error, S3IntegrityError
from cedar_s3.s3.store import RemoteHead, RemoteObject, S3Store
from cedar_s3.upload.reuse import RemoteListing

__all__ = ["VerificationError", "verifyObjects"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.verify")

SHOWN_PROBLEMS = 20
_MD5_ETAG = re.compile(r"^[0-9a-f]{32}(-[0-9]+)?$")
CHECKS_AT_ONCE = 1000  # records held for one round of HEADs and downloads: memory flat in the number of objects
UNPROVABLE = "only a download can prove it (set <verify_download>Y or use verify --download)"


class VerificationError(S3Error):
    """Some stored objects are missing or differ from the record; ``problems`` names each."""

    def __init__(self, problems: list[str], where: str) -> None:
        shown = "; ".join(problems[:SHOWN_PROBLEMS])
        more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
        super().__init__(f"Verification of {where} failed for {len(problems)} object(s): {shown}{more}")
        self.problems = problems


@dataclass(frozen=True)
class _Check:
    record: StoredObject
    key: str
    remote: RemoteObject | None


def _batches(records: Iterable[StoredObject], size: int) -> Iterator[list[StoredObject]]:
    """``itertools.batched`` (Python 3.12) for 3.11."""
    iterator = iter(records)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _byListing(check: _Check) -> bool:
    """True when the listing alone proves the object (size and an MD5-form ETag both match)."""
    record, remote = check.record, check.remote
    return remote is not None and record.etagMatches(remote.etag)


def _byHead(store: S3Store, check: _Check, download: bool) -> str | None:
    """None when a HEAD proves the object; else what is wrong (or that only a download can tell)."""
    record = check.record
    head = store.head(check.key)
    if head.size != record.size:
        return f"{check.key}: size {head.size}, expected {record.size}"
    if head.checksumSha256 is not None:
        return _byChecksum(store, check, head)
    etagIsDigest = head.serverSideEncryption != "aws:kms" and _MD5_ETAG.match(head.etag) is not None
    if etagIsDigest and record.md5Etag is not None and not download:
        # an ETag in MD5 form is the MD5 on every endpoint we know; with a download on its way, it decides instead
        return f"{check.key}: ETag {head.etag} differs from the uploaded data's {record.md5Etag}"
    return f"{check.key}: the endpoint returns no checksum and the ETag does not prove the bytes; {UNPROVABLE}"


def _byChecksum(store: S3Store, check: _Check, head: RemoteHead) -> str | None:
    """The HEAD's SHA-256 checksum against the recorded one, with the ETag as a second witness."""
    record = check.record
    assert head.checksumSha256 is not None
    expected = record.compositeSha256 if record.partSize is not None else hexToBase64(record.storedSha256)
    if expected is None:
        return f"{check.key}: stored as multipart but no composite checksum was recorded to compare with"
    if head.checksumSha256 != expected:
        return f"{check.key}: SHA-256 checksum differs from what was uploaded"
    if not _etagContradicts(head, record):
        return None
    # The checksum matches but an MD5 ETag says the bytes differ: the endpoint kept the checksum we sent without
    # checking it against the bytes (moto does; so may other S3-compatible stores). Only the bytes can settle it.
    thaw = store.thawStatus(check.key)
    if thaw.needed:
        return f"{check.key}: its ETag contradicts its checksum and it is archived: {thaw.message}"
    logger.warning("%s: its ETag contradicts its checksum; downloading it to decide.", check.key)
    return _byDownload(store, check.key, record)


def _etagContradicts(head: RemoteHead, record: StoredObject) -> bool:
    """True when the object's ETag is an MD5 of other bytes than those recorded (not SSE-KMS, both MD5-form)."""
    if head.serverSideEncryption == "aws:kms" or record.md5Etag is None:
        return False
    return _MD5_ETAG.match(head.etag) is not None and not record.etagMatches(head.etag)


def _byDownload(store: S3Store, key: str, record: StoredObject) -> str | None:
    digest = hashlib.sha256()
    size = 0
    try:
        with store.openStream(key) as stream:
            while chunk := stream.read(READ_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except S3IntegrityError:  # botocore checked the bytes against the checksum S3 keeps, and they differ
        return f"{key}: downloaded bytes differ from what was uploaded (they fail the object's own checksum)"
    if size != record.size or digest.hexdigest() != record.storedSha256:
        return f"{key}: downloaded bytes differ from what was uploaded (SHA-256 mismatch)"
    return None


def verifyObjects(
    store: S3Store,
    dayPrefix: str,
    records: Iterable[StoredObject],
    *,
    download: bool = False,
    listing: RemoteListing | None = None,
) -> int:
    """Check every record against S3; raise ``VerificationError`` naming each bad object. Returns the count.

    ``records`` may be a stream (a night's records are read back one at a time); they are checked
    ``CHECKS_AT_ONCE`` at a time, so only that many are held for a HEAD or a download.
    """
    if listing is None:
        listing = RemoteListing(store.listObjects(dayPrefix))
    problems: list[str] = []
    unprovable: list[str] = []
    count = 0
    with ThreadPoolExecutor(max_workers=store.concurrency) as pool:
        for batch in _batches(records, CHECKS_AT_ONCE):
            count += len(batch)
            needHead: list[_Check] = []
            present: list[_Check] = []
            for record in batch:
                key = dayPrefix + record.relative
                check = _Check(record, key, listing.get(key))
                if download and check.remote is not None:
                    present.append(check)
                if check.remote is None:
                    problems.append(f"{check.key}: missing")
                elif check.remote.size != check.record.size:
                    problems.append(f"{check.key}: size {check.remote.size}, expected {check.record.size}")
                elif not _byListing(check):
                    needHead.append(check)
            for problem in pool.map(lambda check: _byHead(store, check, download), needHead):
                if problem is not None:
                    (unprovable if problem.endswith(UNPROVABLE) else problems).append(problem)
            if present:
                logger.debug("Downloading %d objects from %s to hash them.", len(present), dayPrefix)
                results = pool.map(lambda check: _byDownload(store, check.key, check.record), present)
                problems += [problem for problem in results if problem is not None]
    if not download:
        problems += unprovable
    if problems:
        raise VerificationError(problems, store.location.url(dayPrefix))
    return count
