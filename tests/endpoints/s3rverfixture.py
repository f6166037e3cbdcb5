"""The session's s3rver endpoint (see endpoints/s3rver.py); missing s3rver skips, or fails where CI requires it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from endpoints.base import Endpoint, unavailable
from endpoints.s3rver import S3rverServer, findS3rver


def s3rverBinary() -> Path:
    """The s3rver binary; skips the test when there is none, fails it when ``$CEDAR_S3_REQUIRE`` names s3rver."""
    binary, reason = findS3rver()
    if binary is None:
        unavailable("s3rver", reason)
    return binary


@pytest.fixture(scope="session")
def s3rver() -> Iterator[Endpoint]:
    with S3rverServer(s3rverBinary()) as endpoint:
        yield endpoint
