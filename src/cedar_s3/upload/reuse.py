"""Whether an object already holds exactly a staged file, stored the way we store it now.

A re-run of a day (a failed night, or ``--full`` again) sends only what changed. An object is reused when its
record (from the day's previous manifest, else from its own metadata by HEAD) has this file's plaintext SHA-256
and size, the same encryption mode and the same settings fingerprint, and still describes the listed object
(same size, and the same ETag where ETags are MD5s): a key rewritten since is not trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from array import array
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from cedar_s3.bucketformat import StoredObject, recordFromMetadata
from cedar_s3.packedtext import PackedStrings

if TYPE_CHECKING:
    from cedar_s3.config import AmazonS3Config
    from cedar_s3.s3.store import RemoteObject, S3Store
    from cedar_s3.stagedtree import StagedFile
    from cedar_s3.upload.records import RecordTable

__all__ = ["RemoteListing", "ReuseIndex", "storedAsFingerprint"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.upload")


def storedAsFingerprint(settings: AmazonS3Config) -> str:
    """A short fingerprint of every setting that shapes a stored object other than its content.

    A re-run skips a file only if its object was stored the same way: after a change of recipients, cipher,
    storage class, SSE, object lock or tags, the same content is sent again so the new settings take effect.
    """
    shape = [
        settings.encryptCommand,
        settings.gpgPassphraseFile is not None,
        sorted(settings.gpgRecipients),
        settings.gpgCipher,
        settings.gpgCompression,
        settings.gpgS2kCount,
        settings.storageClass,
        settings.serverSideEncryption,
        settings.sseKmsKeyId,
        settings.objectLockMode,
        settings.objectLockDays,
        sorted(settings.tags),
    ]
    return hashlib.sha256(json.dumps(shape).encode("utf-8")).hexdigest()[:16]


class RemoteListing:
    """The objects under a prefix, sorted by key, held compactly (a day may hold 100,000 of them)."""

    def __init__(self, objects: Iterable[RemoteObject]) -> None:
        self._keys = PackedStrings()
        self._sizes = array("q")
        self._etags = PackedStrings()
        self._classes: list[str] = []
        for entry in objects:
            self._keys.append(entry.key)
            self._sizes.append(entry.size)
            self._etags.append(entry.etag)
            self._classes.append(sys.intern(entry.storageClass))  # a handful of distinct names, one copy each
        if not self._keys.isSorted():  # S3 lists in key order; a store that does not is put in order here
            order = self._keys.sortOrder()
            self._keys = self._keys.reordered(order)
            self._sizes = array("q", (self._sizes[index] for index in order))
            self._etags = self._etags.reordered(order)
            self._classes = [self._classes[index] for index in order]

    def __len__(self) -> int:
        return len(self._keys)

    def _index(self, key: str) -> int | None:
        return self._keys.find(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._index(key) is not None

    def get(self, key: str) -> RemoteObject | None:
        from cedar_s3.s3.store import RemoteObject

        index = self._index(key)
        if index is None:
            return None
        return RemoteObject(key, self._sizes[index], self._etags[index], self._classes[index])

    def allKeys(self) -> Iterator[str]:
        return iter(self._keys)

    def __iter__(self) -> Iterator[RemoteObject]:
        from cedar_s3.s3.store import RemoteObject

        for index, key in enumerate(self._keys):
            yield RemoteObject(key, self._sizes[index], self._etags[index], self._classes[index])


class ReuseIndex:
    """Answers "is this file already stored, exactly so?" for one day's upload."""

    def __init__(
        self,
        store: S3Store,
        dayPrefix: str,
        existing: RemoteListing,
        previous: RecordTable | None,
        storedAs: str,
    ) -> None:
        self.store = store
        self.dayPrefix = dayPrefix
        self.existing = existing
        self.previous = previous
        self.storedAs = storedAs
        self.etagsAreMd5 = store.settings.etagsAreMd5

    def exists(self, staged: StagedFile) -> bool:
        return self.dayPrefix + staged.relative in self.existing

    def reusable(self, staged: StagedFile, plaintextSha256: str, mode: str) -> StoredObject | None:
        """The stored object's record when it already holds exactly this file, stored the way we store it now."""
        key = self.dayPrefix + staged.relative
        remote = self.existing.get(key)
        if remote is None:
            return None
        previous = self.previous.get(staged.index, staged.relative) if self.previous is not None else None
        if previous is None or not self._describes(previous, remote):
            # Not in the manifest, or rewritten since it was written (by a re-run that failed after sending this
            # file): the object's own metadata says what it holds.
            previous = recordFromMetadata(staged.relative, remote.size, self.store.head(key).metadata)
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
        etagDiffers = self.etagsAreMd5 and record.md5Etag is not None and not record.etagMatches(remote.etag)

        return record.size == remote.size and not etagDiffers
