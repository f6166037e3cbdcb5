"""Write files under one directory and nowhere else, whatever the names and whatever is already there.

Names come from a bucket, which may be hostile: each must be a plain relative path (no ``..``, no absolute
path, no empty segment). Directories are walked one component at a time from an open descriptor of the
target with ``O_NOFOLLOW``, so a symlink planted anywhere below the target (``DIR/host -> /etc``) is refused
rather than followed, even if it appears after the checks. Each file is written to a private temporary file
beside its final name and renamed into place only when complete and proven, so a failed file leaves nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from typing import BinaryIO

from cedar_s3.bucketformat import checkRelativeKey

__all__ = ["RestoreRefusedError", "SafeDir"]

DIR_MODE = 0o700
FILE_MODE = 0o600
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class RestoreRefusedError(ValueError):
    """A file cannot be written safely (or without overwriting) under the target; the message says why."""


class SafeDir:
    """``SafeDir(target, overwrite=False)``; ``check(relative)`` before, ``write(relative, fill)`` to write."""

    def __init__(self, target: str, *, overwrite: bool) -> None:
        os.makedirs(target, mode=DIR_MODE, exist_ok=True)
        self.root = os.path.realpath(target)
        self.overwrite = overwrite
        self._rootFd = os.open(self.root, _DIR_FLAGS)

    def close(self) -> None:
        if self._rootFd >= 0:
            os.close(self._rootFd)
            self._rootFd = -1

    def __enter__(self) -> SafeDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def show(self, relative: str) -> str:
        return os.path.join(self.root, relative)

    def check(self, relative: str) -> None:
        """Refuse, before anything is written, a name or an existing path that ``write`` would refuse."""
        parts = _parts(relative)
        path = self.root
        for part in parts[:-1]:
            path = os.path.join(path, part)
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                return
            if not stat.S_ISDIR(info.st_mode):
                raise RestoreRefusedError(_notADirectory(path, info))
        final = os.path.join(path, parts[-1])
        try:
            info = os.lstat(final)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(info.st_mode):
            raise RestoreRefusedError(f"{final} is a directory; move it away to restore the file of that name.")
        if not self.overwrite:
            raise RestoreRefusedError(f"{final} already exists; restore into an empty directory or pass --overwrite.")

    def write(self, relative: str, fill: Callable[[BinaryIO], None]) -> None:
        """Create ``relative`` with what ``fill`` writes; nothing is left under its name if ``fill`` fails."""
        parts = _parts(relative)
        with self._parent(parts) as parent:
            name = parts[-1]
            temporary = f".cback3-s3-{secrets.token_hex(8)}.part"  # short: the final name may be at the limit
            descriptor = os.open(temporary, _FILE_FLAGS, FILE_MODE, dir_fd=parent)
            try:
                with os.fdopen(descriptor, "wb") as handle:
                    fill(handle)
                    handle.flush()
                    os.fsync(handle.fileno())
                self._place(parent, temporary, name, relative)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary, dir_fd=parent)
                raise

    def _place(self, parent: int, temporary: str, name: str, relative: str) -> None:
        """Rename into place; without --overwrite, atomically refuse a name that appeared meanwhile."""
        if self.overwrite:
            try:
                os.replace(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
            except IsADirectoryError:
                raise RestoreRefusedError(f"{self.show(relative)} is a directory; move it away.") from None
            return
        try:
            os.link(temporary, name, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
        except FileExistsError:
            raise RestoreRefusedError(f"{self.show(relative)} already exists; pass --overwrite.") from None
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            # a filesystem without hard links: check, then rename (a small window, but never outside the target)
            with contextlib.suppress(FileNotFoundError):
                os.stat(name, dir_fd=parent, follow_symlinks=False)
                raise RestoreRefusedError(f"{self.show(relative)} already exists; pass --overwrite.") from None
            os.rename(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
            return
        os.unlink(temporary, dir_fd=parent)

    @contextlib.contextmanager
    def _parent(self, parts: list[str]) -> Iterator[int]:
        """An open descriptor of the file's directory, created as needed, reached without following a symlink."""
        current = os.dup(self._rootFd)
        try:
            for depth, part in enumerate(parts[:-1]):
                with contextlib.suppress(FileExistsError):  # also when a symlink has the name: refused below
                    os.mkdir(part, DIR_MODE, dir_fd=current)
                try:
                    following = os.open(part, _DIR_FLAGS, dir_fd=current)
                except OSError as error:
                    if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    path = os.path.join(self.root, *parts[: depth + 1])
                    raise RestoreRefusedError(_notADirectory(path, os.lstat(path))) from None
                os.close(current)
                current = following
            yield current
        finally:
            os.close(current)


def _parts(relative: str) -> list[str]:
    try:
        return checkRelativeKey(relative).split("/")
    except ValueError as error:
        raise RestoreRefusedError(f"Refusing to restore {relative!r}: {error}") from None


def _notADirectory(path: str, info: os.stat_result) -> str:
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symbolic link; refusing to restore through it (remove it or choose another --to)."
    return f"{path} exists and is not a directory; refusing to restore below it (move it or choose another --to)."
