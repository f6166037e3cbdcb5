"""Reading ciphertext back: what the operator gave to decrypt with, and one decryption per object.

Used by ``restore``, ``verify --download`` and ``adopt``. The ciphertext streams in (from S3, never from disk),
the plaintext streams out to a sink: a restore's temporary file, or only a hash for a deep verify. gpg's own
integrity check must pass (``DECRYPTION_OKAY``; GnuPG 2.2+ refuses a message without MDC), and every gpg gets a
deadline scaled by the object's size.
"""

from __future__ import annotations

import os
import threading

from cedar_s3.bucketformat import Encryption
from cedar_s3.children import ChildTimeoutError, Deadlines
from cedar_s3.gpg.home import PrivateHome, readPassphrase
from cedar_s3.gpg.process import GpgRun, Readable, Sink, gpgBinary

__all__ = ["NEEDS", "DecryptError", "DecryptKeys"]

NEEDS = {
    Encryption.GPG_SYMMETRIC: "it is encrypted with a passphrase: give --passphrase-file (the file "
    "<gpg_passphrase_file> named)",
    Encryption.GPG_PUBLIC_KEY: "it is encrypted to a public key: give --gpg-home with a GnuPG home holding the "
    "secret key (and --key-passphrase-file if that key has a passphrase)",
    Encryption.COMMAND: "it was encrypted by an <encrypt> command: give --passphrase-file or --gpg-home if that "
    "command was gpg, or decrypt it by hand (see the restore runbook)",
}


class DecryptError(OSError):
    """gpg refused to decrypt an object: wrong passphrase or key, or a damaged ciphertext."""


class DecryptKeys:
    """What the operator gave to decrypt with: a passphrase file, or a GnuPG home with the secret key."""

    def __init__(
        self,
        *,
        passphraseFile: str | None = None,
        gnupgHome: str | None = None,
        keyPassphraseFile: str | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        self.passphrase = readPassphrase(passphraseFile, "--passphrase-file") if passphraseFile else None
        self.keyPassphrase = readPassphrase(keyPassphraseFile, "--key-passphrase-file") if keyPassphraseFile else None
        if gnupgHome is not None and not os.path.isdir(gnupgHome):
            raise ValueError(f"--gpg-home {gnupgHome} does not exist or is not a directory.")
        self.gnupgHome = gnupgHome
        self.deadlines = deadlines or Deadlines()
        self._scratch: PrivateHome | None = None
        self._lock = threading.Lock()
        self._binary = ""  # looked up at the first encrypted object: a plain day needs no gpg installed

    def canDecrypt(self, mode: str) -> bool:
        if mode == Encryption.NONE:
            return True
        if mode == Encryption.GPG_SYMMETRIC:
            return self.passphrase is not None
        if mode == Encryption.GPG_PUBLIC_KEY:
            return self.gnupgHome is not None
        return self.passphrase is not None or self.gnupgHome is not None

    def require(self, mode: str, what: str) -> None:
        """Fail before any download when ``what`` cannot be decrypted with what was given."""
        if not self.canDecrypt(mode):
            need = NEEDS.get(Encryption(mode), "") if mode in {m.value for m in Encryption} else ""
            raise ValueError(f"Cannot decrypt {what}: {need or f'unknown encryption {mode!r}'}.")
        if mode != Encryption.NONE and not self._binary:
            self._binary = gpgBinary()

    def _home(self) -> str:
        """The secret-key home given, or a private empty 0700 home (symmetric decryption needs no keyring)."""
        if self.gnupgHome is not None:
            return self.gnupgHome
        with self._lock:
            if self._scratch is None:
                self._scratch = PrivateHome(self._binary)
            return self._scratch.path

    def decrypt(self, mode: str, source: Readable, sink: Sink, what: str, size: int) -> None:
        """Decrypt ``source`` (``size`` stored bytes) into ``sink`` chunk by chunk; plaintext only on pipes."""
        self.require(mode, what)
        passphrase = self.passphrase if mode == Encryption.GPG_SYMMETRIC else self.keyPassphrase or self.passphrase
        # no key retrieval: a message from the bucket must not make gpg contact a keyserver
        args = ["--no-symkey-cache", "--no-auto-key-retrieve", "--decrypt"]
        run = GpgRun(
            self._binary, self._home(), args, what=what, seconds=self.deadlines.forBytes(size), passphrase=passphrase
        )
        run.pump(source, sink)
        run.raiseFailure()
        if run.returncode != 0 or "DECRYPTION_OKAY" not in run.status or "DECRYPTION_FAILED" in run.status:
            error = run.error(f"{what}: gpg could not decrypt it")
            if isinstance(error, ChildTimeoutError):
                raise error
            hint = f" ({NEEDS[Encryption.COMMAND]})" if mode == Encryption.COMMAND else ""
            if passphrase is None and "batchmode" in str(error):
                hint = " (the secret key has a passphrase: give --key-passphrase-file)"
            raise DecryptError(f"{error}{hint}")

    def close(self) -> None:
        """Remove the private home and its gpg-agent (a given --gpg-home is the operator's and is left alone)."""
        if self._scratch is not None:
            self._scratch.close()
            self._scratch = None
