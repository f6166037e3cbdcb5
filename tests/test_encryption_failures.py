"""Bad encryption settings (issue 3): each fails the night with a clear error naming the setting, before any
upload, with no indicator, no temp file, no private GnuPG home and no gpg-agent left behind.
"""

from __future__ import annotations

import grp
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cedar_s3.bucketformat import MANIFEST_NAME
from cedar_s3.gpg.home import readPassphrase
from gpgkit import (
    Key,
    assertNothingLeft,
    decrypt,
    exportPublicKey,
    generateKey,
    isolatedTempDir,
    killAgent,
    newHome,
    writePassphraseFile,
)
from nightkit import Night, getBytes, listKeys

NOBODY = 65534
UNKNOWN_FINGERPRINT = "0123456789ABCDEF0123456789ABCDEF01234567"


@dataclass(frozen=True)
class Keys:
    """What the bad settings are made of: a usable key, an expired one, and a server home holding both."""

    tmp: Path
    good: Key
    expired: Key
    serverHome: Path


@pytest.fixture(autouse=True)
def privateTemp(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with isolatedTempDir(monkeypatch, tmp_path_factory) as path:
        yield path


@pytest.fixture(scope="module")
def adminHome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    home = newHome(tmp_path_factory.mktemp("admin") / "gnupg")
    good = generateKey(home, "Backup Restore <restore@example.org>")
    expired = generateKey(home, "Expired Restore <expired@example.org>", "1d", past=True)  # made 2020, expired
    yield home, good, expired
    killAgent(home)


@pytest.fixture
def keys(tmp_path: Path, adminHome: tuple[Path, str, str]) -> Iterator[Keys]:
    home, good, expired = adminHome
    serverHome = newHome(tmp_path / "server-gnupg")
    for fingerprint in (good, expired):
        exportPublicKey(home, fingerprint, serverHome)
    yield Keys(tmp_path, Key(home, good), Key(home, expired), serverHome)
    killAgent(serverHome)


def publicKey(keys: Keys, fingerprint: str, home: Path | None = None) -> dict[str, Any]:
    return {"gpg_recipient": [fingerprint], "gpg_home": str(home or keys.serverHome)}


def groupWritableHome(keys: Keys) -> dict[str, Any]:
    """Writable by a group the owner shares with others (``users``), not its own user-private group."""
    os.chown(keys.serverHome, -1, grp.getgrnam("users").gr_gid)
    keys.serverHome.chmod(0o770)
    return publicKey(keys, keys.good.fingerprint)


def emptyPassphraseFile(keys: Keys) -> dict[str, Any]:
    (keys.tmp / "empty.passphrase").write_text("")
    return {"gpg_passphrase_file": str(keys.tmp / "empty.passphrase")}


BAD_SETTINGS: list[Any] = [
    pytest.param(
        lambda keys: {"gpg_passphrase_file": str(keys.tmp / "no-such-file")},
        ValueError,
        r"<gpg_passphrase_file> \S+/no-such-file does not exist",
        id="passphrase-file-missing",
    ),
    pytest.param(
        lambda keys: {"gpg_passphrase_file": str(keys.tmp)},
        ValueError,
        r"<gpg_passphrase_file> \S+ is not a regular file",
        id="passphrase-file-is-a-directory",
    ),
    pytest.param(emptyPassphraseFile, ValueError, r"<gpg_passphrase_file> \S+ is empty", id="passphrase-file-empty"),
    pytest.param(
        lambda keys: publicKey(keys, UNKNOWN_FINGERPRINT),
        ValueError,
        rf"<gpg_recipient> {UNKNOWN_FINGERPRINT} is not in the keyring of <gpg_home>",
        id="recipient-unknown",
    ),
    pytest.param(
        lambda keys: publicKey(keys, keys.expired.fingerprint),
        ValueError,
        r"<gpg_recipient> [0-9A-F]{40} has expired",
        id="recipient-expired",
    ),
    pytest.param(
        lambda keys: publicKey(keys, keys.good.fingerprint, keys.tmp / "no-such-home"),
        ValueError,
        r"<gpg_home> \S+/no-such-home does not exist",
        id="gnupg-home-missing",
    ),
    pytest.param(
        groupWritableHome,
        ValueError,
        r"<gpg_home> \S+ is writable by group or others \(mode 770\)",
        id="gnupg-home-group-writable",
    ),
    pytest.param(
        lambda keys: {"encrypt": "true ${input} ${output}"},
        ValueError,
        r"<encrypt> command self-check failed: The <encrypt> command exited 0 but wrote no \$\{output\}",
        id="encrypt-command-writes-nothing",
    ),
    pytest.param(
        lambda keys: {"encrypt": "exit 3; ${input} ${output}"},
        ValueError,
        r"<encrypt> command self-check failed: Error \[3\]",
        id="encrypt-command-fails",
    ),
]


@pytest.mark.parametrize(("settings", "error", "message"), BAD_SETTINGS)
def test_bad_setting_fails_before_anything_is_uploaded(
    night: Night,
    s3: Any,
    keys: Keys,
    privateTemp: Path,
    settings: Callable[[Keys], dict[str, Any]],
    error: type[Exception],
    message: str,
) -> None:
    night.stage({"host/data.tar": os.urandom(10_000), "host/other.tar": b"other"})
    night.settings |= settings(keys)
    with pytest.raises(error, match=message):
        night.run()
    assert listKeys(s3, night.bucket) == {}
    assert not night.indicator().exists()
    assertNothingLeft(night.workDir, privateTemp)


def test_missing_gpg_binary_is_named(night: Night, s3: Any, tmp_path: Path, privateTemp: Path) -> None:
    night.stage({"host/data.tar": b"data"})
    night.settings["gpg_passphrase_file"] = str(writePassphraseFile(tmp_path / "backup.passphrase"))
    (tmp_path / "bin").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", str(tmp_path / "bin"))  # shutil.which finds no gpg
        with pytest.raises(OSError, match=r"GnuPG \(gpg\) is not installed or not on PATH.*<gpg_passphrase_file>"):
            night.run()
    assert listKeys(s3, night.bucket) == {}
    assert not night.indicator().exists()
    assertNothingLeft(night.workDir, privateTemp)


def test_passphrase_file_readable_by_others_warns_but_works(
    night: Night, s3: Any, tmp_path: Path, privateTemp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    passphraseFile = writePassphraseFile(tmp_path / "backup.passphrase", mode=0o644)
    night.stage({"host/data.tar": b"data"})
    night.settings["gpg_passphrase_file"] = str(passphraseFile)
    caplog.set_level(logging.WARNING, logger="CedarBackup3.log.extend.amazons3")
    night.run()
    assert f"<gpg_passphrase_file> {passphraseFile} is readable or writable by others (mode 644)" in caplog.text
    restore = newHome(tmp_path / "restore")
    ciphertext = getBytes(s3, night.bucket, night.key("host/data.tar"))
    assert decrypt(ciphertext, passphraseFile=passphraseFile, home=restore) == b"data"
    killAgent(restore)
    assert night.indicator().exists()
    assertNothingLeft(night.workDir, privateTemp)


def readPassphraseAs(uid: int, path: Path) -> str:
    """``readPassphrase`` in a child that has dropped to ``uid``: root reads any file, the backup user may not."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.close(reader)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            try:
                readPassphrase(str(path))
                outcome = "read"
            except ValueError as error:
                outcome = str(error)
            os.write(writer, outcome.encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        outcome = pipe.read().decode()
    os.waitpid(pid, 0)
    return outcome


def test_passphrase_file_the_process_cannot_read_is_named(tmp_path: Path) -> None:
    passphraseFile = writePassphraseFile(tmp_path / "backup.passphrase", mode=0o000)
    outcome = readPassphraseAs(NOBODY, passphraseFile)
    assert outcome == f"<gpg_passphrase_file> {passphraseFile} cannot be read by this user."


def test_encrypt_command_failing_on_one_file_names_it_and_stores_no_day(
    night: Night, s3: Any, privateTemp: Path
) -> None:
    night.stage({"host/bad.tar": b"refused by the command"})
    night.settings["encrypt"] = "case ${input} in *bad.tar) exit 3;; esac; cp ${input} ${output}"
    with pytest.raises(OSError, match=r"Error \[3\] encrypting \[\S+/host/bad.tar\] with the <encrypt> command"):
        night.run()
    keys = listKeys(s3, night.bucket)
    assert night.key("host/bad.tar") not in keys and night.key(MANIFEST_NAME) not in keys
    assert not night.indicator().exists()
    assertNothingLeft(night.workDir, privateTemp)
