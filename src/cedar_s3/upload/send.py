"""Sending one object: bytes in memory, an open descriptor, or a stream (gpg's output) as it is produced.

Whatever the source, the bytes are hashed as they are sent, in the forms S3 proves them by (``digest``), and
the object's record is built from those digests, never from what S3 says about itself. Sizes decide the shape:

- bytes and descriptors below ``<multipart_threshold>``: one PUT (a descriptor streams from its start);
- descriptors above it: parts read with ``pread``, each re-hashed and compared with the hash made before the
  upload (a file that changes mid-upload fails, it is not stored half old, half new); an unfinished upload a
  failed night left for the same file is continued, each of its parts proven by MD5 against the local bytes;
- streams: held in memory up to one part, then sent part by part as they come, so a ciphertext never touches
  the disk and memory stays at ``max(2, <max_concurrency>)`` part buffers for the whole night.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from CedarBackup3.util import displayBytes
from s3transfer.utils import ChunksizeAdjuster

from cedar_s3.bucketformat import (
    RECORD_LIMIT,
    StoredObject,
    UploadRecord,
    objectMetadata,
    streamedMetadata,
    uploadRecordName,
)
from cedar_s3.digest import Digest, digestBytes
from cedar_s3.s3.errors import S3AccessError, S3ConnectionError, S3IntegrityError, S3UnsupportedError
from cedar_s3.stagedtree import StagingChangedError

if TYPE_CHECKING:
    from cedar_s3.s3.multipart import MultipartUpload
    from cedar_s3.s3.store import PendingUpload, S3Store
    from cedar_s3.stagedtree import StagedFile

__all__ = ["ObjectWriter", "Plaintext", "StoppedError", "StreamSender"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.upload")

MIB = 1024 * 1024


@dataclass(frozen=True)
class Plaintext:
    """The staged file as it was read for this object: its size and SHA-256 (hex)."""

    size: int
    sha256: str


class StoppedError(Exception):
    """A job not started, a batch not continued or an object's parts not all sent: the night had already failed
    (another job's error, or SIGTERM), so nothing more goes."""


class ObjectWriter:
    """Sends one day's objects under ``dayPrefix`` and makes their records."""

    def __init__(
        self,
        store: S3Store,
        dayPrefix: str,
        commonMetadata: dict[str, str],
        storedAs: str,
        *,
        recordSourceMtime: bool = False,
    ) -> None:
        self.store = store
        self.stop = threading.Event()  # set once the night is lost: no further part is sent
        self.dayPrefix = dayPrefix
        self.common = commonMetadata
        self.storedAs = storedAs
        self.recordSourceMtime = recordSourceMtime  # the listed mtime goes into each object's metadata (sync)
        self.composite = store.policy.flexible and not store.settings.etagsAreMd5  # SSE-KMS: HEAD proves parts
        # Off AWS, a store may give a multipart object the MD5 of all its bytes as ETag (s3rver does) instead of
        # S3's MD5 of part MD5s: that one is recorded too, so one listing still proves the object.
        self.wholeMd5 = not store.policy.flexible
        self.pending: dict[str, list[PendingUpload]] = {}  # unfinished uploads found at the start, by key
        self.kept: set[str] = set()  # upload ids left unfinished on purpose tonight, for the next night

    def key(self, staged: StagedFile) -> str:
        return self.dayPrefix + staged.relative

    def record(self, staged: StagedFile, digest: Digest, plain: Plaintext, mode: str) -> StoredObject:
        return StoredObject(
            relative=staged.relative,
            size=digest.size,
            plaintextSize=plain.size,
            plaintextSha256=plain.sha256,
            storedSha256=digest.sha256Hex,
            encryption=mode,
            partSize=digest.partSize,
            md5Etag=digest.md5Etag,
            compositeSha256=digest.compositeBase64,
            storedAs=self.storedAs or None,
            wholeMd5=digest.wholeMd5.hex() if digest.wholeMd5 is not None else None,
        )

    def metadata(self, staged: StagedFile, record: StoredObject) -> dict[str, str]:
        mtime = staged.mtimeNs if self.recordSourceMtime else None
        return objectMetadata(record, self.common, sourceMtimeNs=mtime)

    def checkEtag(self, key: str, etag: str, record: StoredObject) -> None:
        """An MD5-form ETag that is not one of these bytes' forms: the store kept other bytes than were sent."""
        if self.store.settings.etagsAreMd5 and etag and record.md5Etag is not None and not record.etagMatches(etag):
            raise S3IntegrityError(
                f"uploading {self.store.location.url(key)}: S3 stored other bytes than were sent "
                f"(ETag {etag}, sent {record.md5Etag})."
            )

    # -- one PUT ---------------------------------------------------------------------------------------------------

    def sendBytes(self, staged: StagedFile, data: bytes, plain: Plaintext, mode: str) -> StoredObject:
        digest = digestBytes(data)
        record = self.record(staged, digest, plain, mode)
        key = self.key(staged)
        assert digest.md5 is not None
        etag = self.store.putObject(
            key, data, md5=digest.md5, sha256=digest.sha256, metadata=self.metadata(staged, record)
        )
        self.checkEtag(key, etag, record)
        return record

    # -- a descriptor ----------------------------------------------------------------------------------------------

    def partSizeFor(self, size: int) -> int | None:
        return self.store.plan.partSizeFor(size)

    def sendDescriptor(
        self, staged: StagedFile, descriptor: int, digest: Digest, plain: Plaintext, mode: str
    ) -> StoredObject:
        """Send an open file whose ``digest`` was made before (``partSizeFor`` its size decides one PUT or parts)."""
        record = self.record(staged, digest, plain, mode)
        key = self.key(staged)
        metadata = self.metadata(staged, record)
        if digest.partSize is None:
            assert digest.md5 is not None
            with os.fdopen(os.dup(descriptor), "rb") as body:
                etag = self.store.putObject(key, body, md5=digest.md5, sha256=digest.sha256, metadata=metadata)
        else:
            etag = self._sendParts(staged, key, descriptor, digest, metadata)
        self.checkEtag(key, etag, record)
        return record

    def _uploadRecord(self, staged: StagedFile, uploadId: str, digest: Digest) -> UploadRecord:
        assert digest.partSize is not None
        return UploadRecord(
            key=self.key(staged),
            uploadId=uploadId,
            size=staged.size,
            mtimeNs=staged.mtimeNs,
            plaintextSha256=digest.sha256Hex,
            partSize=digest.partSize,
            storedAs=self.storedAs,
        )

    def _resumable(self, staged: StagedFile, key: str, digest: Digest) -> PendingUpload | None:
        """The unfinished upload an earlier night noted for exactly this file, stored exactly so, if any."""
        pending = {upload.uploadId: upload for upload in self.pending.get(key, [])}
        if not pending:
            return None
        noted = UploadRecord.parse(
            self.store.getJson(self.dayPrefix + uploadRecordName(staged.relative), limit=RECORD_LIMIT)
        )
        if noted is None or noted.uploadId not in pending:
            return None
        wanted = self._uploadRecord(staged, noted.uploadId, digest)
        return pending[noted.uploadId] if replace(noted, tool=wanted.tool) == wanted else None

    def unreached(self) -> set[str]:
        """Upload ids found at the start that tonight never came to (a failed night leaves them for the next)."""
        return {upload.uploadId for uploads in self.pending.values() for upload in uploads}

    def _resumed(self, staged: StagedFile, key: str, digest: Digest) -> MultipartUpload | None:
        """The earlier night's upload of this file, continued; None when there is none or the store will not show
        its parts (then the file is sent again, whole, and the old upload aborted with the other leftovers)."""
        pending = self._resumable(staged, key, digest)
        if pending is None:
            return None
        self.pending[key].remove(pending)
        try:
            return self.store.resumeMultipart(pending, composite=self.composite)
        except (S3AccessError, S3UnsupportedError) as error:
            logger.warning("Cannot continue the unfinished upload of %s, sending it again whole: %s", key, error)
            return None

    def _sendParts(
        self, staged: StagedFile, key: str, descriptor: int, digest: Digest, metadata: dict[str, str]
    ) -> str:
        recordKey = self.dayPrefix + uploadRecordName(staged.relative)
        resumed = self._resumed(staged, key, digest)
        upload = resumed
        if upload is None:
            upload = self.store.startMultipart(key, metadata, composite=self.composite)
            note = self._uploadRecord(staged, upload.uploadId, digest)
            self.store.putBytes(recordKey, note.toJson(), contentType="application/json", kind="bookkeeping")
        try:
            self._sendFileParts(staged, upload, descriptor, digest)
            etag = upload.complete()
        except S3ConnectionError:
            # The network went away: the parts already sent stay for the next night, which proves each by its MD5
            # against the file and sends only the rest (a 100 GB file is not sent again for one failure at the end).
            upload.settle()
            self.kept.add(upload.uploadId)
            logger.warning("Kept the unfinished upload of %s for the next night to continue.", upload.url)

            raise
        except BaseException:
            upload.abort()
            raise
        if resumed is not None:
            etag = self._confirmResumed(staged, descriptor, digest, metadata, etag)
        self.store.deleteKeys([recordKey])
        return etag

    def _sendFileParts(self, staged: StagedFile, upload: MultipartUpload, descriptor: int, digest: Digest) -> None:
        """Send (or, resuming, reuse) each part; a reused part is one the store already holds with this MD5."""
        assert digest.partSize is not None
        slots = self.store.partSlots
        reused = 0
        for number, expectedMd5 in enumerate(digest.partMd5s, 1):
            offset = (number - 1) * digest.partSize
            length = min(digest.partSize, digest.size - offset)
            existing = upload.existing.get(number)
            if existing is not None and existing.size == length and existing.etag == expectedMd5.hex():
                upload.reuse(number, existing.etag)
                reused += length
                continue
            if self.stop.is_set():
                raise StoppedError
            slots.acquire()
            try:
                data = _preadFully(descriptor, length, offset)
                md5 = hashlib.md5(data, usedforsecurity=False).digest()
                if md5 != expectedMd5:
                    raise StagingChangedError(
                        f"Staged file changed while being uploaded: {staged.path} (part {number} differs from what was "
                        "hashed); re-run once staging is finished."
                    )
                sha = hashlib.sha256(data).digest() if upload.composite else None
            except BaseException:
                slots.release()
                raise
            upload.send(number, data, md5=md5, sha256=sha, release=slots)
        if upload.existing:
            logger.info(
                "Resumed the unfinished upload of %s: %d of %d part(s), %s of %s, reused.",
                upload.url,
                reused // digest.partSize + (1 if reused % digest.partSize else 0),
                len(digest.partMd5s),
                displayBytes(reused),
                displayBytes(digest.size),
            )

    def _confirmResumed(
        self, staged: StagedFile, descriptor: int, digest: Digest, metadata: dict[str, str], etag: str
    ) -> str:
        """A resumed object carries the metadata of the night that started it: trust it only if that describes
        this very file, stored this way; else send the file again, whole."""
        key = self.key(staged)
        head = self.store.head(key)
        keys = ("cedar-plaintext-sha256", "cedar-stored-as", "cedar-encryption")
        if all(head.metadata.get(name) == metadata.get(name) for name in keys) and head.size == digest.size:
            return etag
        logger.warning("The resumed upload of %s was started for other content or settings; sending it again.", key)
        upload = self.store.startMultipart(key, metadata, composite=self.composite)
        try:
            self._sendFileParts(staged, upload, descriptor, digest)
            return upload.complete()
        except BaseException:
            upload.abort()
            raise

    # -- a stream --------------------------------------------------------------------------------------------------

    def stream(self, staged: StagedFile, mode: str) -> StreamSender:
        return StreamSender(self, staged, mode)


class StreamSender:
    """Receives an object's bytes as they are produced (``write``) and sends them: one PUT if they fit in one part,
    else part by part. ``finish(plaintext)`` returns the record; ``abort()`` gives up (parts are aborted)."""

    def __init__(self, writer: ObjectWriter, staged: StagedFile, mode: str) -> None:
        self._writer = writer
        self._staged = staged
        self._mode = mode
        store = writer.store
        estimate = staged.size + staged.size // 100 + MIB  # gpg adds a little; compression may take away
        self.partSize = int(ChunksizeAdjuster().adjust_chunksize(store.plan.chunkSize, estimate))
        self._whole = hashlib.sha256()
        self._wholeMd5: Any = hashlib.md5(usedforsecurity=False) if writer.wholeMd5 else None
        self._size = 0
        self._md5s: list[bytes] = []
        self._shas: list[bytes] = []
        self._buffer = bytearray()
        self._slot = False
        self._upload: MultipartUpload | None = None

    def _takeSlot(self) -> None:
        if not self._slot:
            self._writer.store.partSlots.acquire()
            self._slot = True

    def write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            if len(self._buffer) == self.partSize:  # more is coming: this one is a part
                self._sendPart()
            self._takeSlot()
            take = min(len(view), self.partSize - len(self._buffer))
            self._buffer += view[:take]
            view = view[take:]

    def _sendPart(self) -> None:
        writer = self._writer
        if self._upload is None:
            metadata = streamedMetadata(
                writer.common, encryption=self._mode, plaintextSize=self._staged.size, storedAs=writer.storedAs
            )
            self._upload = writer.store.startMultipart(writer.key(self._staged), metadata, composite=writer.composite)
        data = self._buffer  # handed over, not copied: a new buffer takes the next part
        self._buffer = bytearray()
        self._whole.update(data)
        if self._wholeMd5 is not None:
            self._wholeMd5.update(data)
        self._size += len(data)

        md5 = hashlib.md5(data, usedforsecurity=False).digest()
        sha = hashlib.sha256(data).digest() if writer.composite else None
        self._md5s.append(md5)
        if sha is not None:
            self._shas.append(sha)
        self._slot = False  # the part's upload releases it
        self._upload.send(len(self._md5s), data, md5=md5, sha256=sha, release=writer.store.partSlots)

    def finish(self, plain: Plaintext) -> StoredObject:
        writer = self._writer
        try:
            if self._upload is None:
                data = bytes(self._buffer)
                self._buffer = bytearray()
                return writer.sendBytes(self._staged, data, plain, self._mode)
            if self._buffer:
                self._sendPart()
            etag = self._upload.complete()
        except BaseException:
            self.abort()
            raise
        finally:
            self._release()
        composite = hashlib.sha256(b"".join(self._shas)).digest() if writer.composite else None
        whole = self._wholeMd5.digest() if self._wholeMd5 is not None else None
        digest = Digest(self._size, self._whole.digest(), None, self.partSize, tuple(self._md5s), composite, (), whole)
        record = writer.record(self._staged, digest, plain, self._mode)
        writer.checkEtag(writer.key(self._staged), etag, record)
        return record

    def _release(self) -> None:
        if self._slot:
            self._slot = False
            self._writer.store.partSlots.release()

    def abort(self) -> None:
        self._release()
        self._buffer = bytearray()
        if self._upload is not None:
            self._upload.abort()
            self._upload = None


def _preadFully(descriptor: int, length: int, offset: int) -> bytes:
    chunks, done = [], 0
    while done < length:
        chunk = os.pread(descriptor, length - done, offset + done)
        if not chunk:
            break
        chunks.append(chunk)
        done += len(chunk)
    return b"".join(chunks)
