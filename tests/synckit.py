"""Helpers for the ``cback3-s3-sync`` tests: run the installed command, lay out a source tree, read the wire."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faultproxy import FaultProxy

SCRIPT = "cback3-s3-sync"


def script() -> str:
    """The installed console script, preferably the one beside this interpreter (a venv's own)."""
    beside = Path(sys.executable).parent / SCRIPT
    if beside.exists():
        return str(beside)
    found = shutil.which(SCRIPT)
    assert found is not None, f"{SCRIPT} is not installed (pip install -e .)"
    return found


@dataclass
class Outcome:
    """What one run of the command did."""

    code: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict[str, Any]:
        """The ``--json`` summary the run printed."""
        body: dict[str, Any] = json.loads(self.stdout)
        return body

    def problemPaths(self) -> list[str]:
        return sorted(problem["path"] for problem in self.summary["problems"])


def run(*args: str | os.PathLike[str], env: dict[str, str] | None = None, timeout: float = 120) -> Outcome:
    """``cback3-s3-sync ARGS...`` as a child process with pipes (as under cron), in the suite's AWS environment."""
    completed = subprocess.run(
        [script(), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ | (env or {}),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return Outcome(completed.returncode, completed.stdout, completed.stderr)


def runOnTerminal(*args: str | os.PathLike[str], timeout: float = 120) -> tuple[int, str]:
    """Run with standard output and error on a pseudo-terminal, as a person at a shell; returns the code and
    everything the terminal received."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [script(), *map(str, args)], stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, close_fds=True
    )
    os.close(follower)
    received = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                received += chunk
            elif process.poll() is not None:
                break
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)
    return code, received.decode("utf-8", "replace")


def syncArgs(log: Path, endpoint: str, *more: str | os.PathLike[str]) -> list[str]:
    return ["-l", str(log), "--endpoint-url", endpoint, *map(str, more)]


def makeTree(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def objects(client: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    """Every object under ``prefix``: key -> bytes."""
    found: dict[str, bytes] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            found[entry["Key"]] = client.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
    return found


# -- the wire ------------------------------------------------------------------------------------------------------


def _key(path: str, bucket: str) -> str | None:
    target = path.partition("?")[0]
    prefix = f"/{bucket}/"
    return urllib.parse.unquote(target[len(prefix) :]) if target.startswith(prefix) else None


def putKeys(proxy: FaultProxy, bucket: str, since: int = 0) -> list[str]:
    """Keys written by a single PUT or a multipart upload's start, in the order the wire saw them."""
    keys = []
    for record in proxy.records[since:]:
        key = _key(record.path, bucket)
        query = record.path.partition("?")[2]
        single = record.method == "PUT" and "partNumber" not in query and "uploadId" not in query
        started = record.method == "POST" and query.startswith("uploads")
        if key and (single or started):
            keys.append(key)
    return keys


def writes(proxy: FaultProxy, since: int = 0) -> list[str]:
    """Every request that could change a bucket (PUT, POST, DELETE), as ``METHOD path``."""
    return [f"{r.method} {r.path}" for r in proxy.records[since:] if r.method in ("PUT", "POST", "DELETE")]


def deleteRequests(proxy: FaultProxy, since: int = 0) -> list[int]:
    """Indexes (into ``proxy.records``) of DeleteObjects and DeleteObject requests."""
    return [
        index
        for index, record in enumerate(proxy.records)
        if index >= since
        and ((record.method == "POST" and "delete" in record.path.partition("?")[2]) or record.method == "DELETE")
    ]


def headCount(proxy: FaultProxy, since: int = 0) -> int:
    return sum(1 for record in proxy.records[since:] if record.method == "HEAD")
