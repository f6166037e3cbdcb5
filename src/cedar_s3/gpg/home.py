"""GnuPG homes: our private throw-away ones, the administrator's keyring, passphrase files, and sweeping.

Native GnuPG never runs in the administrator's home. Public-key mode copies the keyring file into a private,
0700 throw-away home (so root never leaves files in the backup user's ``~/.gnupg``, and a backup user cannot
swap files root is about to read there); symmetric mode needs no keyring at all. Each private home holds a lock
file, locked for as long as a process uses the home, so ``sweepHomes`` can tell a home a killed night left
behind (with its gpg-agent still running) from one in use.

The keyring is read through a descriptor opened with ``O_NOFOLLOW`` below a directory descriptor: the backup
user owns ``~/.gnupg``, so a path there is theirs to repoint between a check and a read.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import logging
import os
import pwd
import shutil
import stat
import tempfile
import time

from cedar_s3.children import runChild

__all__ = [
    "HOME_PREFIX",
    "PrivateHome",
    "checkPassphraseFile",
    "killAgent",
    "readKeyring",
    "readPassphrase",
    "sweepHomes",
]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.gpg")

HOME_PREFIX = "cedar-s3-gnupg-"
LOCK_NAME = ".cedar-s3.lock"
SOCKET_PATH_MAX = 107  # bytes of a Unix socket path (sun_path without its NUL)
AGENT_KILL_SECONDS = 30.0
MAX_KEYRING = 64 * 1024 * 1024
MAX_PASSPHRASE_FILE = 64 * 1024
_NOFOLLOW_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def killAgent(home: str, binary: str | None = None) -> None:
    """gpg starts one gpg-agent per home and leaves it running; a nightly job must not leak one per night.

    The ``gpgconf`` beside the ``gpg`` that was used comes first, so the agent of that very installation is
    the one asked to stop. Where ``/run/user/UID`` exists, gpg keeps the sockets of a home in a directory of
    its own there, which outlives the home unless removed too.
    """
    beside = os.path.join(os.path.dirname(binary), "gpgconf") if binary else ""
    gpgconf = beside if beside and os.access(beside, os.X_OK) else shutil.which("gpgconf")
    if not gpgconf:
        return
    for action in (["--kill", "all"], ["--remove-socketdir"]):
        with contextlib.suppress(OSError):
            runChild(
                [gpgconf, "--homedir", home, *action],
                what=f"stopping gpg-agent of {home}",
                seconds=AGENT_KILL_SECONDS,
                env={"PATH": "/usr/bin:/bin", "HOME": home},
            )


def _tempParents() -> list[str]:
    """Where private homes go: the temp dir, or /tmp when the temp dir is too long for gpg-agent's sockets."""
    parent = tempfile.gettempdir()
    if len(parent) + len(f"/{HOME_PREFIX}12345678") > SOCKET_PATH_MAX - len("/S.gpg-agent.browser"):
        return ["/tmp"]  # noqa: S108 - only the parent of a fresh 0700 mkdtemp
    return [parent] if parent == "/tmp" else [parent, "/tmp"]  # noqa: S108


class PrivateHome:
    """A 0700 throw-away GnuPG home, locked while in use; ``close()`` stops its agent and removes it."""

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary
        self.path = tempfile.mkdtemp(prefix=HOME_PREFIX, dir=_tempParents()[0])
        os.chmod(self.path, 0o700)
        self._lock = os.open(os.path.join(self.path, LOCK_NAME), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)

    def __enter__(self) -> PrivateHome:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._lock < 0:
            return
        killAgent(self.path, self.binary)
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock)
        self._lock = -1


def _unlocked(path: str) -> bool:
    """True when no live process holds the home's lock (or it has none: a home from before locks)."""
    try:
        descriptor = os.open(os.path.join(path, LOCK_NAME), _NOFOLLOW_READ)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(descriptor)
    return True


def sweepHomes(olderThan: float, binary: str | None = None) -> list[str]:
    """Remove private homes a killed run left behind: ours by name and owner, unlocked, older than ``olderThan``
    seconds; their gpg-agent is stopped first. Returns what was removed."""
    removed: list[str] = []
    cutoff = time.time() - olderThan
    for parent in dict.fromkeys(_tempParents()):
        try:
            names = [name for name in os.listdir(parent) if name.startswith(HOME_PREFIX)]
        except OSError:
            continue
        for name in names:
            path = os.path.join(parent, name)
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            ours = stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
            if not ours or info.st_mtime > cutoff or not _unlocked(path):
                continue
            killAgent(path, binary)
            shutil.rmtree(path, ignore_errors=True)  # fd-based on Linux: safe against symlinks planted inside
            if not os.path.lexists(path):
                removed.append(path)
    return removed


def _privateGroup(info: os.stat_result) -> bool:
    """True when the file's group is its owner's user-private group (the owner is its only possible member).

    Debian and Ubuntu give each user a group of their own, and under ``su`` pam_umask makes files group-writable
    (umask 002); OpenSSH's Debian patch accepts exactly this case, and so do we.
    """
    try:
        owner = pwd.getpwuid(info.st_uid)
        group = grp.getgrgid(info.st_gid)
    except KeyError:
        return False
    if owner.pw_gid != info.st_gid or any(member != owner.pw_name for member in group.gr_mem):
        return False
    return all(entry.pw_gid != info.st_gid or entry.pw_uid == info.st_uid for entry in pwd.getpwall())


def _checkWritable(info: os.stat_result, what: str) -> None:
    """Refuse a home or keyring others could write keys into (group-writable only for a user-private group)."""
    mode = info.st_mode & 0o777
    if mode & 0o002 or (mode & 0o020 and not _privateGroup(info)):
        raise ValueError(f"{what} is writable by group or others (mode {mode:o}); chmod go-w it.")


def readKeyring(home: str, setting: str = "<gpg_home>") -> tuple[str, bytes]:
    """``(name, bytes)`` of the public keyring of an existing, private GnuPG home, read without following links."""
    try:
        homeFd = os.open(home, _NOFOLLOW_DIR)
    except FileNotFoundError:
        raise ValueError(
            f"{setting} {home} does not exist (without {setting}, the backup user's ~/.gnupg is used); import the "
            "recipients' public keys there."
        ) from None
    except OSError as error:
        raise ValueError(
            f"{setting} {home} is not a directory one can open without following a link: {error.strerror}."
        ) from None
    try:
        _checkWritable(os.fstat(homeFd), f"{setting} {home}")
        for name in ("pubring.kbx", "pubring.gpg"):
            try:
                descriptor = os.open(name, _NOFOLLOW_READ, dir_fd=homeFd)
            except FileNotFoundError:
                continue
            except OSError as error:
                raise ValueError(
                    f"{setting} keyring {home}/{name} cannot be opened safely: {error.strerror}."
                ) from None
            with os.fdopen(descriptor, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise ValueError(f"{setting} keyring {home}/{name} is not a regular file.")
                _checkWritable(info, f"{setting} keyring {home}/{name}")
                return name, handle.read(MAX_KEYRING)
    finally:
        os.close(homeFd)
    raise ValueError(f"{setting} {home} holds no public keyring (pubring.kbx or pubring.gpg).")


def _openRegular(path: str, setting: str) -> int:
    try:
        descriptor = os.open(path, _NOFOLLOW_READ)
    except FileNotFoundError:
        raise ValueError(f"{setting} {path} does not exist.") from None
    except PermissionError:
        raise ValueError(f"{setting} {path} cannot be read by this user.") from None
    except OSError as error:
        raise ValueError(f"{setting} {path} cannot be opened without following a link: {error.strerror}.") from None
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode):
        os.close(descriptor)
        raise ValueError(f"{setting} {path} is not a regular file.")
    if info.st_mode & 0o077:
        logger.warning(
            "%s %s is readable or writable by others (mode %o); chmod 600 it.", setting, path, info.st_mode & 0o777
        )
    return descriptor


def checkPassphraseFile(path: str, setting: str = "<gpg_passphrase_file>") -> None:
    """The passphrase file must be a readable regular file (not a link); readable by others earns a warning."""
    os.close(_openRegular(path, setting))


def readPassphrase(path: str, setting: str = "<gpg_passphrase_file>") -> str:
    """The first line of the file, as ``gpg --passphrase-file`` would read it."""
    with os.fdopen(_openRegular(path, setting), "rb") as handle:
        raw = handle.read(MAX_PASSPHRASE_FILE)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{setting} {path} is not UTF-8 text.") from None
    passphrase = text.split("\n", 1)[0].rstrip("\r")
    if not passphrase:
        raise ValueError(f"{setting} {path} is empty; its first line is the passphrase.")
    return passphrase
