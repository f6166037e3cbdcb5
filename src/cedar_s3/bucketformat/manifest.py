"""The manifest: what a stored day holds, written last, so a day in S3 is self-describing.

It lists every object of the day with its stored size and checksums and its plaintext size and SHA-256, so a
later night can skip what is already stored, ``verify`` can prove a day without the server that wrote it, and
``restore`` can check every byte it writes. It is written as one JSON document with one object entry per line,
streamed out (a day of 100,000 files never has its manifest in memory as a whole).

A manifest read back from S3 is untrusted input. The header must be well formed or the whole manifest is
refused; a bad object entry (malformed, a name the naming rule refuses, listed twice) is refused on its own and
named in ``Manifest.rejected``, so one bad entry costs that file, not the whole day.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

from cedar_s3.bucketformat.layout import checkRelativeKey
from cedar_s3.bucketformat.modes import Encryption

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_MANIFEST_BYTES",
    "Adoption",
    "Manifest",
    "ManifestEntries",
    "ManifestHeader",
    "ManifestWriter",
    "StoredObject",
    "now",
    "parseManifest",
]

FORMAT = "cedar-s3-manifest"
FORMAT_VERSION = 1
MAX_MANIFEST_BYTES = 512 * 1024 * 1024  # about 1.4 million objects; more is damage, not a day

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MODES = {mode.value for mode in Encryption}


def now() -> str:
    """A timestamp as the format writes them: UTC, ISO 8601, whole seconds."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class StoredObject:
    """One object of a stored day, as proven when it was uploaded (or, for an adopted day, read back)."""

    relative: str  # path relative to the staging dir, and the key suffix under the day prefix
    size: int  # stored bytes (ciphertext when encrypted)
    plaintextSize: int
    plaintextSha256: str
    storedSha256: str
    encryption: str  # an Encryption value
    partSize: int | None = None  # multipart part size; None for a single PUT
    md5Etag: str | None = None  # the ETag S3 gives these bytes, where computed
    compositeSha256: str | None = None  # S3's multipart SHA-256 checksum form, where computed
    storedAs: str | None = None  # fingerprint of the settings it was stored with (keys, storage class, lock ...)
    wholeMd5: str | None = None  # MD5 of all the stored bytes of a multipart object (some stores' ETag: s3rver)

    def etagMatches(self, etag: str) -> bool:
        """Whether an MD5-form ETag a store reports proves these bytes: the S3 form (MD5, or MD5 of part MD5s
        with ``-N``), or, from stores that give a multipart object the MD5 of all its bytes, that."""
        return etag == self.md5Etag or (self.wholeMd5 is not None and etag == self.wholeMd5)

    @classmethod
    def fromDict(cls, data: Any) -> StoredObject:
        if not isinstance(data, dict):
            raise ValueError("object entry is not a JSON object")
        try:
            values: dict[str, Any] = {item.name: data.get(item.name) for item in fields(cls)}
            record = cls(**values)
        except TypeError as error:
            raise ValueError(f"object entry is malformed: {error}") from None
        record.check()
        return record

    def check(self) -> None:
        """Reject what a hostile or damaged manifest could use to mislead a restore."""
        checkRelativeKey(self.relative)
        for name in ("size", "plaintextSize"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"entry {self.relative!r} has an invalid {name}: {value!r}")
        if self.partSize is not None and (
            isinstance(self.partSize, bool) or not isinstance(self.partSize, int) or self.partSize <= 0
        ):
            raise ValueError(f"entry {self.relative!r} has an invalid partSize: {self.partSize!r}")
        for name in ("plaintextSha256", "storedSha256"):
            if not isinstance(getattr(self, name), str) or not _HEX64.match(getattr(self, name)):
                raise ValueError(f"entry {self.relative!r} has an invalid {name}")
        for name in ("md5Etag", "compositeSha256", "storedAs", "wholeMd5"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"entry {self.relative!r} has an invalid {name}")
        if self.encryption not in _MODES:
            raise ValueError(f"entry {self.relative!r} has an unknown encryption {self.encryption!r}")
        if self.encryption == Encryption.NONE and (
            self.size != self.plaintextSize or self.storedSha256 != self.plaintextSha256
        ):
            raise ValueError(f"entry {self.relative!r} is unencrypted but its two checksums differ")


@dataclass(frozen=True)
class Adoption:
    """How a day stored by upstream's extension got its manifest later (``cback3-s3 adopt``)."""

    at: str  # when the adoption finished
    by: str  # the tool that adopted it
    evidence: str  # what was read to build the records, e.g. "downloaded, decrypted and hashed every object"


@dataclass
class ManifestHeader:
    """Where, when and by what a day was stored."""

    day: str  # YYYY/MM/DD
    bucket: str
    prefix: str  # the day prefix the objects are under
    host: str
    tool: str
    encryption: str
    started: str
    finished: str = ""
    adoption: Adoption | None = None

    def toDict(self) -> dict[str, Any]:
        body = {"format": FORMAT, "formatVersion": FORMAT_VERSION, **asdict(self)}
        if self.adoption is None:
            del body["adoption"]
        return body


@dataclass
class Manifest:
    """A stored day: its header, every object it holds, and every entry that was refused on reading."""

    header: ManifestHeader
    objects: list[StoredObject] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def byRelative(self) -> dict[str, StoredObject]:
        return {record.relative: record for record in self.objects}

    def toJson(self) -> bytes:
        """The whole manifest as bytes (small days, tests, ``adopt``); the night streams with ManifestWriter."""
        import io

        sink = io.BytesIO()
        writer = ManifestWriter(sink, self.header)
        for record in self.objects:
            writer.add(record)
        writer.finish()
        return sink.getvalue()


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class ManifestWriter:
    """Streams a manifest into a binary sink: the header, then one line per object, then the closing bracket."""

    def __init__(self, sink: Writable, header: ManifestHeader) -> None:
        self._sink = sink
        self._count = 0
        opening = json.dumps(header.toDict(), separators=(",", ":"), ensure_ascii=False)
        sink.write(opening[:-1].encode("utf-8") + b',"objects":[')

    def add(self, record: StoredObject) -> None:
        line = json.dumps(asdict(record), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        self._sink.write((b",\n" if self._count else b"\n") + line)
        self._count += 1

    def addAll(self, records: Iterable[StoredObject]) -> None:
        for record in records:
            self.add(record)

    def finish(self) -> int:
        """Close the document; returns the number of objects written."""
        self._sink.write(b"\n]}\n")
        return self._count


def _header(data: dict[str, Any], source: str) -> ManifestHeader:
    names = ("day", "bucket", "prefix", "host", "tool", "encryption", "started")
    texts: dict[str, Any] = {name: data.get(name) for name in names}
    texts["finished"] = data.get("finished") or ""
    missing = [name for name, value in texts.items() if not isinstance(value, str)]
    if missing:
        raise ValueError(f"Manifest {source} is invalid: header field {missing[0]!r} is missing or not a string.")
    adoption = None
    if data.get("adoption") is not None:
        raw = data["adoption"]
        values: dict[str, Any] = {
            name: raw.get(name) if isinstance(raw, dict) else None for name in ("at", "by", "evidence")
        }
        if not all(isinstance(value, str) for value in values.values()):
            raise ValueError(f"Manifest {source} is invalid: its adoption record is malformed.")
        adoption = Adoption(**values)
    return ManifestHeader(adoption=adoption, **texts)


_OPENING = b'"objects":['
_CLOSING = b"]}"


class Readable(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...
    def read(self, size: int = -1, /) -> bytes: ...
    def seek(self, offset: int, whence: int = 0, /) -> int: ...


class ManifestEntries:
    """A manifest read entry by entry from a binary file: the header checked at once, the objects as they are
    iterated, so a day of 100,000 files is never held whole (the night reads its previous manifest this way).

    ``ManifestWriter``'s layout (the header and ``"objects":[`` on the first line, one entry per line, ``]}`` on
    the last) is read line by line; any other valid JSON document is read whole. Iterating raises ValueError
    where the document is not valid JSON (a damaged manifest is refused as a whole, as ``parseManifest`` does);
    each bad entry is refused on its own and named in ``rejected``. Duplicates are the caller's to refuse.
    """

    def __init__(self, file: Readable, *, source: str) -> None:
        self.source = source
        self.rejected: list[str] = []
        self._file = file
        first = file.readline().rstrip(b"\n")
        self._lines = first.endswith(_OPENING)
        if self._lines:
            data = _documentOf(first + _CLOSING, source)
            self._whole: list[Any] = []
        else:
            file.seek(0)
            data = _documentOf(file.read(), source)
        self.header = _checkedHeader(data, source)
        if not self._lines:
            entries = data.get("objects")
            if entries is not None and not isinstance(entries, list):
                raise ValueError(f"Manifest {source} is invalid: 'objects' is not a list.")
            self._whole = entries or []

    def __iter__(self) -> Iterator[StoredObject]:
        return (record for _, record in self.numbered())

    def numbered(self) -> Iterator[tuple[int, StoredObject]]:
        """``(position, record)`` for every well-formed entry, counting the refused ones too."""
        for number, entry in enumerate(self._lineEntries() if self._lines else iter(self._whole), 1):
            try:
                yield number, StoredObject.fromDict(entry)
            except ValueError as error:
                self.rejected.append(f"{self.source}: entry {number} refused: {error}")

    def _lineEntries(self) -> Iterator[Any]:
        more = True  # after the opening line, an entry or the closing line may follow
        for raw in iter(self._file.readline, b""):
            line = raw.rstrip(b"\n")
            if line == _CLOSING:
                if self._file.read().strip():
                    break  # text after the document
                return
            if not more:
                break  # an entry where a comma should have announced it
            more = line.endswith(b",")
            try:
                yield json.loads(line[:-1] if more else line)
            except ValueError as error:
                raise ValueError(f"Manifest {self.source} is not valid JSON: {error}") from None
        raise ValueError(f"Manifest {self.source} is not valid JSON: it is cut short or its entries are run together.")


def _documentOf(raw: bytes, source: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise ValueError(f"Manifest {source} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"Manifest {source} is not a cedar-s3 manifest.")
    return data


def _checkedHeader(data: dict[str, Any], source: str) -> ManifestHeader:
    if data.get("format") != FORMAT:
        raise ValueError(f"Manifest {source} is not a cedar-s3 manifest.")
    version = data.get("formatVersion")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"Manifest {source} has an invalid format version {version!r}.")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"Manifest {source} has format version {version}, newer than this cedar-s3 reads ({FORMAT_VERSION}); "
            "upgrade cedar-s3 to read it."
        )
    return _header(data, source)


def parseManifest(raw: bytes | str, *, source: str) -> Manifest:
    """Parse and check a whole manifest; ``source`` (its S3 URL) names it in every message.

    Raises ValueError when the document or its header cannot be trusted; refuses bad entries one by one.
    """
    import io

    entries = ManifestEntries(io.BytesIO(raw.encode("utf-8") if isinstance(raw, str) else raw), source=source)
    manifest = Manifest(entries.header, rejected=entries.rejected)  # one list: refusals in document order
    seen: set[str] = set()
    for number, record in entries.numbered():
        if record.relative in seen:
            manifest.rejected.append(f"{source}: entry {number} refused: {record.relative!r} is listed twice")
            continue
        seen.add(record.relative)
        manifest.objects.append(record)
    return manifest
