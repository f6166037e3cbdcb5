"""Signed manifests: what a bucket writer holding only the public key can forge, and how a signature stops it.

Public-key mode: the recipient's public key is public, so anyone who can write to the bucket can replace a
file with other content encrypted to it, and rewrite the manifest entry to match. Without a signature that
forgery restores as if genuine; with ``<gpg_sign_key>`` it is refused, as is a manifest re-signed by another
key, an unsigned day under ``--require-signature``, and a signed manifest moved to another day.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clikit import cli, tree
from formatkit import MANIFEST_NAME, SIGNATURE_NAME
from gpgkit import Key, exportPublicKey, gpg, newHome, throwawayKey
from nightkit import Night, dateSuffix, getBytes, listKeys

FILES = {"host/etc.tar": os.urandom(20_000), "host/notes.txt": b"the real notes\n"}


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Key]:
    """The restore key pair (its secret half is the administrator's)."""
    with throwawayKey(tmp_path_factory.mktemp("admin"), "Restore <restore@example.org>") as key:
        yield key


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Key]:
    """The backup server's signing key, in a home of its own (root's, 0700)."""
    with throwawayKey(tmp_path_factory.mktemp("signer"), "Backup server <server@example.org>") as key:
        yield key


@pytest.fixture(scope="module")
def forger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Key]:
    """A key of the bucket writer's own."""
    with throwawayKey(tmp_path_factory.mktemp("forger"), "Bucket writer <writer@example.org>") as key:
        yield key


@pytest.fixture
def serverHome(tmp_path: Path, admin: Key) -> Path:
    """The backup server's keyring: the recipient's public key only."""
    home = newHome(tmp_path / "server-gnupg")
    exportPublicKey(admin.home, admin.fingerprint, home)
    return home


def signedNight(night: Night, admin: Key, signer: Key, serverHome: Path) -> None:
    night.settings |= {"gpg_recipient": [admin.fingerprint], "gpg_home": str(serverHome)}
    night.settings |= {"gpg_sign_key": signer.fingerprint, "gpg_sign_home": str(signer.home)}
    night.stage(FILES)
    night.run()


def forge(night: Night, s3: Any, admin: Key, relative: str, content: bytes) -> bytes:
    """What a bucket writer with the public key does: a new ciphertext for ``relative`` and a manifest entry that
    matches it. Returns the forged manifest's bytes."""
    public = gpg(admin.home, "--export", admin.fingerprint).stdout
    home = newHome(night.root / "writer-gnupg")
    gpg(home, "--import", stdin=public)
    ciphertext = gpg(home, "--trust-model", "always", "-r", admin.fingerprint, "--encrypt", stdin=content).stdout
    s3.put_object(Bucket=night.bucket, Key=night.key(relative), Body=ciphertext)
    manifest = json.loads(getBytes(s3, night.bucket, night.key(MANIFEST_NAME)))
    for entry in manifest["objects"]:
        if entry["relative"] == relative:
            entry |= {
                "size": len(ciphertext),
                "plaintextSize": len(content),
                "plaintextSha256": hashlib.sha256(content).hexdigest(),
                "storedSha256": hashlib.sha256(ciphertext).hexdigest(),
                "md5Etag": hashlib.md5(ciphertext, usedforsecurity=False).hexdigest(),
                "wholeMd5": None,
                "partSize": None,
            }
    body = json.dumps(manifest).encode()
    s3.put_object(Bucket=night.bucket, Key=night.key(MANIFEST_NAME), Body=body)
    return body


def restore(night: Night, admin: Key, target: Path, *extra: str) -> Any:
    return cli(night, "restore", "latest", "--to", str(target), "--gpg-home", str(admin.home), *extra)


def test_a_signed_night_verifies_and_restores(
    night: Night, s3: Any, tmp_path: Path, admin: Key, signer: Key, serverHome: Path
) -> None:
    signedNight(night, admin, signer, serverHome)
    assert night.key(SIGNATURE_NAME) in listKeys(s3, night.bucket)
    verified = cli(night, "verify", "latest", "--download", "--gpg-home", str(admin.home), "--require-signature")
    assert verified.code == 0, verified.stdout + verified.stderr
    restored = restore(night, admin, tmp_path / "restored", "--require-signature")
    assert restored.code == 0, restored.stderr
    assert tree(tmp_path / "restored") == FILES


def test_without_a_signature_a_public_key_forgery_restores_as_genuine(
    night: Night, s3: Any, tmp_path: Path, admin: Key, serverHome: Path
) -> None:
    """The hole signatures close, shown: no signing configured, and the forged file comes back as if genuine."""
    night.settings |= admin.asRecipient() | {"gpg_home": str(serverHome)}
    night.stage(FILES)
    night.run()
    forge(night, s3, admin, "host/notes.txt", b"the forged notes\n")
    restored = restore(night, admin, tmp_path / "restored")
    assert restored.code == 0, restored.stderr
    assert tree(tmp_path / "restored")["host/notes.txt"] == b"the forged notes\n"


def test_a_forged_file_and_manifest_entry_are_refused_by_the_signature(
    night: Night, s3: Any, tmp_path: Path, admin: Key, signer: Key, serverHome: Path
) -> None:
    signedNight(night, admin, signer, serverHome)
    forge(night, s3, admin, "host/notes.txt", b"the forged notes\n")
    restored = restore(night, admin, tmp_path / "restored")
    assert restored.code == 1 and "the manifest signature is not valid" in restored.lastError
    assert not (tmp_path / "restored").exists() or tree(tmp_path / "restored") == {}
    verified = cli(night, "verify", "latest", "--gpg-home", str(admin.home))
    assert verified.code == 1 and "BAD" in verified.stdout and "signature is not valid" in verified.stdout


def test_a_manifest_re_signed_by_another_key_is_refused(
    night: Night, s3: Any, tmp_path: Path, admin: Key, signer: Key, forger: Key, serverHome: Path
) -> None:
    signedNight(night, admin, signer, serverHome)
    body = forge(night, s3, admin, "host/notes.txt", b"the forged notes\n")
    forged = gpg(forger.home, "--local-user", forger.fingerprint, "--detach-sign", stdin=body).stdout
    s3.put_object(Bucket=night.bucket, Key=night.key(SIGNATURE_NAME), Body=forged)
    restored = restore(night, admin, tmp_path / "restored")
    assert restored.code == 1
    assert f"signed by {forger.fingerprint}, not by the trusted key {signer.fingerprint}" in restored.lastError
    assert not (tmp_path / "restored").exists() or tree(tmp_path / "restored") == {}


def test_an_unsigned_day_is_refused_only_when_a_signature_is_required(
    night: Night, s3: Any, tmp_path: Path, admin: Key, signer: Key, serverHome: Path
) -> None:
    signedNight(night, admin, signer, serverHome)
    s3.delete_object(Bucket=night.bucket, Key=night.key(SIGNATURE_NAME))
    required = restore(night, admin, tmp_path / "required", "--require-signature")
    assert required.code == 1 and "is not signed, and --require-signature was given" in required.lastError
    assert not (tmp_path / "required").exists() or tree(tmp_path / "required") == {}
    allowed = restore(night, admin, tmp_path / "allowed")
    assert allowed.code == 0 and tree(tmp_path / "allowed") == FILES


def test_a_signed_manifest_moved_to_another_day_is_refused(
    night: Night, s3: Any, tmp_path: Path, admin: Key, signer: Key, serverHome: Path
) -> None:
    """A replay: the genuine signed manifest (and its objects) of one day put under another day's prefix."""
    signedNight(night, admin, signer, serverHome)
    other = dateSuffix(night.ago(3))
    for key in listKeys(s3, night.bucket, night.suffix):
        s3.copy_object(
            Bucket=night.bucket,
            CopySource={"Bucket": night.bucket, "Key": key},
            Key=key.replace(night.suffix, other, 1),
        )
    when = other.replace("/", "-")
    moved = cli(night, "restore", when, "--to", str(tmp_path / "moved"), "--gpg-home", str(admin.home))
    assert moved.code == 1 and f"describes day '{night.suffix}', not '{other}'" in moved.lastError


def test_a_signing_key_missing_from_its_home_fails_the_night_before_any_upload(
    night: Night, s3: Any, admin: Key, forger: Key, serverHome: Path
) -> None:
    night.settings |= admin.asRecipient() | {"gpg_home": str(serverHome)}
    night.settings |= {"gpg_sign_key": admin.fingerprint, "gpg_sign_home": str(forger.home)}  # not in that home
    night.stage(FILES)
    with pytest.raises(ValueError, match=f"<gpg_sign_key> {admin.fingerprint}"):
        night.run()
    assert listKeys(s3, night.bucket) == {}
    assert not night.indicator().exists()
