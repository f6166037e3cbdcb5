"""Upstream's ``<encrypt>`` command, run once per file as the backup user, hardened for a root night.

The ``${input}``/``${output}`` contract is upstream's, with the paths shell-quoted (upstream pasted them raw, so
a staged file named ``a b;$(touch x).tar`` broke the command or ran part of its name). What changed underneath:

- ``${input}`` is root's own copy of the staged file, made through the night's descriptor (and hashed on the
  way) in a directory the backup user can read but not write, so the command cannot be redirected to another
  file, and what it encrypted is exactly what was hashed.
- ``${output}`` is read back through a descriptor of the command's directory, opened ``O_NOFOLLOW`` and checked
  on the descriptor: a regular file, owned by the backup user, one link. A symlink planted there (to any file
  root can read) is refused, not uploaded.
- The command runs as the backup user directly (uid, gid and groups set in the child, no ``su``), in a process
  group of its own with a deadline scaled by the file's size, an environment holding only PATH, locale and the
  user's HOME, and ``umask 077``.

Disk bound: per file in flight, one plaintext copy and one ciphertext (about twice the file's size).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import pwd
import re
import secrets
import shlex
import stat
import subprocess
import tempfile
from dataclasses import dataclass

from cedar_s3.bucketformat import Encryption
from cedar_s3.children import Child, Deadlines, childEnvironment
from cedar_s3.digest import BytesReader
from cedar_s3.gpg.process import Readable
from cedar_s3.workarea import WorkArea

__all__ = ["Ciphertext", "CommandEncryptor"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.legacy")

COPY_CHUNK = 1024 * 1024
STDERR_TAIL = 64 * 1024
SELF_CHECK_TEXT = b"cedar-s3 self-check: this proves the <encrypt> command works\n"
_QUOTED_PLACEHOLDER = re.compile(r"""(["'])(\$\{(?:input|output)\})\1""")
_OUTPUT = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def substitute(template: str, source: str, target: str) -> str:
    """Upstream's ``${input}``/``${output}`` substitution, with the paths shell-quoted.

    Placeholders the administrator already wrapped in quotes are unwrapped first, so both ``${input}`` and
    ``"${input}"`` work.
    """
    template = _QUOTED_PLACEHOLDER.sub(r"\2", template)
    return template.replace("${input}", shlex.quote(source)).replace("${output}", shlex.quote(target))


@dataclass(frozen=True)
class Identity:
    """Who the command runs as: the backup user when root, else ourselves."""

    uid: int | None
    gid: int | None
    groups: list[int] | None
    home: str

    @classmethod
    def of(cls, user: str | None) -> Identity:
        if os.geteuid() == 0 and user and user != "root":
            entry = pwd.getpwnam(user)
            return cls(entry.pw_uid, entry.pw_gid, os.getgrouplist(user, entry.pw_gid), entry.pw_dir)
        return cls(None, None, None, os.environ.get("HOME", "/"))

    @property
    def ownerUid(self) -> int:
        return self.uid if self.uid is not None else os.geteuid()


class Ciphertext:
    """What the command wrote, open on a checked descriptor; ``discard()`` removes it."""

    def __init__(self, area: WorkArea, name: str, descriptor: int, size: int) -> None:
        self._area = area
        self.name = name
        self.descriptor = descriptor
        self.size = size

    def discard(self) -> None:
        if self.descriptor >= 0:
            os.close(self.descriptor)
            self.descriptor = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.name, dir_fd=self._area.outFd)


class CommandEncryptor:
    """Upstream's ``<encrypt>`` command, one run per file, as the backup user."""

    mode = Encryption.COMMAND

    def __init__(self, template: str, backupUser: str | None, area: WorkArea, deadlines: Deadlines) -> None:
        self._template = template
        self._identity = Identity.of(backupUser)
        self._area = area
        self._deadlines = deadlines

    def encrypt(self, source: Readable, size: int, what: str, name: str) -> Ciphertext:
        """Run the command on root's copy of ``source`` (``size`` bytes, the staged file's basename ``name``, as
        upstream's ``${input}`` had it): what it encrypts is exactly what was read."""
        token = secrets.token_hex(8)
        os.mkdir(token, 0o700, dir_fd=self._area.inFd)
        holder = os.open(token, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._area.inFd)
        try:
            if self._identity.gid is not None:
                os.fchown(holder, os.geteuid(), self._identity.gid)
            os.fchmod(holder, 0o710)
            self._copyIn(source, holder, name)
            try:
                self._run(f"{token}/{name}", token, what, size)
            finally:
                os.unlink(name, dir_fd=holder)
        finally:
            os.close(holder)
            os.rmdir(token, dir_fd=self._area.inFd)
        return self._output(token, what)

    def _copyIn(self, source: Readable, directory: int, name: str) -> None:
        """Root's copy of the plaintext, readable by the backup user's group only."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        descriptor = os.open(name, flags, 0o600, dir_fd=directory)
        try:
            with os.fdopen(descriptor, "wb", closefd=False) as sink:
                while chunk := source.read(COPY_CHUNK):
                    sink.write(chunk)
            if self._identity.gid is not None:
                os.fchown(descriptor, os.geteuid(), self._identity.gid)
            os.fchmod(descriptor, 0o640)
        except BaseException:
            os.unlink(name, dir_fd=directory)
            raise
        finally:
            os.close(descriptor)

    def _run(self, inName: str, outName: str, what: str, size: int) -> None:
        command = "umask 077; " + substitute(
            self._template, os.path.join(self._area.inPath, inName), os.path.join(self._area.outPath, outName)
        )
        identity = self._identity
        env = childEnvironment(HOME=identity.home)
        if identity.uid is not None:
            user = pwd.getpwuid(identity.uid).pw_name
            env |= {"USER": user, "LOGNAME": user}
        with tempfile.TemporaryFile() as stderr:  # anonymous: nothing is left on disk, even after a kill
            child = Child(
                ["/bin/sh", "-c", command],
                what=f"the <encrypt> command on [{what}]",
                seconds=self._deadlines.forBytes(size),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=self._area.outPath,
                user=identity.uid,
                group=identity.gid,
                extraGroups=identity.groups,
            )
            returncode = child.wait()
            child.raiseIfExpired()
            if returncode != 0:
                stderr.seek(max(0, os.fstat(stderr.fileno()).st_size - STDERR_TAIL))
                tail = stderr.read().decode("utf-8", "replace").strip().splitlines()[-3:]
                logger.error("<encrypt> command failed for [%s]: %s", what, " | ".join(tail))
                raise OSError(f"Error [{returncode}] encrypting [{what}] with the <encrypt> command.")

    def _output(self, name: str, what: str) -> Ciphertext:
        try:
            descriptor = os.open(name, _OUTPUT, dir_fd=self._area.outFd)
        except FileNotFoundError:
            raise OSError(f"The <encrypt> command exited 0 but wrote no ${{output}} for [{what}].") from None
        except OSError as error:
            if error.errno != errno.ELOOP:
                raise
            os.unlink(name, dir_fd=self._area.outFd)
            raise OSError(
                f"The <encrypt> command left a symbolic link as ${{output}} for [{what}]; refusing it."
            ) from None
        ciphertext = Ciphertext(self._area, name, descriptor, 0)
        info = os.fstat(descriptor)
        problem = None
        if not stat.S_ISREG(info.st_mode):
            problem = "is not a regular file"
        elif info.st_uid != self._identity.ownerUid:
            problem = f"is owned by uid {info.st_uid}, not by the backup user"
        elif info.st_nlink != 1:
            problem = f"has {info.st_nlink} links (a hard link to another file)"
        if problem is not None:
            ciphertext.discard()
            raise OSError(f"The <encrypt> command's ${{output}} for [{what}] {problem}; refusing it.")
        ciphertext.size = info.st_size
        return ciphertext

    def selfCheck(self) -> None:
        """Run the command once on a few bytes, so a broken command fails the night before any upload."""
        try:
            ciphertext = self.encrypt(
                BytesReader(SELF_CHECK_TEXT), len(SELF_CHECK_TEXT), "the self-check sample", "self-check.txt"
            )
        except OSError as error:
            raise ValueError(f"<encrypt> command self-check failed: {error}") from None
        try:
            if ciphertext.size == 0:
                raise ValueError("<encrypt> command self-check failed: it wrote an empty ${output}.")
        finally:
            ciphertext.discard()

    def close(self) -> None:
        """Nothing to release: each run is its own process, and the work area is the night's."""
