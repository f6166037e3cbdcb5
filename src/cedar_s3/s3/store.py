"""One bucket reached through one client: the narrow surface the rest of cedar-s3 uses.

Everything else sees plain dataclasses and our own exceptions (``cedar_s3.s3.errors``), never boto3. Every
checksum decision is made here and in ``multipart``, from the night's ``ChecksumPolicy``. Calls the night only
needs for housekeeping (listing and aborting leftover multipart uploads) degrade on a store that lacks them:
one warning naming the call and the store's answer, never a failed night.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any

from cedar_s3.s3.endpoint import ChecksumPolicy, Endpoint
from cedar_s3.s3.errors import S3AccessError, S3Error, S3UnsupportedError, errorCode, translated
from cedar_s3.s3.objects import (
    ObjectKind,
    ObjectSettings,
    PendingUpload,
    RemoteHead,
    RemoteObject,
    RemoteVersion,
    TransferPlan,
    VersionLock,
)
from cedar_s3.s3.thaw import ThawStatus, thawStatus
from cedar_s3.s3.throttle import Throttle

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from cedar_s3.bucketformat import S3Location
    from cedar_s3.s3.download import ObjectStream
    from cedar_s3.s3.multipart import MultipartUpload

__all__ = [
    "ObjectKind",
    "ObjectSettings",
    "PendingUpload",
    "RemoteHead",
    "RemoteObject",
    "RemoteVersion",
    "S3Store",
    "TransferPlan",
    "VersionLock",
]  # the data types live in ``cedar_s3.s3.objects`` and are re-exported here for callers of the store

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.s3")

MIB = 1024 * 1024
DELETE_BATCH = 1000


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def stripQuotes(etag: str | None) -> str:
    return (etag or "").strip('"')


def _stripPartCount(checksum: str | None) -> str | None:
    """AWS reports composite checksums as ``base64-N``; some endpoints omit the suffix."""
    return checksum.split("-", 1)[0] if checksum else None


class S3Store:
    """One bucket reached through one client."""

    def __init__(  # noqa: PLR0913 - keyword-only parts that buildStore resolves once
        self,
        client: S3Client,
        preflightClient: S3Client,
        location: S3Location,
        *,
        endpoint: Endpoint,
        policy: ChecksumPolicy,
        plan: TransferPlan,
        concurrency: int,
        throttle: Throttle | None,
        settings: ObjectSettings,
        onClose: Iterable[Any] = (),
    ) -> None:
        self.client = client
        self._preflight = preflightClient
        self.location = location
        self.endpoint = endpoint
        self.policy = policy
        self.plan = plan
        self.concurrency = concurrency
        self.throttle = throttle
        self.settings = settings
        self._onClose = list(onClose)
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._partPool: ThreadPoolExecutor | None = None
        self.partSlots = threading.BoundedSemaphore(max(2, concurrency))  # in-memory part buffers, all uploads

    @property
    def bucket(self) -> str:
        return self.location.bucket

    def __enter__(self) -> S3Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._partPool is not None:
            self._partPool.shutdown(wait=True, cancel_futures=True)
            self._partPool = None
        for closer in self._onClose:
            closer.close()
        self._onClose.clear()

    @property
    def partPool(self) -> ThreadPoolExecutor:
        """Threads that send parts, shared by every multipart upload of the night."""
        with self._lock:
            if self._partPool is None:
                self._partPool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="cedar-s3-part")
            return self._partPool

    def warnOnce(self, topic: str, message: str, *args: object) -> None:
        with self._lock:
            if topic in self._warned:
                return
            self._warned.add(topic)
        logger.warning(message, *args)

    # -- checks (s3/checks.py) --------------------------------------------------------------------------------

    def checkBucket(self, *, needObjectLock: bool = False) -> None:
        """Fail in a second, with a message that says what to fix, before an hour of uploads."""
        from cedar_s3.s3.checks import checkBucket

        checkBucket(self, self._preflight, needObjectLock=needObjectLock)

    def probeObjectSettings(self, key: str) -> None:
        """Store and delete one tiny object with the data settings, before any upload (see s3/checks.py)."""
        from cedar_s3.s3.checks import probeObjectSettings

        probeObjectSettings(self, key)

    # -- writes --------------------------------------------------------------------------------------------------

    def checksumArgs(self, body: bytes, sha256: bytes | None = None, md5: bytes | None = None) -> dict[str, Any]:
        """What proves ``body`` to S3 on arrival: a SHA-256 flexible checksum (AWS), else Content-MD5."""
        import hashlib

        if self.policy.flexible:
            digest = sha256 if sha256 is not None else hashlib.sha256(body).digest()
            return {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": b64(digest)}
        digest = md5 if md5 is not None else hashlib.md5(body, usedforsecurity=False).digest()
        return {"ContentMD5": b64(digest)}

    def putObject(
        self,
        key: str,
        body: bytes | IO[bytes],
        *,
        md5: bytes,
        sha256: bytes,
        metadata: dict[str, str],
        kind: str = ObjectKind.DATA,
        contentType: str | None = None,
    ) -> str:
        """Store one object in one request, proven on arrival by the digests given; returns its ETag.

        ``body`` is the bytes, or a readable, seekable file positioned at its start (botocore rewinds it for a
        retry). Under ``<max_bandwidth>`` it is sent through the night's throttle.
        """
        args = self.settings.args(kind) | {"Metadata": metadata}
        if contentType:
            args["ContentType"] = contentType
        if self.policy.flexible:
            args |= {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": b64(sha256)}
        else:
            args["ContentMD5"] = b64(md5)
        what = f"uploading {self.location.url(key)}"
        sent: Any = self.throttle.wrap(body) if self.throttle is not None else body
        with translated(what):
            answer = self.client.put_object(Bucket=self.bucket, Key=key, Body=sent, **args)
        self.settings.checkApplied(dict(answer), what)
        return stripQuotes(answer.get("ETag"))

    def putBytes(
        self, key: str, body: bytes, *, contentType: str, kind: str, metadata: dict[str, str] | None = None
    ) -> None:
        """Store a small bookkeeping object (manifest, marker, record) in one request, proven on arrival."""
        args = self.settings.args(kind) | self.checksumArgs(body)
        if metadata:
            args["Metadata"] = metadata
        what = f"writing {self.location.url(key)}"
        with translated(what):
            answer = self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=contentType, **args)
        self.settings.checkApplied(dict(answer), what)

    def startMultipart(self, key: str, metadata: dict[str, str], *, composite: bool) -> MultipartUpload:
        """A new multipart upload of ``key``; ``composite`` sends each part with a SHA-256 that S3 combines."""
        from cedar_s3.s3.multipart import MultipartUpload

        return MultipartUpload.start(self, key, metadata, composite=composite)

    def resumeMultipart(self, pending: PendingUpload, *, composite: bool) -> MultipartUpload:
        from cedar_s3.s3.multipart import MultipartUpload

        return MultipartUpload.resume(self, pending, composite=composite)

    def deleteKeys(self, keys: Iterable[str]) -> None:
        """Delete keys in batches; any key S3 refuses is an error naming it.

        Never version-specific, on purpose: on a versioned (object-lock) bucket this only adds delete markers,
        which S3 allows even for locked objects, so the locked versions stay retrievable by version id until
        their retention ends and a same-day re-run never fails on them (``deleteVersions`` is the prune's).
        """
        failures = self.deleteVersions((key, None) for key in keys)
        if failures:
            shown = "; ".join(failures[:10])
            more = f" (and {len(failures) - 10} more)" if len(failures) > 10 else ""
            raise S3Error(f"S3 refused to delete {len(failures)} object(s): {shown}{more}")

    def deleteVersions(self, entries: Iterable[tuple[str, str | None]]) -> list[str]:
        """Delete ``(key, versionId)`` pairs (None: the current object) in batches; return what S3 refused.

        Refused objects (for instance versions under object lock) are returned, not raised: the caller decides
        what a partial deletion means. Each refusal names the key, version and S3's reason.
        """
        batch: list[Any] = []  # ObjectIdentifierTypeDef
        failures: list[str] = []
        for key, versionId in entries:
            batch.append({"Key": key, "VersionId": versionId} if versionId else {"Key": key})
            if len(batch) == DELETE_BATCH:
                failures += self._deleteBatch(batch)
                batch = []
        if batch:
            failures += self._deleteBatch(batch)
        return failures

    def _deleteBatch(self, objects: list[Any]) -> list[str]:
        with translated(f"deleting {len(objects)} objects under {self.location.url()}"):
            answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
        failures = []
        for error in answer.get("Errors", []):
            version = f" (version {error['VersionId']})" if error.get("VersionId") else ""
            failures.append(f"{error.get('Key')}{version}: {error.get('Code')} {error.get('Message', '')}".strip())
        return failures

    # -- housekeeping: optional, degrades ------------------------------------------------------------------------

    def pendingUploads(self, prefix: str) -> list[PendingUpload] | None:
        """Multipart uploads left under ``prefix`` (a killed run's), or None when this store cannot list them.

        ``Prefix`` without ``Delimiter``: Ceph answers nothing to the delimited form; for one key, the key itself
        is the prefix (MinIO matches no other).
        """
        try:
            with translated(f"listing incomplete uploads under {self.location.url(prefix)}"):
                pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix)
                uploads = [upload for page in pages for upload in page.get("Uploads", [])]
        except (S3UnsupportedError, S3AccessError) as error:
            self.warnOnce(
                "ListMultipartUploads",
                "Cannot list incomplete multipart uploads on this store, so none are resumed or tidied "
                "(grant s3:ListBucketMultipartUploads, or ignore this on a store without the call): %s",
                error,
            )
            return None
        return [
            PendingUpload(upload["Key"], upload["UploadId"], upload.get("Initiated"), upload.get("StorageClass"))
            for upload in uploads
            if upload.get("Key", "").startswith(prefix)  # a store that ignores Prefix must not hand us others
        ]

    def abortUploads(self, uploads: Iterable[PendingUpload]) -> int:
        """Abort leftover uploads so no invisible parts keep costing; a refusal is a warning. Returns the count."""
        aborted = 0
        for upload in uploads:
            try:
                with translated(f"aborting incomplete upload of {self.location.url(upload.key)}"):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload.key, UploadId=upload.uploadId)
            except (S3UnsupportedError, S3AccessError) as error:
                self.warnOnce("AbortMultipartUpload", "Cannot abort incomplete multipart uploads here: %s", error)
                break
            except S3Error as error:
                if errorCode(error) != "NoSuchUpload":
                    raise
            aborted += 1
        return aborted

    # -- reads ---------------------------------------------------------------------------------------------------

    def listObjects(self, prefix: str) -> Iterator[RemoteObject]:
        """Every object under ``prefix``, across as many pages as it takes."""
        with translated(f"listing {self.location.url(prefix)}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for entry in page.get("Contents", []):
                    yield RemoteObject(
                        entry["Key"], entry["Size"], stripQuotes(entry.get("ETag")), entry.get("StorageClass", "")
                    )

    def listCommonPrefixes(self, prefix: str) -> list[str]:
        """The "directories" directly under ``prefix`` (years, months, days).

        s3rver answers a delimited listing with nothing unless the keys are one level below the prefix; when the
        delimited form finds nothing but keys exist there, the prefixes are taken from a flat listing instead.
        """
        found: list[str] = []
        contents = False
        with translated(f"listing {self.location.url(prefix)}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                found += [entry["Prefix"] for entry in page.get("CommonPrefixes", [])]
                contents = contents or bool(page.get("Contents"))
            if found or contents:
                return found
            probe = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        if not probe.get("Contents"):
            return found
        self.warnOnce("Delimiter", "This store lists no common prefixes; finding the days by a full listing.")
        folders = {prefix + entry.key[len(prefix) :].split("/", 1)[0] + "/" for entry in self.listObjects(prefix)}
        return sorted(folder for folder in folders if not folder.endswith("//") and folder != prefix + "/")

    def head(self, key: str) -> RemoteHead:
        with translated(f"reading {self.location.url(key)}"):
            answer = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        return RemoteHead(
            key=key,
            size=answer["ContentLength"],
            etag=stripQuotes(answer.get("ETag")),
            checksumSha256=_stripPartCount(answer.get("ChecksumSHA256")),
            metadata=dict(answer.get("Metadata", {})),
            storageClass=answer.get("StorageClass", "STANDARD"),
            serverSideEncryption=answer.get("ServerSideEncryption"),
            restore=answer.get("Restore"),
            archiveStatus=answer.get("ArchiveStatus"),
        )

    def thawStatus(self, key: str) -> ThawStatus:
        """Whether ``key`` can be read now (one HEAD, never a GET), and if not, what to run to thaw it."""
        head = self.head(key)
        return thawStatus(
            bucket=self.bucket,
            key=key,
            storageClass=head.storageClass,
            archiveStatus=head.archiveStatus,
            restoreHeader=head.restore,
        )

    def getBytes(self, key: str, *, limit: int) -> bytes | None:
        """A small object's bytes, or None when it does not exist; more than ``limit`` bytes is an error."""
        from cedar_s3.s3.download import ObjectStream

        try:
            stream = ObjectStream.open(self, key, limit=limit)
        except FileNotFoundError:
            return None
        with stream:
            return stream.readAll()

    def spoolObject(self, key: str, into: IO[bytes], *, limit: int) -> bool:
        """Copy an object of at most ``limit`` bytes into ``into`` (a private temporary file), chunk by chunk, so
        that a large one is never held in memory; False when it does not exist."""
        from cedar_s3.s3.download import ObjectStream

        try:
            stream = ObjectStream.open(self, key, limit=limit)
        except FileNotFoundError:
            return False
        with stream:
            while chunk := stream.read():
                into.write(chunk)
        return True

    def getJson(self, key: str, *, limit: int) -> Any | None:
        body = self.getBytes(key, limit=limit)
        if body is None:
            return None
        try:
            return json.loads(body)
        except ValueError as error:
            raise ValueError(f"{self.location.url(key)} is not valid JSON: {error}") from None

    def openStream(self, key: str, *, size: int | None = None) -> ObjectStream:
        """The object's bytes for sequential reading; a body that breaks off resumes where it broke (ranged GET)."""
        from cedar_s3.s3.download import ObjectStream

        return ObjectStream.open(self, key, expectedSize=size)

    # -- versions and object lock (the operator's prune) ---------------------------------------------------------

    def versioningStatus(self) -> str | None:
        """``Enabled`` or ``Suspended`` when the bucket keeps object versions, None when it never has."""
        try:
            with translated(f"reading the versioning status of bucket {self.bucket}"):
                answer = self.client.get_bucket_versioning(Bucket=self.bucket)
        except S3UnsupportedError as error:
            self.warnOnce(
                "GetBucketVersioning",
                "This store cannot say whether it keeps versions; assuming it does not: %s",
                error,
            )
            return None
        return answer.get("Status")

    def objectLockEnabled(self) -> bool:
        """Whether the bucket has object lock on (only then can a version be under retention or legal hold)."""
        try:
            with translated(f"reading the object lock configuration of bucket {self.bucket}"):
                answer = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except S3UnsupportedError:
            return False
        except S3Error as error:
            if errorCode(error) == "ObjectLockConfigurationNotFoundError":
                return False
            raise
        return answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"

    def listVersions(self, prefix: str) -> Iterator[RemoteVersion]:
        """Every version and delete marker under ``prefix`` (a versioned bucket keeps deleted data as versions)."""
        with translated(f"listing object versions under {self.location.url(prefix)}"):
            pages = self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for entry in page.get("Versions", []):
                    yield RemoteVersion(entry["Key"], entry["VersionId"], entry.get("Size", 0), deleteMarker=False)
                for marker in page.get("DeleteMarkers", []):
                    yield RemoteVersion(marker["Key"], marker["VersionId"], 0, deleteMarker=True)

    def versionLock(self, key: str, versionId: str | None) -> VersionLock:
        """The retention and legal hold on one object version (HEAD; needs s3:GetObjectRetention to see them)."""
        args: dict[str, Any] = {"VersionId": versionId} if versionId else {}
        with translated(f"reading the object lock of {self.location.url(key)}"):
            answer = self.client.head_object(Bucket=self.bucket, Key=key, **args)
        return VersionLock(
            mode=answer.get("ObjectLockMode"),
            until=answer.get("ObjectLockRetainUntilDate"),
            legalHold=answer.get("ObjectLockLegalHoldStatus") == "ON",
        )
