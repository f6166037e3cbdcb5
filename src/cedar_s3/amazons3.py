"""Store-type extension that writes the day's staging directory to Amazon S3 (drop-in for upstream's).

Change ``<module>`` in ``cback3.conf`` from ``CedarBackup3.extend.amazons3`` to ``cedar_s3.amazons3`` and the
same ``<amazons3>`` section, key layout and ``cback.amazons3`` indicator keep working. Underneath: boto3 in
process instead of the AWS CLI through ``su``; GnuPG through python-gnupg (or upstream's ``<encrypt>``
command); every object checksummed end to end; the previous copy of a day never deleted before the new one
is uploaded and verified; a manifest written last.

A night, in order (the upstream step names where ours does the same job)::

    _findCorrectDailyDir -> _applySizeLimits -> _writeToAmazonS3 [ per day:
        mark incomplete -> _uploadStagingDir -> _verifyUpload -> _writeManifest -> _clearExistingBackup
        -> unmark ] -> _writeStoreIndicator
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pwd
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from CedarBackup3.util import displayBytes

from cedar_s3 import __version__
from cedar_s3.config import AmazonS3Config, LocalConfig
from cedar_s3.crypto import CommandEncryptor, Encryptor, GnuPGEncryptor
from cedar_s3.manifest import INCOMPLETE_MARKER, MANIFEST_NAME, Manifest, StoredObject, readManifest
from cedar_s3.staging import (
    STORE_INDICATOR,
    StagedFile,
    applySizeLimits,
    findCorrectDailyDir,
    listStagedFiles,
    writeStoreIndicator,
)
from cedar_s3.workarea import WorkArea

if TYPE_CHECKING:  # these import boto3, which cback3 should not pay for at start-up
    from cedar_s3.pipeline import UploadReport
    from cedar_s3.s3 import RemoteObject, S3Store

__all__ = ["STORE_INDICATOR", "AmazonS3Config", "LocalConfig", "executeAction"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3")

MAX_KEY_BYTES = 1024


@dataclass(frozen=True)
class StagedDay:
    """One staging directory chosen for tonight, with its date suffix and what it holds."""

    path: str
    dateSuffix: str
    files: list[StagedFile]

    @property
    def totalBytes(self) -> int:
        return sum(staged.size for staged in self.files)


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
    stagingDirs = _findCorrectDailyDir(options, config, local)
    days = [StagedDay(path, dateSuffix, listStagedFiles(path)) for path, dateSuffix in stagingDirs.items()]
    _applySizeLimits(options, config, local, days)
    _writeToAmazonS3(config, local, days)
    _writeStoreIndicator(config, stagingDirs)
    logger.info("Executed the amazons3 extended action successfully.")


def _findCorrectDailyDir(options: Any, config: Any, local: LocalConfig) -> dict[str, str]:
    """Upstream's choice of staging directory (today, else yesterday, else tomorrow; today only with --full)."""
    return findCorrectDailyDir(options, config, local)


def _applySizeLimits(options: Any, config: Any, local: LocalConfig, days: list[StagedDay]) -> None:
    """Upstream's size limits, on exactly the bytes that will be stored, before any byte is sent."""
    applySizeLimits(options, config, local, {day.path: day.dateSuffix for day in days}, sum(d.totalBytes for d in days))


def _writeStoreIndicator(config: Any, stagingDirs: dict[str, str]) -> None:
    """Written only after every day is stored, verified and described by its manifest."""
    writeStoreIndicator(config, stagingDirs)


def _writeToAmazonS3(config: Any, local: LocalConfig, days: list[StagedDay]) -> None:
    """Store each day, with one S3 connection pool and one encryption set-up for the whole night."""
    from cedar_s3.s3 import buildStore

    settings = _settings(local)
    with buildStore(settings, config.options.backupUser) as store, _encryption(config, settings) as (encryptor, area):
        store.checkBucket(needObjectLock=settings.objectLockMode is not None)
        for day in days:
            _storeDay(store, settings, encryptor, area, day)


@contextlib.contextmanager
def _encryption(config: Any, settings: AmazonS3Config) -> Iterator[tuple[Encryptor | None, WorkArea | None]]:
    """The configured encryptor and its private scratch dir, proven by a self-check, torn down on every exit."""
    if settings.encryptCommand is None and not settings.gpgEnabled:
        logger.debug("Encryption is disabled; files will be uploaded in cleartext.")
        yield None, None
        return
    options = config.options
    # Only the legacy command runs as the backup user and must write there; native GnuPG runs in this process,
    # so its scratch dir stays ours and a backup user cannot swap files that root is about to read or write.
    legacy = settings.encryptCommand is not None
    owner = (options.backupUser, options.backupGroup) if legacy else (None, None)
    with WorkArea(options.workingDir, *owner) as area:
        encryptor: Encryptor
        if settings.encryptCommand is not None:
            encryptor = CommandEncryptor(settings.encryptCommand, options.backupUser)
        else:
            encryptor = GnuPGEncryptor(
                passphraseFile=settings.gpgPassphraseFile,
                recipients=settings.gpgRecipients,
                gnupgHome=settings.gpgHome or _defaultGnuPGHome(options.backupUser),
                cipher=settings.gpgCipher,
                compression=settings.gpgCompression,
                s2kCount=settings.gpgS2kCount,
            )
        try:
            encryptor.selfCheck(area.path)
            logger.debug("Encryption is enabled (%s); self-check passed.", encryptor.mode)
            yield encryptor, area
        finally:
            encryptor.close()


def _defaultGnuPGHome(backupUser: str | None) -> str:
    """The backup user's ``~/.gnupg`` when running as root (where upstream's gpg command found keys)."""
    if os.geteuid() == 0 and backupUser:
        return os.path.join(pwd.getpwnam(backupUser).pw_dir, ".gnupg")
    return os.environ.get("GNUPGHOME") or os.path.expanduser("~/.gnupg")


def _settings(local: LocalConfig) -> AmazonS3Config:
    if local.amazons3 is None:
        raise ValueError("AmazonS3 section is required.")
    return local.amazons3


def _storeDay(
    store: S3Store, settings: AmazonS3Config, encryptor: Encryptor | None, area: WorkArea | None, day: StagedDay
) -> None:
    """One day: nothing is deleted remotely until everything new is uploaded, verified and in the manifest."""
    dayPrefix = store.location.dayPrefix(day.dateSuffix)
    logger.debug("Storing stage directory [%s] to [%s].", day.path, store.location.url(dayPrefix))
    manifest = Manifest(
        day=day.dateSuffix,
        bucket=store.bucket,
        prefix=dayPrefix,
        host=socket.gethostname(),
        tool=f"cedar-s3 {__version__}",
        encryption=encryptor.mode if encryptor else "none",
        started=Manifest.now(),
    )
    _checkKeyLengths(dayPrefix, day)
    marker = {"host": manifest.host, "started": manifest.started, "tool": manifest.tool}
    store.putBytes(
        dayPrefix + INCOMPLETE_MARKER, _json(marker), contentType="application/json", metadata=_commonMetadata(manifest)
    )
    canTidy = _abortLeftovers(store, dayPrefix)
    existing = {entry.key: entry for entry in store.listObjects(dayPrefix)}
    previous = _previousManifest(store, dayPrefix)
    try:
        report = _uploadStagingDir(
            store, encryptor, area, day, dayPrefix, manifest, previous, existing, _storedAs(settings)
        )
    except BaseException:
        with contextlib.suppress(Exception):
            store.abortIncompleteUploads(dayPrefix)
        raise
    manifest.objects = report.objects
    if canTidy:  # a CreateMultipartUpload retried after its answer was lost leaves an upload nobody completes
        _abortLeftovers(store, dayPrefix)
    _verifyUpload(store, settings, dayPrefix, report.objects)
    _writeManifest(store, dayPrefix + MANIFEST_NAME, manifest)
    keep = {dayPrefix + record.relative for record in report.objects} | {dayPrefix + MANIFEST_NAME}
    _clearExistingBackup(store, [key for key in existing if key not in keep and key != dayPrefix + INCOMPLETE_MARKER])
    store.deleteKeys([dayPrefix + INCOMPLETE_MARKER])
    rate = report.bytesSent / report.seconds if report.seconds > 0 else 0.0
    logger.info(
        "Stored %s to %s: %d files, %s sent in %.1f s (%s/s), skipped %d already stored.",
        day.path,
        store.location.url(dayPrefix),
        len(report.objects),
        displayBytes(report.bytesSent),
        report.seconds,
        displayBytes(rate),
        report.skipped,
    )


def _abortLeftovers(store: S3Store, dayPrefix: str) -> bool:
    """Multipart uploads a killed run left behind cost money and are invisible; tidy them, but never fail on it.

    Returns False when the credentials may not list them (logged once), so the night does not try again.
    """
    try:
        aborted = store.abortIncompleteUploads(dayPrefix)
    except PermissionError as error:
        logger.warning("Could not list incomplete multipart uploads (grant s3:ListBucketMultipartUploads): %s", error)
        return False
    if aborted:
        logger.info("Aborted %d incomplete multipart upload(s) left under [%s].", aborted, dayPrefix)
    return True


def _json(value: object) -> bytes:
    return json.dumps(value).encode("utf-8")


def _previousManifest(store: S3Store, dayPrefix: str) -> dict[str, StoredObject]:
    """The records of an earlier complete run of this day, for skipping unchanged files; unreadable means none."""
    try:
        previous = readManifest(store, dayPrefix)
    except ValueError as error:
        logger.warning("Ignoring the existing manifest (objects are checked by their own metadata): %s", error)
        return {}
    return previous.byRelative() if previous is not None else {}


def _checkKeyLengths(dayPrefix: str, day: StagedDay) -> None:
    """S3 keys hold at most 1,024 bytes; refuse a too-long path before anything is sent, naming it."""
    for staged in day.files:
        length = len((dayPrefix + staged.relative).encode("utf-8"))
        if length > MAX_KEY_BYTES:
            raise ValueError(f"Staged file path makes an S3 key of {length} bytes (S3 allows 1024): {staged.path}")


def _storedAs(settings: AmazonS3Config) -> str:
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


def _commonMetadata(manifest: Manifest) -> dict[str, str]:
    """The fixed metadata every object of the day carries, so any one object says where it came from."""
    return {"cedar-version": __version__, "cedar-host": manifest.host, "cedar-day": manifest.day}


def _uploadStagingDir(
    store: S3Store,
    encryptor: Encryptor | None,
    area: WorkArea | None,
    day: StagedDay,
    dayPrefix: str,
    manifest: Manifest,
    previous: dict[str, StoredObject],
    existing: dict[str, RemoteObject],
    storedAs: str,
) -> UploadReport:
    """Upload (encrypting file by file where configured), skipping objects already stored with this content."""
    from cedar_s3.pipeline import DayUpload

    common = _commonMetadata(manifest)
    upload = DayUpload(
        store,
        dayPrefix,
        encryptor=encryptor,
        workArea=area,
        commonMetadata=common,
        storedAs=storedAs,
        previous=previous,
        existing=existing,
    )
    return upload.run(day.files)


def _verifyUpload(store: S3Store, settings: AmazonS3Config, dayPrefix: str, records: list[StoredObject]) -> None:
    """Every object present with the right size and checksum (upstream checked sizes only)."""
    from cedar_s3.verify import verifyObjects

    started = time.monotonic()
    count = verifyObjects(store, dayPrefix, records, download=settings.verifyDownload)
    logger.debug("Verified %d objects under [%s] in %.1f s.", count, dayPrefix, time.monotonic() - started)


def _writeManifest(store: S3Store, key: str, manifest: Manifest) -> None:
    """Written last: a day with a manifest is complete and verified."""
    manifest.finished = manifest.now()
    store.putBytes(
        key, manifest.toJson(), contentType="application/json", manifest=True, metadata=_commonMetadata(manifest)
    )


def _clearExistingBackup(store: S3Store, staleKeys: list[str]) -> None:
    """Remove what an earlier run stored that tonight's day no longer has.

    Upstream cleared the whole day *before* uploading, so a failed night lost the previous copy. We only get
    here once the new copy is uploaded, verified and described by its manifest.
    """
    if staleKeys:
        logger.info("Removing %d stale object(s) from an earlier run of this day.", len(staleKeys))
        store.deleteKeys(staleKeys)
