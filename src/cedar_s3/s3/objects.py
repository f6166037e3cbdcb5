"""What S3 says about objects (listing entries, HEADs, versions, unfinished uploads) and what we ask of each
object we store (its settings, by kind; when it goes in parts). Plain data: no request is made here."""

from __future__ import annotations

import datetime
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from s3transfer.utils import ChunksizeAdjuster

from cedar_s3.s3.errors import S3Error

__all__ = [
    "ObjectKind",
    "ObjectSettings",
    "PendingUpload",
    "RemoteHead",
    "RemoteObject",
    "RemoteVersion",
    "TransferPlan",
    "VersionLock",
]


@dataclass(frozen=True)
class RemoteObject:
    """One listing entry."""

    key: str
    size: int
    etag: str
    storageClass: str


@dataclass(frozen=True)
class RemoteHead:
    """What a HEAD request says about one object (the fields cedar-s3 reads)."""

    key: str
    size: int
    etag: str
    checksumSha256: str | None  # base64, without any "-N" part-count suffix
    metadata: dict[str, str]
    storageClass: str
    serverSideEncryption: str | None
    restore: str | None
    archiveStatus: str | None = None  # INTELLIGENT_TIERING objects moved to an archive tier


@dataclass(frozen=True)
class RemoteVersion:
    """One entry of a version listing: a stored version of a key, or a delete marker."""

    key: str
    versionId: str
    size: int
    deleteMarker: bool


@dataclass(frozen=True)
class VersionLock:
    """What object lock says about one version: retention mode and date, and legal hold."""

    mode: str | None
    until: datetime.datetime | None
    legalHold: bool

    def holds(self, now: datetime.datetime) -> bool:
        """True while S3 will refuse to delete this version."""
        return self.legalHold or (self.until is not None and self.until > now)


@dataclass(frozen=True)
class PendingUpload:
    """A multipart upload that was started and neither completed nor aborted."""

    key: str
    uploadId: str
    initiated: datetime.datetime | None
    storageClass: str | None


@dataclass(frozen=True)
class TransferPlan:
    """When a stored stream is sent in parts, and how big they are (the part size decides the ETag S3 gives)."""

    threshold: int
    chunkSize: int

    def partSizeFor(self, size: int) -> int | None:
        """The part size for ``size`` bytes, or None for a single PUT (s3transfer's rule: at most 10,000 parts)."""
        if size < self.threshold:
            return None
        return int(ChunksizeAdjuster().adjust_chunksize(self.chunkSize, size))


class ObjectKind:
    """What an object is, which decides the settings it gets (see ``ObjectSettings.args``)."""

    DATA = "data"
    MANIFEST = "manifest"  # also its signature: locked like the data, always STANDARD
    BOOKKEEPING = "bookkeeping"  # the incomplete marker, verify's record, probes: deleted again, never locked


@dataclass
class ObjectSettings:
    """Per-object settings from ``<amazons3>`` that become request arguments."""

    storageClass: str | None = None
    serverSideEncryption: str | None = None
    sseKmsKeyId: str | None = None
    objectLockMode: str | None = None
    objectLockDays: int | None = None
    tags: list[str] = field(default_factory=list)

    @property
    def etagsAreMd5(self) -> bool:
        """Under SSE-KMS an ETag is not the MD5 of the bytes, so a listing cannot prove them."""
        return self.serverSideEncryption != "aws:kms"

    def args(self, kind: str) -> dict[str, Any]:
        """Request arguments for one stored object, by kind.

        Backup objects get everything. The manifest stays STANDARD, so listing, verifying and restoring never
        wait for a thaw, but is locked like the data it describes. Bookkeeping (the incomplete marker) is
        deleted again by the night: STANDARD and never locked (a locked marker could not be tidied away), yet it
        keeps SSE (bucket policies often refuse unencrypted PUTs) and tags (lifecycle rules select on them).
        """
        args: dict[str, Any] = {}
        if self.storageClass and kind == ObjectKind.DATA:
            args["StorageClass"] = self.storageClass
        if self.serverSideEncryption:
            args["ServerSideEncryption"] = self.serverSideEncryption
        if self.sseKmsKeyId:
            args["SSEKMSKeyId"] = self.sseKmsKeyId
        if self.objectLockMode and self.objectLockDays and kind != ObjectKind.BOOKKEEPING:
            until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=self.objectLockDays)
            args["ObjectLockMode"] = self.objectLockMode
            args["ObjectLockRetainUntilDate"] = until
        if self.tags:
            # %20 rather than "+" for a space: every S3 implementation decodes it the same way
            pairs = [tag.partition("=")[::2] for tag in self.tags]
            args["Tagging"] = urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)
        return args

    def checkApplied(self, answer: dict[str, Any], what: str) -> None:
        """A store may accept SSE headers and not apply them (Ceph does, for SSE-S3): no error is not proof."""
        wanted = self.serverSideEncryption
        if wanted and answer.get("ServerSideEncryption") != wanted:
            got = answer.get("ServerSideEncryption") or "no x-amz-server-side-encryption header"
            raise S3Error(
                f"{what}: the endpoint accepted <sse>{wanted}</sse> but its answer shows {got}, so the object is not "
                "stored encrypted; configure encryption on the store, or remove <sse> from cback3.conf."
            )
