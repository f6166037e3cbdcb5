"""Per-object metadata: what each stored object says about itself (``x-amz-meta-cedar-*``).

A day interrupted before its manifest is written can still be resumed: each object's metadata carries the
digests its record needs, so a re-run can tell from a HEAD alone that an object already holds exactly the staged
file. The common fields say where any single object came from.
"""

from __future__ import annotations

from cedar_s3.bucketformat.manifest import StoredObject
from cedar_s3.bucketformat.tool import TOOL

__all__ = [
    "SOURCE_MTIME_NS",
    "commonMetadata",
    "hostMetadata",
    "objectMetadata",
    "recordFromMetadata",
    "sourceMtimeNs",
    "streamedMetadata",
]

# The source file's modification time (nanoseconds since the epoch) when it was read for this object; written by
# ``cback3-s3-sync`` only, so a later sync can skip hashing a file whose size and mtime are still the recorded ones.
SOURCE_MTIME_NS = "cedar-source-mtime-ns"


def hostMetadata(host: str) -> dict[str, str]:
    """What says which program on which host wrote an object (every object carries it)."""
    return {"cedar-version": TOOL.split(" ", 1)[1], "cedar-host": host}


def commonMetadata(host: str, day: str) -> dict[str, str]:
    """The fixed metadata every object of the day carries (and the marker and manifest too)."""
    return hostMetadata(host) | {"cedar-day": day}


def objectMetadata(record: StoredObject, common: dict[str, str], *, sourceMtimeNs: int | None = None) -> dict[str, str]:
    """A data object's metadata: the common fields plus everything ``recordFromMetadata`` reads back, and the
    source file's mtime when given (``sourceMtimeNs`` reads it back)."""
    meta = dict(common)
    meta |= {
        "cedar-plaintext-sha256": record.plaintextSha256,
        "cedar-plaintext-size": str(record.plaintextSize),
        "cedar-stored-sha256": record.storedSha256,
        "cedar-encryption": record.encryption,
    }
    if record.partSize is not None:
        meta["cedar-part-size"] = str(record.partSize)
    if record.md5Etag is not None:
        meta["cedar-md5-etag"] = record.md5Etag
    if record.compositeSha256 is not None:
        meta["cedar-composite-sha256"] = record.compositeSha256
    if record.storedAs:
        meta["cedar-stored-as"] = record.storedAs
    if record.wholeMd5 is not None:
        meta["cedar-whole-md5"] = record.wholeMd5
    if sourceMtimeNs is not None:
        meta[SOURCE_MTIME_NS] = str(sourceMtimeNs)
    return meta


def sourceMtimeNs(metadata: dict[str, str]) -> int | None:
    """The source mtime an object records (``SOURCE_MTIME_NS``), or None when it records none or a malformed one."""
    text = metadata.get(SOURCE_MTIME_NS)
    if text is None or not text.lstrip("-").isdigit():
        return None
    return int(text)


def streamedMetadata(common: dict[str, str], *, encryption: str, plaintextSize: int, storedAs: str) -> dict[str, str]:
    """Metadata of an object whose digests are only known once it is sent (gpg output streamed into parts):
    what is known up front, and no digests, so no later run mistakes it for a proven record."""
    meta = dict(common) | {"cedar-encryption": encryption, "cedar-plaintext-size": str(plaintextSize)}
    if storedAs:
        meta["cedar-stored-as"] = storedAs
    return meta


def recordFromMetadata(relative: str, size: int, metadata: dict[str, str]) -> StoredObject | None:
    """Rebuild an object's record from its metadata, or None when it carries no complete record."""
    try:
        partSize = metadata.get("cedar-part-size")
        record = StoredObject(
            relative=relative,
            size=size,
            plaintextSize=int(metadata["cedar-plaintext-size"]),
            plaintextSha256=metadata["cedar-plaintext-sha256"],
            storedSha256=metadata["cedar-stored-sha256"],
            encryption=metadata["cedar-encryption"],
            partSize=int(partSize) if partSize else None,
            md5Etag=metadata.get("cedar-md5-etag"),
            compositeSha256=metadata.get("cedar-composite-sha256"),
            storedAs=metadata.get("cedar-stored-as"),
            wholeMd5=metadata.get("cedar-whole-md5"),
        )
        record.check()
    except (KeyError, ValueError):
        return None
    return record
