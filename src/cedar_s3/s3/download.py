"""Object bodies for sequential reading that survive a connection breaking off mid-body.

botocore hands out the raw HTTP body; a connection that drops while it is read raises botocore's or urllib3's
own exceptions (``IncompleteReadError``, ``ResponseStreamingError``, ``ConnectionClosedError`` ...), none of
them ``OSError``, straight out of the reader. Here a break is resumed where it happened with a ranged GET
pinned to the same object version by its ETag (``If-Match``), a bounded number of times; what still fails is
one of our ``S3Error``s naming the key and the offset, so a restore fails that file, not the command.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from cedar_s3.s3.errors import S3ConnectionError, S3Error, S3NotFoundError, errorCode, translated

if TYPE_CHECKING:
    from cedar_s3.s3.store import S3Store

__all__ = ["ObjectStream"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.s3")

RESUMES = 2  # ranged GETs after a body broke off, per object
READ_CHUNK = 1024 * 1024


class ObjectStream:
    """``ObjectStream.open(store, key)``; ``read(n)`` until ``b""``; ``close()``. Raises only our errors."""

    def __init__(self, store: S3Store, key: str, body: Any, size: int, etag: str) -> None:
        self._store = store
        self.key = key
        self._body = body
        self.size = size
        self._etag = etag
        self.offset = 0
        self.resumed = 0

    @property
    def url(self) -> str:
        return self._store.location.url(self.key)

    @classmethod
    def open(
        cls, store: S3Store, key: str, *, expectedSize: int | None = None, limit: int | None = None
    ) -> ObjectStream:
        what = f"downloading {store.location.url(key)}"
        try:
            with translated(what):
                answer = store.client.get_object(Bucket=store.bucket, Key=key)
        except S3Error as error:
            if errorCode(error) == "NoSuchKey":
                raise S3NotFoundError(f"{what}: the object does not exist.") from error
            raise
        size = int(answer["ContentLength"])
        if limit is not None and size > limit:
            answer["Body"].close()
            raise S3Error(f"{store.location.url(key)} is {size} bytes; expected at most {limit}.")
        if expectedSize is not None and size != expectedSize:
            logger.debug("%s is %d bytes, %d expected.", store.location.url(key), size, expectedSize)
        return cls(store, key, answer["Body"], size, str(answer.get("ETag") or ""))

    def __enter__(self) -> ObjectStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, size: int = -1) -> bytes:
        want = READ_CHUNK if size is None or size < 0 else size
        while True:
            try:
                with translated(f"downloading {self.url}"):
                    data = self._body.read(want)
            except S3ConnectionError as error:
                self._resume(error)
                continue
            if not data and self.offset < self.size:  # a body that ended early without saying so
                self._resume(S3ConnectionError(f"downloading {self.url}: the body ended at byte {self.offset}."))
                continue
            self.offset += len(data)
            return bytes(data)

    def readAll(self) -> bytes:
        chunks = []
        while chunk := self.read(READ_CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)

    def _resume(self, error: Exception) -> None:
        if self.resumed >= RESUMES:
            raise S3ConnectionError(
                f"downloading {self.url}: the connection broke off at byte {self.offset} of {self.size}, "
                f"{self.resumed + 1} times ({error}); check the network and retry."
            ) from error
        self.resumed += 1
        logger.warning("%s broke off at byte %d of %d; resuming there.", self.url, self.offset, self.size)
        self.close()
        args: dict[str, Any] = {"Range": f"bytes={self.offset}-"}
        if self._etag:
            args["IfMatch"] = self._etag  # the same object, not one stored under the key since
        with translated(f"resuming the download of {self.url} at byte {self.offset}"):
            answer = self._store.client.get_object(Bucket=self._store.bucket, Key=self.key, **args)
        self._body = answer["Body"]

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a broken connection may fail in any way; nothing to do
            self._body.close()
