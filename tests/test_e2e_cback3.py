"""The real ``cback3 --full collect stage amazons3`` as root, with a backup user holding the AWS settings."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faultkit import sentObjects
from faultproxy import FaultProxy
from nightkit import Night, getBytes, listKeys

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="the end-to-end cback3 run creates a backup user and needs root"),
    pytest.mark.skipif(shutil.which("cback3") is None, reason="cback3 is not on PATH"),
]

BACKUP_USER = "cedars3bk"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def ensureBackupUser() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(BACKUP_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--create-home", "--shell", "/bin/sh", BACKUP_USER], check=True
        )
        return pwd.getpwnam(BACKUP_USER)


@contextlib.contextmanager
def awsSettings(endpoint: str) -> Iterator[pwd.struct_passwd]:
    """The backup user, its ~/.aws holding ``endpoint`` and the credentials, as upstream users keep them."""
    user = ensureBackupUser()
    aws = Path(user.pw_dir) / ".aws"
    aws.mkdir(mode=0o700, exist_ok=True)
    (aws / "config").write_text(f"[default]\nregion = us-east-1\nendpoint_url = {endpoint}\n")
    (aws / "credentials").write_text("[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    for path in (aws, aws / "config", aws / "credentials"):
        os.chown(path, user.pw_uid, user.pw_gid)
        path.chmod(0o700 if path.is_dir() else 0o600)
    try:
        yield user
    finally:
        shutil.rmtree(aws, ignore_errors=True)


@pytest.fixture
def backupUser(endpoint: str) -> Iterator[pwd.struct_passwd]:
    """A backup user whose ~/.aws names the session's moto."""
    with awsSettings(endpoint) as user:
        yield user


@pytest.fixture
def wiredBackupUser(wire: FaultProxy) -> Iterator[pwd.struct_passwd]:
    """A backup user whose ~/.aws names the fault proxy in front of moto: what cback3 sends is counted there."""
    with awsSettings(wire.url) as user:
        yield user


@pytest.fixture
def tree() -> Iterator[Path]:
    """A tree the backup user can traverse (pytest's own tmp dirs are root-only)."""
    root = Path(tempfile.mkdtemp(prefix="cedar-s3-e2e-", dir="/var/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def cback3(config: Path, log: Path, *actions: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.path.dirname(shutil.which("cback3") or "/usr/bin") + ":" + CLEAN_PATH, "HOME": "/root"}
    env["LANG"] = "C.UTF-8"
    return subprocess.run(
        ["cback3", "--config", str(config), "--full", "--stack", "--logfile", str(log), *actions],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_real_cback3_night_stores_the_day(
    tree: Path, wiredBackupUser: pwd.struct_passwd, wire: FaultProxy, bucket: str, s3: Any
) -> None:
    night = Night(tree, bucket, endpoint="unused", backupUser=BACKUP_USER, backupGroup=BACKUP_USER)
    night.settings |= {"endpoint_url": None, "region": None}  # both come from the backup user's ~/.aws/config
    (night.root / "data" / "dir with space").mkdir()
    (night.root / "data" / "dir with space" / "notes.txt").write_text("some notes\n")
    (night.root / "data" / "blob.bin").write_bytes(os.urandom(200_000))
    config = night.writeConfig()
    result = cback3(config, tree / "cback3.log", "collect", "stage", "amazons3")
    log = (tree / "cback3.log").read_text()
    assert result.returncode == 0, result.stdout + result.stderr + log
    day = night.dayDir()
    staged = sorted(path for path in (day / "localhost").iterdir() if not path.name.startswith("cback."))
    assert staged, "stage produced no files"
    keys = listKeys(s3, bucket)
    for path in staged:
        key = night.key(f"localhost/{path.name}")
        assert getBytes(s3, bucket, key) == path.read_bytes()
    assert night.key("cback.amazons3.manifest.json") in keys
    assert not any("cback.collect" in key or "cback.stage" in key for key in keys)
    indicator = day / "cback.amazons3"
    assert indicator.exists()
    assert indicator.stat().st_uid == wiredBackupUser.pw_uid
    assert sentObjects(wire, night) == sorted(f"localhost/{path.name}" for path in staged)  # each one sent, once
    assert "testing" not in log  # no credential ever lands in cback3's log
