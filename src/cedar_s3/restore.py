"""Restore a stored day (or the files of it matching patterns) into a directory, proving every byte.

The steps, in order: choose the files (``--include``); refuse, before anything is written, names or existing
paths that would escape the target or overwrite something (``safedir``), and a day that cannot be decrypted
with what was given; then restore, small encrypted files first one at a time until one decrypts (so a wrong
passphrase or key stops at once rather than failing for every file), the rest concurrently. Each file is
checked against the manifest's size and SHA-256 (of the stored bytes and of the plaintext) before it is
renamed into place, so a bad file leaves nothing behind and is named in the report; the good ones are
restored regardless.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from cedar_s3.bucketformat import StoredObject
from cedar_s3.gpg.decrypt import DecryptKeys
from cedar_s3.progress import Progress
from cedar_s3.readback import ObjectReader, eachObject
from cedar_s3.safedir import RestoreRefusedError, SafeDir
from cedar_s3.upstreamday import UNKNOWN, UpstreamObject

if TYPE_CHECKING:
    from cedar_s3.s3.store import S3Store

__all__ = ["RestoreReport", "checkRestorable", "restoreDay", "selectRecords"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.restore")

SHOWN_REFUSALS = 10


@dataclass
class RestoreReport:
    """What a restore did: the files written and, for every file that was not, why."""

    restored: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    bytes: int = 0


Restorable = StoredObject | UpstreamObject  # a manifest's record, or an object of a day upstream stored
Chosen = TypeVar("Chosen", bound=Restorable)


def selectRecords(records: Sequence[Chosen], patterns: Iterable[str]) -> list[Chosen]:
    """The records whose relative path matches any pattern (fnmatch; all records when none given)."""
    patterns = list(patterns)
    if not patterns:
        return list(records)
    return [record for record in records if any(fnmatch.fnmatchcase(record.relative, p) for p in patterns)]


def checkRestorable(
    store: S3Store, dayPrefix: str, records: Sequence[Restorable], target: SafeDir, keys: DecryptKeys
) -> None:
    """Refuse, before anything is downloaded or written, what could not be restored whole."""
    for mode in sorted({record.encryption for record in records} - {UNKNOWN}):
        keys.require(mode, store.location.url(dayPrefix))
    problems: list[str] = []
    for record in records:
        try:
            target.check(record.relative)
        except RestoreRefusedError as error:
            problems.append(str(error))
    problems = list(dict.fromkeys(problems))  # one symlinked directory refuses every file below it
    if problems:
        more = f" (and {len(problems) - SHOWN_REFUSALS} more)" if len(problems) > SHOWN_REFUSALS else ""
        shown = " ".join(problems[:SHOWN_REFUSALS])
        raise RestoreRefusedError(f"Nothing restored: {shown}{more}")


def restoreDay(
    store: S3Store,
    dayPrefix: str,
    records: Sequence[Restorable],
    target: SafeDir,
    keys: DecryptKeys,
    *,
    progress: Progress,
    jobs: int,
    storageClasses: dict[str, str] | None = None,
) -> RestoreReport:
    """Restore ``records`` of the day under ``dayPrefix`` into ``target``; the report names every failure.

    A manifest's record is proven against its digests; an upstream day's object is checked against its listed
    size and, where it is encrypted, gpg's integrity check: it has no recorded digest to prove.
    """
    checkRestorable(store, dayPrefix, records, target, keys)
    reader = ObjectReader(store, keys, storageClasses)
    report = RestoreReport()
    sizes: dict[str, int] = {}

    def restoreOne(record: Restorable) -> Exception | None:
        key = dayPrefix + record.relative

        def fill(handle: BinaryIO) -> None:
            if isinstance(record, UpstreamObject):
                sizes[record.relative] = reader.readUpstream(key, record, handle.write, progress.advance).plaintextSize
            else:
                reader.read(key, record, handle.write, progress.advance)
                sizes[record.relative] = record.plaintextSize

        try:
            target.write(record.relative, fill)
        except (OSError, ValueError) as error:
            progress.fileDone(record.relative, ok=False)
            return error
        progress.fileDone(record.relative, ok=True)
        return None

    for record, error in eachObject(list(records), restoreOne, jobs=jobs):
        if error is None:
            report.restored.append(record.relative)
            report.bytes += sizes[record.relative]
        else:
            said = str(error)  # S3 and gpg errors name the key; a local one (a full disk) may name nothing
            report.failed.append(said if record.relative in said else f"{record.relative}: {said}")
    return report
