"""What a stored day holds, written last, so a day in S3 is self-describing and a half-stored day is obvious.

The manifest lists every object of the day with its stored size and checksums and its plaintext size and
SHA-256, so later runs can skip what is already stored, ``verify`` can prove a day without the server that
wrote it, and ``restore`` can check every byte it writes. A manifest read back from S3 is untrusted input:
``Manifest.fromJson`` refuses anything malformed, including keys that could escape a restore directory.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cedar_s3.s3 import S3Store

__all__ = [
    "INCOMPLETE_MARKER",
    "MANIFEST_NAME",
    "Manifest",
    "StoredObject",
    "checkRelativeKey",
    "readManifest",
]

FORMAT = "cedar-s3-manifest"
FORMAT_VERSION = 1
MANIFEST_NAME = "cback.amazons3.manifest.json"
INCOMPLETE_MARKER = "cback.amazons3.incomplete"
MAX_MANIFEST_BYTES = 512 * 1024 * 1024  # about 1.4 million objects; more is damage, not a day
ENCRYPTION_MODES = ("none", "gpg-symmetric", "gpg-public-key", "command")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def checkRelativeKey(relative: str) -> str:
    """A key suffix that is safe to join under a directory: relative, no ``..``, no empty or odd segments."""
    if not isinstance(relative, str) or not relative or relative.startswith("/") or "\\" in relative:
        raise ValueError(f"Unsafe object path {relative!r}: must be a relative POSIX path.")
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts) or "\x00" in relative:
        raise ValueError(f"Unsafe object path {relative!r}: empty, '.' or '..' segment.")
    return relative


@dataclass(frozen=True)
class StoredObject:
    """One object of a stored day, as proven at upload time."""

    relative: str  # path relative to the staging dir, and the key suffix under the day prefix
    size: int  # stored bytes (ciphertext when encrypted)
    plaintextSize: int
    plaintextSha256: str
    storedSha256: str
    encryption: str
    partSize: int | None = None  # multipart part size; None for a single PUT
    md5Etag: str | None = None  # the ETag S3 gives these bytes, where computed
    compositeSha256: str | None = None  # S3's multipart SHA-256 checksum form, where computed
    storedAs: str | None = None  # fingerprint of the settings it was stored with (keys, storage class, lock ...)

    @classmethod
    def fromDict(cls, data: Any) -> StoredObject:
        if not isinstance(data, dict):
            raise ValueError("Manifest object entry is not a JSON object.")
        try:
            fields: dict[str, Any] = {name: data.get(name) for name in cls.__dataclass_fields__}
            record = cls(**fields)
        except TypeError as error:
            raise ValueError(f"Manifest object entry is malformed: {error}") from None
        record.check()
        return record

    def check(self) -> None:
        """Reject entries that a hostile or damaged manifest could use to mislead a restore."""
        checkRelativeKey(self.relative)
        for name in ("size", "plaintextSize"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Manifest entry {self.relative!r} has an invalid {name}: {value!r}.")
        if self.partSize is not None and (not isinstance(self.partSize, int) or self.partSize <= 0):
            raise ValueError(f"Manifest entry {self.relative!r} has an invalid partSize: {self.partSize!r}.")
        for name in ("plaintextSha256", "storedSha256"):
            if not isinstance(getattr(self, name), str) or not _HEX64.match(getattr(self, name)):
                raise ValueError(f"Manifest entry {self.relative!r} has an invalid {name}.")
        if self.encryption not in ENCRYPTION_MODES:
            raise ValueError(f"Manifest entry {self.relative!r} has an unknown encryption {self.encryption!r}.")
        if self.encryption == "none" and (self.size != self.plaintextSize or self.storedSha256 != self.plaintextSha256):
            raise ValueError(f"Manifest entry {self.relative!r} is unencrypted but its two checksums differ.")


@dataclass
class Manifest:
    """A stored day: where, when, by what, and every object in it."""

    day: str  # YYYY/MM/DD
    bucket: str
    prefix: str  # the day prefix the objects are under
    host: str
    tool: str
    encryption: str
    started: str
    finished: str = ""
    objects: list[StoredObject] = field(default_factory=list)

    @staticmethod
    def now() -> str:
        return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

    @property
    def totalBytes(self) -> int:
        return sum(record.size for record in self.objects)

    def byRelative(self) -> dict[str, StoredObject]:
        return {record.relative: record for record in self.objects}

    def toJson(self) -> bytes:
        body = asdict(self)
        body = {"format": FORMAT, "formatVersion": FORMAT_VERSION, **body}
        return json.dumps(body, separators=(",", ":"), sort_keys=False).encode("utf-8")

    @classmethod
    def fromJson(cls, raw: bytes | str, *, source: str) -> Manifest:
        """Parse and check a manifest; ``source`` (its S3 URL) names it in every error."""
        try:
            data = json.loads(raw)
        except ValueError as error:
            raise ValueError(f"Manifest {source} is not valid JSON: {error}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"Manifest {source} is not a cedar-s3 manifest.")
        if data.get("formatVersion") != FORMAT_VERSION:
            raise ValueError(f"Manifest {source} has format version {data.get('formatVersion')!r}; expected 1.")
        try:
            objects = [StoredObject.fromDict(entry) for entry in data.get("objects") or []]
            headers = ("day", "bucket", "prefix", "host", "tool", "encryption")
            texts: dict[str, Any] = {name: data.get(name) for name in headers}
            texts |= {"started": data.get("started"), "finished": data.get("finished") or ""}
            if not all(isinstance(value, str) for value in texts.values()):
                raise ValueError("a header field is missing or not a string")
        except ValueError as error:
            raise ValueError(f"Manifest {source} is invalid: {error}") from None
        relatives = [record.relative for record in objects]
        if len(set(relatives)) != len(relatives):
            raise ValueError(f"Manifest {source} lists the same object twice.")
        return cls(objects=objects, **texts)


def readManifest(store: S3Store, dayPrefix: str) -> Manifest | None:
    """The day's manifest, strictly checked (a hostile or damaged one is a ValueError), or None if absent."""
    key = dayPrefix + MANIFEST_NAME
    raw = store.getBytes(key, limit=MAX_MANIFEST_BYTES)
    if raw is None:
        return None
    return Manifest.fromJson(raw, source=store.location.url(key))
