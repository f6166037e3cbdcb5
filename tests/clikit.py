"""Helpers for the ``cback3-s3`` tests: run the installed console script, lay out days in a bucket by hand."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from formatkit import INCOMPLETE_MARKER, MANIFEST_NAME, manifestBody, plainEntry
from nightkit import Night, dateSuffix


def script() -> str:
    """The installed console script, preferably the one beside this interpreter (a venv's own)."""
    beside = Path(sys.executable).parent / "cback3-s3"
    if beside.exists():
        return str(beside)
    found = shutil.which("cback3-s3")
    assert found is not None, "cback3-s3 is not installed (pip install -e .)"
    return found


@dataclass
class Outcome:
    """What one run of the command did."""

    code: int
    stdout: str
    stderr: str

    @property
    def lastError(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


def run(
    *args: str,
    config: Path | None = None,
    env: dict[str, str] | None = None,
    unset: tuple[str, ...] = (),
    timeout: float = 120,
) -> Outcome:
    """``cback3-s3 [--config CONFIG] ARGS...`` as a child process, the way an operator runs it."""
    command = [script(), *(["--config", str(config)] if config is not None else []), *args]
    environment = {name: value for name, value in os.environ.items() if name not in unset} | (env or {})
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return Outcome(completed.returncode, completed.stdout, completed.stderr)


def cli(night: Night, *args: str, env: dict[str, str] | None = None) -> Outcome:
    """The command with the night's cback3.conf (written first, as the nightly run would have it)."""
    if not night.configPath.exists():
        night.writeConfig()
    return run(*args, config=night.configPath, env=env)


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` by relative path (symlinks are reported, never followed)."""
    found: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[relative] = b"<symlink>"
        elif path.is_file():
            found[relative] = path.read_bytes()
    return found


def putDay(
    s3: Any,
    bucket: str,
    day: datetime.date,
    files: dict[str, bytes],
    *,
    prefix: str = "",
    manifest: bool = True,
    marker: bool = False,
    objects: bool = True,
    records: list[dict[str, Any]] | None = None,
    **putArgs: Any,
) -> str:
    """A stored day written by hand: objects, then (optionally) a manifest describing them and a marker.

    ``records`` replaces the manifest's object entries (raw JSON), for manifests that lie or attack;
    ``objects=False`` writes only the bookkeeping (for objects put another way).
    """
    dayPrefix = f"{prefix}/{dateSuffix(day)}/" if prefix else f"{dateSuffix(day)}/"
    for relative, data in files.items() if objects else ():
        s3.put_object(Bucket=bucket, Key=dayPrefix + relative, Body=data, **putArgs)
    if manifest:
        entries = records if records is not None else [plainEntry(relative, data) for relative, data in files.items()]
        body = manifestBody(dateSuffix(day), bucket, dayPrefix, entries)
        s3.put_object(Bucket=bucket, Key=dayPrefix + MANIFEST_NAME, Body=body, **putArgs)
    if marker:
        s3.put_object(Bucket=bucket, Key=dayPrefix + INCOMPLETE_MARKER, Body=b"{}")
    return dayPrefix
