"""Shared fixtures: one real S3 endpoint on 127.0.0.1 for the session, a fresh bucket and staging tree per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import netguard
from faultproxy import FaultProxy
from nightkit import MotoServer, Night, newBucketName, s3Client

# session fixtures: the other real S3 endpoints (ceph, s3rver) and days stored by upstream's own extension
pytest_plugins = ("endpoints.fixtures", "endpoints.s3rverfixture", "upstreamkit")

# Tests never read the developer's or CI's own AWS settings, and never reach a real AWS endpoint.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/nonexistent/cedar-s3-tests/config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/cedar-s3-tests/credentials",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
)
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_ENDPOINT_URL", None)
netguard.install()


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def endpoint(moto: MotoServer) -> str:
    return moto.url


@pytest.fixture
def s3(endpoint: str) -> Any:
    return s3Client(endpoint)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = newBucketName()
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def night(tmp_path: Path, bucket: str, endpoint: str) -> Night:
    return Night(tmp_path, bucket, endpoint)


@pytest.fixture
def proxy(moto: MotoServer, night: Night) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of moto as the night's endpoint; ``s3`` (plain boto3) still goes direct."""
    with FaultProxy("127.0.0.1", moto.port) as faulty:
        night.endpoint = faulty.url
        yield faulty
    assert faulty.errors == []


@pytest.fixture
def wire(moto: MotoServer) -> Iterator[FaultProxy]:
    """A fault proxy in front of moto for a night the test sets up itself (a real cback3 run, say): its URL is the
    endpoint to give that night, its records what the night sent."""
    with FaultProxy("127.0.0.1", moto.port) as faulty:
        yield faulty
    assert faulty.errors == []


SUMMARIZED = ("ceph", "s3rver", "debian", "upstream", "e2e")


# a test that uses one of these fixtures exercises that implementation, marked or not
FIXTURE_MARKS = {"ceph": "ceph", "s3rver": "s3rver", "upstreamDays": "upstream"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, mark in FIXTURE_MARKS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(mark)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say which real implementations and roots this run exercised (CI must show it, not just pass)."""
    counts: dict[str, dict[str, int]] = {name: {} for name in SUMMARIZED}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", "call") not in ("call", "setup"):
                continue
            keywords = getattr(report, "keywords", {})
            for name in SUMMARIZED:
                if name in keywords:
                    counts[name][outcome] = counts[name].get(outcome, 0) + 1
    terminalreporter.write_sep("-", "implementations and roots exercised (moto: every other test)")
    for name, outcomes in counts.items():
        shown = ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items())) or "none"
        terminalreporter.write_line(f"{name}: {shown}")
