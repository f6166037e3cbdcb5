"""Native GnuPG encryption of one stream: symmetric with a passphrase file, or public-key to recipients.

The plaintext comes in through a reader (the staged file's descriptor, hashed on the way), the ciphertext goes
out to a sink (the upload, part by part): no ciphertext ever touches the disk, and gpg never opens a path in
the staging tree. Passphrases go to gpg on a pipe of their own, never on a command line, in a log or in an
exception.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Any

from cedar_s3.bucketformat import Encryption
from cedar_s3.children import Deadlines
from cedar_s3.digest import BytesReader
from cedar_s3.gpg.home import PrivateHome, readKeyring, readPassphrase
from cedar_s3.gpg.multifile import MultifileSession
from cedar_s3.gpg.process import GpgRun, Readable, Sink, gpgBinary, gpgFailure, pythonGnupg

__all__ = ["S2K_DEFAULT", "GnuPGEncryptor"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.gpg")

# Many gpg processes share one private home at once; none of them writes to it, so they need no locks, no
# random_seed file and no trustdb check (measured: 200 small files, 8 at a time, 7.0 s -> 0.6 s).
CONCURRENT_READ_ONLY = ("--lock-never", "--no-random-seed-file", "--no-auto-check-trustdb")
SELF_CHECK_TEXT = b"cedar-s3 self-check: this proves the encryption settings work\n"
# Symmetric mode's default: OpenPGP's largest count, which is also what gpg-agent's own calibration settles on
# on current hardware. Passing it explicitly spares the agent that calibration (measured: 1.2 s at the first
# encryption of every night) and gives the same strength on every machine.
S2K_DEFAULT = 65011712
S2K_SMALLEST = 1025  # gpg takes --s2k-count 1024 (or less) to mean "the default": see _s2kCount


def _s2kCount(count: int) -> int:
    """The count to hand gpg: it reads 1024 or less as "use the calibrated default", i.e. the *slowest* setting.

    OpenPGP encodes the count in one octet, so gpg rounds up to the next encodable value anyway; 1025 becomes
    1088, the smallest count gpg will really use.
    """
    return max(count, S2K_SMALLEST)


class GnuPGEncryptor:
    """Encrypts streams for one night, with one private home (and the recipients' keys copied into it)."""

    def __init__(
        self,
        *,
        passphraseFile: str | None,
        recipients: list[str],
        gnupgHome: str | None,
        cipher: str | None,
        compression: str | None,
        s2kCount: int | None,
        deadlines: Deadlines,
    ) -> None:
        self.mode = Encryption.GPG_SYMMETRIC if passphraseFile else Encryption.GPG_PUBLIC_KEY
        self._passphrase = readPassphrase(passphraseFile) if passphraseFile else None
        self._recipients = recipients
        self._deadlines = deadlines
        cipher = cipher or "AES256"
        options = ["--compress-algo", compression or "none", "--cipher-algo", cipher, *CONCURRENT_READ_ONLY]
        if self._passphrase is not None:
            count = _s2kCount(s2kCount if s2kCount is not None else S2K_DEFAULT)
            options += [
                "--no-symkey-cache",
                "--s2k-mode",
                "3",
                "--s2k-digest-algo",
                "SHA512",
                "--s2k-count",
                str(count),
            ]
        else:
            options += ["--trust-model", "always", *(arg for fpr in recipients for arg in ("--recipient", fpr))]
        self._options = options
        keyring = readKeyring(gnupgHome or "") if self._passphrase is None else None
        try:
            self._binary = gpgBinary()  # before the home exists, so a missing gpg leaves nothing behind
        except OSError as error:
            setting = "<gpg_passphrase_file>/<gpg_recipient>"
            raise OSError(error.errno, f"{error.strerror} Native GnuPG encryption ({setting}) needs it.") from None
        self._home = PrivateHome(self._binary)
        try:
            if keyring is not None:
                self._loadRecipients(*keyring, home=gnupgHome or "")
        except BaseException:
            self._home.close()
            raise

    def _loadRecipients(self, name: str, data: bytes, *, home: str) -> None:
        """Put the keyring into the private home and check each recipient can be encrypted to, now."""
        descriptor = os.open(os.path.join(self._home.path, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        gpg = pythonGnupg(
            self._binary, self._home.path, what="reading <gpg_home>'s keyring", seconds=self._deadlines.allowance
        )
        keys = gpg.list_keys()
        now = time.time()
        for fingerprint in self._recipients:
            key = _findKey(keys, fingerprint)
            if key is None:
                raise ValueError(f"<gpg_recipient> {fingerprint} is not in the keyring of <gpg_home> {home}.")
            if key.get("trust") == "r":
                raise ValueError(f"<gpg_recipient> {fingerprint} is revoked.")
            expires = key.get("expires")
            if key.get("trust") == "e" or (expires and float(expires) < now):
                raise ValueError(f"<gpg_recipient> {fingerprint} has expired.")
            if "E" not in key.get("cap", "E"):
                raise ValueError(f"<gpg_recipient> {fingerprint} has no usable encryption key ({key.get('cap')}).")

    @property
    def canBatch(self) -> bool:
        """Public-key mode encrypts many small files in one gpg run; symmetric mode's cost is the passphrase
        stretching each file needs anyway, which one shared run would not save."""
        return self._passphrase is None

    def batchSession(self) -> MultifileSession:
        """One gpg run for many small files, handed them one at a time (see ``cedar_s3.gpg.multifile``), in a
        new directory of the private home."""
        directory = tempfile.mkdtemp(prefix="batch-", dir=self._home.path)
        return MultifileSession(self._binary, self._home.path, self._options, directory, self._deadlines)

    def encrypt(self, source: Readable, sink: Sink, *, what: str, size: int) -> None:
        """Encrypt ``source`` (``size`` plaintext bytes) into ``sink``; an error names ``what`` and gpg's reason."""
        action = ["--symmetric"] if self._passphrase is not None else ["--encrypt"]
        run = GpgRun(
            self._binary,
            self._home.path,
            [*self._options, "--output", "-", *action],
            what=f"Error encrypting [{what}] with GnuPG",
            seconds=self._deadlines.forBytes(size),
            passphrase=self._passphrase,
        )
        run.pump(source, sink)
        run.raiseFailure()
        if run.returncode != 0 or "END_ENCRYPTION" not in run.status:
            raise run.error()

    def selfCheck(self) -> None:
        """Encrypt a few bytes (and for symmetric mode decrypt them back) so bad settings fail in a second."""
        setting = "<gpg_passphrase_file>" if self._passphrase is not None else "<gpg_recipient>"
        ciphertext = bytearray()
        try:
            self.encrypt(BytesReader(SELF_CHECK_TEXT), ciphertext.extend, what="the self-check sample", size=0)
        except OSError as error:  # name the setting to fix
            raise OSError(error.errno, f"{setting} self-check could not encrypt: {error.strerror or error}") from None
        if self._passphrase is None:
            return
        plaintext = bytearray()
        run = GpgRun(
            self._binary,
            self._home.path,
            ["--no-symkey-cache", "--decrypt"],
            what=f"{setting} self-check",
            seconds=self._deadlines.allowance,
            passphrase=self._passphrase,
        )
        run.pump(BytesReader(bytes(ciphertext)), plaintext.extend)
        if run.returncode != 0 or bytes(plaintext) != SELF_CHECK_TEXT:
            raise ValueError(str(gpgFailure(run.lines, f"{setting} self-check could not decrypt", run.returncode)))

    def close(self) -> None:
        self._home.close()


def _findKey(keys: list[dict[str, Any]], fingerprint: str) -> dict[str, Any] | None:
    for key in keys:
        if fingerprint in (key["fingerprint"], *key.get("subkeys_fpr", [])):
            return key
    for key in keys:
        if fingerprint in {sub[2] for sub in key.get("subkeys", [])}:
            return key
    return None
