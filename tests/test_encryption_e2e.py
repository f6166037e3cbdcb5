"""Encryption through the real ``cback3 --full collect stage amazons3`` as root, with a backup user (issue 3).

The staged day is what Cedar Backup really makes: a ``localhost`` peer from ``collect``, a second peer with
``cback.collect`` copied in by ``stage``, and nested directories as a remote peer's copy leaves them.
"""

from __future__ import annotations

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
from gpgkit import Key, agentsUnder, decrypt, exportPublicKey, generateKey, killAgent, newHome, writePassphraseFile
from nightkit import Night, listKeys
from test_e2e_cback3 import BACKUP_USER, CLEAN_PATH, ensureBackupUser

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="the end-to-end cback3 run uses a backup user and needs root"),
    pytest.mark.skipif(shutil.which("cback3") is None, reason="cback3 is not on PATH"),
]

LEGACY_COMMAND = "gpg -c --batch --yes --pinentry-mode loopback --passphrase-file {pp} -o ${{output}} ${{input}}"
ODD_NAME = "a b;$(touch x).tar"


@pytest.fixture
def backupUser() -> Iterator[pwd.struct_passwd]:
    """The backup user, with no ~/.gnupg of its own before or after the test (each test makes the one it needs)."""
    user = ensureBackupUser()
    gnupg = Path(user.pw_dir) / ".gnupg"

    def clear() -> None:
        killAgent(gnupg)
        shutil.rmtree(gnupg, ignore_errors=True)

    clear()
    yield user
    clear()


@pytest.fixture
def tree() -> Iterator[Path]:
    """A tree the backup user can traverse (pytest's own tmp dirs are root-only)."""
    root = Path(tempfile.mkdtemp(prefix="cedar-s3-e2e-", dir="/var/tmp"))
    root.chmod(0o755)
    yield root
    killAgent(root / "restore")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cbackTemp() -> Iterator[Path]:
    """cback3's TMPDIR: the extension's private GnuPG home lands here, short and provably ours."""
    path = Path(tempfile.mkdtemp(prefix="cs3e-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def own(path: Path, user: pwd.struct_passwd, mode: int) -> Path:
    os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(mode)
    return path


def prepareNight(tree: Path, bucket: str, endpoint: str, user: pwd.struct_passwd, settings: dict[str, Any]) -> Night:
    """Two peers and nesting: collect archives ``data``; ``remote`` is a peer whose collect dir we fill by hand."""
    night = Night(tree, bucket, endpoint, backupUser=BACKUP_USER, backupGroup=BACKUP_USER, settings=settings)
    (night.root / "data" / "dir with space").mkdir()
    (night.root / "data" / "dir with space" / "notes.txt").write_text("some notes\n")
    (night.root / "data" / "blob.bin").write_bytes(os.urandom(100_000))
    remote = night.root / "remote-collect"
    remote.mkdir()
    (remote / "var.tar.gz").write_bytes(os.urandom(20_000))
    (remote / ODD_NAME).write_bytes(os.urandom(5_000))
    (remote / "empty.tar").write_bytes(b"")
    (remote / "cback.collect").touch()
    nested = night.dayDir() / "remote" / "nested" / "deeper"  # as a remote peer's recursive copy leaves it
    nested.mkdir(parents=True)
    (nested / "home.tar.bz2").write_bytes(os.urandom(3_000))
    for path in [night.stageRoot, *night.stageRoot.rglob("*")]:
        own(path, user, 0o750 if path.is_dir() else 0o640)
    own(night.workDir, user, 0o750)
    night.writeConfig()
    peer = f"<peer><name>remote</name><type>local</type><collect_dir>{remote}</collect_dir></peer>"
    config = night.configPath.read_text().replace("</stage>", f"{peer}</stage>")
    night.configPath.write_text(config)
    return night


def cback3(night: Night, cwd: Path, tmpdir: Path) -> None:
    """The real command, as cron runs it: root, a clean environment; its output and log explain a failure."""
    env = {
        "PATH": os.path.dirname(shutil.which("cback3") or "/usr/bin") + ":" + CLEAN_PATH,
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmpdir),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    log = night.root / "cback3.log"
    command = ["cback3", "--config", str(night.configPath), "--full", "--stack", "--logfile", str(log)]
    result = subprocess.run(
        [*command, "collect", "stage", "amazons3"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    text = log.read_text() if log.exists() else ""
    assert result.returncode == 0, result.stdout + result.stderr + text


def stagedFiles(night: Night) -> dict[str, bytes]:
    """Every file of the staged day that is backup data (Cedar Backup's ``cback.*`` markers are not)."""
    day = night.dayDir()
    return {
        str(path.relative_to(day)): path.read_bytes()
        for path in day.rglob("*")
        if path.is_file() and not path.name.startswith("cback.")
    }


def download(s3: Any, night: Night, relative: str) -> tuple[bytes, dict[str, str]]:
    response = s3.get_object(Bucket=night.bucket, Key=night.key(relative))
    return response["Body"].read(), response["Metadata"]


def assertDayStored(s3: Any, night: Night, staged: dict[str, bytes]) -> None:
    assert (night.dayDir() / "localhost" / "cback.collect").exists()
    assert (night.dayDir() / "remote" / "cback.collect").exists()
    assert any(name.startswith("localhost/") for name in staged)
    assert "remote/nested/deeper/home.tar.bz2" in staged
    expected = {night.key(relative) for relative in staged} | {night.key("cback.amazons3.manifest.json")}
    assert set(listKeys(s3, night.bucket)) == expected
    assert (night.dayDir() / "cback.amazons3").exists()


def test_public_key_night_through_real_cback3(
    tree: Path, backupUser: pwd.struct_passwd, cbackTemp: Path, wire: FaultProxy, bucket: str, s3: Any
) -> None:
    """No <gpg_home>: the public key sits in the backup user's ~/.gnupg; the secret key stays with the admin."""
    admin = newHome(tree / "restore")
    key = Key(admin, generateKey(admin, "Backup Restore <restore@example.org>"))
    userGnupg = own(newHome(Path(backupUser.pw_dir) / ".gnupg"), backupUser, 0o700)
    exportPublicKey(key.home, key.fingerprint, userGnupg)
    subprocess.run(["chown", "-R", f"{BACKUP_USER}:{BACKUP_USER}", str(userGnupg)], check=True)
    night = prepareNight(tree, bucket, wire.url, backupUser, {"gpg_recipient": [key.fingerprint]})
    cback3(night, tree, cbackTemp)
    staged = stagedFiles(night)
    assertDayStored(s3, night, staged)
    for relative, data in staged.items():
        ciphertext, metadata = download(s3, night, relative)
        assert decrypt(ciphertext, home=key.home) == data
        assert metadata["cedar-encryption"] == "gpg-public-key"
    assert sentObjects(wire, night) == sorted(staged)  # each one sent, once
    assert list(cbackTemp.iterdir()) == [] and agentsUnder(cbackTemp) == []
    assert list((night.workDir).iterdir()) == []


def test_legacy_encrypt_command_through_real_cback3(
    tree: Path, backupUser: pwd.struct_passwd, cbackTemp: Path, endpoint: str, bucket: str, s3: Any
) -> None:
    """Upstream's command line for GnuPG 2.2, run as the backup user through su, on a hostile file name."""
    passphraseFile = own(writePassphraseFile(tree / "backup.passphrase"), backupUser, 0o600)
    (tree / "cwd").mkdir()
    cwd = own(tree / "cwd", backupUser, 0o755)  # writable: an injected `touch x` would succeed here
    night = prepareNight(tree, bucket, endpoint, backupUser, {"encrypt": LEGACY_COMMAND.format(pp=passphraseFile)})
    cback3(night, cwd, cbackTemp)
    staged = stagedFiles(night)
    assert f"remote/{ODD_NAME}" in staged
    assertDayStored(s3, night, staged)
    restore = newHome(tree / "restore")
    for relative, data in staged.items():
        stored, metadata = download(s3, night, relative)
        if data:
            assert decrypt(stored, passphraseFile=passphraseFile, home=restore) == data
            assert metadata["cedar-encryption"] == "command"
        else:  # upstream uploads empty files unencrypted in this mode; kept for compatibility
            assert (stored, metadata["cedar-encryption"]) == (b"", "none")
    home = Path(backupUser.pw_dir)
    assert not [path for root in (tree, home) for path in root.rglob("x")]
    assert not any(Path(root, "x").exists() for root in ("/", "/tmp", "/root"))
    assert list(night.workDir.iterdir()) == []
