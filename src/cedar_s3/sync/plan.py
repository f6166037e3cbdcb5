"""The change plan: which files to send, which to keep, which objects to delete, and which never to delete.

An object under s3BucketUrl is a deletion candidate only when no entry of sourceDir has its key. Never deleted:

- objects under the key of an entry that is not read (a symlink, FIFO, socket, device, a stranger's hard link),
  and under that key as a directory (``aws s3 sync`` followed links into directories);
- objects in a directory that holds a name which cannot be a key (``-w``): one of them may be that file's copy
  under another spelling (``aws s3 sync`` decoded names in the locale's encoding);
- "folder" objects (keys ending in ``/``, as consoles create) and our own bookkeeping at the top
  (``cback.amazons3.*``: a multipart upload kept for the next run to resume).

Whether the candidates are then deleted is decided after the uploads (``run``), and ``--max-delete`` caps them:
an empty or wrong sourceDir (a disk that is not mounted) must not empty the bucket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cedar_s3.bucketformat import isBookkeeping
from cedar_s3.sync.compare import Comparer, Decision
from cedar_s3.sync.options import DeleteLimit
from cedar_s3.sync.parallel import eachInParallel
from cedar_s3.sync.source import LocalFile, SourceTree
from cedar_s3.upload.reuse import RemoteListing

__all__ = ["Plan", "Problem", "Protection", "comparePlan", "deletionRefusal", "remotePlan"]


@dataclass(frozen=True)
class Problem:
    """A file (or key) that could not be handled, and why; any problem fails the run and stops deletions."""

    path: str
    problem: str


class Protection:
    """Keys no deletion may touch: exact keys, and everything below some key prefixes."""

    def __init__(self, source: SourceTree) -> None:
        self.keys = {entry.key for entry in source.passed}
        self.prefixes = {entry.key + "/" for entry in source.passed}
        self.prefixes |= {entry.protects for entry in source.unstorable if entry.protects is not None}

    def covers(self, key: str) -> bool:
        if key in self.keys:
            return True
        return any(key[: index + 1] in self.prefixes for index, char in enumerate(key) if char == "/") or (
            "" in self.prefixes
        )


@dataclass
class Plan:
    decisions: list[Decision] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    deletions: list[str] = field(default_factory=list)  # keys only in the bucket, not protected
    protected: list[str] = field(default_factory=list)  # keys only in the bucket, kept on purpose
    remoteObjects: int = 0  # objects under the prefix that a file could have (what --max-delete counts against)

    @property
    def toSend(self) -> list[Decision]:
        return [decision for decision in self.decisions if decision.send]

    @property
    def kept(self) -> list[Decision]:
        return [decision for decision in self.decisions if not decision.send]


def _isData(listing: RemoteListing, root: str) -> Iterator[str]:
    for key in listing.allKeys():
        relative = key[len(root) :]
        if not relative or key.endswith("/") or ("/" not in relative and isBookkeeping(relative)):
            continue
        yield key


def remotePlan(plan: Plan, source: SourceTree, listing: RemoteListing) -> None:
    """Fill in the deletion candidates and the protected keys: the bucket's side of the plan."""
    local = {file.key for file in source.files}
    protection = Protection(source)
    for key in _isData(listing, source.location.rootPrefix):
        plan.remoteObjects += 1
        if key in local:
            continue
        (plan.protected if protection.covers(key) else plan.deletions).append(key)


def comparePlan(  # noqa: PLR0917 - the plan, what compares, both sides, and how many at once: all needed
    plan: Plan,
    comparer: Comparer,
    source: SourceTree,
    listing: RemoteListing,
    jobs: int,
    compared: Callable[[LocalFile], None],
) -> None:
    """Decide for every file, ``jobs`` at a time; a file that cannot be read becomes a problem."""
    decisions: dict[int, Decision] = {}

    def done(file: LocalFile, decision: Decision | None, problem: OSError | None) -> None:
        if decision is not None:
            decisions[file.staged.index] = decision
        else:
            plan.problems.append(Problem(file.path, _reason(problem)))
        compared(file)

    eachInParallel(source.files, lambda file: comparer.decide(file, listing.get(file.key)), jobs, done)
    plan.decisions = [decisions[index] for index in sorted(decisions)]


def _reason(error: OSError | None) -> str:
    """An OSError as a reason without the path (the problem names it): ``Permission denied``."""
    if error is None:
        return "unknown error"
    return f"cannot be read: {error.strerror}" if error.errno is not None and error.strerror else str(error)


def deletionRefusal(plan: Plan, source: SourceTree, limit: DeleteLimit, url: str) -> str | None:
    """Why the plan's deletions must not happen (``--max-delete``), or None when they may."""
    count = len(plan.deletions)
    if count == 0 or limit.allows(count, plan.remoteObjects):
        return None
    what = "is empty" if source.entries == 0 else f"has {len(source.files)} file(s)"
    return (
        f"Refusing to delete {count} of the {plan.remoteObjects} objects under {url} (more than --max-delete "
        f"{limit}): sourceDir {source.tree.directory} {what}. If it is the right directory and those files really "
        f"are gone, run again with --max-delete {count} (or 100%); nothing was deleted."
    )
