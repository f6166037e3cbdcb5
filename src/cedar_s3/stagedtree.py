"""The staged day, read as root without trusting a single path in it.

The stage action chowns the staging tree to the backup user, so every name in it is theirs to repoint at any
moment: a staged file swapped for a symlink to ``/etc/shadow`` between a check and a read, for a FIFO that
blocks ``open()`` forever, a day directory that is itself a symlink. So the day is opened once as a directory
descriptor, walked below it with ``O_NOFOLLOW`` one component at a time, and each file is opened
``O_NOFOLLOW|O_NONBLOCK`` and checked on its descriptor (a regular file, the very inode that was listed)
before a byte is read; everything after that (hash, encrypt, upload) reads that descriptor, never the path.
The model is OpenSSH's and Postfix's privilege separation: root never acts on a name another user controls.

A symlink, FIFO, socket or device in the staged day fails the night before anything is sent, naming the path:
the stage action copies real files, so anything else there is not a normal day.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from cedar_s3.bucketformat import MAX_KEY_BYTES, checkRelativeKey, isIndicatorName
from cedar_s3.packedtext import PackedStrings

__all__ = ["StagedFile", "StagedListing", "StagedTree", "StagingChangedError"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3")

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_INDICATOR = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class StagingChangedError(ValueError):
    """A staged path changed between the listing and its use (or became something that is not a file)."""


@dataclass(frozen=True)
class StagedFile:
    """One regular file of the staged day as listed: its key suffix, and the inode and shape it had."""

    index: int  # its place in the listing (key order)
    relative: str  # POSIX path relative to the day directory; the S3 key suffix
    size: int
    mtimeNs: int
    device: int
    inode: int
    path: str  # for messages only: never opened


class StagedListing:
    """Every file of a staged day, in key order, held compactly (a day may have 100,000 files)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._names = PackedStrings()
        self._numbers = array("q")  # size, mtime, device, inode of each file, four in a row

    def add(self, relative: str, info: os.stat_result) -> None:
        """One more file, as it is found (its ``stat_result`` is not kept); ``sort`` once all are in."""
        self._names.append(relative)
        self._numbers.extend((info.st_size, info.st_mtime_ns, info.st_dev, info.st_ino))

    def sort(self) -> StagedListing:
        """Into key order (S3's listing order), which ``indexOf`` and the manifest rely on."""
        order = self._names.sortOrder()
        self._names = self._names.reordered(order)
        numbers = self._numbers
        self._numbers = array("q")
        for index in order:
            self._numbers.extend(numbers[index * 4 : index * 4 + 4])
        return self

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, index: int) -> StagedFile:
        size, mtime, device, inode = self._numbers[index * 4 : index * 4 + 4]
        name = self._names[index]
        return StagedFile(index, name, size, mtime, device, inode, os.path.join(self.directory, name))

    def __iter__(self) -> Iterator[StagedFile]:
        for index in range(len(self._names)):
            yield self[index]

    @property
    def totalBytes(self) -> int:
        return sum(self._numbers[0::4])

    def relatives(self) -> Iterator[str]:
        return iter(self._names)

    def indexOf(self, relative: str) -> int | None:
        """The position of the file ``relative`` in the listing, or None when the day has no such file."""
        return self._names.find(relative)


def _describe(info: os.stat_result) -> str:
    if stat.S_ISLNK(info.st_mode):
        return "a symbolic link, which is never followed (stage copies real files; replace it with the file)"
    if stat.S_ISFIFO(info.st_mode):
        return "a FIFO, not a regular file"
    if stat.S_ISSOCK(info.st_mode):
        return "a socket, not a regular file"
    if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
        return "a device, not a regular file"
    return f"not a regular file (mode {info.st_mode:o})"


class StagedTree:
    """``StagedTree.open(stagingDir, "YYYY/MM/DD")``: the day as a descriptor; ``list()``, ``openFile()``.

    ``StagedTree.openDirectory(path)`` and ``scan()`` do the same for any directory (``cback3-s3-sync``).
    """

    def __init__(self, directory: str, descriptor: int, trustedOwners: frozenset[int]) -> None:
        self.directory = directory
        self._fd = descriptor
        self._trusted = trustedOwners

    @classmethod
    def open(cls, stagingDir: str, suffix: str, trustedOwners: frozenset[int] = frozenset()) -> StagedTree:
        """Open the day below the configured staging dir, refusing any component that is not a real directory.

        ``stagingDir`` itself is the administrator's configured path and is opened as given.
        ``trustedOwners`` (the backup user) may own a file with several hard links; anyone else's hard-linked
        file is refused: a hard link is how another user's file (root's own, where ``fs.protected_hardlinks`` is
        off) could be slipped into the day. Stage copies files, so a legitimate day has no such link. A night
        that does not run as root also trusts its own uid (it can read nothing more than it could anyway).
        """
        directory = os.path.join(stagingDir, suffix)
        current = os.open(stagingDir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in suffix.split("/"):
                try:
                    following = os.open(part, _DIR, dir_fd=current)
                except OSError as error:
                    raise _componentError(os.path.join(stagingDir, suffix), error) from None
                os.close(current)
                current = following
        except BaseException:
            os.close(current)
            raise
        ownUid = os.geteuid()
        return cls(directory, current, trustedOwners | ({ownUid} if ownUid != 0 else set()))

    @classmethod
    def openDirectory(cls, path: str, trustedOwners: frozenset[int] = frozenset()) -> StagedTree:
        """Any directory the operator names (``cback3-s3-sync``'s sourceDir), opened as given; everything below
        it is then reached without following a link, as for a staged day. ``trustedOwners`` as for ``open``,
        and the directory's own owner is trusted too (it owns the tree)."""
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as error:
            if error.errno == errno.ENOENT:
                raise FileNotFoundError(errno.ENOENT, f"{path} does not exist") from None
            if error.errno == errno.ENOTDIR:
                raise NotADirectoryError(errno.ENOTDIR, f"{path} is not a directory") from None
            raise OSError(error.errno, f"Cannot open {path}: {error.strerror}") from None
        return cls(path, descriptor, trustedOwners | {os.geteuid(), os.fstat(descriptor).st_uid})

    @property
    def trustedOwners(self) -> frozenset[int]:
        """Who may own a file with several hard links and still be read (``openFile`` refuses anyone else's)."""
        return self._trusted

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> StagedTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- indicators ----------------------------------------------------------------------------------------------

    def hasEntry(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self._fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def writeIndicator(self, name: str, uid: int | None, gid: int | None) -> None:
        """Create (or keep) an empty indicator file owned by ``uid:gid``, through a descriptor.

        Cedar Backup's ``writeIndicatorFile`` opens and chowns by path; in a directory the backup user owns, a
        symlink planted at that name would make root truncate and chown its target.
        """
        try:
            descriptor = os.open(name, _INDICATOR, 0o644, dir_fd=self._fd)
        except OSError as error:
            path = os.path.join(self.directory, name)
            if error.errno == errno.ELOOP:
                raise StagingChangedError(
                    f"{path} is a symbolic link; refusing to write the indicator through it."
                ) from None
            raise OSError(error.errno, f"Cannot write the indicator {path}: {error.strerror}") from None
        try:
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode):
                raise StagingChangedError(f"{os.path.join(self.directory, name)} exists and is {_describe(info)}.")
            if uid is not None and gid is not None:
                os.fchown(descriptor, uid, gid)
        finally:
            os.close(descriptor)

    # -- listing -------------------------------------------------------------------------------------------------

    def list(self, maxRelativeBytes: int) -> StagedListing:
        """Every file of the day that belongs in S3 (not Cedar Backup's ``cback.*`` indicators), in key order.

        Anything that is not a regular file or a directory fails the night here, naming its path: silently
        skipping it would make the backup incomplete without anyone noticing.
        """
        listing = StagedListing(self.directory)
        pending = [""]
        while pending:
            prefix = pending.pop()
            with self._openDir(prefix) as descriptor, os.scandir(descriptor) as scan:
                children = [
                    (entry.name, entry.stat(follow_symlinks=False)) for entry in scan if not isIndicatorName(entry.name)
                ]
            for name, info in children:
                relative = prefix + name
                if stat.S_ISDIR(info.st_mode):
                    pending.append(relative + "/")
                elif stat.S_ISREG(info.st_mode):
                    self._checkName(relative, maxRelativeBytes)
                    self._checkLinks(relative, info)
                    listing.add(relative, info)
                else:
                    raise ValueError(f"Staged path {self._shown(relative)} is {_describe(info)}.")
        return listing.sort()

    def scan(self) -> Sequence[tuple[str, os.stat_result]]:
        """Every entry below the directory that is not itself a directory, in name order, as ``lstat`` saw it.

        Unlike ``list`` nothing is filtered (``cback.*`` names included) and no naming rule is applied: the caller
        decides what each entry means. Links are reported, never followed; an unreadable directory is an error
        naming it, never a silent gap.
        """
        entries: list[tuple[str, os.stat_result]] = []
        pending = [""]
        while pending:
            prefix = pending.pop()
            with self._openDir(prefix) as descriptor:
                try:
                    with os.scandir(descriptor) as scan:
                        children = [(entry.name, entry.stat(follow_symlinks=False)) for entry in scan]
                except OSError as error:
                    path = os.path.join(self.directory, prefix)
                    raise OSError(error.errno, f"Cannot read directory {path!r}: {error.strerror}") from None
            for name, info in children:
                if stat.S_ISDIR(info.st_mode):
                    pending.append(prefix + name + "/")
                else:
                    entries.append((prefix + name, info))
        entries.sort(key=lambda entry: entry[0])
        return entries

    def _shown(self, relative: str) -> str:
        return repr(os.path.join(self.directory, relative))

    def _checkName(self, relative: str, maxRelativeBytes: int) -> None:
        """The naming rule every reader applies too: a name ``restore`` would refuse is refused now."""
        try:
            checkRelativeKey(relative)
        except ValueError as error:
            raise ValueError(f"Staged file {self._shown(relative)} cannot be stored: {error}") from None
        length = len(relative.encode("utf-8"))
        if length > maxRelativeBytes:
            total = MAX_KEY_BYTES - maxRelativeBytes + length
            shown = self._shown(relative)
            raise ValueError(f"Staged file path {shown} makes an S3 key of {total} bytes (S3 allows {MAX_KEY_BYTES}).")

    def _checkLinks(self, relative: str, info: os.stat_result) -> None:
        if info.st_nlink > 1 and info.st_uid not in self._trusted:
            raise ValueError(
                f"Staged file {self._shown(relative)} is one of {info.st_nlink} hard links to a file of uid "
                f"{info.st_uid}, not the backup user's; stage copies files, so refusing to store it."
            )

    @contextlib.contextmanager
    def _openDir(self, prefix: str) -> Iterator[int]:
        """A descriptor of the directory ``prefix`` (``""`` or ``a/b/``), reached without following a link."""
        current = os.dup(self._fd)
        try:
            for part in [part for part in prefix.split("/") if part]:
                try:
                    following = os.open(part, _DIR, dir_fd=current)
                except OSError as error:
                    raise _componentError(os.path.join(self.directory, prefix), error) from None
                os.close(current)
                current = following
            yield current
        finally:
            os.close(current)

    # -- reading -------------------------------------------------------------------------------------------------

    def openFile(self, staged: StagedFile) -> int:
        """A read-only, blocking descriptor of exactly the inode that was listed; the caller closes it."""
        parent, _, name = staged.relative.rpartition("/")
        with self._openDir(parent + "/" if parent else "") as directory:
            try:
                descriptor = os.open(name, _FILE, dir_fd=directory)
            except OSError as error:
                if error.errno in (errno.ELOOP, errno.ENOENT, errno.ENOTDIR, errno.ENXIO):
                    raise StagingChangedError(
                        f"Staged file {staged.path!r} changed while the night was running ({error.strerror}); "
                        "re-run once staging is finished."
                    ) from None
                raise
        try:
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != (staged.device, staged.inode):
                raise StagingChangedError(
                    f"Staged file {staged.path!r} was replaced while the night was running (now "
                    f"{_describe(info) if not stat.S_ISREG(info.st_mode) else 'another file'}); re-run once staging "
                    "is finished."
                )
            self._checkLinks(staged.relative, info)
            flags = fcntl.fcntl(descriptor, fcntl.F_GETFL)
            fcntl.fcntl(descriptor, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        except BaseException:
            os.close(descriptor)
            raise
        return descriptor

    def checkUnchanged(self, staged: StagedFile, descriptor: int, sizeRead: int) -> None:
        """A file that grew, shrank or was rewritten while we read it must not be recorded as stored."""
        now = os.fstat(descriptor)
        if sizeRead != staged.size or now.st_size != staged.size or now.st_mtime_ns != staged.mtimeNs:
            raise StagingChangedError(
                f"Staged file changed while being read: {staged.path} (listed {staged.size} bytes, read {sizeRead}, "
                f"now {now.st_size}); re-run once staging is finished."
            )


def _componentError(path: str, error: OSError) -> Exception:
    if error.errno in (errno.ELOOP, errno.ENOTDIR):
        return StagingChangedError(
            f"{path} (or a directory on the way to it) is a symbolic link or not a directory; the staged day must be "
            "a real directory tree, so refusing to follow it."
        )
    if error.errno == errno.ENOENT:
        return FileNotFoundError(errno.ENOENT, f"{path} does not exist (or vanished while the night was running)")
    return OSError(error.errno, f"Cannot open {path}: {error.strerror}")
