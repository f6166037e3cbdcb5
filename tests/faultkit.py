"""What the fault-injection tests check after a night: the indicator, the bytes in S3, the manifest, the leftovers.

The night talks to S3 through a ``FaultProxy``; these helpers look at what landed with a plain boto3 client
straight to the moto server, the way an administrator would look at the bucket the next morning.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cedar_s3.bucketformat import INCOMPLETE_MARKER, MANIFEST_NAME, Manifest, parseManifest
from faultproxy import FaultProxy
from nightkit import Night, getBytes, listKeys, watchAudit

MIB = 1024 * 1024
MULTIPART = {"multipart_threshold": "5 MB", "multipart_chunksize": "5 MB"}
LOGGER = "CedarBackup3.log.extend.amazons3"
PART_1 = r"[?&]partNumber=1(&|$)"
PART_2 = r"[?&]partNumber=2(&|$)"


def keyPath(night: Night, relative: str) -> str:
    """A proxy ``path`` regex selecting the requests for one object of the night's day (path-style URLs)."""
    return re.escape(f"/{night.bucket.split('/')[0]}/{night.key(relative)}") + r"(\?|$)"


def manifestBytes(s3: Any, night: Night) -> bytes | None:
    key = night.key(MANIFEST_NAME)
    return getBytes(s3, night.bucket, key) if key in listKeys(s3, night.bucket, night.suffix) else None


def manifestOf(s3: Any, night: Night) -> Manifest:
    raw = manifestBytes(s3, night)
    assert raw is not None, "the day has no manifest"
    return parseManifest(raw, source="test")


def multipartUploads(s3: Any, bucket: str) -> list[str]:
    """Keys of multipart uploads still open (invisible in listings, and billed)."""
    return [upload["Key"] for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assertDayStored(night: Night, s3: Any, files: dict[str, bytes]) -> None:
    """A good night: indicator, exactly these bytes, a manifest describing them, no marker, no open upload."""
    assert night.indicator().exists()
    keys = listKeys(s3, night.bucket, night.suffix)
    assert set(keys) == {night.key(relative) for relative in files} | {night.key(MANIFEST_NAME)}
    for relative, data in files.items():
        assert getBytes(s3, night.bucket, night.key(relative)) == data, relative
    records = manifestOf(s3, night).byRelative()
    assert {relative: record.plaintextSha256 for relative, record in records.items()} == {
        relative: sha256(data) for relative, data in files.items()
    }
    assert multipartUploads(s3, night.bucket) == []


def assertNothingRecordedAsGood(night: Night, s3: Any, previousManifest: bytes | None = None) -> None:
    """A failed night: no indicator, the day marked incomplete, and the manifest (if any) still the old one."""
    assert not night.indicator().exists()
    assert manifestBytes(s3, night) == previousManifest
    assert night.key(INCOMPLETE_MARKER) in listKeys(s3, night.bucket, night.suffix)


def sentObjects(proxy: FaultProxy, night: Night, since: int = 0) -> list[str]:
    """The data objects the night sent, as the wire saw them (one PUT, or the start of a multipart upload), by
    path under the day, for the proxy's requests from number ``since`` on. Bookkeeping (``cback.*``) is left out.
    """
    prefix = f"/{night.bucket}/{night.suffix}/"
    sent = []
    for record in proxy.records[since:]:
        path, _, query = record.path.partition("?")
        if not path.startswith(prefix) or record.upstream_status is None or record.upstream_status >= 300:
            continue
        relative = urllib.parse.unquote(path[len(prefix) :])
        single = record.method == "PUT" and "partNumber" not in query
        started = record.method == "POST" and query.startswith("uploads")
        if (single or started) and not relative.rpartition("/")[2].startswith("cback."):
            sent.append(relative)
    return sorted(sent)


def partsSent(proxy: FaultProxy, night: Night, relative: str, since: int = 0) -> int:
    """How many parts of ``relative`` reached S3 (UploadPart requests answered with success)."""
    path = f"/{night.bucket}/{night.key(relative)}"
    return sum(
        1
        for record in proxy.records[since:]
        if record.method == "PUT"
        and record.path.partition("?")[0] == path
        and "partNumber" in record.path
        and record.upstream_status is not None
        and record.upstream_status < 300
    )


def retriedAfterEachFault(proxy: FaultProxy) -> None:
    """Every request the proxy failed was sent again and then got through (a retry, not a lucky skip)."""
    records = proxy.records
    for index, record in enumerate(records):
        if record.action is None:
            continue
        assert any(
            later.method == record.method and later.path == record.path and later.action is None and later.status
            for later in records[index + 1 :]
        ), f"{record.method} {record.path} was never retried after {record.action}"


def onceFired(check: Callable[[], bool], then: Callable[[], None], timeout: float = 20.0) -> threading.Thread:
    """A thread that runs ``then`` as soon as ``check`` holds (polling), e.g. once a stall rule caught its request."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                then()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, name="fault-trigger", daemon=True)
    thread.start()
    return thread


@dataclass
class ConnectAttempts:
    """How many TCP connections this process tried to open to ``port`` on the loopback (see ``connectAttempts``)."""

    port: int
    count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def saw(self, args: tuple[Any, ...]) -> None:
        address = args[1]  # the socket.connect event's arguments: (socket, address)
        loopback = ("127.0.0.1", "::1", "localhost")
        if isinstance(address, tuple) and len(address) >= 2 and address[0] in loopback and address[1] == self.port:
            with self._lock:
                self.count += 1


@contextlib.contextmanager
def connectAttempts(port: int) -> Iterator[ConnectAttempts]:
    """Count the connect() calls this process (the night runs in it) makes to ``port`` while the block runs.

    Counted where they happen (Python's ``socket.connect`` audit event), so they include attempts that never
    reach a listener: a closed port refuses them in the kernel, where no proxy sees a request. Each attempt
    botocore makes opens one connection.
    """
    attempts = ConnectAttempts(port)
    with watchAudit("socket.connect", attempts.saw):
        yield attempts
