"""One file against its object: are the bytes the same? Hashing only when size and mtime cannot settle it.

An object we wrote records its file's SHA-256, size and mtime (``cedar-plaintext-sha256``,
``cedar-plaintext-size``, ``cedar-source-mtime-ns``). In order of cost:

1. no object, or one of another size: send (no HEAD, no hashing); with ``--checksum`` (every file is hashed) a
   single-part object whose ETag is the file's MD5 is the same without a HEAD;
2. our record, and the file's size and mtime are the recorded ones: the same (one HEAD, no hashing), unless
   ``--checksum``;
3. our record, anything else: hash the file; the same exactly when its SHA-256 is the recorded one (a same-size
   edit with an old mtime is caught here);
4. no record of ours (``aws s3 sync`` wrote it): hash the file; the same when its MD5 is the object's single-part
   ETag; an ETag that is not an MD5 (multipart, SSE-KMS) cannot tell, so the file is sent (once: then it is ours).

A record is trusted only while it still describes the listed object (same size, and the same ETag where ETags
are MD5s): an object rewritten by another tool with our metadata copied along is compared as a foreign one.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace

from cedar_s3.bucketformat import Encryption, StoredObject, recordFromMetadata, sourceMtimeNs
from cedar_s3.digest import Digest, digestDescriptor
from cedar_s3.s3.errors import S3NotFoundError
from cedar_s3.s3.store import RemoteObject, S3Store
from cedar_s3.stagedtree import StagedTree, StagingChangedError
from cedar_s3.sync.source import LocalFile

__all__ = ["MD5_ETAG", "Comparer", "Decision", "FileChangedError", "localRecord"]

MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")


class FileChangedError(OSError):
    """A file changed (or vanished) between the listing and its reading: not sent, named, the run fails."""


@dataclass(frozen=True)
class Decision:
    """What to do with one file, and why; ``digest`` when it was hashed, ``record`` of a kept object."""

    file: LocalFile
    send: bool
    reason: str
    digest: Digest | None = None
    record: StoredObject | None = None
    hashed: bool = False


def localRecord(file: LocalFile, digest: Digest) -> StoredObject:
    """The record of an unencrypted object holding exactly these bytes, stored in ``digest``'s shape."""
    return StoredObject(
        relative=file.relative,
        size=digest.size,
        plaintextSize=digest.size,
        plaintextSha256=digest.sha256Hex,
        storedSha256=digest.sha256Hex,
        encryption=Encryption.NONE,
        partSize=digest.partSize,
        md5Etag=digest.md5Etag,
        compositeSha256=digest.compositeBase64,
    )


class Comparer:
    """Decides for one file at a time (thread-safe: it keeps no state between files)."""

    def __init__(self, store: S3Store, tree: StagedTree, *, composite: bool, always: bool) -> None:
        self.store = store
        self.tree = tree
        self.composite = composite
        self.always = always  # --checksum

    def hash(self, file: LocalFile, partSize: int | None) -> Digest:
        """The file's digest in the shape it would be stored (``partSize``), read through its descriptor."""
        try:
            descriptor = self.tree.openFile(file.staged)
        except StagingChangedError:
            raise FileChangedError("it changed or vanished while the sync was running; not sent") from None
        try:
            digest = digestDescriptor(descriptor, partSize, composite=self.composite)
            try:
                self.tree.checkUnchanged(file.staged, descriptor, digest.size)
            except StagingChangedError:
                raise FileChangedError("it changed while it was being read; not sent") from None
        finally:
            os.close(descriptor)
        return digest

    def uploadDigest(self, file: LocalFile) -> Digest:
        return self.hash(file, self.store.plan.partSizeFor(file.size))

    def decide(self, file: LocalFile, remote: RemoteObject | None) -> Decision:  # noqa: PLR0911 - a ladder of proofs
        if remote is None:
            return Decision(file, True, "new")
        if remote.size != file.size:
            return Decision(file, True, f"size differs ({remote.size} bytes in the bucket)")
        digest = None
        if self.always and MD5_ETAG.match(remote.etag):
            # --checksum reads the file anyway: a single-part object whose ETag is the file's MD5 needs no HEAD
            digest = self.uploadDigest(file)
            whole = self._whole(file, digest)
            if whole.md5 is not None and whole.md5.hex() == remote.etag:
                proven = localRecord(file, whole)
                return Decision(file, False, "MD5 as its ETag", digest=digest, record=proven, hashed=True)
        try:
            head = self.store.head(remote.key)
        except S3NotFoundError:
            return Decision(file, True, "new (its object vanished from the bucket)")
        record = recordFromMetadata("object", remote.size, head.metadata)  # its name is ours to check, not the key's
        if record is not None and record.encryption == Encryption.NONE and self._describes(record, remote):
            return self._againstRecord(file, record, sourceMtimeNs(head.metadata), digest)
        if MD5_ETAG.match(remote.etag) and head.serverSideEncryption != "aws:kms":
            return self._againstEtag(file, remote.etag, digest)
        return Decision(file, True, "not comparable (an object of another tool without an MD5 ETag)", digest=digest)

    def _describes(self, record: StoredObject, remote: RemoteObject) -> bool:
        etagDiffers = self.store.settings.etagsAreMd5 and record.md5Etag is not None and record.md5Etag != remote.etag
        return record.size == remote.size and not etagDiffers

    def _whole(self, file: LocalFile, digest: Digest) -> Digest:
        """The digest with the whole file's MD5 (a second pass when it would be stored in parts)."""
        return digest if digest.partSize is None else self.hash(file, None)

    def _againstRecord(
        self, file: LocalFile, record: StoredObject, mtime: int | None, digest: Digest | None
    ) -> Decision:
        kept = replace(record, relative=file.relative)
        if not self.always and mtime == file.staged.mtimeNs and record.plaintextSize == file.size:
            return Decision(file, False, "size and mtime as recorded", record=kept)
        digest = digest or self.uploadDigest(file)
        if digest.sha256Hex == record.plaintextSha256:
            return Decision(file, False, "SHA-256 as recorded", digest=digest, record=kept, hashed=True)
        return Decision(file, True, "content differs (SHA-256)", digest=digest, hashed=True)

    def _againstEtag(self, file: LocalFile, etag: str, digest: Digest | None) -> Decision:
        digest = digest or self.uploadDigest(file)
        whole = self._whole(file, digest)
        assert whole.md5 is not None
        if whole.md5.hex() == etag:
            return Decision(file, False, "MD5 as its ETag", digest=digest, record=localRecord(file, whole), hashed=True)
        return Decision(file, True, "content differs (MD5)", digest=digest, hashed=True)
