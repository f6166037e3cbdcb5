"""One ``gpg --multifile --encrypt`` process that encrypts small files one at a time, on request.

Starting gpg costs more than encrypting a small file with it (measured: 200 files of 8 KiB, 2.3 ms each with
one gpg per file, 0.3 ms each in one run), and nightly days are mostly small files. Handing gpg all the names
at once would leave every ciphertext of the batch on disk until it is uploaded; instead gpg reads names from
stdin, and the next name is sent only after the caller has uploaded (and deleted) the previous output. So the
working dir never holds more than one ciphertext per upload in flight.

gpg never sees a path in the staging tree: each file it encrypts is a hard link, made through the descriptor
the night opened and checked (``/proc/self/fd``), in a directory private to us. Each file gets its own
deadline, and the clock stops while gpg waits for the next name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import IO, Any

from cedar_s3.children import Child, Deadlines
from cedar_s3.gpg.process import BASE_OPTIONS, gpgEnvironment, gpgFailure

__all__ = ["MultifileSession"]

STATUS = b"[GNUPG:] "


class MultifileSession:
    """``session.encrypt(fd, size, what)`` -> path of its ciphertext (0600) in ``directory``; ``close()`` when done.

    ``directory`` must be new, empty and private to us; ``close`` removes it. gpg starts at the first
    ``encrypt``, so a night that reuses every object starts none.
    """

    def __init__(self, binary: str, home: str, options: Sequence[str], directory: str, deadlines: Deadlines) -> None:
        self._argv = [
            binary,
            "--homedir",
            home,
            *BASE_OPTIONS,
            *options,
            "--status-fd",
            "1",
            "--multifile",
            "--encrypt",
        ]
        self._home = home
        self._directory = directory
        self._deadlines = deadlines
        self._child: Child | None = None
        self._count = 0

    def encrypt(self, descriptor: int, size: int, what: str) -> str:
        """Encrypt the open file ``descriptor``; the caller removes the returned ciphertext before the next."""
        name = f"{self._count:06d}"
        self._count += 1
        link = os.path.join(self._directory, name)
        _linkDescriptor(descriptor, link)
        try:
            encrypted, said = self._exchange(name, size, what)
        finally:
            os.unlink(link)
        output = link + ".gpg"
        if encrypted and not said and _nonEmptyFile(output):
            return output
        with contextlib.suppress(FileNotFoundError):
            os.unlink(output)
        if self._child is not None and self._child.expired:
            raise self._child.timeoutError()
        named = [line.replace(f"'{name}.gpg'", "the ciphertext").replace(f"'{name}'", "the file") for line in said]
        raise gpgFailure(named or ["gpg stopped without a reason"], f"Error encrypting [{what}] with GnuPG", None)

    def _exchange(self, name: str, size: int, what: str) -> tuple[bool, list[str]]:
        """Send one name; read gpg's output until it is done with that file: whether it says it encrypted, and
        whatever else it said.

        gpg carries on to the next name after a failed file and even reports END_ENCRYPTION for a ciphertext it
        could not finish writing (seen: a full disk left a truncated file behind). In batch mode it says nothing
        at all about a file it encrypted well, so anything it says between FILE_START and FILE_DONE makes that
        file's ciphertext untrusted. What it says before the first FILE_START (a start-up warning such as
        insecure memory) is only reported if the file then fails.
        """
        child = self._start(what)
        child.restartClock(self._deadlines.forBytes(size))
        process = child.popen
        stdin, stdout = _pipe(process.stdin), _pipe(process.stdout)
        try:
            stdin.write(name.encode("ascii") + b"\n")
            stdin.flush()
        except BrokenPipeError:
            pass  # gpg has exited: what it said is still to be read below
        encrypted, started, said, before = False, False, list[str](), list[str]()
        try:
            for line in iter(stdout.readline, b""):
                if line.startswith(STATUS + b"FILE_DONE"):
                    return encrypted, said if started else [*before, *said]
                if line.startswith(STATUS + b"FILE_START"):
                    started = True
                elif line.startswith(STATUS + b"END_ENCRYPTION"):
                    encrypted = True
                elif not line.startswith(STATUS):
                    (said if started else before).append(line.decode("utf-8", "replace").strip())
        finally:
            child.pauseClock()  # idle while the caller uploads: no clock then
        return False, [*before, *said, f"gpg exited ({process.wait()})"]

    def _start(self, what: str) -> Child:
        if self._child is None:
            pipes: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
            self._child = Child(
                self._argv,
                what=f"gpg session (now at {what})",
                seconds=self._deadlines.allowance,
                env=gpgEnvironment(self._home),
                cwd=self._directory,
                umask=0o077,
                **pipes,
            )  # stderr into the one pipe, read to each file's end: gpg can never block on a full one
        self._child.what = f"encrypting [{what}] in a gpg session"
        return self._child

    def close(self) -> None:
        """Let gpg exit (killed with its group if it does not in time) and remove the directory; idempotent."""
        child, self._child = self._child, None
        try:
            if child is not None:
                child.restartClock(self._deadlines.allowance)
                try:
                    child.popen.communicate()  # closes gpg's input: its signal to finish
                finally:
                    child.cancel()
        finally:
            shutil.rmtree(self._directory, ignore_errors=True)


def _pipe(stream: IO[bytes] | None) -> IO[bytes]:
    assert stream is not None  # Popen made both pipes
    return stream


def _linkDescriptor(descriptor: int, link: str) -> None:
    """A name for the open file ``descriptor`` in our private directory: a hard link to that very inode.

    ``/proc/self/fd/N`` with ``linkat(AT_SYMLINK_FOLLOW)`` links what the descriptor refers to, so no path in
    the staging tree is looked up again. Across filesystems (or where linking is refused) a symlink to the
    descriptor's ``/proc`` entry serves: gpg, our child, opens our descriptor's file through it.
    """
    magic = f"/proc/{os.getpid()}/fd/{descriptor}"
    try:
        os.link(magic, link, follow_symlinks=True)
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOENT):
            raise
        os.symlink(magic, link)


def _nonEmptyFile(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except FileNotFoundError:
        return False
