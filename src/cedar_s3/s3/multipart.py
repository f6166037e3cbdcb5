"""One multipart upload: parts sent concurrently on the store's part threads, each proven on arrival.

The caller hands over each part's bytes with the digests it computed while producing them (plain bytes read
from a descriptor, or gpg's output as it streams), holding one of ``store.partSlots`` for every part buffer in
memory: so a night never holds more than ``max(2, <max_concurrency>)`` part buffers, whatever the file sizes.
Each part carries ``Content-MD5`` (and a SHA-256 when the object's checksum must be composite, under SSE-KMS),
and its answered ETag is compared with our MD5 where ETags are MD5s. A part that fails is retried by botocore
from its buffer. ``resume`` continues an upload a failed night left, reusing only parts the caller proves.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from cedar_s3.s3.errors import S3Error, S3IntegrityError, translated
from cedar_s3.s3.store import ObjectKind, PendingUpload, b64, stripQuotes

if TYPE_CHECKING:
    from cedar_s3.s3.store import S3Store

__all__ = ["ExistingPart", "MultipartUpload"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.s3")


class ExistingPart:
    """A part an earlier run uploaded: its size and ETag (an MD5 on stores that give MD5 ETags)."""

    __slots__ = ("etag", "size")

    def __init__(self, size: int, etag: str) -> None:
        self.size = size
        self.etag = etag


class MultipartUpload:
    """``start``/``resume``, then ``send`` or ``reuse`` each part, then ``complete()`` (or ``abort()``)."""

    def __init__(self, store: S3Store, key: str, uploadId: str, *, composite: bool) -> None:
        self.store = store
        self.key = key
        self.uploadId = uploadId
        self.composite = composite
        self.existing: dict[int, ExistingPart] = {}
        self._parts: dict[int, dict[str, Any]] = {}
        self._futures: list[Future[None]] = []
        self._lock = threading.Lock()
        self._failed: BaseException | None = None

    @property
    def url(self) -> str:
        return self.store.location.url(self.key)

    @classmethod
    def start(cls, store: S3Store, key: str, metadata: dict[str, str], *, composite: bool) -> MultipartUpload:
        args = store.settings.args(ObjectKind.DATA) | {"Metadata": metadata}
        if composite:
            args["ChecksumAlgorithm"] = "SHA256"
        with translated(f"starting the multipart upload of {store.location.url(key)}"):
            answer = store.client.create_multipart_upload(Bucket=store.bucket, Key=key, **args)
        return cls(store, key, answer["UploadId"], composite=composite)

    @classmethod
    def resume(cls, store: S3Store, pending: PendingUpload, *, composite: bool) -> MultipartUpload:
        """Continue ``pending``; ``existing`` then holds the parts it has, for the caller to prove or replace."""
        upload = cls(store, pending.key, pending.uploadId, composite=composite)
        with translated(f"listing the parts of the unfinished upload of {upload.url}"):
            pages = store.client.get_paginator("list_parts").paginate(
                Bucket=store.bucket, Key=pending.key, UploadId=pending.uploadId
            )
            for page in pages:
                for part in page.get("Parts", []):
                    upload.existing[part["PartNumber"]] = ExistingPart(part["Size"], stripQuotes(part.get("ETag")))
        return upload

    def reuse(self, number: int, etag: str) -> None:
        """Keep a part an earlier run sent, which the caller proved to hold exactly the bytes it would send."""
        with self._lock:
            self._parts[number] = {"PartNumber": number, "ETag": f'"{etag}"'}

    def send(
        self, number: int, data: bytes | bytearray, *, md5: bytes, sha256: bytes | None, release: threading.Semaphore
    ) -> None:
        """Send one part on the part threads; ``release`` is signalled once its buffer is no longer needed.

        Raises at once if an earlier part of this upload already failed.
        """
        if self._failed is not None:
            release.release()
            raise self._failed
        future = self.store.partPool.submit(self._sendPart, number, data, md5, sha256)
        future.add_done_callback(lambda _future: release.release())
        with self._lock:
            self._futures.append(future)

    def _sendPart(self, number: int, data: bytes | bytearray, md5: bytes, sha256: bytes | None) -> None:
        args: dict[str, Any] = {"ContentMD5": b64(md5)}
        if self.composite:
            assert sha256 is not None
            args |= {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": b64(sha256)}
        body: Any = self.store.throttle.wrap(data) if self.store.throttle is not None else data
        what = f"uploading part {number} of {self.url}"
        try:
            with translated(what):
                answer = self.store.client.upload_part(
                    Bucket=self.store.bucket,
                    Key=self.key,
                    UploadId=self.uploadId,
                    PartNumber=number,
                    Body=body,
                    **args,
                )
            etag = stripQuotes(answer.get("ETag"))
            if self.store.settings.etagsAreMd5 and etag and etag != md5.hex():
                raise S3IntegrityError(f"{what}: S3 stored other bytes than were sent (part ETag {etag}).")
        except BaseException as error:
            self._failed = self._failed or error
            raise
        part: dict[str, Any] = {"PartNumber": number, "ETag": answer.get("ETag") or f'"{md5.hex()}"'}
        if self.composite and sha256 is not None:
            part["ChecksumSHA256"] = b64(sha256)
        with self._lock:
            self._parts[number] = part

    def wait(self) -> None:
        """Wait for every part sent so far; the first failure is raised."""
        with self._lock:
            futures = list(self._futures)
        for future in futures:
            future.result()

    def complete(self) -> str:
        """Finish the upload once every part is in; returns the object's ETag (from HEAD when Complete has none)."""
        self.wait()
        with self._lock:
            parts: list[Any] = [self._parts[number] for number in sorted(self._parts)]
        what = f"completing the multipart upload of {self.url}"
        if [part["PartNumber"] for part in parts] != list(range(1, len(parts) + 1)):
            raise S3Error(f"{what}: parts are missing ({[part['PartNumber'] for part in parts]}).")
        with translated(what):
            answer = self.store.client.complete_multipart_upload(
                Bucket=self.store.bucket, Key=self.key, UploadId=self.uploadId, MultipartUpload={"Parts": parts}
            )
        self.store.settings.checkApplied(dict(answer), what)
        etag = stripQuotes(answer.get("ETag"))
        return etag or self.store.head(self.key).etag  # Ceph answers an empty ETag; HEAD has the real one

    def settle(self) -> None:
        """Wait for the parts in flight to end, whatever their outcome (before leaving the upload to be resumed)."""
        with contextlib.suppress(BaseException):
            self.wait()

    def abort(self) -> None:
        """Give the upload up (its parts stop costing); never raises, the night's own error matters more."""
        for future in list(self._futures):
            future.cancel()
        with contextlib.suppress(BaseException):  # the failure being handled is the caller's to report
            self.wait()
        try:
            self.store.abortUploads([PendingUpload(self.key, self.uploadId, None, None)])
        except Exception as error:
            logger.warning("Could not abort the unfinished upload of %s (a later night will): %s", self.url, error)
