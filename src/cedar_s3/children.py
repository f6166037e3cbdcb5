"""Every child process cedar-s3 starts: a deadline, its own process group, and a scrubbed environment.

A nightly job that waits without bound fails silently: no error mail, no indicator, and the next night starts
beside it. So every child (gpg in every form, upstream's ``<encrypt>`` command, gpgconf) gets a deadline that
scales with the bytes it handles (``Deadlines``), runs in a process group of its own so that the whole group
(a shell and what it started) is killed when the deadline passes, and sees only the environment it needs:
never the AWS credentials the night itself may hold.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

__all__ = [
    "CLEAN_PATH",
    "Child",
    "ChildTimeoutError",
    "Deadlines",
    "childEnvironment",
    "killAllChildren",
    "runChild",
]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.children")

CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_ALLOWANCE = 600.0  # seconds every child gets, whatever it handles
DEFAULT_MIN_THROUGHPUT = 1024 * 1024  # bytes per second it must at least manage beyond that
REAP_WAIT = 10.0  # seconds to wait for a killed group's leader to be reaped


_LIVE: set[Child] = set()
_LIVE_LOCK = threading.Lock()


def killAllChildren() -> None:
    """Kill every child still running, with its group (the night was terminated: nothing is waited for)."""
    with _LIVE_LOCK:
        children = list(_LIVE)
    for child in children:
        child.killGroup()


class TerminatedError(Exception):
    """The process was told to stop (SIGTERM): every child is killed at once, nothing started is waited for.

    An ``Exception`` (not a ``BaseException``) so that cback3's own handler reports it as a failed action.
    """


class ChildTimeoutError(OSError):
    """A child process passed its deadline and was killed with its whole process group."""


@dataclass(frozen=True)
class Deadlines:
    """How long a child may take: a fixed allowance plus its bytes at a floor throughput.

    From ``<child_timeout>`` (seconds) and ``<child_min_throughput>`` (bytes per second). A hung gpg or a stuck
    ``<encrypt>`` command (a stale lock, a dead NFS mount) is then an error naming the file, not a night that
    never ends. The floor should stay well below the slowest real path, including ``<max_bandwidth>``.
    """

    allowance: float = DEFAULT_ALLOWANCE
    minThroughput: float = DEFAULT_MIN_THROUGHPUT

    def forBytes(self, size: int) -> float:
        return self.allowance + max(0, size) / self.minThroughput

    def describe(self, size: int) -> str:
        return (
            f"{self.forBytes(size):.0f} s (<child_timeout> {self.allowance:.0f} s plus {size} bytes at "
            f"<child_min_throughput> {self.minThroughput:.0f} bytes/s)"
        )


def childEnvironment(**extra: str) -> dict[str, str]:
    """A minimal environment: a fixed PATH, the locale, and what the caller adds. Nothing else is inherited."""
    env = {"PATH": CLEAN_PATH, "LANG": os.environ.get("LANG", "C.UTF-8") or "C.UTF-8"}
    for name in ("LC_ALL", "LC_CTYPE", "TZ"):
        value = os.environ.get(name)
        if value:
            env[name] = value
    return env | extra


class Child:
    """A started child in its own process group, killed with its group once ``seconds`` have passed.

    ``what`` names the job in errors (a file, "the <encrypt> command self-check"). ``restartClock`` gives a
    long-lived child (a gpg session handed file after file) a fresh deadline for its next piece of work.
    """

    def __init__(  # noqa: PLR0913 - Popen's own keywords, passed through
        self,
        argv: Sequence[str],
        *,
        what: str,
        seconds: float,
        env: dict[str, str] | None = None,
        stdin: int | IO[Any] | None = None,
        stdout: int | IO[Any] | None = None,
        stderr: int | IO[Any] | None = None,
        passFds: Sequence[int] = (),
        cwd: str | None = None,
        umask: int = -1,
        user: int | None = None,
        group: int | None = None,
        extraGroups: Sequence[int] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.what = what
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._deadlineAt = 0.0
        self._holds = 0
        self._remaining = 0.0
        self._done = False
        self.popen = subprocess.Popen(
            self.argv,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=env if env is not None else childEnvironment(),
            pass_fds=tuple(passFds),
            cwd=cwd,
            umask=umask,
            user=user,
            group=group,
            extra_groups=extraGroups,
            start_new_session=True,  # its own process group: the whole tree is killed together
            close_fds=True,
        )
        with _LIVE_LOCK:
            _LIVE.add(self)
        self._arm(seconds)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _arm(self, seconds: float) -> None:
        timer = threading.Timer(max(0.0, seconds), self._expire)
        timer.daemon = True
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = timer
            self._deadlineAt = time.monotonic() + seconds
        timer.start()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Stop the clock while we, not the child, are the slow side (waiting on S3 or the disk).

        The deadline is for a child that hangs; a slow network must not kill a healthy gpg. The clock runs
        again, with what was left, once no caller holds it.
        """
        with self._lock:
            self._holds += 1
            if self._holds == 1 and self._timer is not None:
                self._timer.cancel()
                self._timer = None
                self._remaining = self._deadlineAt - time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self._holds -= 1
                rearm = self._holds == 0 and not self._done and not self.expired
            if rearm:
                self._arm(self._remaining)

    def restartClock(self, seconds: float) -> None:
        self.seconds = seconds
        self._done = False
        self._arm(seconds)

    def _expire(self) -> None:
        with self._lock:
            if self.popen.returncode is not None:
                return
            self.expired = True
        logger.error("%s: %s passed its deadline of %.0f s; killing it.", self.what, self.name, self.seconds)
        self.killGroup()

    @property
    def name(self) -> str:
        return os.path.basename(self.argv[0])

    def killGroup(self) -> None:
        """SIGKILL the child's whole process group, unless the child was already reaped (its pid may be reused)."""
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    def wait(self) -> int:
        """Wait for the child (the deadline still applies) and stop its clock; returns the exit status.

        Interrupted (SIGTERM's exception, Ctrl-C), the child is killed with its group: nothing outlives the wait
        that was meant to end it."""
        try:
            returncode = self.popen.wait()
        except BaseException:
            self.kill()
            raise
        self.cancel()
        return returncode

    def pauseClock(self) -> None:
        """Stop the clock while the child waits for us (a session between files); ``restartClock`` resumes it."""
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def cancel(self) -> None:
        """The child is done (or being reaped by its owner): no clock, no longer among the live children."""
        with _LIVE_LOCK:
            _LIVE.discard(self)
        with self._lock:
            self._done = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def kill(self) -> None:
        """Kill the whole group now (an error elsewhere ended the job) and reap the leader."""
        self.cancel()
        self.killGroup()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=REAP_WAIT)

    def timeoutError(self, detail: str = "") -> ChildTimeoutError:
        extra = f" {detail}" if detail else ""
        return ChildTimeoutError(
            f"{self.what}: {self.name} did not finish within its deadline of {self.seconds:.0f} s and was killed"
            f"{extra}; find out why it hangs (a stale lock, a dead mount, a prompt), or raise <child_timeout> / "
            "lower <child_min_throughput>."
        )

    def raiseIfExpired(self, detail: str = "") -> None:
        if self.expired:
            raise self.timeoutError(detail)


def runChild(
    argv: Sequence[str], *, what: str, seconds: float, env: dict[str, str] | None = None, cwd: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a short child to completion, output captured, under a deadline (e.g. ``gpgconf --kill``)."""
    pipes: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    child = Child(argv, what=what, seconds=seconds, env=env, cwd=cwd, **pipes)
    try:
        out, err = child.popen.communicate()
    except BaseException:
        child.kill()  # interrupted (SIGTERM's exception): the child goes too
        raise
    child.cancel()
    child.raiseIfExpired()
    return subprocess.CompletedProcess(child.argv, child.popen.returncode, out, err)
