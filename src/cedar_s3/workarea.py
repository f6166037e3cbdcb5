"""The legacy ``<encrypt>`` command's scratch area under ``<working_dir>``, used only through descriptors.

Upstream wrote an encrypted copy of the whole staging dir before uploading any of it. We run the command file
by file and delete each ciphertext as soon as it is uploaded. The command runs as the backup user and must
write its ``${output}`` somewhere, so the area is split by trust:

``cedar-s3-XXXX/``      root's, 0711, holding a lock while a night uses it
``cedar-s3-XXXX/in/``   root's, group the backup user's, 0710: root's own copies of the plaintexts (0640)
``cedar-s3-XXXX/out/``  the backup user's, 0700: where the command writes

The backup user can write only ``out/``; root reads what the command left there through a descriptor of
``out/`` (opened before the command ever ran) and checks each file on its own descriptor. ``<working_dir>``
itself may belong to the backup user, so nothing here is ever looked up by path again after creation.
``sweepWorkAreas`` removes areas a killed night left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import stat
import tempfile
import time
from types import TracebackType

__all__ = ["AREA_PREFIX", "WorkArea", "sweepWorkAreas"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.workarea")

AREA_PREFIX = "cedar-s3-"
LOCK_NAME = ".cedar-s3.lock"
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class WorkArea:
    """``with WorkArea(workingDir, uid, gid) as area:`` then ``area.inFd`` / ``area.outFd`` and their paths."""

    def __init__(self, workingDir: str, uid: int | None, gid: int | None) -> None:
        if not os.path.isdir(workingDir):
            raise OSError(f"<working_dir> {workingDir} does not exist or is not a directory.")
        self._workingDir = workingDir
        self._uid = uid
        self._gid = gid
        self.path = ""
        self.fd = self.inFd = self.outFd = self._parentFd = self._lockFd = -1

    @property
    def inPath(self) -> str:
        return os.path.join(self.path, "in")

    @property
    def outPath(self) -> str:
        return os.path.join(self.path, "out")

    def __enter__(self) -> WorkArea:
        self._parentFd = os.open(self._workingDir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self.path = tempfile.mkdtemp(prefix=AREA_PREFIX, dir=self._workingDir)  # O_EXCL mkdir: ours
            self.fd = os.open(os.path.basename(self.path), _DIR, dir_fd=self._parentFd)
            if os.fstat(self.fd).st_uid != os.geteuid():
                raise OSError(f"The work area {self.path} was replaced as it was created; check <working_dir>.")
            os.fchmod(self.fd, 0o711)
            self._lockFd = os.open(
                LOCK_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=self.fd
            )
            fcntl.flock(self._lockFd, fcntl.LOCK_EX)
            self.inFd = self._subdir("in", 0o710, None if self._gid is None else (os.geteuid(), self._gid))
            owner = (self._uid, self._gid) if self._uid is not None and self._gid is not None else None
            self.outFd = self._subdir("out", 0o700, owner)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _subdir(self, name: str, mode: int, owner: tuple[int, int] | None) -> int:
        os.mkdir(name, 0o700, dir_fd=self.fd)
        descriptor = os.open(name, _DIR, dir_fd=self.fd)
        if owner is not None:
            os.fchown(descriptor, *owner)
        os.fchmod(descriptor, mode)
        return descriptor

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        name = os.path.basename(self.path)
        if self.fd >= 0 and name:
            with contextlib.suppress(OSError):
                current = os.stat(name, dir_fd=self._parentFd, follow_symlinks=False)
                mine = os.fstat(self.fd)
                if (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
                    shutil.rmtree(name, dir_fd=self._parentFd, ignore_errors=True)
            if os.path.lexists(self.path):  # never fail a night over cleanup, but never hide ciphertext left behind
                logger.warning("Could not remove the temporary directory [%s]; remove it by hand.", self.path)
        for descriptor in (self.inFd, self.outFd, self._lockFd, self.fd, self._parentFd):
            if descriptor >= 0:
                os.close(descriptor)
        self.fd = self.inFd = self.outFd = self._parentFd = self._lockFd = -1


def _unlocked(parentFd: int, name: str) -> bool:
    try:
        areaFd = os.open(name, _DIR, dir_fd=parentFd)
    except OSError:
        return False
    try:
        lock = os.open(LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=areaFd)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    finally:
        os.close(areaFd)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(lock)
    return True


def sweepWorkAreas(workingDir: str, olderThan: float) -> list[str]:
    """Remove work areas a killed night left in ``workingDir``: ours by name and owner, unlocked, older than
    ``olderThan`` seconds. Returns what was removed."""
    removed: list[str] = []
    try:
        parentFd = os.open(workingDir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return removed
    cutoff = time.time() - olderThan
    try:
        for name in os.listdir(parentFd):
            if not name.startswith(AREA_PREFIX) or name.startswith(f"{AREA_PREFIX}gnupg-"):
                continue
            try:
                info = os.stat(name, dir_fd=parentFd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            ours = stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
            if ours and info.st_mtime <= cutoff and _unlocked(parentFd, name):
                shutil.rmtree(name, dir_fd=parentFd, ignore_errors=True)
                removed.append(os.path.join(workingDir, name))
    finally:
        os.close(parentFd)
    return removed
