"""The Ceph endpoint helper itself: it serves S3 over HTTP and verified HTTPS, and leaves nothing behind."""

from __future__ import annotations

import socket
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import botocore.exceptions
import pytest

from endpoints import Endpoint
from endpoints.ceph import CephCluster, CephStartError, missingBinaries, runningCeph

pytestmark = pytest.mark.ceph


@pytest.fixture
def cephInstalled(cephCluster: CephCluster) -> None:
    """These tests start clusters of their own; asking for the session's one gives them its skip-or-fail rule."""
    assert missingBinaries() == []


def processesUsing(conf: Path) -> list[int]:
    """Every process whose command line names ``conf``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(conf).encode() in argv:
                found.append(int(entry.name))
    return found


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def occupiedPort() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_https_is_verified_with_the_clusters_own_ca(ceph: Endpoint) -> None:
    assert ceph.httpsUrl is not None and ceph.caBundle is not None
    assert ceph.client(https=True).list_buckets()["Owner"]["ID"] == "testing"
    context = ssl.create_default_context(cafile=ceph.caBundle)
    with (
        socket.create_connection(("127.0.0.1", int(ceph.httpsUrl.rsplit(":", 1)[1])), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.getpeercert() is not None
    # a client that trusts only the system's CAs refuses the certificate
    stranger = Endpoint("ceph", ceph.url, ceph.httpsUrl, None, ceph.accessKey, ceph.secretKey)
    with pytest.raises(botocore.exceptions.SSLError):
        stranger.client(https=True, retries={"max_attempts": 1}).list_buckets()


def test_a_stopped_cluster_leaves_no_process_port_or_file(cephInstalled: None) -> None:
    with runningCeph() as cluster:
        conf, workdir = cluster.conf, cluster.workdir
        ports = [cluster.monPort, cluster.httpPort, cluster.httpsPort]
        assert len(processesUsing(conf)) == 3  # mon, osd, radosgw
        assert all(listening(port) for port in ports)
    assert processesUsing(conf) == []
    assert not any(listening(port) for port in ports)
    assert not workdir.exists()


def test_a_failed_start_says_why_with_the_daemon_logs_and_stops_the_rest(
    cephInstalled: None, occupiedPort: int
) -> None:
    with tempfile.TemporaryDirectory(prefix="cedar-ceph-") as directory:
        cluster = CephCluster(Path(directory), httpPort=occupiedPort)
        with pytest.raises(CephStartError) as caught:
            cluster.start()
        assert "client.rgw.a exited" in str(caught.value)
        assert f"127.0.0.1:{occupiedPort}: Address already in use" in str(caught.value)  # radosgw's own log line
        assert processesUsing(cluster.conf) == []
        assert cluster.daemons == {}
