"""``cback3-s3 restore``: days stored by the real extension come back byte for byte, plain and encrypted."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clikit import cli, putDay, tree
from gpgkit import exportPublicKey, gpg, killAgent, newHome, tmpfs, writePassphraseFile
from nightkit import Night

KEY_PASSPHRASE = "restore key passphrase 9"


def stageDay(night: Night) -> dict[str, bytes]:
    files = {
        "host1/etc.tar.gz": os.urandom(40_000),
        "host1/dir with space/notes.tar": b"notes\n" * 300,
        "host2/nested/deeper/home.tar.bz2": os.urandom(3_000),
        "host2/empty.tar": b"",
    }
    night.stage(files)
    return files


@pytest.fixture
def secretKey(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A key pair whose secret half (protected by a passphrase) exists only off the server."""
    home = newHome(tmp_path / "admin-gnupg")
    gpg(home, "--passphrase", KEY_PASSPHRASE, "--quick-gen-key", "Restore <r@example.org>", "future-default")
    listing = gpg(home, "--with-colons", "--list-keys").stdout.decode()
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    yield home, fingerprint
    killAgent(home)


@pytest.fixture
def serverHome(tmp_path: Path, secretKey: tuple[Path, str]) -> Iterator[Path]:
    home = newHome(tmp_path / "server-gnupg")
    exportPublicKey(secretKey[0], secretKey[1], home)
    yield home
    killAgent(home)


def test_plain_day_round_trip(night: Night, tmp_path: Path) -> None:
    files = stageDay(night)
    night.run()
    target = tmp_path / "restored"
    outcome = cli(night, "restore", night.day.isoformat(), "--to", str(target))
    assert outcome.code == 0, outcome.stderr
    assert tree(target) == files
    assert all(oct(path.stat().st_mode)[-3:] == "600" for path in target.rglob("*") if path.is_file())


def test_a_full_target_names_the_file_it_could_not_restore(night: Night, tmp_path: Path) -> None:
    night.stage({"host/small.txt": b"small", "host/big.bin": os.urandom(600_000)})
    night.run()
    with tmpfs(tmp_path / "full", "256k") as target:
        outcome = cli(night, "restore", night.day.isoformat(), "--to", str(target / "r"), "--jobs", "1")
        assert outcome.code == 1
        said = outcome.stdout + outcome.stderr
        assert "Not restored: host/big.bin: " in said and "No space left on device" in said
        assert tree(target / "r") == {"host/small.txt": b"small"}  # no partial big.bin under its name


def test_symmetric_day_round_trip_with_passphrase_file(night: Night, tmp_path: Path) -> None:

    files = stageDay(night)
    night.settings["gpg_passphrase_file"] = str(writePassphraseFile(tmp_path / "server.pass"))
    night.run()
    night.settings["gpg_passphrase_file"] = None  # the server is gone: only the operator's copy is left
    night.writeConfig()
    copy = writePassphraseFile(tmp_path / "operator.pass")
    target = tmp_path / "restored"
    outcome = cli(night, "restore", "latest", "--to", str(target), "--passphrase-file", str(copy))
    assert outcome.code == 0, outcome.stderr
    assert tree(target) == files


def test_symmetric_day_uses_the_configured_passphrase_file(night: Night, tmp_path: Path) -> None:
    files = stageDay(night)
    night.settings["gpg_passphrase_file"] = str(writePassphraseFile(tmp_path / "server.pass"))
    night.run()
    target = tmp_path / "restored"
    outcome = cli(night, "restore", night.suffix, "--to", str(target))
    assert outcome.code == 0, outcome.stderr
    assert tree(target) == files


def test_wrong_passphrase_stops_early_and_writes_nothing(night: Night, tmp_path: Path) -> None:
    stageDay(night)
    night.settings["gpg_passphrase_file"] = str(writePassphraseFile(tmp_path / "server.pass"))
    night.run()
    wrong = writePassphraseFile(tmp_path / "wrong.pass", "not the passphrase")
    target = tmp_path / "restored"
    outcome = cli(night, "restore", "latest", "--to", str(target), "--passphrase-file", str(wrong))
    assert outcome.code == 1
    assert "could not be decrypted" in outcome.lastError and "--passphrase-file" in outcome.lastError
    assert tree(target) == {}


def test_public_key_day_round_trip_with_the_secret_key_home(
    night: Night, tmp_path: Path, secretKey: tuple[Path, str], serverHome: Path
) -> None:
    files = stageDay(night)
    night.settings |= {"gpg_recipient": secretKey[1], "gpg_home": str(serverHome)}
    night.run()
    target = tmp_path / "restored"
    without = cli(night, "restore", "latest", "--to", str(target))
    assert without.code == 1 and "--gpg-home" in without.lastError
    keyPassphrase = writePassphraseFile(tmp_path / "key.pass", KEY_PASSPHRASE)
    outcome = cli(
        night,
        "restore",
        "latest",
        "--to",
        str(target),
        "--gpg-home",
        str(secretKey[0]),
        "--key-passphrase-file",
        str(keyPassphrase),
    )
    assert outcome.code == 0, outcome.stderr
    assert tree(target) == files


def test_include_restores_only_matching_files(night: Night, tmp_path: Path) -> None:
    files = stageDay(night)
    night.run()
    target = tmp_path / "restored"
    outcome = cli(night, "restore", "latest", "--to", str(target), "--include", "host2/*", "--include", "*/etc.*")
    assert outcome.code == 0, outcome.stderr
    wanted = {relative for relative in files if relative.startswith("host2/") or "/etc." in relative}
    assert tree(target) == {relative: files[relative] for relative in wanted}
    nothing = cli(night, "restore", "latest", "--to", str(target), "--include", "host9/*")
    assert nothing.code == 1 and "No file of" in nothing.lastError


def test_list_shows_the_files_without_restoring(night: Night) -> None:
    files = stageDay(night)
    night.run()
    outcome = cli(night, "restore", "latest", "--list")
    assert outcome.code == 0, outcome.stderr
    shown = {line.split("\t")[0]: int(line.split("\t")[1]) for line in outcome.stdout.splitlines()}
    assert shown == {relative: len(data) for relative, data in files.items()}


def test_existing_files_are_refused_unless_overwrite(night: Night, tmp_path: Path) -> None:
    files = stageDay(night)
    night.run()
    target = tmp_path / "restored"
    (target / "host1").mkdir(parents=True)
    (target / "host1" / "etc.tar.gz").write_bytes(b"local edit")
    refused = cli(night, "restore", "latest", "--to", str(target))
    assert refused.code == 1 and "already exists" in refused.lastError and "--overwrite" in refused.lastError
    assert tree(target) == {"host1/etc.tar.gz": b"local edit"}  # nothing restored at all
    outcome = cli(night, "restore", "latest", "--to", str(target), "--overwrite")
    assert outcome.code == 0, outcome.stderr
    assert tree(target) == files


def test_a_day_that_is_not_stored_is_a_clear_error(night: Night, tmp_path: Path) -> None:
    stageDay(night)
    night.run()
    outcome = cli(night, "restore", "2001-01-01", "--to", str(tmp_path / "r"))
    assert outcome.code == 1
    assert "Nothing is stored for 2001-01-01" in outcome.lastError and "list" in outcome.lastError


def test_archived_objects_name_the_command_that_thaws_them(night: Night, s3: Any, tmp_path: Path) -> None:
    putDay(s3, night.bucket, night.day, {"host1/a.tar": b"a" * 100}, manifest=False, StorageClass="GLACIER")
    putDay(s3, night.bucket, night.day, {"host1/a.tar": b"a" * 100}, objects=False)
    outcome = cli(night, "restore", "latest", "--to", str(tmp_path / "restored"))
    assert outcome.code == 1
    assert "is archived (GLACIER)" in outcome.stderr and "aws s3api restore-object" in outcome.stderr
    assert tree(tmp_path / "restored") == {}
