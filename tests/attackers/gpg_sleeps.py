#!/usr/bin/python3
"""A ``gpg`` that never answers: installed first on PATH as ``gpg``, it sleeps instead of running GnuPG."""

from __future__ import annotations

import sys
import time

if __name__ == "__main__":
    time.sleep(100_000)
    sys.exit(0)
