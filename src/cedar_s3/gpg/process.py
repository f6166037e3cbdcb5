"""The one place gpg is started, in every form: streaming runs, the multifile session, python-gnupg's calls.

Each gpg gets a deadline and a process group (``cedar_s3.children``), an environment with nothing in it but a
PATH, the locale and its private home (no AWS secret ever reaches it), ``--batch --no-tty`` so it can never
wait for a prompt, and its passphrase, when it needs one, on a pipe of its own rather than a command line.
Failures are named one way: the last things gpg said, with "no space left" mapped to ENOSPC.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any, Protocol

from cedar_s3.children import Child, childEnvironment

__all__ = [
    "GPG_BUFFER",
    "GpgRun",
    "Readable",
    "Sink",
    "gpgBinary",
    "gpgEnvironment",
    "gpgFailure",
    "pythonGnupg",
]

GPG_BUFFER = 1024 * 1024
MAX_LINES = 200
BASE_OPTIONS = ("--batch", "--no-tty", "--no-greeting")


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


Sink = Callable[[bytes], object]


def gpgBinary() -> str:
    """The gpg to run; a missing one is named with how to install it, before any temp file exists."""
    for name in ("gpg", "gpg2"):
        found = shutil.which(name)
        if found:
            return found
    raise OSError(errno.ENOENT, "GnuPG (gpg) is not installed or not on PATH; install it (apt-get install gnupg).")


def gpgEnvironment(home: str) -> dict[str, str]:
    """What gpg sees of our environment: PATH, locale, and a HOME that is its own private home."""
    return childEnvironment(HOME=home)


def gpgFailure(lines: Sequence[str], what: str, returncode: int | None) -> OSError:
    """The one way a gpg failure is named: ``what`` and the last things gpg said (never a passphrase: gpg does
    not echo them); a full disk is ENOSPC with what to do about it."""
    said = [line.removeprefix("gpg: ") for line in lines if line and not line.startswith("[GNUPG:]")]
    detail = "; ".join(said[-3:])[-400:] or f"gpg exit {returncode}"
    if "No space left" in detail:
        return OSError(
            errno.ENOSPC,
            f"{what}: no space left where gpg writes (its private GnuPG home in the temporary directory, $TMPDIR "
            "or /tmp, which also holds public-key batches of small files); free space there, or point TMPDIR at "
            f"a larger filesystem ({detail})",
        )
    return OSError(f"{what}: {detail}")


def statusWords(lines: Sequence[str]) -> set[str]:
    """The status keywords gpg reported (``[GNUPG:] KEYWORD ...``)."""
    return {line.split()[1] for line in lines if line.startswith("[GNUPG:] ") and len(line.split()) > 1}


class GpgRun:
    """One gpg run: input on stdin, output on stdout, status and messages on stderr, under a deadline.

    Run directly rather than through python-gnupg because input and output stream (python-gnupg buffers output
    in memory or a file), and because gpg stops reading as soon as it knows it cannot go on (wrong passphrase,
    no key): python-gnupg then raises its feeder's ``BrokenPipeError`` in place of gpg's reason. Here a broken
    pipe just ends the feeding, gpg's own words become the error, and a failing sink stops gpg at once.
    """

    def __init__(
        self,
        binary: str,
        home: str,
        args: Sequence[str],
        *,
        what: str,
        seconds: float,
        passphrase: str | None = None,
    ) -> None:
        self._argv = [binary, "--homedir", home, *BASE_OPTIONS, "--status-fd", "2", *args]
        self._home = home
        self._passphrase = passphrase
        self.what = what
        self.seconds = seconds
        self.returncode: int | None = None
        self.failure: BaseException | None = None
        self.lines: list[str] = []
        self._child: Child | None = None

    @property
    def status(self) -> set[str]:
        return statusWords(self.lines)

    def error(self, what: str | None = None) -> OSError:
        """gpg's failure, or the deadline when it was the deadline that stopped it."""
        if self._child is not None and self._child.expired:
            return self._child.timeoutError()
        return gpgFailure(self.lines, what or self.what, self.returncode)

    def _start(self) -> Child:
        pipes: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        env = gpgEnvironment(self._home)
        if self._passphrase is None:
            return Child(self._argv, what=self.what, seconds=self.seconds, env=env, **pipes)
        readEnd, writeEnd = os.pipe()
        try:
            # fdopen owns writeEnd and closes it exactly once: closing a descriptor number twice can close another
            # thread's file that reused the number in between (many of these run at once)
            with os.fdopen(writeEnd, "wb") as writer:
                writer.write(self._passphrase.encode("utf-8") + b"\n")  # far smaller than a pipe's buffer
            argv = [*self._argv[:1], "--pinentry-mode", "loopback", "--passphrase-fd", str(readEnd), *self._argv[1:]]
            return Child(argv, what=self.what, seconds=self.seconds, env=env, passFds=(readEnd,), **pipes)
        finally:
            os.close(readEnd)

    def pump(self, source: Readable, sink: Sink) -> None:
        """Feed ``source`` to gpg and hand its output to ``sink`` chunk by chunk, until gpg exits."""
        child = self._child = self._start()
        process = child.popen
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        feeder = threading.Thread(target=self._feed, args=(source, process.stdin), daemon=True)
        collector = threading.Thread(target=self._collect, args=(process.stderr,), daemon=True)
        feeder.start()
        collector.start()
        try:
            while chunk := process.stdout.read(GPG_BUFFER):
                if self.failure is None:
                    try:
                        with child.held():  # the sink's time (an upload, a disk) is not gpg's
                            sink(chunk)
                    except BaseException as error:
                        self.failure = error
                        child.killGroup()
        finally:
            if sys.exc_info()[0] is not None:
                child.killGroup()
            process.stdout.close()
            self.returncode = child.wait()
            feeder.join()
            collector.join()
            process.stderr.close()

    def _feed(self, source: Readable, stdin: IO[bytes]) -> None:
        assert self._child is not None
        try:
            while self.failure is None:
                with self._child.held():  # nor is the source's (a download, a disk)
                    chunk = source.read(GPG_BUFFER)
                if not chunk:
                    break
                stdin.write(chunk)
        except BrokenPipeError:
            pass  # gpg stopped reading: its exit status and messages say why
        except BaseException as error:
            if self.failure is None:
                self.failure = error
            self._child.killGroup()
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def _collect(self, stderr: IO[bytes]) -> None:
        for raw in stderr:
            if len(self.lines) < MAX_LINES:
                self.lines.append(raw.decode("utf-8", "replace").rstrip())

    def raiseFailure(self) -> None:
        """Re-raise what stopped the run from our side (the sink or the source), if anything did."""
        if self.failure is not None:
            raise self.failure


def pythonGnupg(binary: str, home: str, *, what: str, seconds: float) -> Any:
    """A python-gnupg ``GPG`` whose every gpg process is started here: deadline, process group, clean env.

    python-gnupg has no timeout of its own (its very first call, a version probe in the constructor, can hang
    forever on a wedged gpg); it starts each process in ``_open_subprocess`` and reaps it in
    ``_collect_output`` (both present from 0.4 to 0.5), which this subclass wraps.
    """
    import gnupg  # deferred: importing the extension must stay cheap

    class _DeadlineGPG(gnupg.GPG):  # type: ignore[misc]
        def __init__(self) -> None:
            self._cedarChildren: dict[int, Child] = {}
            self._cedarLock = threading.Lock()
            super().__init__(gpgbinary=binary, gnupghome=home)

        def _open_subprocess(self, args: list[str], passphrase: bool = False) -> subprocess.Popen[bytes]:
            argv = self.make_args(args, passphrase)
            pipes: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
            child = Child(argv, what=what, seconds=seconds, env=gpgEnvironment(home), **pipes)
            with self._cedarLock:
                self._cedarChildren[child.pid] = child
            return child.popen

        def _collect_output(self, process: Any, result: Any, writer: Any = None, stdin: Any = None) -> Any:
            try:
                return super()._collect_output(process, result, writer, stdin)
            except BaseException:
                self._cedarRelease(process, interrupted=True)  # SIGTERM's exception: gpg goes with it
                raise
            finally:
                self._cedarRelease(process, interrupted=False)

        def _cedarRelease(self, process: Any, *, interrupted: bool) -> None:
            with self._cedarLock:
                child = self._cedarChildren.pop(process.pid, None)
            if child is None:
                return
            if interrupted:
                child.kill()
            else:
                child.cancel()
            child.raiseIfExpired()  # a deadline that passed is the reason, whatever python-gnupg made of it

    try:
        gpg = _DeadlineGPG()
    except ValueError as error:
        raise OSError(f"{what}: GnuPG ({binary}) could not be started: {error}") from None
    gpg.encoding = "utf-8"
    return gpg
