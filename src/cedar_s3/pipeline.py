"""Store one staged day's files: read, [encrypt], digest, upload, record; concurrently, skipping what is there.

Each file is handled by one worker from start to finish, so at most ``concurrency`` ciphertexts exist at once
(the temp-space bound) and a failure stops the night at the first bad file. Everything an object is later
verified against is computed here from the bytes actually read, never from what S3 says about itself.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from CedarBackup3.util import displayBytes

from cedar_s3.crypto import Encryptor
from cedar_s3.digest import StreamDigest, digestBytes, digestFile
from cedar_s3.manifest import StoredObject
from cedar_s3.multifile import MultifileSession
from cedar_s3.s3 import RemoteObject, S3Store
from cedar_s3.s3errors import S3NotFoundError
from cedar_s3.staging import StagedFile
from cedar_s3.workarea import WorkArea

__all__ = ["DayUpload", "UploadReport", "metadataRecord"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.pipeline")

INLINE_LIMIT = 1024 * 1024  # files up to this size are read once into memory and sent from there
BATCH_FILES = 64  # small files per gpg run when the encryptor can batch


@dataclass
class UploadReport:
    """What a day's upload did: every object's record (in key order) and the counts for the log."""

    objects: list[StoredObject] = field(default_factory=list)
    uploaded: int = 0
    skipped: int = 0
    bytesSent: int = 0
    seconds: float = 0.0


def objectMetadata(record: StoredObject, common: dict[str, str]) -> dict[str, str]:
    """What each object says about itself, so a day can be resumed (and understood) without its manifest."""
    meta = dict(common)
    meta |= {
        "cedar-plaintext-sha256": record.plaintextSha256,
        "cedar-plaintext-size": str(record.plaintextSize),
        "cedar-stored-sha256": record.storedSha256,
        "cedar-encryption": record.encryption,
    }
    if record.partSize is not None:
        meta["cedar-part-size"] = str(record.partSize)
    if record.md5Etag is not None:
        meta["cedar-md5-etag"] = record.md5Etag
    if record.compositeSha256 is not None:
        meta["cedar-composite-sha256"] = record.compositeSha256
    if record.storedAs:
        meta["cedar-stored-as"] = record.storedAs
    return meta


def metadataRecord(relative: str, remote: RemoteObject, metadata: dict[str, str]) -> StoredObject | None:
    """Rebuild an object's record from its metadata (a run interrupted before its manifest), or None."""
    try:
        partSize = metadata.get("cedar-part-size")
        record = StoredObject(
            relative=relative,
            size=remote.size,
            plaintextSize=int(metadata["cedar-plaintext-size"]),
            plaintextSha256=metadata["cedar-plaintext-sha256"],
            storedSha256=metadata["cedar-stored-sha256"],
            encryption=metadata["cedar-encryption"],
            partSize=int(partSize) if partSize else None,
            md5Etag=metadata.get("cedar-md5-etag"),
            compositeSha256=metadata.get("cedar-composite-sha256"),
            storedAs=metadata.get("cedar-stored-as"),
        )
        record.check()
    except (KeyError, ValueError):
        return None
    return record


class DayUpload:
    """The upload of one staged day to ``dayPrefix``."""

    def __init__(
        self,
        store: S3Store,
        dayPrefix: str,
        *,
        encryptor: Encryptor | None,
        workArea: WorkArea | None,
        commonMetadata: dict[str, str],
        storedAs: str = "",
        previous: dict[str, StoredObject],
        existing: dict[str, RemoteObject],
    ) -> None:
        self.store = store
        self.dayPrefix = dayPrefix
        self.encryptor = encryptor
        self.workArea = workArea
        self.commonMetadata = commonMetadata
        self.previous = previous
        self.storedAs = storedAs
        self.existing = existing
        self.flexible = store.options.flexibleChecksums
        self.etagsAreMd5 = store.options.serverSideEncryption != "aws:kms"  # else verification HEADs each object
        self._stop = threading.Event()  # set by the first file that fails
        # Hashing is CPU work and uploading is mostly the endpoint's: letting one worker hash at a time (per two
        # cores) makes the next file's hashing overlap the previous file's upload instead of every big file
        # hashing at once while the link sits idle.
        self._hashSlots = threading.Semaphore(max(1, (os.cpu_count() or 2) // 2))

    # -- the whole day ------------------------------------------------------------------------------------------

    def run(self, files: list[StagedFile]) -> UploadReport:
        """Store every file, ``concurrency`` at a time; the first failure cancels what has not started."""
        report = UploadReport()
        started = time.monotonic()
        results: list[tuple[StoredObject, bool] | None] = [None] * len(files)
        jobs = self._jobs(files)
        with ThreadPoolExecutor(max_workers=self.store.concurrency, thread_name_prefix="cedar-s3") as pool:
            futures: dict[Future[list[tuple[StoredObject, bool]]], list[int]] = {
                pool.submit(self._storeJobUnlessStopped, number, [files[index] for index in job]): job
                for number, job in enumerate(jobs)
            }
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            if any(future.exception() is not None for future in done):
                pool.shutdown(wait=True, cancel_futures=True)
                errors = [future.exception() for future in futures if not future.cancelled()]
                error = next(error for error in errors if error is not None and not isinstance(error, _StoppedError))
                raise error
            for future, job in futures.items():
                for index, stored in zip(job, future.result(), strict=True):
                    results[index] = stored
        for result in results:
            assert result is not None
            record, reused = result
            report.objects.append(record)
            if reused:
                report.skipped += 1
            else:
                report.uploaded += 1
                report.bytesSent += record.size
        report.seconds = time.monotonic() - started
        return report

    # -- one file -----------------------------------------------------------------------------------------------

    def _jobs(self, files: list[StagedFile]) -> list[list[int]]:
        """One job per file, except that an encryptor able to batch gets small files in groups (one gpg run each)."""
        if self.encryptor is None or not self.encryptor.canBatch:
            return [[index] for index in range(len(files))]
        small = [index for index, staged in enumerate(files) if staged.size <= INLINE_LIMIT]
        large = [[index] for index, staged in enumerate(files) if staged.size > INLINE_LIMIT]
        return large + [small[start : start + BATCH_FILES] for start in range(0, len(small), BATCH_FILES)]

    def _batched(self, files: list[StagedFile]) -> bool:
        return self.encryptor is not None and self.encryptor.canBatch and all(f.size <= INLINE_LIMIT for f in files)

    def _storeJobUnlessStopped(self, number: int, staged: list[StagedFile]) -> list[tuple[StoredObject, bool]]:
        """Store one job's files, unless another job already failed: a worker that finishes its job picks the next
        before ``run`` can cancel it, and the night must not start (and wait for) more uploads once it is lost.
        """
        if self._stop.is_set():
            raise _StoppedError
        try:
            if self._batched(staged):
                return self._storeBatch(number, staged)
            return [self._storeOne(number, only) for only in staged]
        except BaseException:
            self._stop.set()
            raise

    def _storeBatch(self, number: int, files: list[StagedFile]) -> list[tuple[StoredObject, bool]]:
        """Small files through one gpg run, one at a time: only the ciphertext being sent is ever on disk."""
        assert self.encryptor is not None and self.workArea is not None
        with (
            self.workArea.scratchDir(f"{number:08d}.batch") as directory,
            contextlib.closing(self.encryptor.batchSession(directory)) as session,
        ):
            results = []
            for staged in files:
                if self._stop.is_set():  # another job failed: the night is lost, send nothing more
                    raise _StoppedError
                with _namingVanished(staged):
                    results.append(self._storeThrough(session, staged))
            return results

    def _storeThrough(self, session: MultifileSession, staged: StagedFile) -> tuple[StoredObject, bool]:
        """One small file through the batch's gpg: hashed, reused if already stored so, else encrypted, read back
        once (the bytes hashed are the bytes sent), sent, and its ciphertext removed before the next."""
        assert self.encryptor is not None
        key, mode = self.dayPrefix + staged.relative, self.encryptor.mode
        plain = digestFile(staged.path, None, wantMd5=False, wantComposite=False)
        reused = self._reusable(key, staged, plain.sha256, mode)
        if reused is not None:
            return reused, True
        output = session.encrypt(staged.path)
        try:
            _checkUnchanged(staged, plain.size)  # hashed before gpg read it: both must have seen these bytes
            with open(output, "rb") as handle:
                body = handle.read()
            stored = digestBytes(body, wantMd5=True)
            record = _record(staged.relative, stored, plain.size, plain.sha256, mode, self.storedAs)
            self._upload(output, key, record, stored, body)
        finally:
            os.unlink(output)
        return record, False

    def _storeOne(self, index: int, staged: StagedFile) -> tuple[StoredObject, bool]:
        key = self.dayPrefix + staged.relative
        encryptor = self.encryptor
        if encryptor is not None and encryptor.mode == "command" and staged.size == 0:
            encryptor = None  # upstream stores empty files unencrypted in <encrypt> mode; kept for compatibility
        with _namingVanished(staged):
            if encryptor is None:
                return self._storePlain(key, staged)
            return self._storeEncrypted(index, key, staged, encryptor)
        raise AssertionError("unreachable")  # mypy: _namingVanished never swallows

    def _storePlain(self, key: str, staged: StagedFile) -> tuple[StoredObject, bool]:
        body = _readSmall(staged)  # a small file is read once: the bytes hashed are the bytes sent
        digest = digestBytes(body, wantMd5=True) if body is not None else self._digest(staged.path, staged.size)
        _checkUnchanged(staged, digest.size)
        reused = self._reusable(key, staged, digest.sha256, "none")
        if reused is not None:
            return reused, True
        record = _record(staged.relative, digest, digest.size, digest.sha256, "none", self.storedAs)
        self._upload(staged.path, key, record, digest, body)
        _checkUnchanged(staged, digest.size)  # the upload may read the file again: it must still be what was hashed
        return record, False

    def _storeEncrypted(
        self, index: int, key: str, staged: StagedFile, encryptor: Encryptor
    ) -> tuple[StoredObject, bool]:
        if key in self.existing:
            plain = digestFile(staged.path, None, wantMd5=False, wantComposite=False)
            reused = self._reusable(key, staged, plain.sha256, encryptor.mode)
            if reused is not None:
                return reused, True
        assert self.workArea is not None
        with self.workArea.scratch(f"{index:08d}.enc") as target:
            try:
                plainDigest = encryptor.encrypt(staged.path, target)
            except BrokenPipeError:
                raise _encryptorStopped(staged, self.workArea.path) from None
            _checkUnchanged(staged, plainDigest.size)
            stored = self._digest(target, os.path.getsize(target))
            record = _record(
                staged.relative, stored, plainDigest.size, plainDigest.sha256, encryptor.mode, self.storedAs
            )
            self._upload(target, key, record, stored)
        return record, False

    def _digest(self, path: str, size: int) -> StreamDigest:
        partSize = self.store.plan.partSizeFor(size)
        multipart = partSize is not None
        # The MD5 form lets one listing prove every object on any endpoint that computes standard ETags, even one
        # that (like moto) does not check the checksums we send. Only under SSE-KMS, where the ETag is not an MD5
        # and a HEAD must prove a multipart object, are its parts also sent and recorded with SHA-256; otherwise
        # botocore's cheaper default CRC32 guards each part in transit (measured: 384 MiB in 4 files, 20% less
        # client CPU).
        wantComposite = multipart and self.flexible and not self.etagsAreMd5
        with self._hashSlots:
            return digestFile(path, partSize, wantMd5=True, wantComposite=wantComposite)

    def _upload(
        self, path: str, key: str, record: StoredObject, digest: StreamDigest, body: bytes | None = None
    ) -> None:
        args = self.store.options.objectArgs()
        args["Metadata"] = objectMetadata(record, self.commonMetadata)
        if self.flexible:
            if digest.partSize is None:
                args["ChecksumSHA256"] = digest.sha256Base64  # S3 refuses the PUT if the bytes differ
            elif digest.compositeSha256 is not None:
                args["ChecksumAlgorithm"] = "SHA256"
        self.store.uploadFile(path, key, args, body=body)
        logger.debug("Stored [%s] (%d bytes, %s).", key, record.size, record.encryption)

    # -- resuming -----------------------------------------------------------------------------------------------

    def _reusable(self, key: str, staged: StagedFile, plaintextSha256: str, mode: str) -> StoredObject | None:
        """The stored object's record when it already holds exactly this file, stored the way we store it now."""
        remote = self.existing.get(key)
        if remote is None:
            return None
        previous = self.previous.get(staged.relative)
        if previous is None or not self._describes(previous, remote):
            # Not in the manifest, or rewritten since it was written (by a re-run that failed after sending this
            # file): the object's own metadata says what it holds.
            previous = metadataRecord(staged.relative, remote, self.store.head(key).metadata)
        if (
            previous is None
            or not self._describes(previous, remote)
            or previous.encryption != mode
            or previous.plaintextSha256 != plaintextSha256
            or previous.plaintextSize != staged.size
            or (previous.storedAs or "") != self.storedAs  # keys, storage class, SSE, lock or tags changed
        ):
            return None
        logger.debug("Skipping [%s]: already stored with the same content.", key)
        return previous

    def _describes(self, record: StoredObject, remote: RemoteObject) -> bool:
        """Whether ``record`` can be the record of the listed object (same size, and same ETag where it is an MD5)."""
        etagDiffers = self.etagsAreMd5 and record.md5Etag is not None and record.md5Etag != remote.etag
        return record.size == remote.size and not etagDiffers


class _StoppedError(Exception):
    """A file not started because another one had already failed."""


def _record(
    relative: str, stored: StreamDigest, plaintextSize: int, plaintextSha256: str, mode: str, storedAs: str
) -> StoredObject:
    return StoredObject(
        relative=relative,
        size=stored.size,
        plaintextSize=plaintextSize,
        plaintextSha256=plaintextSha256,
        storedSha256=stored.sha256,
        encryption=mode,
        partSize=stored.partSize,
        md5Etag=stored.md5Etag,
        compositeSha256=stored.compositeSha256,
        storedAs=storedAs or None,
    )


def _encryptorStopped(staged: StagedFile, workDir: str) -> OSError:
    """The encryptor quit before reading all the plaintext (python-gnupg then raises EPIPE and drops gpg's message).

    The usual cause is a full working dir, where the ciphertext goes; say so when the space left is too small.
    """
    free = shutil.disk_usage(workDir).free
    if free < staged.size:
        return OSError(
            errno.ENOSPC,
            f"No space left in the working dir while encrypting {staged.path}: {workDir} has {displayBytes(free)} "
            f"free and the ciphertext needs about {displayBytes(staged.size)}; free space under <working_dir> or "
            "point it at a larger filesystem.",
        )
    return OSError(errno.EPIPE, f"The encryptor stopped before reading all of {staged.path} (it exited early).")


@contextlib.contextmanager
def _namingVanished(staged: StagedFile) -> Iterator[None]:
    """A staged file deleted under us is the night's error, named; a missing bucket or object is S3's."""
    try:
        yield
    except FileNotFoundError as error:
        if isinstance(error, S3NotFoundError):
            raise
        raise OSError(f"Staged file vanished while the night was running: {staged.path}") from None


def _readSmall(staged: StagedFile) -> bytes | None:
    """The whole file when it is small enough to hold in memory (``INLINE_LIMIT``), else None."""
    if staged.size > INLINE_LIMIT:
        return None
    with open(staged.path, "rb") as handle:
        return handle.read(staged.size + 1)  # one byte more than listed shows a file that grew


def _checkUnchanged(staged: StagedFile, sizeRead: int) -> None:
    """A file that grows, shrinks or is rewritten while we read it must not be recorded as stored."""
    now = os.stat(staged.path)
    if sizeRead != staged.size or now.st_size != staged.size or now.st_mtime_ns != staged.mtimeNs:
        raise ValueError(
            f"Staged file changed while being read: {staged.path} (listed {staged.size} bytes, read {sizeRead}, "
            f"now {now.st_size}); re-run once staging is finished."
        )
