"""Streaming digests of what we store, in every form S3 can later prove back to us.

S3 reports an object's integrity in one of three ways depending on how it was written and what the endpoint
supports: a flexible SHA-256 checksum (whole object, or composite over parts for multipart uploads), an ETag
that is the MD5 of a single-part object, or an ETag that is the MD5 over part MD5s. We compute, in one read
pass, exactly the forms the upload will be checked against, so verification never has to download anything.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from typing import IO, Any

READ_CHUNK = 1024 * 1024
SMALL_BUFFER = 64 * 1024  # the smallest read buffer: a file that grows while read costs a few more reads


@dataclass(frozen=True)
class StreamDigest:
    """What one pass over a byte stream proved about it."""

    size: int
    sha256: str  # hex, of the whole stream
    partSize: int | None  # None: stored with one PUT
    md5Etag: str | None  # the ETag S3 gives this stream (single-part MD5 or multipart MD5-of-MD5s-N)
    compositeSha256: str | None  # base64 SHA-256 over part SHA-256s, as S3 reports multipart SHA256 checksums

    @property
    def sha256Base64(self) -> str:
        """The whole-stream SHA-256 in the base64 form S3's ``ChecksumSHA256`` uses."""
        return hexToBase64(self.sha256)


def hexToBase64(hexDigest: str) -> str:
    """A hex digest in the base64 form S3 reports checksums in."""
    return base64.b64encode(bytes.fromhex(hexDigest)).decode("ascii")


class _PartHasher:
    """Hashes a stream part by part, the way S3 composes multipart checksums and ETags."""

    def __init__(self, partSize: int, md5: bool, sha256: bool) -> None:
        self.partSize = partSize
        self.filled = 0
        self.md5: Any = hashlib.md5(usedforsecurity=False) if md5 else None
        self.sha: Any = hashlib.sha256() if sha256 else None
        self.md5s: list[bytes] = []
        self.shas: list[bytes] = []

    def update(self, data: memoryview) -> None:
        while data:
            take = min(len(data), self.partSize - self.filled)
            piece = data[:take]
            if self.md5 is not None:
                self.md5.update(piece)
            if self.sha is not None:
                self.sha.update(piece)
            self.filled += take
            data = data[take:]
            if self.filled == self.partSize:
                self._closePart()

    def _closePart(self) -> None:
        if self.md5 is not None:
            self.md5s.append(self.md5.digest())
            self.md5 = hashlib.md5(usedforsecurity=False)
        if self.sha is not None:
            self.shas.append(self.sha.digest())
            self.sha = hashlib.sha256()
        self.filled = 0

    def finish(self) -> tuple[str | None, str | None]:
        if self.filled or not (self.md5s or self.shas):
            self._closePart()
        etag = None
        if self.md5s:
            etag = f"{hashlib.md5(b''.join(self.md5s), usedforsecurity=False).hexdigest()}-{len(self.md5s)}"
        composite = None
        if self.shas:
            composite = base64.b64encode(hashlib.sha256(b"".join(self.shas)).digest()).decode("ascii")
        return etag, composite


def digestStream(
    stream: IO[bytes], partSize: int | None, *, wantMd5: bool, wantComposite: bool, bufferSize: int = READ_CHUNK
) -> StreamDigest:
    """Read ``stream`` to its end once and return its digests.

    ``partSize`` is the multipart part size the upload will use (None for a single PUT). ``wantMd5`` asks for
    the ETag form (for endpoints without flexible checksums, and for cheap listing-based verification);
    ``wantComposite`` asks for the multipart SHA-256 checksum form.
    """
    whole = hashlib.sha256()
    single = hashlib.md5(usedforsecurity=False) if wantMd5 and partSize is None else None
    parts = _PartHasher(partSize, wantMd5, wantComposite) if partSize is not None else None
    size = 0
    buffer = bytearray(bufferSize)
    view = memoryview(buffer)
    while True:
        count = stream.readinto(view)  # type: ignore[attr-defined]
        if not count:
            break
        chunk = view[:count]
        size += count
        whole.update(chunk)
        if single is not None:
            single.update(chunk)
        if parts is not None:
            parts.update(chunk)
    etag, composite = parts.finish() if parts is not None else (None, None)
    if single is not None:
        etag = single.hexdigest()
    return StreamDigest(size, whole.hexdigest(), partSize, etag, composite)


def digestBytes(data: bytes, *, wantMd5: bool) -> StreamDigest:
    """What ``digestStream`` proves, for bytes already in memory (a small file sent as one PUT)."""
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest() if wantMd5 else None
    return StreamDigest(len(data), hashlib.sha256(data).hexdigest(), None, md5, None)


def digestFile(path: str, partSize: int | None, *, wantMd5: bool, wantComposite: bool) -> StreamDigest:
    """``digestStream`` over a file on disk, with a read buffer no bigger than the file needs.

    A fresh 1 MiB buffer is zeroed and page-faulted in for every file: for a night of small files that cost
    more system time than reading them (measured: 2,000 files of 1-16 KiB).
    """
    with open(path, "rb", buffering=0) as handle:
        bufferSize = min(READ_CHUNK, max(os.fstat(handle.fileno()).st_size, SMALL_BUFFER))
        return digestStream(handle, partSize, wantMd5=wantMd5, wantComposite=wantComposite, bufferSize=bufferSize)


class HashingReader:
    """A read-only file wrapper that hashes and counts what passes through it (plaintext fed to gpg)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._sha = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._sha.update(data)
        self.size += len(data)
        return data

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def close(self) -> None:
        self._raw.close()
