"""Read one stored object back to its plaintext, proving both byte streams against the manifest on the way.

The stored bytes stream from S3 (never to disk; a body that breaks off resumes with a ranged GET) and are
hashed; for an encrypted object they are fed to gpg (``cedar_s3.gpg.decrypt``), whose output arrives on a pipe
and is hashed again and handed to a sink: a restore's temporary file, or nothing at all for ``verify
--download``. So a deep verify never writes plaintext anywhere, and a restore writes at most the plaintext
size the manifest promises: a hostile or damaged object that produces more is cut off there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from cedar_s3.bucketformat import Encryption, StoredObject
from cedar_s3.digest import READ_CHUNK, ObjectHasher
from cedar_s3.gpg.decrypt import DecryptError, DecryptKeys
from cedar_s3.gpg.process import Sink
from cedar_s3.s3.thaw import MAYBE_ARCHIVED
from cedar_s3.upstreamday import UpstreamEvidence, UpstreamObject, looksLikeOpenPgp

if TYPE_CHECKING:
    from cedar_s3.s3.download import ObjectStream
    from cedar_s3.s3.store import S3Store

__all__ = ["BadObjectError", "ObjectReader", "eachObject"]

DECRYPT_PROBES = 3
MAX_EXPANSION = 1024  # an upstream object's plaintext may be at most this many times its size (gpg compresses)


class BadObjectError(OSError):
    """One object cannot be read back to the plaintext the manifest describes; the message names its key."""


class _Stored:
    """The stored byte stream: hashed, counted, reported to progress, and refused past the recorded size."""

    def __init__(
        self, raw: ObjectStream, limit: int, key: str, progress: Callable[[int], None], partSizes: Sequence[int] = ()
    ) -> None:
        self._raw = raw
        self.parts = {size: ObjectHasher(size) for size in partSizes}
        self._limit = limit
        self._key = key
        self._progress = progress
        self.sha = hashlib.sha256()
        self.md5: Any = hashlib.md5(usedforsecurity=False)
        self.size = 0
        self._pending = b""

    def read(self, size: int = -1) -> bytes:
        if self._pending:  # what ``peek`` read ahead comes first
            data, self._pending = self._pending, b""
            return data
        data = self._raw.read(READ_CHUNK if size < 0 else size)
        self.size += len(data)
        if self.size > self._limit:
            raise BadObjectError(f"{self._key}: the stored object is larger than the {self._limit} bytes recorded")
        self.sha.update(data)
        self.md5.update(data)
        for hasher in self.parts.values():
            hasher.update(data)
        self._progress(len(data))
        return data

    def peek(self) -> bytes:
        """The first chunk, which the next ``read`` returns again."""
        self._pending = self.read(READ_CHUNK)
        return self._pending

    def close(self) -> None:
        self._raw.close()

    def problem(self, record: StoredObject) -> str | None:
        if self.size != record.size:
            return f"{self._key}: the stored object is {self.size} bytes; the manifest records {record.size}"
        if self.sha.hexdigest() != record.storedSha256:
            return f"{self._key}: the stored bytes differ from what was uploaded (SHA-256 mismatch)"
        return None


class _Plain:
    """The plaintext side: hashed, counted, cut off past the recorded size (or a bound), then passed to the sink."""

    def __init__(self, limit: int, key: str, sink: Sink | None) -> None:
        self._limit = limit
        self._key = key
        self._sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def __call__(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._limit:
            raise BadObjectError(f"{self._key}: the plaintext is larger than the {self._limit} bytes recorded")
        self.sha.update(chunk)
        if self._sink is not None:
            self._sink(chunk)


class ObjectReader:
    """Reads objects back to plaintext, checking every byte against the manifest's records.

    ``storageClasses`` (key to class, from the day's listing) lets an archived object that is not restored yet
    fail with the command that thaws it, instead of S3's bare InvalidObjectState.
    """

    def __init__(self, store: S3Store, keys: DecryptKeys, storageClasses: dict[str, str] | None = None) -> None:
        self._store = store
        self._keys = keys
        self._storageClasses = storageClasses or {}

    def read(
        self,
        key: str,
        record: StoredObject,
        sink: Sink | None,
        progress: Callable[[int], None] = lambda _count: None,
    ) -> None:
        """Stream ``key``; raise ``BadObjectError`` naming it unless sizes and SHA-256s match the record."""
        self._keys.require(record.encryption, key)
        if self._storageClasses.get(key) in MAYBE_ARCHIVED:
            thaw = self._store.thawStatus(key)
            if thaw.needed:
                raise BadObjectError(thaw.message)
        plain = _Plain(record.plaintextSize, key, sink)
        stored = _Stored(self._store.openStream(key), record.size, key, progress)
        try:
            if record.encryption == Encryption.NONE:
                while chunk := stored.read(READ_CHUNK):
                    plain(chunk)
            else:
                self._keys.decrypt(record.encryption, stored, plain, key, record.size)
        except (BadObjectError, DecryptError) as error:
            # a damaged ciphertext makes gpg fail; when all of it was read, the stored digest names the real fault
            if stored.size != record.size or stored.problem(record) is None:
                raise
            raise BadObjectError(stored.problem(record)) from error
        finally:
            stored.close()
        problem = stored.problem(record)
        if problem is None and (plain.size != record.plaintextSize or plain.sha.hexdigest() != record.plaintextSha256):
            problem = f"{key}: the plaintext does not match the manifest (size or SHA-256 differs)"
        if problem is not None:
            raise BadObjectError(problem)

    def readUpstream(
        self,
        key: str,
        item: UpstreamObject,
        sink: Sink | None,
        progress: Callable[[int], None] = lambda _count: None,
        partSizes: Sequence[int] = (),
    ) -> UpstreamEvidence:
        """Stream an object of an upstream day (no record to check against): decrypt it where its first bytes
        are an OpenPGP message, check its size against the listing, and return what it proved. ``partSizes``
        asks for the multipart ETag these bytes would have at each part size (to match the listed one)."""
        if item.storageClass in MAYBE_ARCHIVED:
            thaw = self._store.thawStatus(key)
            if thaw.needed:
                raise BadObjectError(thaw.message)
        plain = _Plain(item.size * MAX_EXPANSION + READ_CHUNK, key, sink)  # gpg may have compressed it
        stored = _Stored(self._store.openStream(key), item.size, key, progress, partSizes)
        try:
            encrypted = looksLikeOpenPgp(stored.peek())
            if encrypted:
                self._keys.decrypt(Encryption.COMMAND, stored, plain, key, item.size)
            else:
                while chunk := stored.read(READ_CHUNK):
                    plain(chunk)
        finally:
            stored.close()
        if stored.size != item.size:
            raise BadObjectError(f"{key}: {stored.size} bytes were read; the listing says {item.size}")
        return UpstreamEvidence(
            storedSize=stored.size,
            storedSha256=stored.sha.hexdigest(),
            storedMd5=stored.md5.hexdigest(),
            plaintextSize=plain.size,
            plaintextSha256=plain.sha.hexdigest(),
            encrypted=encrypted,
            partEtags={size: hasher.finish().md5Etag or "" for size, hasher in stored.parts.items()},
        )


class Readable(Protocol):
    """What ``eachObject`` orders by: a manifest record, or an object of an upstream day."""

    @property
    def encryption(self) -> str: ...

    @property
    def size(self) -> int: ...


Item = TypeVar("Item", bound=Readable)


def eachObject(
    records: list[Item], work: Callable[[Item], Exception | None], *, jobs: int
) -> list[tuple[Item, Exception | None]]:
    """Run ``work`` on every record (it returns the error for that record, or None) and pair up the results.

    Encrypted records go first, smallest first, one at a time until one decrypts; the rest run ``jobs`` at a
    time. So a wrong passphrase or key stops after ``DECRYPT_PROBES`` small files with one clear error
    (a ValueError) instead of failing once per file.
    """
    pending = sorted(records, key=lambda record: (record.encryption == Encryption.NONE, record.size))
    results: list[tuple[Item, Exception | None]] = []
    refused = 0
    while pending and pending[0].encryption != Encryption.NONE:
        record = pending.pop(0)
        error = work(record)
        results.append((record, error))
        if not isinstance(error, DecryptError):
            break
        refused += 1
        if refused == DECRYPT_PROBES:
            raise ValueError(
                f"Stopped: the first {DECRYPT_PROBES} objects could not be decrypted; check --passphrase-file, or "
                f"--gpg-home and --key-passphrase-file. Last error: {error}"
            )
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        results += zip(pending, pool.map(work, pending), strict=True)
    finally:  # on Ctrl-C, files not yet started are not started; those under way finish or clean up
        pool.shutdown(wait=True, cancel_futures=True)
    return results
