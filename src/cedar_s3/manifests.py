"""Reading a day's manifest back from S3, and, where the day is signed, proving it came from the backup server.

A manifest read from a bucket is untrusted input: it is parsed strictly (``bucketformat.parseManifest``), its
header must describe the day it was found under (a manifest copied from another day is refused), and when a
signature checker is given, its detached signature must be good and made by the trusted key.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cedar_s3.bucketformat import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    SIGNATURE_NAME,
    Manifest,
    ManifestEntries,
    ManifestHeader,
    parseManifest,
)

if TYPE_CHECKING:
    from cedar_s3.gpg.sign import SignatureChecker
    from cedar_s3.s3.store import S3Store

__all__ = ["SignaturePolicy", "manifestEntries", "readManifest"]

MAX_SIGNATURE_BYTES = 64 * 1024


@dataclass(frozen=True)
class SignaturePolicy:
    """How the operator's command treats signatures: check them with ``checker``; ``required``: refuse unsigned."""

    checker: SignatureChecker | None = None
    required: bool = False


def readManifest(store: S3Store, dayPrefix: str, signatures: SignaturePolicy | None = None) -> Manifest | None:
    """The day's manifest, strictly checked, or None if it has none.

    Raises ValueError for a damaged or hostile manifest, and ``SignatureError`` (a ValueError) for a signature
    that is missing where required, bad, or not made by the trusted key.
    """
    key = dayPrefix + MANIFEST_NAME
    raw = store.getBytes(key, limit=MAX_MANIFEST_BYTES)
    if raw is None:
        return None
    url = store.location.url(key)
    if signatures is not None:
        _checkSignature(store, dayPrefix, raw, signatures, url)
    manifest = parseManifest(raw, source=url)
    _checkDay(manifest.header, dayPrefix, url)
    return manifest


@contextlib.contextmanager
def manifestEntries(store: S3Store, dayPrefix: str) -> Iterator[ManifestEntries | None]:
    """The day's manifest read entry by entry (None if it has none), spooled to a private temporary file so that
    a day of 100,000 files is never in memory whole. No signature is checked: the night uses it only to skip
    work, and proves every reused object against the bucket; ``readManifest`` is for readers that trust it."""
    key = dayPrefix + MANIFEST_NAME
    with tempfile.TemporaryFile() as spool:  # 0600 and already unlinked: gone on every way out
        if not store.spoolObject(key, spool, limit=MAX_MANIFEST_BYTES):
            yield None
            return
        spool.seek(0)
        url = store.location.url(key)
        entries = ManifestEntries(spool, source=url)
        _checkDay(entries.header, dayPrefix, url)
        yield entries


def _checkDay(header: ManifestHeader, dayPrefix: str, url: str) -> None:
    suffix = "/".join(dayPrefix.rstrip("/").split("/")[-3:])
    if header.day != suffix:
        raise ValueError(f"Manifest {url} describes day {header.day!r}, not {suffix!r}; refusing it.")


def _checkSignature(store: S3Store, dayPrefix: str, raw: bytes, policy: SignaturePolicy, url: str) -> None:
    from cedar_s3.gpg.sign import SignatureError

    signature = store.getBytes(dayPrefix + SIGNATURE_NAME, limit=MAX_SIGNATURE_BYTES)
    if signature is None:
        if policy.required:
            raise SignatureError(f"{url} is not signed, and --require-signature was given; refusing it.")
        return
    if policy.checker is None:
        if policy.required:
            raise SignatureError(f"{url} is signed, but no trusted signer was given (--trusted-signer).")
        return
    policy.checker.check(raw, signature, url)
