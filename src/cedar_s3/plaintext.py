"""Read one stored object back to its plaintext, proving both byte streams against the manifest on the way.

The stored bytes stream from S3 (never to disk) and are hashed; for an encrypted object they are fed to
``gpg --decrypt``, whose output arrives here on a pipe and is hashed again and handed to a sink: a restore's
temporary file, or nothing at all for ``verify --download``. So a deep verify never writes plaintext anywhere,
and a restore writes at most the plaintext size the manifest promises: a hostile or damaged object that
produces more is cut off there.

Passphrases go to gpg on a pipe of their own (``--passphrase-fd``), never on a command line.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Protocol

from cedar_s3.config import ARCHIVED_STORAGE_CLASSES
from cedar_s3.crypto import gpgBinary, killAgent, newPrivateHome, readPassphrase
from cedar_s3.digest import READ_CHUNK
from cedar_s3.manifest import StoredObject

if TYPE_CHECKING:
    from cedar_s3.s3 import S3Store

__all__ = ["BadObjectError", "DecryptError", "DecryptKeys", "ObjectReader", "eachObject"]

Sink = Callable[[bytes], object]


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


GPG_BUFFER = 1024 * 1024
MAX_GPG_LINES = 200
DECRYPT_PROBES = 3
MAYBE_ARCHIVED = (*ARCHIVED_STORAGE_CLASSES, "INTELLIGENT_TIERING")  # a GET may need a restore first

_NEEDS = {
    "gpg-symmetric": "it is encrypted with a passphrase: give --passphrase-file (the file <gpg_passphrase_file> named)",
    "gpg-public-key": "it is encrypted to a public key: give --gpg-home with a GnuPG home holding the secret key "
    "(and --key-passphrase-file if that key has a passphrase)",
    "command": "it was encrypted by an <encrypt> command: give --passphrase-file or --gpg-home if that command "
    "was gpg, or decrypt it by hand (see the restore runbook)",
}


class BadObjectError(OSError):
    """One object cannot be read back to the plaintext the manifest describes; the message names its key."""


class DecryptError(BadObjectError):
    """gpg refused to decrypt an object: wrong passphrase or key, or a damaged ciphertext."""


class DecryptKeys:
    """What the operator gave to decrypt with: a passphrase file, or a GnuPG home with the secret key."""

    def __init__(
        self,
        *,
        passphraseFile: str | None = None,
        gnupgHome: str | None = None,
        keyPassphraseFile: str | None = None,
    ) -> None:
        self.passphrase = readPassphrase(passphraseFile, "--passphrase-file") if passphraseFile else None
        self.keyPassphrase = readPassphrase(keyPassphraseFile, "--key-passphrase-file") if keyPassphraseFile else None
        if gnupgHome is not None and not os.path.isdir(gnupgHome):
            raise ValueError(f"--gpg-home {gnupgHome} does not exist or is not a directory.")
        self.gnupgHome = gnupgHome
        self._scratch: str | None = None
        self._lock = threading.Lock()
        self._binary = ""  # looked up at the first encrypted object: a plain day needs no gpg installed

    def canDecrypt(self, mode: str) -> bool:
        if mode == "none":
            return True
        if mode == "gpg-symmetric":
            return self.passphrase is not None
        if mode == "gpg-public-key":
            return self.gnupgHome is not None
        return self.passphrase is not None or self.gnupgHome is not None

    def require(self, mode: str, what: str) -> None:
        """Fail before any download when ``what`` cannot be decrypted with what was given."""
        if not self.canDecrypt(mode):
            raise ValueError(f"Cannot decrypt {what}: {_NEEDS.get(mode, f'unknown encryption {mode!r}')}.")
        if mode != "none" and not self._binary:
            self._binary = gpgBinary()

    def _home(self) -> str:
        """The secret-key home given, or a private empty 0700 home (symmetric decryption needs no keyring)."""
        if self.gnupgHome is not None:
            return self.gnupgHome
        with self._lock:
            if self._scratch is None:
                self._scratch = newPrivateHome()
            return self._scratch

    def decrypt(self, mode: str, source: Readable, sink: Sink, what: str) -> None:
        """Decrypt ``source`` into ``sink`` chunk by chunk; gpg's plaintext only ever passes through a pipe."""
        passphrase = self.passphrase if mode == "gpg-symmetric" else self.keyPassphrase or self.passphrase
        argv = [self._binary, "--batch", "--no-tty", "--homedir", self._home(), "--status-fd", "2"]
        # loopback: never a pinentry dialog (a protected key without --key-passphrase-file fails instead);
        # no key retrieval: a message from the bucket must not make gpg contact a keyserver
        argv += ["--pinentry-mode", "loopback", "--no-symkey-cache", "--no-auto-key-retrieve", "--decrypt"]
        run = _GpgRun(argv, passphrase)
        run.pump(source, sink)
        if run.failure is not None:
            raise run.failure
        if run.returncode != 0 or "DECRYPTION_OKAY" not in run.status or "DECRYPTION_FAILED" in run.status:
            hint = f" ({_NEEDS[mode]})" if mode == "command" else ""
            if passphrase is None and "batchmode" in run.reason():
                hint = " (the secret key has a passphrase: give --key-passphrase-file)"
            raise DecryptError(f"{what}: gpg could not decrypt it: {run.reason()}{hint}")

    def close(self) -> None:
        """Remove the private home and its gpg-agent (a given --gpg-home is the operator's and is left alone)."""
        if self._scratch is not None:
            killAgent(self._scratch, self._binary or None)
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


class _GpgRun:
    """One ``gpg --decrypt``: ciphertext in on stdin, plaintext out on stdout, status and messages on stderr.

    Run directly rather than through python-gnupg because gpg stops reading as soon as it knows it cannot
    decrypt (wrong passphrase, no secret key), and python-gnupg then raises its feeder's ``BrokenPipeError``
    in place of gpg's reason. Here a broken pipe just ends the feeding, gpg's own words become the error, and a
    failing sink stops gpg at once. The passphrase goes on a pipe of its own (``--passphrase-fd``).
    """

    def __init__(self, argv: list[str], passphrase: str | None) -> None:
        self._argv = argv
        self._passphrase = passphrase
        self.returncode: int | None = None
        self.failure: BaseException | None = None
        self._lines: list[str] = []

    @property
    def status(self) -> set[str]:
        return {line.split()[1] for line in self._lines if line.startswith("[GNUPG:] ") and len(line.split()) > 1}

    def reason(self) -> str:
        said = [line.removeprefix("gpg: ") for line in self._lines if line and not line.startswith("[GNUPG:]")]
        return "; ".join(said[-3:])[-300:] or f"gpg exit {self.returncode}"

    def _start(self) -> subprocess.Popen[bytes]:
        if self._passphrase is None:
            return subprocess.Popen(self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        readEnd, writeEnd = os.pipe()
        try:
            # fdopen owns writeEnd and closes it exactly once: closing a descriptor number twice can close another
            # thread's file that reused the number in between (restores run several of these at once)
            with os.fdopen(writeEnd, "wb") as writer:
                writer.write(self._passphrase.encode("utf-8") + b"\n")  # far smaller than a pipe's buffer
            argv = [self._argv[0], "--passphrase-fd", str(readEnd), *self._argv[1:]]
            return subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(readEnd,)
            )
        finally:
            os.close(readEnd)

    def pump(self, source: Readable, sink: Sink) -> None:
        process = self._start()
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        feeder = threading.Thread(target=self._feed, args=(source, process.stdin), daemon=True)
        collector = threading.Thread(target=self._collect, args=(process.stderr,), daemon=True)
        feeder.start()
        collector.start()
        try:
            while chunk := process.stdout.read(GPG_BUFFER):
                if self.failure is None:
                    try:
                        sink(chunk)
                    except Exception as error:
                        self.failure = error
                        process.kill()
        finally:
            if sys.exc_info()[0] is not None:
                process.kill()
            process.stdout.close()
            self.returncode = process.wait()
            feeder.join()
            collector.join()
            process.stderr.close()

    def _feed(self, source: Readable, stdin: IO[bytes]) -> None:
        try:
            while self.failure is None and (chunk := source.read(GPG_BUFFER)):
                stdin.write(chunk)
        except BrokenPipeError:
            pass  # gpg stopped reading: its exit status and messages say why
        except Exception as error:
            if self.failure is None:
                self.failure = error
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def _collect(self, stderr: IO[bytes]) -> None:
        for raw in stderr:
            if len(self._lines) < MAX_GPG_LINES:
                self._lines.append(raw.decode("utf-8", "replace").rstrip())


class _Stored:
    """The stored byte stream: hashed, counted, reported to progress, and refused past the recorded size."""

    def __init__(self, raw: IO[bytes], limit: int, key: str, progress: Callable[[int], None]) -> None:
        self._raw = raw
        self._limit = limit
        self._key = key
        self._progress = progress
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(READ_CHUNK if size < 0 else size)
        self.size += len(data)
        if self.size > self._limit:
            raise BadObjectError(f"{self._key}: the stored object is larger than the {self._limit} bytes recorded")
        self.sha.update(data)
        self._progress(len(data))
        return data

    def close(self) -> None:
        self._raw.close()

    def problem(self, record: StoredObject) -> str | None:
        if self.size != record.size:
            return f"{self._key}: the stored object is {self.size} bytes; the manifest records {record.size}"
        if self.sha.hexdigest() != record.storedSha256:
            return f"{self._key}: the stored bytes differ from what was uploaded (SHA-256 mismatch)"
        return None


class _Plain:
    """The plaintext side: hashed, counted, cut off past the recorded size, then passed to the sink."""

    def __init__(self, limit: int, key: str, sink: Sink | None) -> None:
        self._limit = limit
        self._key = key
        self._sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def __call__(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._limit:
            raise BadObjectError(f"{self._key}: the plaintext is larger than the {self._limit} bytes recorded")
        self.sha.update(chunk)
        if self._sink is not None:
            self._sink(chunk)


class ObjectReader:
    """Reads objects back to plaintext, checking every byte against the manifest's records.

    ``storageClasses`` (key to class, from the day's listing) lets an archived object that is not restored yet
    fail with the command that thaws it, instead of S3's bare InvalidObjectState.
    """

    def __init__(self, store: S3Store, keys: DecryptKeys, storageClasses: dict[str, str] | None = None) -> None:
        self._store = store
        self._keys = keys
        self._storageClasses = storageClasses or {}

    def read(
        self,
        key: str,
        record: StoredObject,
        sink: Sink | None,
        progress: Callable[[int], None] = lambda _count: None,
    ) -> None:
        """Stream ``key``; raise ``BadObjectError`` naming it unless sizes and SHA-256s match the record."""
        self._keys.require(record.encryption, key)
        if self._storageClasses.get(key) in MAYBE_ARCHIVED:
            thaw = self._store.restoreStatus(key)
            if thaw.needed:
                raise BadObjectError(thaw.message)
        plain = _Plain(record.plaintextSize, key, sink)
        stored = _Stored(self._store.openStream(key), record.size, key, progress)
        try:
            if record.encryption == "none":
                while chunk := stored.read(READ_CHUNK):
                    plain(chunk)
            else:
                self._keys.decrypt(record.encryption, stored, plain, key)
        except BadObjectError as error:
            # a damaged ciphertext makes gpg fail; when all of it was read, the stored digest names the real fault
            if stored.size != record.size or stored.problem(record) is None:
                raise
            raise BadObjectError(stored.problem(record)) from error
        finally:
            stored.close()
        problem = stored.problem(record)
        if problem is None and (plain.size != record.plaintextSize or plain.sha.hexdigest() != record.plaintextSha256):
            problem = f"{key}: the plaintext does not match the manifest (size or SHA-256 differs)"
        if problem is not None:
            raise BadObjectError(problem)


def eachObject(
    records: list[StoredObject], work: Callable[[StoredObject], Exception | None], *, jobs: int
) -> list[tuple[StoredObject, Exception | None]]:
    """Run ``work`` on every record (it returns the error for that record, or None) and pair up the results.

    Encrypted records go first, smallest first, one at a time until one decrypts; the rest run ``jobs`` at a
    time. So a wrong passphrase or key stops after ``DECRYPT_PROBES`` small files with one clear error
    (a ValueError) instead of failing once per file.
    """
    pending = sorted(records, key=lambda record: (record.encryption == "none", record.size))
    results: list[tuple[StoredObject, Exception | None]] = []
    refused = 0
    while pending and pending[0].encryption != "none":
        record = pending.pop(0)
        error = work(record)
        results.append((record, error))
        if not isinstance(error, DecryptError):
            break
        refused += 1
        if refused == DECRYPT_PROBES:
            raise ValueError(
                f"Stopped: the first {DECRYPT_PROBES} objects could not be decrypted; check --passphrase-file, or "
                f"--gpg-home and --key-passphrase-file. Last error: {error}"
            )
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        results += zip(pending, pool.map(work, pending), strict=True)
    finally:  # on Ctrl-C, files not yet started are not started; those under way finish or clean up
        pool.shutdown(wait=True, cancel_futures=True)
    return results
