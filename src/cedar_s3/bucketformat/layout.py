"""Where things live in a bucket: upstream's key layout, our bookkeeping names, and the one naming rule.

Upstream stored staging directory ``/stage/2026/05/01`` under ``[prefix/]2026/05/01/`` with each file's path
relative to that directory as the rest of the key; we keep that exactly, so old and new days sit side by side.
Our bookkeeping objects live beside the data under names that start with ``cback.``, which no staged file can
have (Cedar Backup's indicator files are never stored, so that namespace is ours).

``checkRelativeKey`` is the single rule for what a stored path may be. The night applies it before anything is
sent and every reader applies it again to what it reads back, so a night can never store a name that its own
``restore`` would refuse, and a hostile name read from a bucket can never escape a restore directory.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass

__all__ = [
    "BOOKKEEPING",
    "INCOMPLETE_MARKER",
    "MANIFEST_NAME",
    "MAX_KEY_BYTES",
    "SIGNATURE_NAME",
    "VERIFIED_RECORD",
    "S3Location",
    "checkRelativeKey",
    "dateSuffix",
    "isBookkeeping",
    "isIndicatorName",
    "parseDay",
    "uploadRecordName",
]

MAX_KEY_BYTES = 1024  # S3's limit for a whole key
INDICATOR_PREFIX = "cback."
MANIFEST_NAME = "cback.amazons3.manifest.json"
SIGNATURE_NAME = "cback.amazons3.manifest.json.sig"
INCOMPLETE_MARKER = "cback.amazons3.incomplete"
VERIFIED_RECORD = "cback.amazons3.verified.json"
BOOKKEEPING = (MANIFEST_NAME, SIGNATURE_NAME, INCOMPLETE_MARKER, VERIFIED_RECORD)
BOOKKEEPING_PREFIX = "cback.amazons3."  # every name of ours at a day's root starts so (upload records too)

_DAY_FORMS = ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d")
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")


def isIndicatorName(name: str) -> bool:
    """Cedar Backup's own marker files (``cback.collect``, ``cback.stage`` ...) are never backup data.

    Upstream excluded ``*cback.*`` on upload but only basenames starting with ``cback.`` on verify, so a file
    such as ``foo.cback.tar`` was silently skipped and then reported missing. We exclude exactly the basenames
    that start with ``cback.``, on every path.
    """
    return name.startswith(INDICATOR_PREFIX)


def isBookkeeping(name: str) -> bool:
    """Whether a name at a day's root is one of our bookkeeping objects, not backup data."""
    return name.startswith(BOOKKEEPING_PREFIX)


def uploadRecordName(relative: str) -> str:
    """Where the night notes an unfinished multipart upload of ``relative``, so a later night can continue it."""
    return f"{BOOKKEEPING_PREFIX}upload.{hashlib.sha256(relative.encode('utf-8')).hexdigest()[:24]}.json"


def checkRelativeKey(relative: object) -> str:
    """A stored path that is safe to write under a directory and to send as the rest of a key, or ValueError.

    Relative POSIX path; no empty, ``.`` or ``..`` segment; no NUL; valid UTF-8; no ``cback.`` basename
    (that namespace holds our bookkeeping). A backslash is an ordinary character on POSIX and allowed.
    """
    if not isinstance(relative, str) or not relative:
        raise ValueError(f"Unsafe object path {relative!r}: must be a non-empty relative path.")
    if relative.startswith("/"):
        raise ValueError(f"Unsafe object path {relative!r}: absolute.")
    if "\x00" in relative:
        raise ValueError(f"Unsafe object path {relative!r}: contains NUL.")
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"Unsafe object path {relative!r}: empty, '.' or '..' segment.")
    if isIndicatorName(parts[-1]):
        raise ValueError(f"Unsafe object path {relative!r}: 'cback.' names are Cedar Backup's, never data.")
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"Unsafe object path {relative!r}: not valid UTF-8, so it cannot be an S3 key.") from None
    return relative


def dateSuffix(day: datetime.date) -> str:
    """The key layout's form of a day: ``YYYY/MM/DD`` (Cedar Backup's ``DIR_TIME_FORMAT``)."""
    return day.strftime("%Y/%m/%d")


def parseDay(text: str) -> datetime.date:
    """A day as an operator types it (``2026-05-01``, ``2026/05/01``, ``20260501``) or as a key holds it."""
    for form in _DAY_FORMS:
        try:
            return datetime.datetime.strptime(text.strip(), form).date()
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a day; write it as YYYY-MM-DD (for example 2026-05-01).")


@dataclass(frozen=True)
class S3Location:
    """Bucket and optional prefix from ``<s3_bucket>`` (``bucket`` or ``bucket/some/prefix``)."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, text: str, setting: str = "<s3_bucket>") -> S3Location:
        """Check and split the setting; every message names ``setting``."""
        if "://" in text:
            raise ValueError(
                f"{setting} takes a bucket name with an optional prefix (bucket/prefix), not a URL: {text!r}."
            )
        bucket, _, prefix = text.strip().partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise ValueError(f"{setting} does not start with a valid S3 bucket name: {bucket!r}.")
        prefix = prefix.strip("/")
        if any(ch.isspace() for ch in text.strip()) or "\x00" in prefix:
            raise ValueError(f"{setting} has an invalid prefix (whitespace): {text!r}.")
        if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
            raise ValueError(f"{setting} has an empty, '.' or '..' segment in its prefix: {text!r}.")
        return cls(bucket, prefix)

    @classmethod
    def fromSetting(cls, s3Bucket: str) -> S3Location:
        return cls.parse(s3Bucket)

    def dayPrefix(self, suffix: str) -> str:
        """Upstream's layout: ``[prefix/]YYYY/MM/DD/``."""
        return f"{self.rootPrefix}{suffix}/"

    @property
    def rootPrefix(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"
