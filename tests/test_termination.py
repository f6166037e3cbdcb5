"""A real ``cback3`` night terminated with SIGTERM mid-upload (a shutdown, a cron timeout): it stops, kills what
it started, removes its work area and private GnuPG homes on the way out, writes no indicator, and the next
night stores the day. (SIGKILL, which leaves everything behind for the next night to sweep: test_attacks.py.)
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from attackkit import ChildNight, cback3Argv, cback3Env, processesMatching, waitFor
from faultkit import keyPath
from faultproxy import FaultProxy, delay
from gpgkit import writePassphraseFile
from nightkit import MotoServer, Night, getBytes, newBucketName, s3Client

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="the real cback3 night runs as root"),
    pytest.mark.skipif(shutil.which("cback3") is None, reason="cback3 is not on PATH"),
]

HOLD = 20.0  # seconds the proxy holds the victim's PUT: the night is terminated while it waits
WALL = 120.0  # a night that is still running after this is hung (the test then kills it and fails)


@pytest.fixture
def tree() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="cedar-s3-term-", dir="/var/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def tempDir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cs3k-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def gpgProcessesUnder(root: Path) -> list[int]:
    """gpg and gpg-agent processes whose command line names a home under ``root`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]).startswith(b"gpg") and any(str(root).encode() in arg for arg in argv):
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("mode", ["symmetric", "encrypt-command"])
def test_sigterm_mid_upload_stops_the_night_and_leaves_nothing_behind(
    tree: Path, tempDir: Path, moto: MotoServer, mode: str
) -> None:
    client = s3Client(moto.url)
    bucket = newBucketName()
    client.create_bucket(Bucket=bucket)
    with FaultProxy("127.0.0.1", moto.port) as proxy:
        night = Night(tree, bucket, proxy.url)
        files = {"host/a.tar": os.urandom(30_000), "host/b.tar": os.urandom(40_000), "host/victim.tar": b"v" * 5000}
        night.stage(files)
        passphrase = writePassphraseFile(tree / "passphrase")
        if mode == "symmetric":
            night.settings |= {"gpg_passphrase_file": str(passphrase), "gpg_s2k_count": 65536}
        else:
            night.settings["encrypt"] = "cp ${input} ${output}"
        held = proxy.add_rule(delay(HOLD), method="PUT", path=keyPath(night, "host/victim.tar"), nth=1)
        first = ChildNight(cback3Argv(night, tree / "first.log"), cback3Env(tempDir)).start()
        try:
            waitFor(
                lambda: held.injected == 1 or first.process is None or first.process.poll() is not None,
                60,
                "the victim's PUT",
            )
            assert held.injected == 1, "the night never reached the upload:\n" + first.text()
            os.kill(first.pid, signal.SIGTERM)
            status = first.wait(WALL)
            assert status is not None, "the terminated night was still running"
            assert status != 0, first.text()
        finally:
            first.close()
        assert not night.indicator().exists()
        assert sorted(path.name for path in night.workDir.iterdir()) == []  # the <encrypt> work area went too
        assert list(tempDir.iterdir()) == []  # and every private GnuPG home
        assert gpgProcessesUnder(tempDir) == []
        proxy.clear_rules()
        second = ChildNight(cback3Argv(night, tree / "second.log"), cback3Env(tempDir)).start()
        try:
            assert second.wait(WALL) == 0, second.text()
        finally:
            second.close()
    assert night.indicator().exists()
    stored: dict[str, Any] = {relative: getBytes(client, bucket, night.key(relative)) for relative in files}
    assert all(stored.values())


@pytest.mark.parametrize("hangsOn", ["victim", "self-check"])
def test_sigterm_kills_a_command_that_would_run_until_its_deadline(
    tree: Path, tempDir: Path, moto: MotoServer, hangsOn: str
) -> None:
    """The <encrypt> command hangs (on one staged file, or on the start-up self-check's sample) and its deadline
    is an hour: SIGTERM must kill it at once, not leave the night waiting out the deadline (the wall limit, far
    below an hour, calls that a hang)."""
    client = s3Client(moto.url)
    bucket = newBucketName()
    client.create_bucket(Bucket=bucket)
    night = Night(tree, bucket, moto.url)
    night.stage({"host/a.tar": os.urandom(30_000), "host/victim.tar": b"v" * 5000})
    marker = f"{secrets.randbelow(10**9) + 10**9}"  # unique: the hanging sleep is found by it
    night.settings |= {
        "encrypt": f"case ${{input}} in *{hangsOn}*) sleep {marker};; esac; cp ${{input}} ${{output}}",
        "child_timeout": "3600",
        "max_concurrency": "1",
    }
    first = ChildNight(cback3Argv(night, tree / "first.log"), cback3Env(tempDir)).start()
    try:
        waitFor(lambda: bool(processesMatching(f"sleep {marker}")), 60, "the hanging <encrypt> command")
        os.kill(first.pid, signal.SIGTERM)
        status = first.wait(WALL)
        assert status is not None, "the terminated night waited for its hanging command\n" + first.text()
        assert status != 0
    finally:
        first.close()
    assert processesMatching(f"sleep {marker}") == []
    assert not night.indicator().exists()
    assert sorted(path.name for path in night.workDir.iterdir()) == []
