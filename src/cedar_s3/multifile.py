"""One ``gpg --multifile --encrypt`` process that encrypts small files one at a time, on request.

Starting gpg costs more than encrypting a small file with it (measured: 200 files of 8 KiB, 2.3 ms each with
one gpg per file, 0.3 ms each in one run), and nightly days are mostly small files. Handing gpg all the names
at once would leave every ciphertext of the batch on disk until it is uploaded; instead gpg reads names from
stdin, and the next name is sent only after the caller has uploaded (and deleted) the previous output. So the
working dir never holds more than one ciphertext per upload in flight.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from typing import IO

__all__ = ["MultifileSession"]

STATUS = b"[GNUPG:] "
EXIT_TIMEOUT = 30  # seconds gpg gets to exit once its input is closed


class MultifileSession:
    """``session.encrypt(source)`` -> path of its ciphertext (0600) in ``directory``; ``close()`` when done.

    ``directory`` must be new, empty and private to us: gpg finds each source there under a name we choose and
    writes its ciphertext next to it. gpg starts at the first ``encrypt``, so a night that reuses every object
    starts none.
    """

    def __init__(self, argv: list[str], directory: str) -> None:
        self._argv = [*argv, "--status-fd", "1", "--multifile", "--encrypt"]
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None
        self._count = 0

    def encrypt(self, source: str) -> str:
        """Encrypt one file; the caller removes the returned ciphertext before asking for the next."""
        name = f"{self._count:06d}"
        self._count += 1
        link = os.path.join(self._directory, name)
        _linkForGpg(source, link)
        try:
            encrypted, said = self._exchange(name)
        finally:
            os.unlink(link)
        output = link + ".gpg"
        if encrypted and not said and _nonEmptyFile(output):
            return output
        with contextlib.suppress(FileNotFoundError):
            os.unlink(output)
        named = (line.replace(f"'{name}.gpg'", "the ciphertext").replace(f"'{name}'", "the file") for line in said)
        detail = "; ".join(line.removeprefix("gpg: ") for line in list(named)[-3:])
        if "No space left" in detail:
            raise OSError(errno.ENOSPC, f"No space left in the working dir while encrypting {source}")
        raise OSError(f"Error encrypting [{source}] with GnuPG: {detail or 'gpg stopped without a reason'}")

    def _exchange(self, name: str) -> tuple[bool, list[str]]:
        """Send one name; read gpg's output until it is done with that file: whether it says it encrypted, and
        whatever else it said.

        gpg carries on to the next name after a failed file and even reports END_ENCRYPTION for a ciphertext it
        could not finish writing (seen: a full disk left a truncated file behind). In batch mode it says nothing
        at all about a file it encrypted well, so anything it says between FILE_START and FILE_DONE makes that
        file's ciphertext untrusted. What it says before the first FILE_START (a start-up warning such as
        insecure memory) is only reported if the file then fails.
        """
        process = self._start()
        stdin, stdout = _pipe(process.stdin), _pipe(process.stdout)
        try:
            stdin.write(name.encode("ascii") + b"\n")
            stdin.flush()
        except BrokenPipeError:
            pass  # gpg has exited: what it said is still to be read below
        encrypted, started, said, before = False, False, list[str](), list[str]()
        for line in iter(stdout.readline, b""):
            if line.startswith(STATUS + b"FILE_DONE"):
                return encrypted, said if started else [*before, *said]
            if line.startswith(STATUS + b"FILE_START"):
                started = True
            elif line.startswith(STATUS + b"END_ENCRYPTION"):
                encrypted = True
            elif not line.startswith(STATUS):
                (said if started else before).append(line.decode("utf-8", "replace").strip())
        return False, [*before, *said, f"gpg exited ({process.wait()})"]

    def _start(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            self._process = subprocess.Popen(
                self._argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,  # one pipe, read to each file's end: gpg can never block on a full one
                cwd=self._directory,
                umask=0o077,  # gpg creates each output 0600
            )
        return self._process

    def close(self) -> None:
        """Let gpg exit (killed if it does not within ``EXIT_TIMEOUT``); safe to call more than once."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            process.communicate(timeout=EXIT_TIMEOUT)  # closes gpg's input: its signal to finish
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def _pipe(stream: IO[bytes] | None) -> IO[bytes]:
    assert stream is not None  # Popen made both pipes
    return stream


def _linkForGpg(source: str, link: str) -> None:
    """Give gpg ``source`` under the name ``link``: a hard link where the filesystem allows one (a symlink costs
    an inode of its own, and creating thousands a night was most of the batch's system time), else a symlink."""
    try:
        os.link(source, link)
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK):
            raise
        os.symlink(source, link)


def _nonEmptyFile(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except FileNotFoundError:
        return False
