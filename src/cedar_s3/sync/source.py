"""The local side of a sync: every entry below sourceDir, sorted into what can be stored and what cannot.

The directory is opened once and walked through descriptors without following a link (``StagedTree``), so a run
as root over a directory someone else can write never reads a file through a planted link. Each entry is:

- a ``LocalFile``: a regular file whose path is a valid key; it is compared and perhaps sent;
- ``Passed``: a symlink, FIFO, socket, device, or a file hard-linked from a stranger: not read, named, and the
  objects under its key are never deleted (``aws s3 sync`` followed links, so its objects may be there);
- ``Unstorable``: a name that cannot be an S3 key (not UTF-8, too long, or one of our bookkeeping names):
  refused, or with ``-w`` skipped, and the objects of its directory are never deleted.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import TracebackType

from cedar_s3.bucketformat import MAX_KEY_BYTES, S3Location, isBookkeeping
from cedar_s3.stagedtree import StagedFile, StagedTree

__all__ = ["LocalFile", "Passed", "SourceTree", "Unstorable", "shown"]


def shown(path: str) -> str:
    """A path for people: its bytes as UTF-8, any byte that is not shown as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class LocalFile:
    """A regular file to compare: as listed (``staged``, named as the file system names it) and as a key."""

    staged: StagedFile
    relative: str  # the key suffix: the path as UTF-8 text
    key: str

    @property
    def path(self) -> str:
        return shown(self.staged.path)

    @property
    def size(self) -> int:
        return self.staged.size

    def asStored(self) -> StagedFile:
        """The listing entry named by its key suffix, as ``ObjectWriter`` makes keys from it."""
        return replace(self.staged, relative=self.relative)


@dataclass(frozen=True)
class Passed:
    """An entry that is not read: what it is, and the key whose objects it protects from deletion."""

    path: str
    key: str
    reason: str


@dataclass(frozen=True)
class Unstorable:
    """A name that cannot be a key; ``protects`` is the key prefix of the directory holding it (None: nothing)."""

    path: str
    reason: str
    protects: str | None


def _describe(info: os.stat_result) -> str:
    if stat.S_ISLNK(info.st_mode):
        return "a symbolic link (never followed)"
    if stat.S_ISFIFO(info.st_mode):
        return "a FIFO (not read)"
    if stat.S_ISSOCK(info.st_mode):
        return "a socket (not read)"
    if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
        return "a device (not read)"
    return f"not a regular file (mode {info.st_mode:o}; not read)"


class SourceTree:
    """``SourceTree.open(sourceDir, location)``: the classified entries, and ``tree`` to read the files through."""

    def __init__(self, tree: StagedTree, location: S3Location, trusted: frozenset[int]) -> None:
        self.tree = tree
        self.location = location
        self.trusted = trusted
        self.files: list[LocalFile] = []
        self.passed: list[Passed] = []
        self.unstorable: list[Unstorable] = []

    @classmethod
    def open(cls, sourceDir: str, location: S3Location) -> SourceTree:
        """Open and classify sourceDir. Hard-linked files are read when they belong to its owner or to us."""
        if not os.path.isdir(sourceDir):
            raise ValueError(f"Source directory does not exist on disk: {sourceDir}")
        tree = StagedTree.openDirectory(sourceDir)
        try:
            source = cls(tree, location, tree.trustedOwners)
            source._classify(tree.scan())
        except BaseException:
            tree.close()
            raise
        return source

    def close(self) -> None:
        self.tree.close()

    def __enter__(self) -> SourceTree:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    @property
    def entries(self) -> int:
        return len(self.files) + len(self.passed) + len(self.unstorable)

    @property
    def totalBytes(self) -> int:
        return sum(file.size for file in self.files)

    def _classify(self, entries: Sequence[tuple[str, os.stat_result]]) -> None:
        root = self.location.rootPrefix
        for index, (name, info) in enumerate(entries):
            path = os.path.join(self.tree.directory, name)
            raw = os.fsencode(name)
            try:
                relative = raw.decode("utf-8")
            except UnicodeDecodeError:
                self.unstorable.append(
                    Unstorable(
                        shown(path), "its name is not valid UTF-8, so it cannot be an S3 key", _holder(raw, root)
                    )
                )
                continue
            key = root + relative
            if len(key.encode("utf-8")) > MAX_KEY_BYTES:
                reason = f"it makes an S3 key of {len(key.encode('utf-8'))} bytes (S3 allows {MAX_KEY_BYTES})"
                self.unstorable.append(Unstorable(shown(path), reason, None))
            elif "/" not in relative and isBookkeeping(relative):
                reason = "names starting with cback.amazons3. directly in sourceDir are cedar-s3's bookkeeping"
                self.unstorable.append(Unstorable(shown(path), reason, None))
            elif not stat.S_ISREG(info.st_mode):
                self.passed.append(Passed(shown(path), key, _describe(info)))
            elif info.st_nlink > 1 and info.st_uid not in self.trusted:
                reason = f"a hard link to a file of uid {info.st_uid}, not sourceDir's owner (not read)"
                self.passed.append(Passed(shown(path), key, reason))
            else:
                staged = StagedFile(index, name, info.st_size, info.st_mtime_ns, info.st_dev, info.st_ino, path)
                self.files.append(LocalFile(staged, relative, key))


def _holder(raw: bytes, root: str) -> str:
    """The key prefix of the deepest directory above the first component of ``raw`` that is not UTF-8."""
    good: list[str] = []
    for part in raw.split(b"/")[:-1]:
        try:
            good.append(part.decode("utf-8"))
        except UnicodeDecodeError:
            break
    return root + "".join(part + "/" for part in good)
