"""Session-scoped pytest fixtures that start real S3 endpoints; conftest imports the ones it wants."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from endpoints.base import Endpoint, unavailable
from endpoints.ceph import CephCluster, missingBinaries, runningCeph


@pytest.fixture(scope="session")
def cephCluster() -> Iterator[CephCluster]:
    """A one-host Ceph cluster (mon, OSD, radosgw) for the session, in a temp dir removed afterwards.

    Without Ceph's programs the test is skipped, or fails when ``CEDAR_S3_REQUIRE`` lists ``ceph``
    (install them with ``.ci/install-ceph.sh``). A cluster that is installed but does not start is an error.
    """
    missing = missingBinaries()
    if missing:
        unavailable("ceph", f"{', '.join(missing)} not installed (run .ci/install-ceph.sh as root)")
    with runningCeph() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def ceph(cephCluster: CephCluster) -> Endpoint:
    """The Ceph RGW S3 endpoint: HTTP and HTTPS on 127.0.0.1, credentials ``testing`` / ``testing``."""
    return cephCluster.endpoint
