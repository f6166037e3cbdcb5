"""Small bookkeeping bodies: the incomplete marker (a night or prune under way) and verify's record."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from cedar_s3.bucketformat.manifest import now
from cedar_s3.bucketformat.tool import TOOL

__all__ = ["RECORD_LIMIT", "IncompleteMarker", "UploadRecord", "VerifiedRecord"]

RECORD_LIMIT = 64 * 1024  # bookkeeping bodies are tiny; a larger one is not ours


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class IncompleteMarker:
    """Written first and removed last by a night (and by prune), so a day caught half-way says so."""

    host: str
    started: str
    tool: str = TOOL
    pruning: bool = False

    @classmethod
    def forNight(cls, host: str) -> IncompleteMarker:
        return cls(host=host, started=now())

    @classmethod
    def forPrune(cls, host: str) -> IncompleteMarker:
        return cls(host=host, started=now(), pruning=True)

    def toJson(self) -> bytes:
        body = asdict(self)
        if not self.pruning:
            del body["pruning"]
        return _json(body)


@dataclass(frozen=True)
class VerifiedRecord:
    """``verify`` proved a day: when, how, and for which manifest (a re-stored day makes the record stale)."""

    verifiedAt: str
    verifiedBy: str  # "verify" or "verify --download"
    manifestFinished: str
    objects: int
    tool: str = TOOL

    @classmethod
    def now(cls, how: str, manifestFinished: str, objects: int) -> VerifiedRecord:
        return cls(verifiedAt=now(), verifiedBy=how, manifestFinished=manifestFinished, objects=objects)

    def toJson(self) -> bytes:
        return _json(asdict(self))

    @classmethod
    def parse(cls, data: Any) -> VerifiedRecord | None:
        """The record, or None when it is not one of ours (it is advisory: never an error)."""
        if not isinstance(data, dict):
            return None
        texts = [data.get(name) for name in ("verifiedAt", "verifiedBy", "manifestFinished")]
        objects = data.get("objects")
        if not all(isinstance(text, str) for text in texts) or not isinstance(objects, int):
            return None
        return cls(
            verifiedAt=str(texts[0]),
            verifiedBy=str(texts[1]),
            manifestFinished=str(texts[2]),
            objects=objects,
            tool=str(data.get("tool") or ""),
        )


@dataclass(frozen=True)
class UploadRecord:
    """An unfinished multipart upload and the file it is of, written when the upload starts and removed when it
    completes: a later night continues it only for the very same file (size, modification time, content
    digest), stored the same way (part size, settings fingerprint)."""

    key: str
    uploadId: str
    size: int
    mtimeNs: int
    plaintextSha256: str
    partSize: int
    storedAs: str
    tool: str = TOOL

    def toJson(self) -> bytes:
        return _json(asdict(self))

    @classmethod
    def parse(cls, data: Any) -> UploadRecord | None:
        """The record, or None when it is not one of ours (then the upload is not continued)."""
        if not isinstance(data, dict):
            return None
        try:
            record = cls(
                **{
                    name: data[name]
                    for name in ("key", "uploadId", "size", "mtimeNs", "plaintextSha256", "partSize", "storedAs")
                }
            )
        except (KeyError, TypeError):
            return None
        numbers = (record.size, record.mtimeNs, record.partSize)
        texts = (record.key, record.uploadId, record.plaintextSha256, record.storedAs)
        if not all(isinstance(value, int) and not isinstance(value, bool) for value in numbers):
            return None
        return record if all(isinstance(value, str) for value in texts) else None
