"""Adopting a day upstream stored: read it once, record what it holds, and write a cedar-s3 manifest for it.

Every object is downloaded, decrypted where its first bytes are an OpenPGP message (gpg's integrity check must
pass), and hashed on both sides; its listed size must match what was read. The manifest that results is marked
as adopted (when, by which version, from which evidence) and, where ``<gpg_sign_key>`` is configured, signed.
No object is touched: only the manifest (and its signature) is added. From then on ``verify`` and ``restore``
treat the day like any day cedar-s3 stored.

Reading a big day takes long, so the evidence gathered is kept in a private state file as it comes; an
adoption that is interrupted continues where it stopped, re-reading only objects whose listing changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cedar_s3.bucketformat import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    TOOL,
    Adoption,
    DayKind,
    Encryption,
    Manifest,
    ManifestHeader,
    StoredObject,
    now,
)
from cedar_s3.catalog import DayListing, listDay
from cedar_s3.progress import makeProgress
from cedar_s3.readback import ObjectReader, eachObject
from cedar_s3.upstreamday import UpstreamEvidence, UpstreamObject, upstreamObjects

if TYPE_CHECKING:
    from cedar_s3.gpg.decrypt import DecryptKeys
    from cedar_s3.gpg.sign import ManifestSigner
    from cedar_s3.s3.store import S3Store

__all__ = ["AdoptionRefusedError", "AdoptionResult", "adoptDay"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.adopt")

MIB = 1024 * 1024
AWS_CLI_PART = 8 * MIB  # the AWS CLI's default multipart_chunksize, which upstream's nights used
EVIDENCE = "downloaded every object once, decrypted it where it was an OpenPGP message, and hashed both sides"
SAVE_EVERY = 50  # objects between two saves of the state file


class AdoptionRefusedError(ValueError):
    """The day cannot be adopted (not an upstream day, a name that cannot be restored, a listing that moved)."""


@dataclass
class AdoptionResult:
    """What adopting one day did."""

    day: str
    objects: int = 0
    bytes: int = 0
    reused: int = 0  # objects whose evidence an interrupted adoption had already gathered
    failed: list[str] = field(default_factory=list)
    written: bool = False


class _State:
    """The evidence gathered so far for one day, in a 0600 file in a 0700 directory of this user's."""

    def __init__(self, directory: Path, store: S3Store, prefix: str) -> None:
        name = hashlib.sha256(f"{store.bucket}/{prefix}".encode()).hexdigest()[:32]
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        self.path = directory / f"adopt-{name}.json"
        self._lock = threading.Lock()
        self._unsaved = 0
        self.entries: dict[str, dict[str, Any]] = {}
        with contextlib.suppress(FileNotFoundError, ValueError):
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict) and loaded.get("prefix") == prefix:
                self.entries = {
                    key: value for key, value in loaded.get("objects", {}).items() if isinstance(value, dict)
                }
        self._prefix = prefix

    def known(self, item: UpstreamObject) -> UpstreamEvidence | None:
        entry = self.entries.get(item.relative)
        if entry is None or entry.get("etag") != item.etag or entry.get("size") != item.size:
            return None
        try:
            fields = {name: entry[name] for name in UpstreamEvidence.__dataclass_fields__ if name != "partEtags"}
            return UpstreamEvidence(**fields, partEtags={int(size): tag for size, tag in entry["partEtags"].items()})
        except (KeyError, TypeError, ValueError):
            return None

    def record(self, item: UpstreamObject, evidence: UpstreamEvidence) -> None:
        with self._lock:
            self.entries[item.relative] = asdict(evidence) | {"etag": item.etag, "size": item.size}
            self._unsaved += 1
            if self._unsaved >= SAVE_EVERY:
                self._saveLocked()

    def save(self) -> None:
        with self._lock:
            self._saveLocked()

    def _saveLocked(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump({"prefix": self._prefix, "objects": self.entries}, handle)
        os.replace(temporary, self.path)
        self._unsaved = 0

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _checkAdoptable(listing: DayListing, url: str) -> list[UpstreamObject]:
    if listing.kind == DayKind.COMPLETE:
        raise AdoptionRefusedError(f"{url} already has a manifest; there is nothing to adopt.")
    if listing.kind != DayKind.UPSTREAM:
        raise AdoptionRefusedError(
            f"{url} is marked incomplete (a cedar-s3 night or prune was interrupted), not a day upstream stored; "
            "store it again, or prune it."
        )
    objects, refused = upstreamObjects(listing)
    if refused:
        raise AdoptionRefusedError(
            f"{url} holds names a restore would refuse, so no manifest can describe it: {'; '.join(refused[:5])}"
        )
    if not objects:
        raise AdoptionRefusedError(f"{url} holds no objects.")
    return objects


def _record(item: UpstreamObject, evidence: UpstreamEvidence) -> StoredObject:
    """The record of an adopted object: its digests as read, and the ETag form that matches its listing."""
    partSize = next((size for size, etag in evidence.partEtags.items() if etag == item.etag), None)
    md5Etag = item.etag if item.etag in (evidence.storedMd5, evidence.partEtags.get(partSize or 0)) else None
    return StoredObject(
        relative=item.relative,
        size=evidence.storedSize,
        plaintextSize=evidence.plaintextSize,
        plaintextSha256=evidence.plaintextSha256,
        storedSha256=evidence.storedSha256,
        encryption=Encryption.COMMAND if evidence.encrypted else Encryption.NONE,
        partSize=partSize,
        md5Etag=md5Etag,
        wholeMd5=evidence.storedMd5 if partSize is not None else None,
    )


def _partSizes(item: UpstreamObject) -> list[int]:
    """Part sizes that could give the object's listed ``-N`` ETag: the AWS CLI's default, and the smallest whole
    MiB that splits the object into N parts (a configured ``multipart_chunksize``)."""
    count = item.etag.partition("-")[2]
    if not count.isdigit() or int(count) < 1:
        return []
    guess = math.ceil(math.ceil(item.size / int(count)) / MIB) * MIB
    return sorted({AWS_CLI_PART, guess})


def adoptDay(
    store: S3Store,
    listing: DayListing,
    keys: DecryptKeys,
    *,
    jobs: int,
    progressStyle: str,
    dryRun: bool,
    stateDir: Path,
    signer: ManifestSigner | None,
) -> AdoptionResult:
    """Read the day, build its records, and (unless ``dryRun``) write its manifest, marked as adopted."""
    url = store.location.url(listing.prefix)
    objects = _checkAdoptable(listing, url)
    result = AdoptionResult(day=listing.day.isoformat(), objects=len(objects))
    state = _State(stateDir, store, listing.prefix)
    evidence = _gather(
        store, listing, objects, keys, state=state, result=result, jobs=jobs, progressStyle=progressStyle
    )
    state.save()
    if result.failed:
        return result
    records = [_record(item, evidence[item.relative]) for item in objects]
    result.bytes = sum(record.plaintextSize for record in records)
    _checkUnchanged(store, listing, objects, url)
    if dryRun:
        return result
    _writeAdopted(store, listing, records, signer)
    state.remove()
    result.written = True
    return result


def _gather(
    store: S3Store,
    listing: DayListing,
    objects: list[UpstreamObject],
    keys: DecryptKeys,
    *,
    state: _State,
    result: AdoptionResult,
    jobs: int,
    progressStyle: str,
) -> dict[str, UpstreamEvidence]:
    gathered: dict[str, UpstreamEvidence] = {}
    reader = ObjectReader(store, keys)
    pending = []
    for item in objects:
        known = state.known(item)
        if known is not None:
            gathered[item.relative] = known
            result.reused += 1
        else:
            pending.append(item)
    total = sum(item.size for item in pending)
    with makeProgress(f"adopt {listing.day}", total, len(pending), style=progressStyle) as progress:

        def readOne(item: UpstreamObject) -> Exception | None:
            try:
                found = reader.readUpstream(
                    listing.prefix + item.relative, item, None, progress.advance, partSizes=_partSizes(item)
                )
            except (OSError, ValueError) as error:
                progress.fileDone(item.relative, ok=False)
                return error
            gathered[item.relative] = found
            state.record(item, found)
            progress.fileDone(item.relative, ok=True)
            return None

        result.failed += [str(error) for _item, error in eachObject(pending, readOne, jobs=jobs) if error is not None]
    return gathered


def _checkUnchanged(store: S3Store, listing: DayListing, objects: list[UpstreamObject], url: str) -> None:
    """The day must still be what was read: a manifest must never describe objects that changed meanwhile."""
    current = listDay(store, listing.day)
    before = {(item.relative, item.size, item.etag) for item in objects}
    after = {(entry.key[len(listing.prefix) :], entry.size, entry.etag) for entry in current.objects}
    if before != after or current.kind != DayKind.UPSTREAM:
        raise AdoptionRefusedError(f"{url} changed while it was being adopted; run adopt again.")


def _writeAdopted(
    store: S3Store, listing: DayListing, records: list[StoredObject], signer: ManifestSigner | None
) -> None:
    from cedar_s3.digest import BytesReader

    encrypted = any(record.encryption != Encryption.NONE for record in records)
    stamp = now()
    header = ManifestHeader(
        day=listing.day.strftime("%Y/%m/%d"),
        bucket=store.bucket,
        prefix=listing.prefix,
        host="unknown (stored by upstream's extension)",
        tool=TOOL,
        encryption=(Encryption.COMMAND if encrypted else Encryption.NONE).value,
        started=stamp,
        finished=stamp,
        adoption=Adoption(at=stamp, by=TOOL, evidence=EVIDENCE),
    )
    body = Manifest(header, records).toJson()
    store.putBytes(listing.prefix + MANIFEST_NAME, body, contentType="application/json", kind="manifest")
    if signer is not None:
        signature = signer.sign(BytesReader(body), len(body))
        store.putBytes(
            listing.prefix + SIGNATURE_NAME, signature, contentType="application/pgp-signature", kind="manifest"
        )


def statePath(base: Path | None) -> Path:
    """Where adoption state is kept: the given directory, else ``$XDG_CACHE_HOME/cedar-s3`` (or ``~/.cache``)."""
    if base is not None:
        return base
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "cedar-s3"
