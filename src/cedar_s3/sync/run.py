"""One run: compare, send, verify, and only then delete; or, with ``-v``, verify only.

Upstream ran ``aws s3 sync --delete`` (deleting while uploading, whatever failed) and then compared sizes. Here:

1. sourceDir is read and classified (``source``); a name that cannot be a key stops the run before anything is
   sent, as upstream's encoding check did, unless ``-w``;
2. every file is compared with its object (``compare``), ``--jobs`` at a time;
3. what differs is sent (``ObjectWriter``: one PUT or parts, proven on arrival by Content-MD5 or SHA-256, the
   file's SHA-256, size and mtime in the object's metadata);
4. every file's object is verified by checksum (``verifyObjects``: the listing's MD5 ETags, else HEAD
   checksums), the kept ones included;
5. only when all of that went without a single problem, and not under ``-u`` or ``--dry-run``, the objects
   without a file are deleted, at most ``--max-delete`` of them.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import defaultdict

from cedar_s3.bucketformat import Encryption, StoredObject, hostMetadata, recordFromMetadata
from cedar_s3.digest import digestDescriptor
from cedar_s3.progress import makeProgress
from cedar_s3.s3.errors import S3IntegrityError
from cedar_s3.s3.store import PendingUpload, RemoteObject, S3Store, TransferPlan
from cedar_s3.stagedtree import StagingChangedError
from cedar_s3.sync.compare import Comparer, Decision, FileChangedError, localRecord
from cedar_s3.sync.options import SyncOptions
from cedar_s3.sync.parallel import eachInParallel
from cedar_s3.sync.plan import Plan, Problem, comparePlan, deletionRefusal, remotePlan
from cedar_s3.sync.source import LocalFile, SourceTree
from cedar_s3.sync.summary import Entry, Sent, Summary
from cedar_s3.upload.reuse import RemoteListing
from cedar_s3.upload.send import ObjectWriter, Plaintext
from cedar_s3.verify import UNPROVABLE, VerificationError, verifyObjects

__all__ = ["SyncRun"]

logger = logging.getLogger("CedarBackup3.log.tools.s3sync")

MIB = 1024 * 1024
# The part sizes an object of another tool was most likely sent in: the AWS CLI's (s3transfer's 8 MiB), ours
FOREIGN_PART_SIZES = (8 * MIB, 16 * MIB)


class SyncRun:
    """``SyncRun(options, store, source, summary, progressStyle).run()`` fills in ``summary``."""

    def __init__(
        self, options: SyncOptions, store: S3Store, source: SourceTree, summary: Summary, progressStyle: str
    ) -> None:
        self.options = options
        self.store = store
        self.source = source
        self.summary = summary
        self.style = progressStyle
        self.root = store.location.rootPrefix
        self.jobs = options.jobs or store.concurrency
        self.writer = ObjectWriter(store, self.root, hostMetadata(socket.gethostname()), "", recordSourceMtime=True)
        self.comparer = Comparer(store, source.tree, composite=self.writer.composite, always=options.checksum)
        self.paths = {file.key: file.path for file in source.files}

    def run(self) -> None:
        source, summary = self.source, self.summary
        summary.passed = [Entry(entry.path, entry.reason) for entry in source.passed]
        summary.unstorable = [Entry(entry.path, entry.reason) for entry in source.unstorable]
        for passed in source.passed:
            logger.warning("Not read: %s is %s.", passed.path, passed.reason)
        if source.unstorable and not self.options.ignoreWarnings:
            for entry in source.unstorable:
                logger.error("Cannot be stored: %s: %s.", entry.path, entry.reason)
            summary.errors.append(
                f"{len(source.unstorable)} name(s) in sourceDir cannot be S3 keys (listed above); nothing was "
                "sent. Rename them, or run with -w (--ignoreWarnings) to store everything else."
            )
            return
        for entry in source.unstorable:
            logger.warning("Skipped (-w): %s: %s.", entry.path, entry.reason)
        self.store.checkBucket()
        listing = RemoteListing(self.store.listObjects(self.root))
        if self.options.verifyOnly:
            self._verifyOnly(listing)
            return
        plan = self._plan(listing)
        if not self.options.dryRun:
            records = self._send(plan)
            self._verify(records + [decision.record for decision in plan.kept if decision.record is not None])
        self._delete(plan)

    # -- compare ---------------------------------------------------------------------------------------------------

    def _plan(self, listing: RemoteListing) -> Plan:
        plan = Plan()
        remotePlan(plan, self.source, listing)
        files = self.source.files
        with makeProgress("Comparing", self.source.totalBytes, len(files), style=self.style) as progress:

            def compared(file: LocalFile) -> None:
                progress.advance(file.size)
                progress.fileDone(file.path, True)

            comparePlan(plan, self.comparer, self.source, listing, self.jobs, compared)
        self.summary.problems += plan.problems
        self.summary.kept = len(plan.kept)
        self.summary.hashed = sum(1 for decision in plan.decisions if decision.hashed)
        self.summary.protected = plan.protected
        if self.options.dryRun:
            self.summary.sent = [self._sent(decision) for decision in plan.toSend]
        for decision in plan.kept:
            logger.debug("Unchanged [%s]: %s.", decision.file.path, decision.reason)
        return plan

    def _sent(self, decision: Decision) -> Sent:
        file = decision.file
        return Sent(file.path, file.key, file.size, decision.reason)

    # -- send ------------------------------------------------------------------------------------------------------

    def _send(self, plan: Plan) -> list[StoredObject]:
        toSend = plan.toSend
        if not toSend:
            return []
        if any(self.store.plan.partSizeFor(decision.file.size) is not None for decision in toSend):
            grouped: dict[str, list[PendingUpload]] = defaultdict(list)
            for upload in self.store.pendingUploads(self.root) or []:
                grouped[upload.key].append(upload)  # a run that broke off left it: its parts are reused
            self.writer.pending = dict(grouped)
        records: list[StoredObject] = []
        total = sum(decision.file.size for decision in toSend)
        with makeProgress("Uploading", total, len(toSend), style=self.style) as progress:

            def done(decision: Decision, record: StoredObject | None, problem: OSError | None) -> None:
                file = decision.file
                if record is not None:
                    records.append(record)
                    self.summary.sent.append(self._sent(decision))
                    logger.info("Sent [%s] to %s (%s).", file.path, self.store.location.url(file.key), decision.reason)
                else:
                    self.summary.problems.append(Problem(file.path, str(problem)))
                    logger.error("Not sent: %s: %s", file.path, problem)
                progress.advance(file.size)
                progress.fileDone(file.path, record is not None)

            eachInParallel(toSend, self._sendOne, self.jobs, done)
        return records

    def _sendOne(self, decision: Decision) -> StoredObject:
        file = decision.file
        try:
            descriptor = self.source.tree.openFile(file.staged)
        except StagingChangedError:
            raise FileChangedError("it changed or vanished while the sync was running; not sent") from None
        try:
            digest = decision.digest
            if digest is None:
                digest = digestDescriptor(
                    descriptor, self.store.plan.partSizeFor(file.size), composite=self.writer.composite
                )
            self.source.tree.checkUnchanged(file.staged, descriptor, digest.size)
            plain = Plaintext(digest.size, digest.sha256Hex)
            return self.writer.sendDescriptor(file.asStored(), descriptor, digest, plain, Encryption.NONE)
        except StagingChangedError:
            raise FileChangedError("it changed while it was being read or sent; not sent") from None
        except S3IntegrityError as error:
            raise FileChangedError(
                f"S3 refused its bytes as damaged (did it change while being sent?): {error}"
            ) from None
        finally:
            os.close(descriptor)

    # -- verify ----------------------------------------------------------------------------------------------------

    def _verify(self, records: list[StoredObject], listing: RemoteListing | None = None) -> None:
        """Prove every record's object by checksum (a fresh listing unless one is given); name each bad one."""
        if not records:
            return
        try:
            self.summary.verified = verifyObjects(self.store, self.root, records, listing=listing)
        except VerificationError as error:
            self.summary.verified = len(records) - len(error.problems)
            for text in error.problems:
                problem = self._named(text)
                self.summary.problems.append(problem)
                logger.error("Verification failed: %s: %s", problem.path, problem.problem)

    def _named(self, problem: str) -> Problem:
        """``key: what`` from ``verifyObjects`` as the file's path and what is wrong with its object."""
        start = 0
        while (index := problem.find(": ", start)) >= 0:
            key = problem[:index]
            if key in self.paths:
                what = problem[index + 2 :]
                if what.endswith(UNPROVABLE):
                    what = what[: -len(UNPROVABLE)] + "only downloading it could prove it"
                if self.options.verifyOnly:  # what verifyObjects calls "uploaded" is the file here
                    what = what.replace("the uploaded data's", "the file's").replace("what was uploaded", "the file")
                return Problem(self.paths[key], f"{what} ({self.store.location.url(key)})")
            start = index + 1
        return Problem(self.store.location.url(self.root), problem)

    def _verifyOnly(self, listing: RemoteListing) -> None:
        """``-v``: hash every file and prove its object by checksum; change nothing."""
        present: list[tuple[LocalFile, RemoteObject]] = []
        for file in self.source.files:
            remote = listing.get(file.key)
            if remote is None:
                self.summary.problems.append(Problem(file.path, f"missing from the bucket ({file.key})"))
                logger.error("Verification failed: %s: missing from the bucket.", file.path)
            else:
                present.append((file, remote))
        local = set(self.paths)
        plan = Plan()
        remotePlan(plan, self.source, listing)
        self.summary.onlyInBucket = [key for key in plan.deletions + plan.protected if key not in local]
        records: list[StoredObject] = []

        def done(item: tuple[LocalFile, RemoteObject], record: StoredObject | None, problem: OSError | None) -> None:
            if record is not None:
                records.append(record)
            else:
                self.summary.problems.append(Problem(item[0].path, str(problem)))
                logger.error("Not verified: %s: %s", item[0].path, problem)
            progress.advance(item[0].size)
            progress.fileDone(item[0].path, record is not None)

        total = sum(file.size for file, _ in present)
        with makeProgress("Verifying", total, len(present), style=self.style) as progress:
            eachInParallel(present, self._localRecord, self.jobs, done)
        self.summary.hashed = len(records)
        self._verify(records, listing)

    def _localRecord(self, item: tuple[LocalFile, RemoteObject]) -> StoredObject:
        """The file hashed in the shape its object was stored in (one PUT, or parts of the recorded size)."""
        file, remote = item
        partSize = self._storedPartSize(file, remote)
        if partSize == 0:
            raise FileChangedError(
                "its object is a multipart upload of another tool, of unknown part size: no checksum can prove it "
                "(a sync sends it again with cedar-s3's metadata)"
            )
        return localRecord(file, self.comparer.hash(file, partSize))

    def _storedPartSize(self, file: LocalFile, remote: RemoteObject) -> int | None:
        """None: one PUT; 0: parts of a size nobody recorded."""
        if "-" not in remote.etag:
            return None
        record = recordFromMetadata("object", remote.size, self.store.head(remote.key).metadata)
        if record is not None and record.partSize is not None:
            return record.partSize
        parts = remote.etag.rpartition("-")[2]
        for chunk in FOREIGN_PART_SIZES:
            size = TransferPlan(0, chunk).partSizeFor(file.size)
            if size and parts.isdigit() and -(-file.size // size) == int(parts):
                return size
        return 0

    # -- delete ----------------------------------------------------------------------------------------------------

    def _delete(self, plan: Plan) -> None:
        summary, url = self.summary, self.store.location.url(self.root)
        if not plan.deletions:
            return
        refusal = None if self.options.uploadOnly else deletionRefusal(plan, self.source, self.options.maxDelete, url)
        if self.options.uploadOnly:
            reason = "-u: upload only"
        elif summary.failed:
            reason = "the run had problems; nothing is deleted after an error"
        elif refusal is not None:
            reason = f"more than --max-delete {self.options.maxDelete}"
            summary.errors.append(refusal)
            logger.error("%s", refusal)
        else:
            if self.options.dryRun:
                summary.deleted = list(plan.deletions)
                return
            self.store.deleteKeys(plan.deletions)
            summary.deleted = list(plan.deletions)
            for key in plan.deletions:
                logger.info("Deleted %s (no file in sourceDir).", self.store.location.url(key))
            return
        summary.notDeleted = list(plan.deletions)
        summary.notDeletedReason = reason
        logger.info("Not deleted: %d object(s) without a file (%s).", len(plan.deletions), reason)
