"""The night's records: one fixed-size binary slot per staged file, in an anonymous temporary file.

A day of 100,000 files must not cost memory per file: each job writes its record into its file's slot (the
file's index in the listing), and the manifest and the verification read them back in key order, one at a
time. The file has no name (``TemporaryFile``), so nothing is left behind, even after a kill.
"""

from __future__ import annotations

import base64
import os
import struct
import tempfile
from collections.abc import Iterator
from typing import Any

from cedar_s3.bucketformat import Encryption, StoredObject

__all__ = ["RecordTable"]

_MODES = list(Encryption)
_LAYOUT = struct.Struct("<QQQ32s32s16sI32sBB8s16s")  # 166 bytes a file
_PRESENT, _MD5, _COMPOSITE, _STORED_AS, _REUSED, _WHOLE = 1, 2, 4, 8, 16, 32


class RecordTable:
    """``put(index, record, reused=...)`` from any thread; ``get(index, relative)`` and ``iterate`` later."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the table
        self._file.truncate(count * _LAYOUT.size)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put(self, index: int, record: StoredObject, *, reused: bool = False) -> None:
        flags = _PRESENT | (_REUSED if reused else 0)
        md5, parts = b"", 0
        if record.md5Etag is not None:
            text, _, count = record.md5Etag.partition("-")
            md5, parts, flags = bytes.fromhex(text), int(count or 0), flags | _MD5
        composite = b""
        if record.compositeSha256 is not None:
            composite, flags = base64.b64decode(record.compositeSha256), flags | _COMPOSITE
        storedAs = b""
        if record.storedAs:
            storedAs, flags = bytes.fromhex(record.storedAs), flags | _STORED_AS
        whole = b""
        if record.wholeMd5 is not None:
            whole, flags = bytes.fromhex(record.wholeMd5), flags | _WHOLE
        packed = _LAYOUT.pack(
            record.size,
            record.plaintextSize,
            record.partSize or 0,
            bytes.fromhex(record.plaintextSha256),
            bytes.fromhex(record.storedSha256),
            md5,
            parts,
            composite,
            _MODES.index(Encryption(record.encryption)),
            flags,
            storedAs,
            whole,
        )
        os.pwrite(self._file.fileno(), packed, index * _LAYOUT.size)

    def _read(self, index: int) -> tuple[Any, ...] | None:
        raw = os.pread(self._file.fileno(), _LAYOUT.size, index * _LAYOUT.size)
        fields = _LAYOUT.unpack(raw)
        return fields if fields[9] & _PRESENT else None

    def get(self, index: int, relative: str) -> StoredObject | None:
        fields = self._read(index)
        if fields is None:
            return None
        size, plainSize, partSize, plainSha, storedSha, md5, parts, composite, mode, flags, storedAs, whole = fields
        md5Etag = None
        if flags & _MD5:
            md5Etag = md5.hex() + (f"-{parts}" if parts else "")
        compositeSha256 = None
        if flags & _COMPOSITE:
            compositeSha256 = base64.b64encode(composite).decode("ascii")
        return StoredObject(
            relative=relative,
            size=size,
            plaintextSize=plainSize,
            plaintextSha256=plainSha.hex(),
            storedSha256=storedSha.hex(),
            encryption=_MODES[mode].value,
            partSize=partSize or None,
            md5Etag=md5Etag,
            compositeSha256=compositeSha256,
            storedAs=storedAs.hex() if flags & _STORED_AS else None,
            wholeMd5=whole.hex() if flags & _WHOLE else None,
        )

    def reused(self, index: int) -> bool:
        fields = self._read(index)
        return fields is not None and bool(fields[9] & _REUSED)

    def iterate(self, relatives: Iterator[str]) -> Iterator[StoredObject]:
        """Every record in index order (``relatives`` gives each slot's name); a missing record is an error."""
        for index, relative in enumerate(relatives):
            record = self.get(index, relative)
            if record is None:
                raise AssertionError(f"no record was made for {relative!r}")
            yield record
