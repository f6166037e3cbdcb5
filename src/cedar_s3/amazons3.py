"""Store-type extension that writes the day's staging directory to Amazon S3 (drop-in for upstream's).

Change ``<module>`` in ``cback3.conf`` from ``CedarBackup3.extend.amazons3`` to ``cedar_s3.amazons3`` and the
same ``<amazons3>`` section, key layout and ``cback.amazons3`` indicator keep working. Underneath: boto3 in
process instead of the AWS CLI through ``su``; GnuPG through python-gnupg and gpg pipes (or upstream's
``<encrypt>`` command); every object checksummed end to end; the previous copy of a day never deleted before
the new one is uploaded and verified; a manifest (optionally signed) written last. The staged day belongs to
the backup user and is read only through descriptors (``cedar_s3.stagedtree``).

A night, in order (upstream's step names where ours does the same job)::

    sweep leftovers -> _findCorrectDailyDir -> list each day -> _applySizeLimits -> _writeToAmazonS3 [
        per day: _beginDay -> _uploadStagingDir -> _verifyUpload -> _writeManifest -> _clearExistingBackup
        -> _commitDay ] -> _writeStoreIndicator
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from CedarBackup3.util import displayBytes

from cedar_s3.bucketformat import (
    INCOMPLETE_MARKER,
    MANIFEST_NAME,
    MAX_KEY_BYTES,
    SIGNATURE_NAME,
    TOOL,
    IncompleteMarker,
    ManifestHeader,
    ManifestWriter,
    commonMetadata,
    now,
)
from cedar_s3.children import Deadlines, TerminatedError
from cedar_s3.config import AmazonS3Config, LocalConfig
from cedar_s3.digest import HashingWriter
from cedar_s3.protection import NightEncryption, nightDeadlines, nightEncryption, nightSigner
from cedar_s3.stagedtree import StagedListing, StagedTree
from cedar_s3.staging import STORE_INDICATOR, applySizeLimits, findCorrectDailyDir, ownerIds, writeStoreIndicator

if TYPE_CHECKING:  # these import boto3 or gnupg, which cback3 should not pay for at start-up
    from cedar_s3.gpg.sign import ManifestSigner
    from cedar_s3.s3.store import S3Store
    from cedar_s3.upload.records import RecordTable
    from cedar_s3.upload.reuse import RemoteListing

__all__ = ["STORE_INDICATOR", "AmazonS3Config", "LocalConfig", "executeAction"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3")

DEFAULT_SWEEP_MINUTES = 60
PROBE_NAME = "cback.amazons3.probe"


class NightTerminatedError(TerminatedError):
    """cback3 got SIGTERM: the night stops, cleaning up on the way out (no indicator, nothing half-recorded)."""


@dataclass
class StagedDay:
    """One staging directory chosen for tonight: its date suffix, its open tree, what it holds."""

    suffix: str
    tree: StagedTree
    listing: StagedListing

    @property
    def path(self) -> str:
        return self.tree.directory


@dataclass
class Night:
    """What every day of the night shares: settings, the store, encryption, signing, host."""

    settings: AmazonS3Config
    store: S3Store
    encryption: NightEncryption
    signer: ManifestSigner | None
    deadlines: Deadlines
    host: str = field(default_factory=socket.gethostname)


def executeAction(configPath: str, options: Any, config: Any) -> None:
    """Executes the amazons3 backup action.

    Raises:
       ValueError: Under many generic error conditions (configuration, size limits, staged content)
       OSError: If there are I/O problems reading files or talking to S3
    """
    logger.debug("Executing amazons3 extended action.")
    if sys.platform == "win32":
        logger.error("Error: the amazons3 extended action is not supported on Windows.")
        raise ValueError("The amazons3 extended action is not supported on Windows.")
    if config.options is None or config.stage is None:
        raise ValueError("Cedar Backup configuration is not properly filled in (<options> and <stage> are needed).")
    local = LocalConfig(xmlPath=configPath)
    settings = _settings(local)
    with _terminationHandled():
        _sweepLeftovers(config, settings)
        stagingDirs = _findCorrectDailyDir(options, config, local)
        with _stagedDays(config, settings, stagingDirs) as days:
            _applySizeLimits(options, config, local, days)
            _writeToAmazonS3(config, settings, days)
        _writeStoreIndicator(config, stagingDirs)
    logger.info("Executed the amazons3 extended action successfully.")


def _settings(local: LocalConfig) -> AmazonS3Config:
    if local.amazons3 is None:
        raise ValueError("AmazonS3 section is required.")
    return local.amazons3


@contextlib.contextmanager
def _terminationHandled() -> Iterator[None]:
    """SIGTERM (a shutdown, a cron timeout) becomes an exception, so every ``finally`` below runs: gpg and the
    command are killed, temporary files and private homes removed, no indicator written. SIGKILL leaves work
    behind; the next night's sweep removes it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, _frame: object) -> None:
        raise NightTerminatedError(f"Terminated by signal {signum}; the day was not stored.")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _sweepLeftovers(config: Any, settings: AmazonS3Config) -> None:
    """Remove what a killed night left: our work areas and private GnuPG homes (ours by name and owner, unused,
    older than ``<sweep_after_minutes>``), each one logged."""
    from cedar_s3.gpg.home import sweepHomes
    from cedar_s3.workarea import sweepWorkAreas

    minutes = settings.sweepAfterMinutes if settings.sweepAfterMinutes is not None else DEFAULT_SWEEP_MINUTES
    age = 60.0 * minutes
    removed = sweepHomes(age)
    if config.options.workingDir:
        removed += sweepWorkAreas(config.options.workingDir, age)
    for path in removed:
        logger.info("Removed [%s], left behind by an earlier night that was killed.", path)


def _findCorrectDailyDir(options: Any, config: Any, local: LocalConfig) -> dict[str, str]:
    """Upstream's choice of staging directory (today, else yesterday, else tomorrow; today only with --full)."""
    return findCorrectDailyDir(options, config, local)


@contextlib.contextmanager
def _stagedDays(config: Any, settings: AmazonS3Config, stagingDirs: dict[str, str]) -> Iterator[list[StagedDay]]:
    """Each chosen day opened as a tree and listed (names checked against S3's key length), closed on exit."""
    from cedar_s3.bucketformat import S3Location

    location = S3Location.parse(settings.s3Bucket or "")
    trusted = frozenset(uid for uid in (ownerIds(config)[0],) if uid is not None)
    with contextlib.ExitStack() as stack:
        days = []
        for suffix in stagingDirs.values():
            tree = stack.enter_context(StagedTree.open(config.stage.targetDir, suffix, trusted))
            room = MAX_KEY_BYTES - len(location.dayPrefix(suffix).encode("utf-8"))
            days.append(StagedDay(suffix, tree, tree.list(room)))
        yield days


def _applySizeLimits(options: Any, config: Any, local: LocalConfig, days: list[StagedDay]) -> None:
    """Upstream's size limits, on exactly the bytes that will be stored, before any byte is sent."""
    total = sum(day.listing.totalBytes for day in days)
    applySizeLimits(options, config, local, {day.path: day.suffix for day in days}, total)


def _writeStoreIndicator(config: Any, stagingDirs: dict[str, str]) -> None:
    """Written only after every day is stored, verified and described by its manifest."""
    writeStoreIndicator(config, stagingDirs)


def _writeToAmazonS3(config: Any, settings: AmazonS3Config, days: list[StagedDay]) -> None:
    """Store each day, with one S3 connection pool and one encryption set-up for the whole night."""
    from cedar_s3.s3.session import buildStore

    deadlines = nightDeadlines(settings)
    with (
        buildStore(settings, config.options.backupUser) as store,
        nightEncryption(config, settings, deadlines) as encryption,
        nightSigner(settings, deadlines) as signer,
    ):
        logger.info("Checksums: %s.", store.policy.reason)
        store.checkBucket(needObjectLock=settings.objectLockMode is not None)
        night = Night(settings, store, encryption, signer, deadlines)
        for day in days:
            _storeDay(night, day)


# -----------------------------------------------------------------------------------------------------------------
# One day
# -----------------------------------------------------------------------------------------------------------------


@dataclass
class DayState:
    """What the steps of one day pass on to each other."""

    prefix: str
    started: str
    common: dict[str, str]
    existing: RemoteListing  # the day's objects as last listed: before the upload, then as verified
    records: RecordTable


def _storeDay(night: Night, day: StagedDay) -> None:
    """One day: nothing is deleted remotely until everything new is uploaded, verified and in the manifest."""
    state = _beginDay(night, day)
    with state.records:
        report = _uploadStagingDir(night, day, state)
        _verifyUpload(night, day, state)
        _writeManifest(night, day, state)
        _clearExistingBackup(night, day, state)
        _commitDay(night, state)
    logger.info(
        "Stored %s to %s: %d files, %s sent in %.1f s (%s/s), skipped %d already stored.",
        day.path,
        night.store.location.url(state.prefix),
        report.stored + report.skipped,
        displayBytes(report.bytesSent),
        report.seconds,
        displayBytes(report.rate),
        report.skipped,
    )


def _beginDay(night: Night, day: StagedDay) -> DayState:
    """Mark the day incomplete (so a half-stored day says so), then look at what an earlier run left."""
    from cedar_s3.upload.records import RecordTable
    from cedar_s3.upload.reuse import RemoteListing

    store = night.store
    prefix = store.location.dayPrefix(day.suffix)
    logger.debug("Storing stage directory [%s] to [%s].", day.path, store.location.url(prefix))
    common = commonMetadata(night.host, day.suffix)
    if _needsProbe(night.settings):
        store.probeObjectSettings(prefix + PROBE_NAME)
    marker = IncompleteMarker.forNight(night.host)
    store.putBytes(
        prefix + INCOMPLETE_MARKER, marker.toJson(), contentType="application/json", kind="bookkeeping", metadata=common
    )
    existing = RemoteListing(entry for entry in store.listObjects(prefix))
    return DayState(prefix, marker.started, common, existing, RecordTable(len(day.listing)))


def _needsProbe(settings: AmazonS3Config) -> bool:
    return bool(settings.storageClass or settings.serverSideEncryption or settings.tags)


def _uploadStagingDir(night: Night, day: StagedDay, state: DayState) -> Any:
    """Upload (encrypting file by file where configured), skipping objects already stored with this content.

    Unfinished multipart uploads an earlier run left are resumed where they belong to the same file, and the
    rest (and any a retried request may have orphaned tonight) are aborted once the uploads are done. A failed
    night keeps those it left on purpose and those it never came to, for the next night to continue.
    """
    from cedar_s3.upload.day import DayUpload
    from cedar_s3.upload.jobs import JobContext
    from cedar_s3.upload.reuse import ReuseIndex, storedAsFingerprint
    from cedar_s3.upload.send import ObjectWriter

    store = night.store
    storedAs = storedAsFingerprint(night.settings)
    writer = ObjectWriter(store, state.prefix, state.common, storedAs)
    leftovers = store.pendingUploads(state.prefix)
    for upload in leftovers or []:
        writer.pending.setdefault(upload.key, []).append(upload)
    previous = _previousRecords(night, day, state)
    try:
        context = JobContext(
            tree=day.tree,
            writer=writer,
            reuse=ReuseIndex(store, state.prefix, state.existing, previous, storedAs),
            stop=writer.stop,
            gnupg=night.encryption.gnupg,
            command=night.encryption.command,
        )
        report = DayUpload(context, store.concurrency).run(iter(day.listing), state.records)
    except Exception:
        if leftovers is not None:
            try:
                _abortOrphans(store, state.prefix, keep=writer.kept | writer.unreached())
            except OSError as error:  # the night's own failure is what matters; the next night tidies
                logger.warning("Could not tidy unfinished uploads after the failure: %s", error)
        raise

    finally:
        if previous is not None:
            previous.close()
    if leftovers is not None:
        _abortOrphans(store, state.prefix, keep=set())
    return report


def _abortOrphans(store: S3Store, prefix: str, keep: set[str]) -> None:
    """Abort the unfinished uploads under the day that no later night can continue: a CreateMultipartUpload
    retried after its answer was lost leaves one nobody knows the id of. Uploads left on purpose, for the next
    night to continue (``keep``), stay."""
    orphans = [upload for upload in store.pendingUploads(prefix) or [] if upload.uploadId not in keep]
    aborted = store.abortUploads(orphans)
    if aborted:
        logger.info("Aborted %d incomplete multipart upload(s) left under [%s].", aborted, prefix)


def _previousRecords(night: Night, day: StagedDay, state: DayState) -> RecordTable | None:
    """The records of an earlier complete run of this day, in tonight's slots; unreadable means none.

    Read entry by entry into the on-disk table: a re-run of a day of 100,000 files holds no manifest in memory."""
    from cedar_s3.manifests import manifestEntries
    from cedar_s3.upload.records import RecordTable

    if state.prefix + MANIFEST_NAME not in state.existing:
        return None
    try:
        with manifestEntries(night.store, state.prefix) as entries:
            if entries is None:
                return None
            table = RecordTable(len(day.listing))
            try:
                for record in entries:
                    index = day.listing.indexOf(record.relative)
                    if index is not None:
                        table.put(index, record)
            except BaseException:
                table.close()
                raise
            return table
    except ValueError as error:
        logger.warning("Ignoring the existing manifest (objects are checked by their own metadata): %s", error)
        return None


def _verifyUpload(night: Night, day: StagedDay, state: DayState) -> None:
    """Every object present with the right size and checksum (upstream checked sizes only)."""
    from cedar_s3.upload.reuse import RemoteListing
    from cedar_s3.verify import verifyObjects

    state.existing = RemoteListing(())  # the listing from before the upload goes first: one is held at a time
    state.existing = RemoteListing(night.store.listObjects(state.prefix))  # what the day holds now
    records = state.records.iterate(day.listing.relatives())
    count = verifyObjects(
        night.store, state.prefix, records, download=night.settings.verifyDownload, listing=state.existing
    )
    logger.debug("Verified %d objects under [%s].", count, state.prefix)


def _writeManifest(night: Night, day: StagedDay, state: DayState) -> None:
    """Written last: a day with a manifest is complete and verified. Streamed through an anonymous temporary
    file (a day of 100,000 files never has its manifest in memory), then signed where configured."""
    store = night.store
    header = ManifestHeader(
        day=day.suffix,
        bucket=store.bucket,
        prefix=state.prefix,
        host=night.host,
        tool=TOOL,
        encryption=night.encryption.mode.value,
        started=state.started,
        finished=now(),
    )
    with tempfile.TemporaryFile() as spool:
        hashed = HashingWriter(spool)
        writer = ManifestWriter(hashed, header)
        writer.addAll(state.records.iterate(day.listing.relatives()))
        writer.finish()
        spool.seek(0)
        store.putObject(
            state.prefix + MANIFEST_NAME,
            spool,
            md5=hashed.md5,
            sha256=hashed.sha256,
            metadata=state.common,
            kind="manifest",
            contentType="application/json",
        )
        if night.signer is not None:
            spool.seek(0)
            signature = night.signer.sign(spool, hashed.size)
            store.putBytes(
                state.prefix + SIGNATURE_NAME,
                signature,
                contentType="application/pgp-signature",
                kind="manifest",
                metadata=state.common,
            )


def _clearExistingBackup(night: Night, day: StagedDay, state: DayState) -> None:
    """Remove what an earlier run stored that tonight's day no longer has.

    Upstream cleared the whole day *before* uploading, so a failed night lost the previous copy. We only get
    here once the new copy is uploaded, verified and described by its manifest.
    """
    bookkeeping = {MANIFEST_NAME, INCOMPLETE_MARKER} | ({SIGNATURE_NAME} if night.signer is not None else set())

    def kept(key: str) -> bool:
        relative = key.removeprefix(state.prefix)
        return relative in bookkeeping or day.listing.indexOf(relative) is not None

    stale = [key for key in state.existing.allKeys() if not kept(key)]
    if stale:
        logger.info("Removing %d stale object(s) from an earlier run of this day.", len(stale))
        night.store.deleteKeys(stale)


def _commitDay(night: Night, state: DayState) -> None:
    """The day is complete: its incomplete marker goes, last."""
    night.store.deleteKeys([state.prefix + INCOMPLETE_MARKER])
