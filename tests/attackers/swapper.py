#!/usr/bin/python3
"""The backup user's hands: swaps paths it owns on command, one JSON command per stdin line.

Runs as the unprivileged backup user under the system interpreter (stdlib only). It prints ``ready`` once
started, then answers each command with ``ok`` or ``error: <reason>``. Every swap is atomic (a new name made
beside the old one, then renamed over it), so root never sees the path missing.

    {"op": "symlink", "path": P, "target": T}     P becomes a symlink to T
    {"op": "fifo", "path": P}                     P becomes a FIFO nobody writes to
    {"op": "dirlink", "path": P, "target": T, "aside": A}   directory P moved to A, P a symlink to T
"""

from __future__ import annotations

import json
import os
import sys


def _beside(path: str) -> str:
    return os.path.join(os.path.dirname(path), f".swap-{os.getpid()}-{os.path.basename(path)}")


def symlink(path: str, target: str) -> None:
    temporary = _beside(path)
    os.symlink(target, temporary)
    os.rename(temporary, path)


def fifo(path: str) -> None:
    temporary = _beside(path)
    os.mkfifo(temporary, 0o600)
    os.rename(temporary, path)


def dirlink(path: str, target: str, aside: str) -> None:
    os.rename(path, aside)
    os.symlink(target, path)


def handle(command: dict[str, str]) -> None:
    op = command["op"]
    if op == "symlink":
        symlink(command["path"], command["target"])
    elif op == "fifo":
        fifo(command["path"])
    elif op == "dirlink":
        dirlink(command["path"], command["target"], command["aside"])
    else:
        raise ValueError(f"unknown op {op!r}")


def main() -> int:
    print("ready", flush=True)
    for line in sys.stdin:
        try:
            handle(json.loads(line))
        except (OSError, ValueError, KeyError) as error:
            print(f"error: {error}", flush=True)
        else:
            print("ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
