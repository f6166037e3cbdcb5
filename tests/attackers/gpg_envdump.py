#!/usr/bin/python3
"""A ``gpg`` that records the environment it was given, then runs the real ``/usr/bin/gpg``.

Installed first on PATH as ``gpg`` in a directory of its own, it writes ``env-<pid>.json`` beside itself (so it
needs nothing from the environment it is inspecting) and then execs the real gpg with the same arguments.
"""

from __future__ import annotations

import json
import os
import sys

REAL_GPG = "/usr/bin/gpg"

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, f"env-{os.getpid()}.json"), "w", encoding="utf-8") as dump:
        json.dump(dict(os.environ), dump)
    os.execv(REAL_GPG, [REAL_GPG, *sys.argv[1:]])  # noqa: S606 - exactly the argv gpg was given
