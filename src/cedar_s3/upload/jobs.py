"""One class per kind of upload job; each reads its files only through descriptors from ``StagedTree``.

``PlainJob``    one file sent as it is
``StreamJob``   one file encrypted by native GnuPG, its ciphertext streamed straight into the upload
``BatchJob``    up to 64 small files through one ``gpg --multifile`` run (public-key mode)
``CommandJob``  one file through upstream's ``<encrypt>`` command

Every job ends in the same way: ``Outcome`` records, which ``DayUpload`` commits. A job that finds its object
already stored exactly so (``ReuseIndex``) reuses it without sending a byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cedar_s3.bucketformat import Encryption, StoredObject
from cedar_s3.digest import HashingReader, digestDescriptor
from cedar_s3.upload.send import Plaintext, StoppedError

if TYPE_CHECKING:
    from cedar_s3.gpg.encrypt import GnuPGEncryptor
    from cedar_s3.legacy import CommandEncryptor
    from cedar_s3.stagedtree import StagedFile, StagedTree
    from cedar_s3.upload.reuse import ReuseIndex
    from cedar_s3.upload.send import ObjectWriter

__all__ = ["INLINE_LIMIT", "BatchJob", "CommandJob", "Job", "JobContext", "Outcome", "PlainJob", "StreamJob"]

INLINE_LIMIT = 1024 * 1024  # files up to this size are read once into memory and sent from there
BATCH_FILES = 64  # small files per gpg run when the encryptor can batch


@dataclass(frozen=True)
class Outcome:
    """One stored file: its record, and whether the object was already there (nothing sent)."""

    index: int
    record: StoredObject
    reused: bool


@dataclass
class JobContext:
    """What every job of one day's upload shares."""

    tree: StagedTree
    writer: ObjectWriter
    reuse: ReuseIndex
    stop: threading.Event
    gnupg: GnuPGEncryptor | None = None
    command: CommandEncryptor | None = None

    @contextlib.contextmanager
    def opened(self, staged: StagedFile) -> Iterator[int]:
        descriptor = self.tree.openFile(staged)
        try:
            yield descriptor
        finally:
            os.close(descriptor)

    def reusedBy(self, staged: StagedFile, descriptor: int, mode: str) -> Outcome | None:
        """When the key already exists, hash the plaintext and reuse the object if it holds exactly this file."""
        if not self.reuse.exists(staged):
            return None
        digest = digestDescriptor(descriptor, None)
        self.tree.checkUnchanged(staged, descriptor, digest.size)
        record = self.reuse.reusable(staged, digest.sha256Hex, mode)
        return Outcome(staged.index, record, reused=True) if record is not None else None


class Job(Protocol):
    def run(self, context: JobContext) -> list[Outcome]: ...


@dataclass(frozen=True)
class PlainJob:
    staged: StagedFile

    def run(self, context: JobContext) -> list[Outcome]:
        staged, tree, writer = self.staged, context.tree, context.writer
        with context.opened(staged) as descriptor:
            if staged.size <= INLINE_LIMIT:
                data = os.pread(descriptor, staged.size + 1, 0)  # one byte more than listed shows a file that grew
                tree.checkUnchanged(staged, descriptor, len(data))
                plain = Plaintext(len(data), hashlib.sha256(data).hexdigest())
                reused = context.reuse.reusable(staged, plain.sha256, Encryption.NONE)
                if reused is not None:
                    return [Outcome(staged.index, reused, reused=True)]
                record = writer.sendBytes(staged, data, plain, Encryption.NONE)
                tree.checkUnchanged(staged, descriptor, len(data))  # still what was read, once it is stored
                return [Outcome(staged.index, record, reused=False)]
            digest = digestDescriptor(
                descriptor, writer.partSizeFor(staged.size), composite=writer.composite, wholeMd5=writer.wholeMd5
            )
            tree.checkUnchanged(staged, descriptor, digest.size)
            plain = Plaintext(digest.size, digest.sha256Hex)
            reused = context.reuse.reusable(staged, plain.sha256, Encryption.NONE)
            if reused is not None:
                return [Outcome(staged.index, reused, reused=True)]
            record = writer.sendDescriptor(staged, descriptor, digest, plain, Encryption.NONE)
            tree.checkUnchanged(staged, descriptor, digest.size)  # the upload read it again: still what was hashed
            return [Outcome(staged.index, record, reused=False)]


@dataclass(frozen=True)
class StreamJob:
    staged: StagedFile

    def run(self, context: JobContext) -> list[Outcome]:
        staged, encryptor = self.staged, context.gnupg
        assert encryptor is not None
        with context.opened(staged) as descriptor:
            reused = context.reusedBy(staged, descriptor, encryptor.mode)
            if reused is not None:
                return [reused]
            sender = context.writer.stream(staged, encryptor.mode)
            reader = HashingReader(descriptor)
            try:
                encryptor.encrypt(reader, sender.write, what=staged.path, size=staged.size)
                context.tree.checkUnchanged(staged, descriptor, reader.size)  # hashed as gpg read it: both saw these
            except BaseException:
                sender.abort()
                raise
            record = sender.finish(Plaintext(reader.size, reader.sha256))
            return [Outcome(staged.index, record, reused=False)]


@dataclass(frozen=True)
class BatchJob:
    files: tuple[StagedFile, ...]

    def run(self, context: JobContext) -> list[Outcome]:
        encryptor = context.gnupg
        assert encryptor is not None
        outcomes = []
        with contextlib.closing(encryptor.batchSession()) as session:
            for staged in self.files:
                if context.stop.is_set():  # another job failed: the night is lost, send nothing more
                    raise StoppedError
                with context.opened(staged) as descriptor:
                    digest = digestDescriptor(descriptor, None)
                    context.tree.checkUnchanged(staged, descriptor, digest.size)
                    plain = Plaintext(digest.size, digest.sha256Hex)
                    reused = context.reuse.reusable(staged, plain.sha256, encryptor.mode)
                    if reused is not None:
                        outcomes.append(Outcome(staged.index, reused, reused=True))
                        continue
                    output = session.encrypt(descriptor, staged.size, staged.path)
                    try:
                        context.tree.checkUnchanged(staged, descriptor, plain.size)  # gpg read it after the hash
                        with open(output, "rb") as handle:  # our own private directory: not the staging tree
                            body = handle.read()
                    finally:
                        os.unlink(output)
                    record = context.writer.sendBytes(staged, body, plain, encryptor.mode)
                    outcomes.append(Outcome(staged.index, record, reused=False))
        return outcomes


@dataclass(frozen=True)
class CommandJob:
    staged: StagedFile

    def run(self, context: JobContext) -> list[Outcome]:
        staged, encryptor, writer = self.staged, context.command, context.writer
        assert encryptor is not None
        with context.opened(staged) as descriptor:
            reused = context.reusedBy(staged, descriptor, encryptor.mode)
            if reused is not None:
                return [reused]
            reader = HashingReader(descriptor)
            ciphertext = encryptor.encrypt(reader, staged.size, staged.path, staged.relative.rpartition("/")[2])
            try:
                context.tree.checkUnchanged(staged, descriptor, reader.size)
                digest = digestDescriptor(
                    ciphertext.descriptor,
                    writer.partSizeFor(ciphertext.size),
                    composite=writer.composite,
                    wholeMd5=writer.wholeMd5,
                )

                plain = Plaintext(reader.size, reader.sha256)
                record = writer.sendDescriptor(staged, ciphertext.descriptor, digest, plain, encryptor.mode)
            finally:
                ciphertext.discard()
            return [Outcome(staged.index, record, reused=False)]


def jobsFor(context: JobContext, files: Iterator[StagedFile]) -> Iterator[Job]:
    """The day's jobs, made as they are needed: small files batched where the encryptor can, one file per job
    otherwise. Upstream stored empty files unencrypted in ``<encrypt>`` mode; kept for compatibility."""
    batch: list[StagedFile] = []
    for staged in files:
        if context.command is not None:
            yield CommandJob(staged) if staged.size else PlainJob(staged)
        elif context.gnupg is None:
            yield PlainJob(staged)
        elif context.gnupg.canBatch and staged.size <= INLINE_LIMIT:
            batch.append(staged)
            if len(batch) == BATCH_FILES:
                yield BatchJob(tuple(batch))
                batch = []
        else:
            yield StreamJob(staged)
    if batch:
        yield BatchJob(tuple(batch))
