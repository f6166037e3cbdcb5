"""The backup user as attacker: a real unprivileged account, its processes, root-only targets, and the checks.

cedar-s3's night runs as root, but the staged day (and in legacy ``<encrypt>`` mode the work area) belongs to
the backup user. These helpers let a test play that user for real: ``ensureAttacker`` makes the account,
``Attacker`` runs a script from ``tests/attackers/`` as that account under the system interpreter, and
``RootTarget`` is a root-only file with unique content whose owner, mode and bytes must survive the night and
whose content must never be found in the bucket (``bucketContains``).

Everything here is made under ``/var/tmp/cedar-attack-*`` (the night's tree, which the backup user must reach)
and ``/root/cedar-attack-*`` (the targets, which it must not), and removed afterwards.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import pwd
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from nightkit import Night, getBytes

ATTACKER = "cedarattk"
SYSTEM_PYTHON = "/usr/bin/python3"  # the venv's interpreter may sit under /root, unreadable to the attacker
ATTACKERS = Path(__file__).resolve().parent / "attackers"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REPLY_TIMEOUT = 20.0  # seconds an attacker gets to answer one command
STOP_TIMEOUT = 10.0
STORE_INDICATOR_NAME = "cback.amazons3"  # also the first part of the names of the manifest and the marker
MANIFEST_NAME = "cback.amazons3.manifest.json"  # the bucket format's, spelled out: the product's modules move
AWS_SETTINGS = (  # what conftest put in this process's environment for the tests' S3 endpoint
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_EC2_METADATA_DISABLED",
)


# -- the account ------------------------------------------------------------------------------------------------


def ensureAttacker() -> pwd.struct_passwd:
    """The backup user, created once and left in place (like the e2e tests' account); its files are the tests'."""
    try:
        return pwd.getpwnam(ATTACKER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--create-home", "--shell", "/bin/sh", ATTACKER],
            check=True,
            timeout=60,
        )
        return pwd.getpwnam(ATTACKER)


def chownTree(path: Path, user: pwd.struct_passwd) -> None:
    """``chown -R`` without following symlinks (a link the attacker planted must not hand over its target)."""
    os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
    for parent, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.chown(os.path.join(parent, name), user.pw_uid, user.pw_gid, follow_symlinks=False)


def stageAsBackupUser(night: Night, user: pwd.struct_passwd) -> Path:
    """Ownership as the real ``stage`` action leaves it: the day and everything in it is the backup user's.

    Cedar Backup's ``_createStagingDirs`` also chowns the day's two parents (``YYYY`` and ``YYYY/MM``) when it
    creates them, so the backup user can rename the day directory itself; the staging root stays root's.
    """
    day = night.dayDir()
    chownTree(day, user)
    for parent in (day.parent, day.parent.parent):
        os.chown(parent, user.pw_uid, user.pw_gid)
    return day


@contextlib.contextmanager
def attackTree(user: pwd.struct_passwd) -> Iterator[Path]:
    """``/var/tmp/cedar-attack-*``: root's, 0755, so the backup user reaches the night's dirs but not the root."""
    root = Path(tempfile.mkdtemp(prefix="cedar-attack-", dir="/var/tmp"))
    try:
        root.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def attackNight(root: Path, bucket: str, endpoint: str, user: pwd.struct_passwd, **settings: Any) -> Night:
    """A night whose backup user is the attacker and whose working dir it owns.

    Owning ``<working_dir>`` is an assumption of these tests (cback3 only needs it to exist and be writable):
    with a root-owned working dir the attacker can still list it and race the self-check sample inside its work
    area, but it can no longer swap the work area itself.
    """
    night = Night(root, bucket, endpoint, backupUser=user.pw_name, backupGroup=user.pw_name, settings=settings)
    os.chown(night.workDir, user.pw_uid, user.pw_gid)
    night.workDir.chmod(0o700)
    return night


# -- what must stay root's --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    uid: int
    gid: int
    mode: int
    content: bytes


@dataclass
class RootTarget:
    """A 0600 root file in a 0700 root dir, with unique random content; ``changes()`` lists what was touched."""

    path: Path
    content: bytes
    before: Snapshot | None = None

    def snapshot(self) -> Snapshot:
        info = os.lstat(self.path)
        return Snapshot(info.st_uid, info.st_gid, info.st_mode, self.path.read_bytes())

    def reset(self) -> None:
        """Put the original back (after a round of a race that may have changed it)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.path.write_bytes(self.content)
        os.chown(self.path, 0, 0)
        self.path.chmod(0o600)
        os.chown(self.path.parent, 0, 0)
        self.path.parent.chmod(0o700)
        self.before = self.snapshot()

    def changes(self) -> list[str]:
        """What about the target differs from the snapshot: owner, group, mode, content (empty: untouched)."""
        assert self.before is not None
        now = self.snapshot()
        found = [name for name in ("uid", "gid", "mode") if getattr(now, name) != getattr(self.before, name)]
        if now.content != self.before.content:
            found.append("content")
        parent = os.lstat(self.path.parent)
        if (parent.st_uid, parent.st_mode & 0o777) != (0, 0o700):
            found.append("parent dir owner/mode")
        return found


@contextlib.contextmanager
def rootTarget(name: str = "secret") -> Iterator[RootTarget]:
    """``/root/cedar-attack-*/NAME``, holding one line no other file anywhere contains."""
    directory = Path(tempfile.mkdtemp(prefix="cedar-attack-", dir="/root"))
    try:
        target = RootTarget(directory / name, f"CEDAR-ATTACK-SECRET {secrets.token_hex(16)}\n".encode())
        target.reset()
        yield target
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# -- the bucket -------------------------------------------------------------------------------------------------


def allObjectBytes(s3: Any, bucket: str) -> dict[str, bytes]:
    """Every object version in the bucket (current and noncurrent), keyed ``key@version``."""
    found: dict[str, bytes] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            key, versionId = version["Key"], version["VersionId"]
            args = {"Bucket": bucket, "Key": key} | ({"VersionId": versionId} if versionId != "null" else {})
            found[f"{key}@{versionId}"] = bytes(s3.get_object(**args)["Body"].read())
    return found


def bucketContains(s3: Any, bucket: str, secretBytes: bytes) -> list[str]:
    """The objects (``key@version``) whose bytes contain ``secretBytes`` anywhere; [] when none does."""
    return [name for name, data in allObjectBytes(s3, bucket).items() if secretBytes in data]


def dayObjects(s3: Any, night: Night) -> dict[str, bytes]:
    """The night's day's objects, current versions, key to bytes."""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=night.bucket, Prefix=night.suffix + "/"):
        keys += [entry["Key"] for entry in page.get("Contents", [])]
    return {key: getBytes(s3, night.bucket, key) for key in keys}


# -- the attacker's processes -----------------------------------------------------------------------------------


def userEnv(user: pwd.struct_passwd) -> dict[str, str]:
    return {"PATH": CLEAN_PATH, "HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name, "LANG": "C.UTF-8"}


@functools.cache
def _scriptsDir() -> Path:
    """A root-owned 0755 directory the attacker can read: the checkout itself may sit below a 0700 directory
    (a clone in a ``mktemp -d``), and the attacker must not be able to change the scripts it runs."""
    directory = Path(tempfile.mkdtemp(prefix="cedar-s3-attackers-"))
    directory.chmod(0o755)
    atexit.register(shutil.rmtree, directory, True)
    return directory


def readableCopy(script: str) -> Path:
    """The attacker script ``script`` of ``tests/attackers/``, copied where the attacker account can run it."""
    copy = _scriptsDir() / script
    if not copy.exists():
        shutil.copyfile(ATTACKERS / script, copy)
        copy.chmod(0o644)
    return copy


@dataclass
class Attacker:
    """One attacker script from ``tests/attackers/`` running as the backup user; a context manager that stops it."""

    user: pwd.struct_passwd
    script: str
    args: list[str] = field(default_factory=list)
    process: subprocess.Popen[str] | None = None
    _selector: selectors.BaseSelector | None = None

    def __enter__(self) -> Attacker:
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(readableCopy(self.script)), *self.args],
            user=self.user.pw_uid,
            group=self.user.pw_gid,
            extra_groups=[],
            cwd=self.user.pw_dir,
            env=userEnv(self.user),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self._selector = selectors.DefaultSelector()
        assert self.process.stdout is not None
        self._selector.register(self.process.stdout, selectors.EVENT_READ)
        try:
            line = self.readLine()
        except AssertionError:
            self.stop()
            raise
        if line != "ready":
            rest = self.stop()
            raise AssertionError(f"attacker {self.script} did not start: {line!r} {rest}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def readLine(self, timeout: float = REPLY_TIMEOUT) -> str:
        """The attacker's next line of output, or a test failure if none arrives in ``timeout`` seconds."""
        assert self.process is not None and self.process.stdout is not None and self._selector is not None
        if not self._selector.select(timeout):
            raise AssertionError(f"attacker {self.script} said nothing within {timeout} s")
        return self.process.stdout.readline().strip()

    def command(self, **command: str) -> str:
        """Send one JSON command (``swapper.py``) and return its answer (``ok`` or ``error: ...``)."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self.readLine()

    def stop(self) -> str:
        """SIGTERM, then SIGKILL after ``STOP_TIMEOUT``; returns the rest of the attacker's output (and errors)."""
        if self.process is None:
            return ""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
        try:
            rest, errors = self.process.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            rest, errors = self.process.communicate(timeout=STOP_TIMEOUT)
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self.process = None
        return (rest or "") + (errors or "")


# -- a night in a child process, with a deadline ----------------------------------------------------------------


@dataclass
class ChildNight:
    """The real ``cback3 --full amazons3`` as root in a child process, killed with everything it started on timeout."""

    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    output: IO[bytes] | None = None

    def start(self) -> ChildNight:
        self.output = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close(), after the night is read
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=self.output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def wait(self, deadline: float) -> int | None:
        """The exit status, or None when the night was still running after ``deadline`` seconds (then killed)."""
        assert self.process is not None
        try:
            return self.process.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        """SIGKILL the night and every process it started (by pid: its descendants, then its process group)."""
        assert self.process is not None
        for pid in [*descendants(self.process.pid), self.process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)

    def text(self) -> str:
        assert self.output is not None
        self.output.seek(0)
        return self.output.read().decode("utf-8", "replace")

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()
        if self.output is not None:
            self.output.close()


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from /proc), deepest last, so that they can be killed by their ids."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def processesMatching(needle: str) -> list[int]:
    """Live (not zombie) processes whose command line contains ``needle``, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in command and state != "Z":
            found.append(int(entry))
    return found


def killAll(pids: list[int]) -> None:
    """SIGKILL processes this test started (found by ``processesMatching`` on a needle unique to the test)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def cback3Argv(night: Night, log: Path) -> list[str]:
    cback3 = shutil.which("cback3") or "cback3"
    return [cback3, "--config", str(checkedConfig(night)), "--full", "--stack", "--logfile", str(log), "amazons3"]


def cback3Env(tempDir: Path, path: str = "", **extra: str) -> dict[str, str]:
    """root's environment for a cback3 night: clean PATH (``path`` first), test credentials, a temp dir of ours."""
    cback3 = shutil.which("cback3") or "/usr/bin/cback3"
    env = {
        "PATH": ":".join(part for part in (path, os.path.dirname(cback3), CLEAN_PATH) if part),
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "TMPDIR": str(tempDir),
    }
    for name in AWS_SETTINGS:
        env[name] = os.environ[name]
    if "PYTHONPATH" in os.environ:  # a developer trying a changed extension without reinstalling it
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env | extra


def stopAgent(home: Path) -> None:
    """Stop the gpg-agent of a GnuPG home a test made or a killed night left (gpgconf, bounded)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False, timeout=30
        )


def waitFor(check: Any, timeout: float, what: str) -> None:
    """Poll ``check()`` until it holds; a test failure naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


# -- what a user would notice -----------------------------------------------------------------------------------


def stageFiles(night: Night, user: pwd.struct_passwd, files: dict[str, bytes]) -> Path:
    """Lay out today's day and hand it to the backup user as ``stage`` does."""
    night.stage(files)
    return stageAsBackupUser(night, user)


def storeGoodNight(night: Night, s3: Any) -> dict[str, bytes]:
    """A night with no attack, so that the day's previous remote copy exists; returns it (key to bytes).

    The indicator it writes is removed again, so that its absence after a failed attacked night means something.
    """
    night.run()
    assert night.indicator().exists(), "the good night did not store the day"
    night.indicator().unlink()
    return dayObjects(s3, night)


def checkedConfig(night: Night) -> Path:
    """Write the night's cback3.conf and prove the extension accepts it, so an attacked night that fails has
    failed on the attack, not on a setting the test got wrong (an unescaped ``&`` in a command, say)."""
    from cedar_s3.amazons3 import LocalConfig  # the drop-in module's public name

    path = night.writeConfig()
    try:
        LocalConfig(xmlPath=str(path))
    except ValueError as error:
        raise AssertionError(f"the test's own configuration is invalid: {error}") from None
    return path


def runNight(night: Night) -> BaseException | None:
    """``executeAction`` in this process; the exception it raised, or None when it succeeded."""
    checkedConfig(night)
    try:
        night.run()
    except Exception as error:
        return error
    return None


def _isOwn(night: Night, key: str) -> bool:
    """The extension's own objects of the day (manifest, incomplete marker), not staged data."""
    return key.removeprefix(night.suffix + "/").startswith(STORE_INDICATOR_NAME)


def isIndicator(path: Path) -> bool:
    """A store indicator the night wrote: a regular file (a symlink an attacker planted under the name is not)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def defenceFailures(
    night: Night,
    s3: Any,
    target: RootTarget,
    previous: dict[str, bytes],
    failed: bool,
    legitimate: dict[str, bytes],
) -> list[str]:
    """Everything a user would notice about an attacked night that went wrong; [] means it was defended.

    Either the night failed (then: no indicator, the previous copy still there byte for byte) or it stored only
    legitimate content (each stored object is the bytes of a file the test staged under that name). Either way
    the target's content is in no object of the bucket and its owner, mode and bytes are unchanged.
    """
    problems = []
    leaks = bucketContains(s3, night.bucket, target.content)
    if leaks:
        problems.append(f"the root-only target's content is in the bucket: {leaks}")
    changes = target.changes()
    if changes:
        problems.append(f"the root-only target {target.path} changed: {', '.join(changes)}")
    now = dayObjects(s3, night)
    if failed:
        if isIndicator(night.indicator()):
            problems.append(f"a failed night left the store indicator {night.indicator()}")
        # the data objects byte for byte; the manifest only has to be there (a night that fails after storing
        # and verifying the same content, e.g. on its indicator, rewrites it with new times)
        damaged = sorted(key for key, data in previous.items() if not _isOwn(night, key) and now.get(key) != data)
        damaged += sorted(key for key in previous if key.endswith(MANIFEST_NAME) and key not in now)
        if damaged:
            problems.append(f"a failed night damaged the previous copy of the day: {damaged}")
    else:
        for key, data in now.items():
            relative = key.removeprefix(night.suffix + "/")
            if _isOwn(night, key):
                continue
            if legitimate.get(relative) != data:
                problems.append(f"the night stored {key} with content that was never staged under that name")
    return problems
