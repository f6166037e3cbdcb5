#!/usr/bin/python3
"""The backup user racing root in the work area: swaps what root just created for a symlink to a target.

Runs as the unprivileged backup user under the system interpreter (stdlib only), until SIGTERM, spinning on
``WORKING_DIR/cedar-s3-*`` (the night's work area, under a working dir the backup user can list):

    racer.py sample WORKING_DIR TARGET   self-check.txt in the work area becomes a symlink to TARGET, as soon
                                         as root has created it (before root writes it and chowns it by path)
    racer.py area WORKING_DIR TARGET     the work area itself becomes a symlink to TARGET as soon as root has
                                         made it (before root chmods and chowns it by path)

It prints ``ready`` at start and, on SIGTERM, one JSON line of counts: ``swaps`` (renames that landed).
"""

from __future__ import annotations

import json
import os
import signal
import sys

SAMPLE = "self-check.txt"
PREFIX = "cedar-s3-"

stopping = False


def _stop(_signum: int, _frame: object) -> None:
    global stopping  # noqa: PLW0603 - the signal handler's only way to reach the loop
    stopping = True


def _areas(workingDir: str) -> list[str]:
    try:
        with os.scandir(workingDir) as entries:
            return [e.path for e in entries if e.name.startswith(PREFIX) and not e.name.endswith(".aside")]
    except OSError:
        return []


def raceSample(workingDir: str, target: str) -> int:
    """Wait for root's sample to exist, then rename a symlink over it; each area is attacked once."""
    swaps = 0
    done: set[str] = set()
    while not stopping:
        for area in _areas(workingDir):
            if area in done:
                continue
            sample = os.path.join(area, SAMPLE)
            link = os.path.join(area, ".link")
            try:
                os.symlink(target, link)  # fails (EACCES) until root has chowned the area to us
            except FileExistsError:
                pass
            except OSError:
                continue
            while not stopping:
                try:
                    os.lstat(sample)
                except FileNotFoundError:
                    if not os.path.isdir(area):
                        break
                    continue
                except OSError:
                    break
                try:
                    os.rename(link, sample)
                    swaps += 1
                except OSError:
                    pass
                break
            done.add(area)
    return swaps


def raceArea(workingDir: str, target: str) -> int:
    """Move each new work area aside and put a symlink to ``target`` under its name (root's chmod/chown follow it)."""
    swaps = 0
    done: set[str] = set()
    while not stopping:
        for area in _areas(workingDir):
            if area in done or os.path.islink(area):
                continue
            done.add(area)
            try:
                os.rename(area, area + ".aside")
                os.symlink(target, area)
                swaps += 1
            except OSError:
                pass
    return swaps


def main() -> int:
    mode, workingDir, target = sys.argv[1:4]
    signal.signal(signal.SIGTERM, _stop)
    print("ready", flush=True)
    swaps = raceSample(workingDir, target) if mode == "sample" else raceArea(workingDir, target)
    print(json.dumps({"swaps": swaps}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
