"""What a run did, or with ``--dry-run`` would do: as text for a person, as JSON for a script, as log lines."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from CedarBackup3.util import displayBytes

from cedar_s3.sync.plan import Problem

__all__ = ["Entry", "Sent", "Summary"]

SHOWN = 50  # per list, in the text form; the JSON form has everything


@dataclass(frozen=True)
class Sent:
    path: str
    key: str
    size: int
    reason: str


@dataclass(frozen=True)
class Entry:
    """An entry of sourceDir that was not sent, and why."""

    path: str
    reason: str


@dataclass
class Summary:
    """Every list holds paths of sourceDir or keys of the bucket (``destination`` is the prefix's URL)."""

    source: str
    destination: str
    bucket: str
    mode: str  # sync, upload-only, verify-only
    dryRun: bool
    sent: list[Sent] = field(default_factory=list)
    kept: int = 0
    hashed: int = 0
    verified: int = 0
    deleted: list[str] = field(default_factory=list)  # with --dry-run: would be deleted
    notDeleted: list[str] = field(default_factory=list)
    notDeletedReason: str | None = None
    protected: list[str] = field(default_factory=list)
    onlyInBucket: list[str] = field(default_factory=list)  # -v: objects without a file (not an error)
    passed: list[Entry] = field(default_factory=list)
    unstorable: list[Entry] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.problems or self.errors)

    @property
    def exitCode(self) -> int:
        return 6 if self.failed else 0

    @property
    def sentBytes(self) -> int:
        return sum(item.size for item in self.sent)

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def toJson(self) -> str:
        body: dict[str, Any] = asdict(self)
        body["sentBytes"] = self.sentBytes
        body["exitCode"] = self.exitCode
        return json.dumps(body, indent=2, ensure_ascii=False)

    def text(self) -> str:
        would = self.dryRun
        lines = [f"cback3-s3-sync {self.source} -> {self.destination} ({self.mode}{', dry run' if would else ''})"]
        if self.mode != "verify-only":
            verb = "Would send" if would else "Sent"
            lines.append(f"{verb} {len(self.sent)} file(s), {displayBytes(self.sentBytes)}.")
            lines += _listed([f"{item.path} ({item.reason}, {item.size} bytes)" for item in self.sent])
            lines.append(f"Unchanged: {self.kept} file(s), {self.hashed} of them hashed.")
            verb = "Would delete" if would else "Deleted"
            if self.deleted:
                lines.append(f"{verb} {len(self.deleted)} object(s):")
                lines += _listed([self.url(key) for key in self.deleted])
            if self.notDeleted:
                lines.append(f"Not deleted: {len(self.notDeleted)} object(s) without a file ({self.notDeletedReason}).")
                lines += _listed([self.url(key) for key in self.notDeleted])
            if self.protected:
                lines.append(f"Kept: {len(self.protected)} object(s) under entries that are not read or not storable.")
        if self.verified:
            lines.append(f"Verified {self.verified} object(s) by checksum.")
        if self.onlyInBucket:
            lines.append(f"Only in the bucket: {len(self.onlyInBucket)} object(s) without a file.")
            lines += _listed([self.url(key) for key in self.onlyInBucket])
        if self.passed:
            lines.append(f"Not read: {len(self.passed)} entr{'y' if len(self.passed) == 1 else 'ies'}.")
            lines += _listed([f"{entry.path}: {entry.reason}" for entry in self.passed])
        if self.unstorable:
            lines.append(f"Cannot be S3 keys: {len(self.unstorable)} name(s).")
            lines += _listed([f"{entry.path}: {entry.reason}" for entry in self.unstorable])
        if self.failed:
            lines.append(f"FAILED: {len(self.problems) + len(self.errors)} problem(s).")
            lines += _listed([f"{problem.path}: {problem.problem}" for problem in self.problems] + self.errors)
        return "\n".join(lines) + "\n"


def _listed(items: list[str]) -> list[str]:
    shown = [f"  {item}" for item in items[:SHOWN]]
    if len(items) > SHOWN:
        shown.append(f"  ... and {len(items) - SHOWN} more (--json lists all)")
    return shown
