"""Throw-away GnuPG homes and keys for the encryption tests, driven through the stock ``gpg`` command.

Keys are ed25519/cv25519 (``future-default``): generated in milliseconds, unlike RSA. Everything here is what
an administrator would type, so the tests prove that stock GnuPG alone can read what cedar-s3 stores.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

GPG = shutil.which("gpg") or "gpg"
FROZEN_PAST = "20200101T000000!"  # gpg's own clock override: keys "made" in 2020 that expired long ago
PASSPHRASE = "correct horse battery staple 4711"


@dataclass(frozen=True)
class Key:
    """A key pair whose secret half lives only in ``home`` (the administrator's machine, not the server)."""

    home: Path
    fingerprint: str

    def asRecipient(self) -> dict[str, str | list[str]]:
        """The ``<amazons3>`` settings of a night that encrypts to this key, reading it from its own home."""
        return {"gpg_recipient": [self.fingerprint], "gpg_home": str(self.home)}


def gpg(home: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run stock gpg on ``home`` in batch mode; fail the test with gpg's own words if it fails."""
    command = [GPG, "--homedir", str(home), "--batch", "--yes", "--pinentry-mode", "loopback", *args]
    result = subprocess.run(command, input=stdin, capture_output=True, check=False, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed: {result.stderr.decode(errors='replace')}")
    return result


def newHome(path: Path) -> Path:
    """An empty GnuPG home with the permissions gpg itself insists on."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def generateKey(home: Path, uid: str, expire: str = "never", *, past: bool = False) -> str:
    """A new key pair without a passphrase; returns the primary key's full fingerprint."""
    frozen = ["--faked-system-time", FROZEN_PAST] if past else []
    gpg(home, *frozen, "--passphrase", "", "--quick-gen-key", uid, "future-default", "default", expire)
    listing = gpg(home, "--with-colons", "--list-keys", uid).stdout.decode()
    return re.findall(r"^fpr:+([0-9A-F]{40}):", listing, re.MULTILINE)[0]


@contextlib.contextmanager
def throwawayKey(parent: Path, uid: str) -> Iterator[Key]:
    """A new key pair in ``parent/gnupg``, its gpg-agent stopped afterwards."""
    home = newHome(parent / "gnupg")
    try:
        yield Key(home, generateKey(home, uid))
    finally:
        killAgent(home)


def exportPublicKey(source: Path, fingerprint: str, target: Path) -> None:
    """Copy only the public key to another home, as an administrator does to the backup server."""
    public = gpg(source, "--export", fingerprint).stdout
    gpg(target, "--import", stdin=public)


def decrypt(ciphertext: bytes, *, passphraseFile: Path | None = None, home: Path) -> bytes:
    """Decrypt with stock ``gpg --decrypt``: a passphrase file, or the secret keys of ``home``."""
    secret = ["--passphrase-file", str(passphraseFile)] if passphraseFile is not None else []
    return gpg(home, *secret, "--decrypt", stdin=ciphertext).stdout


def killAgent(home: Path) -> None:
    """Stop the gpg-agent that stock gpg started for ``home`` (the tests must not leak one either)."""
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False)


def agentsUnder(root: Path, settle: float = 3.0) -> list[str]:
    """Command lines of gpg-agents still running with a home under ``root`` (other engineers run their own).

    An agent told to stop takes a moment to exit, so a leak is only reported once ``settle`` seconds have passed.
    """
    deadline = time.monotonic() + settle
    while True:
        agents = [line for line in _commandLines() if "gpg-agent" in line and f"--homedir {root}" in line]
        if not agents or time.monotonic() > deadline:
            return agents
        time.sleep(0.1)


def _commandLines() -> list[str]:
    """Every process's command line, read from /proc (no procps needed)."""
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip())
            except OSError:
                continue
    return lines


def listPackets(ciphertext: bytes, home: Path, passphraseFile: Path | None = None) -> str:
    """``gpg --list-packets``: the cipher, S2K count and compression an object was really written with."""
    secret = ["--passphrase-file", str(passphraseFile)] if passphraseFile is not None else []
    return gpg(home, *secret, "--list-packets", stdin=ciphertext).stdout.decode(errors="replace")


def writePassphraseFile(path: Path, passphrase: str = PASSPHRASE, mode: int = 0o600) -> Path:
    """A passphrase file as the docs tell administrators to make one: the passphrase on its first line."""
    path.write_text(passphrase + "\n")
    os.chmod(path, mode)
    return path


@contextlib.contextmanager
def isolatedTempDir(monkeypatch: pytest.MonkeyPatch, factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point ``tempfile`` at a fresh, short dir under /tmp, where the extension's private GnuPG homes land.

    Short, because gpg-agent's socket lives in its home and a socket path holds 107 bytes (pytest's own
    tmp_path is too long); fresh, so a leaked home or agent is provably ours. pytest places its own tmp_path
    through ``tempfile`` too, so that is settled first.
    """
    factory.getbasetemp()
    path = Path(tempfile.mkdtemp(prefix="cs3t-", dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    try:
        yield path
    finally:
        for home in path.glob("cedar-s3-gnupg-*"):
            killAgent(home)  # only reached when a test already failed on a leak
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path``: another filesystem than staging, and one that fills."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(exist_ok=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (container without CAP_SYS_ADMIN?): {mount.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True, timeout=30)


@contextlib.contextmanager
def shortTmpfs(size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` under /tmp, at a path short enough to hold private GnuPG homes (see ``isolatedTempDir``:
    from a longer temp dir the extension puts them in /tmp instead)."""
    parent = Path(tempfile.mkdtemp(prefix="cs3f-", dir="/tmp"))
    try:
        with tmpfs(parent / "t", size) as path:
            yield path
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@contextlib.contextmanager
def tmpfsTempDir(monkeypatch: pytest.MonkeyPatch, size: str) -> Iterator[Path]:
    """The temp dir (where private GnuPG homes, and so gpg's batch outputs, go) on a tmpfs of ``size``."""
    with shortTmpfs(size) as path:
        monkeypatch.setattr(tempfile, "tempdir", str(path))
        yield path


@contextlib.contextmanager
def shortHome() -> Iterator[Path]:
    """A HOME for a command's own gpg whose ~/.gnupg is short enough for gpg-agent's socket; agent stopped after."""
    path = Path(tempfile.mkdtemp(prefix="cs3h-", dir="/tmp"))
    try:
        yield path
    finally:
        killAgent(path / ".gnupg")
        shutil.rmtree(path, ignore_errors=True)


def assertNothingLeft(workDir: Path, tempDir: Path) -> None:
    """What a night must leave behind however it ended: no ciphertext, no private GnuPG home, no gpg-agent."""
    assert list(workDir.iterdir()) == [], "temp files left in the working dir"
    assert list(tempDir.iterdir()) == [], "a private GnuPG home was left in the temp dir"
    assert agentsUnder(tempDir) == [], "a gpg-agent was left running"
