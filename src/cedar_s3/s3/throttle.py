"""``<max_bandwidth>``: one leaky bucket for every upload of the night, s3transfer's own limiter reused.

s3transfer's ``BandwidthLimitedStream`` throttles reads of a request body, and its ``signal_*_transferring``
handlers switch the throttle off while botocore reads the body for signing, so only bytes on the wire count.
"""

from __future__ import annotations

import io
from typing import IO, TYPE_CHECKING, Any

from s3transfer.bandwidth import BandwidthLimitedStream, LeakyBucket
from s3transfer.utils import signal_not_transferring, signal_transferring

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["Throttle"]


class _NeverFailed:
    """What ``BandwidthLimitedStream`` asks of an s3transfer coordinator: whether the transfer failed."""

    exception = None


class Throttle:
    """Limits the bytes per second that the client's request bodies send, across all threads."""

    def __init__(self, client: S3Client, bytesPerSecond: int) -> None:
        self.bytesPerSecond = bytesPerSecond
        self._bucket = LeakyBucket(bytesPerSecond)
        events = client.meta.events
        events.register_first("request-created.s3", signal_not_transferring, unique_id="cedar-s3-not-transferring")
        events.register_last("request-created.s3", signal_transferring, unique_id="cedar-s3-transferring")

    def wrap(self, body: bytes | bytearray | IO[bytes]) -> Any:
        stream = io.BytesIO(body) if isinstance(body, bytes | bytearray | memoryview) else body
        coordinator: Any = _NeverFailed()
        return BandwidthLimitedStream(stream, self._bucket, coordinator)
