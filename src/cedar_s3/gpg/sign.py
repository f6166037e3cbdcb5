"""Detached signatures on manifests: made by the night with ``<gpg_sign_key>``, checked by the operator's command.

A manifest lists every object's SHA-256, so a manifest that is proven to come from the backup server proves
every file restored from it. In public-key mode anyone who can write to the bucket (the public key is public)
could otherwise replace a file and its manifest entry consistently. The signature is checked against one
trusted fingerprint, never against "any key in a keyring": a bucket writer's own valid signature is refused.
"""

from __future__ import annotations

import os
import stat

from cedar_s3.children import Deadlines
from cedar_s3.digest import BytesReader
from cedar_s3.gpg.home import PrivateHome, killAgent, readPassphrase
from cedar_s3.gpg.process import GpgRun, Readable, gpgBinary

__all__ = ["ManifestSigner", "SignatureChecker", "SignatureError"]

MAX_KEY_EXPORT = 16 * 1024 * 1024


class SignatureError(ValueError):
    """A manifest signature is missing where required, invalid, or made by a key other than the trusted one."""


def _run(
    binary: str,
    home: str,
    args: list[str],
    data: bytes | Readable,
    *,
    what: str,
    seconds: float,
    passphrase: str | None = None,
) -> tuple[bytes, GpgRun]:
    output = bytearray()
    run = GpgRun(binary, home, args, what=what, seconds=seconds, passphrase=passphrase)
    run.pump(BytesReader(data) if isinstance(data, bytes) else data, output.extend)
    run.raiseFailure()
    return bytes(output), run


def checkSigningHome(home: str, setting: str = "<gpg_sign_home>") -> None:
    """The signing key's home must be ours alone: a real directory, owned by this user, writable by nobody else."""
    try:
        info = os.lstat(home)
    except FileNotFoundError:
        raise ValueError(f"{setting} {home} does not exist; create it with the signing key (see the docs).") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ValueError(f"{setting} {home} is not a directory (a link is refused: give the real path).")
    if info.st_uid != os.geteuid():
        raise ValueError(f"{setting} {home} is not owned by the user running the night (uid {os.geteuid()}).")
    if info.st_mode & 0o077:
        raise ValueError(f"{setting} {home} is open to group or others (mode {info.st_mode & 0o777:o}); chmod 700 it.")


class ManifestSigner:
    """Signs manifests with ``fingerprint`` from a private home of the night's own user."""

    def __init__(self, fingerprint: str, home: str, passphraseFile: str | None, deadlines: Deadlines) -> None:
        checkSigningHome(home)
        self.fingerprint = fingerprint
        self._home = home
        self._passphrase = readPassphrase(passphraseFile, "<gpg_sign_passphrase_file>") if passphraseFile else None
        self._deadlines = deadlines
        self._binary = gpgBinary()

    def sign(self, data: Readable, size: int) -> bytes:
        """A binary detached signature over ``data`` (``size`` bytes)."""
        args = ["--local-user", f"{self.fingerprint}!", "--digest-algo", "SHA512", "--output", "-", "--detach-sign"]
        signature, run = _run(
            self._binary,
            self._home,
            args,
            data,
            what="signing the manifest with <gpg_sign_key>",
            seconds=self._deadlines.forBytes(size),
            passphrase=self._passphrase,
        )
        if run.returncode != 0 or "SIG_CREATED" not in run.status or not signature:
            raise ValueError(f"<gpg_sign_key> {self.fingerprint}: {run.error()}")
        return signature

    def selfCheck(self) -> None:
        """Sign a few bytes before any upload, so a missing key or passphrase fails the night at once."""
        sample = b"cedar-s3 signing self-check\n"
        self.sign(BytesReader(sample), len(sample))

    def close(self) -> None:
        killAgent(self._home, self._binary)


class SignatureChecker:
    """Checks manifest signatures against one trusted fingerprint, with its public key from a file or a home."""

    def __init__(self, trusted: str, *, keyFile: str | None, keyHome: str | None, deadlines: Deadlines) -> None:
        self.trusted = trusted
        self._deadlines = deadlines
        self._binary = gpgBinary()
        self._home = PrivateHome(self._binary)
        try:
            self._importKey(keyFile, keyHome)
        except BaseException:
            self._home.close()
            raise

    def _importKey(self, keyFile: str | None, keyHome: str | None) -> None:
        seconds = self._deadlines.allowance
        if keyFile is not None:
            with open(keyFile, "rb") as handle:
                exported = handle.read(MAX_KEY_EXPORT)
        elif keyHome is not None:
            exported, _ = _run(
                self._binary,
                keyHome,
                ["--export", self.trusted],
                b"",
                what=f"exporting the signer's key from {keyHome}",
                seconds=seconds,
            )
        else:
            raise ValueError("Checking manifest signatures needs the signer's public key: give --signer-key FILE.")
        if not exported:
            raise ValueError(f"The signer's public key {self.trusted} was not found (--signer-key / --gpg-home).")
        _, run = _run(
            self._binary, self._home.path, ["--import"], exported, what="importing the signer's key", seconds=seconds
        )
        if run.returncode != 0 or "IMPORT_OK" not in run.status:
            raise ValueError(f"The signer's public key could not be imported: {run.error()}")

    def check(self, data: bytes, signature: bytes, what: str) -> str:
        """The signer's fingerprint when ``signature`` is a good signature over ``data`` by the trusted key."""
        path = os.path.join(self._home.path, "manifest.sig")
        with open(path, "wb") as handle:
            handle.write(signature)
        try:
            _, run = _run(
                self._binary,
                self._home.path,
                ["--trust-model", "always", "--verify", path, "-"],
                data,
                what=f"checking the signature of {what}",
                seconds=self._deadlines.forBytes(len(data)),
            )
        finally:
            os.unlink(path)
        valid = [line.split() for line in run.lines if line.startswith("[GNUPG:] VALIDSIG ")]
        unknown = [line.split() for line in run.lines if line.startswith("[GNUPG:] ERRSIG ")]
        if not valid and unknown and "NO_PUBKEY" in run.status:  # made by a key other than the trusted one
            fields = unknown[-1]
            who = fields[8] if len(fields) > 8 and fields[8] != "-" else fields[2]
            raise SignatureError(f"{what}: the manifest is signed by {who}, not by the trusted key {self.trusted}.")
        if run.returncode != 0 or not valid or "BADSIG" in run.status:
            raise SignatureError(f"{what}: the manifest signature is not valid ({run.error()}).")
        fields = valid[-1]
        signers = {fields[2], fields[-1]}  # the signing (sub)key and the primary key
        if self.trusted not in signers:
            raise SignatureError(
                f"{what}: the manifest is signed by {fields[-1]}, not by the trusted key {self.trusted}."
            )
        return fields[-1]

    def close(self) -> None:
        self._home.close()
