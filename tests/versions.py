"""Which library behaviours a test may count on: some tests pin a botocore default that older releases (Debian
12's botocore 1.29, ``tox -e oldest``) do not have; they say so here instead of failing there."""

from __future__ import annotations

from typing import Any

import botocore
import pytest
from botocore.config import Config

#: botocore >= 1.36: flexible checksums (CRC32) on by default, and the two options that control them
FLEXIBLE_DEFAULTS = "request_checksum_calculation" in getattr(Config, "OPTION_DEFAULTS", {})

NEEDS_FLEXIBLE_DEFAULTS = pytest.mark.skipif(
    not FLEXIBLE_DEFAULTS, reason="botocore >= 1.36 only: older botocore sends and checks no flexible checksum unasked"
)


def clientConfig(**options: Any) -> Config:
    """A botocore ``Config``; the checksum options are left out where botocore predates them (it then does what
    ``when_required`` asks anyway)."""
    if not FLEXIBLE_DEFAULTS:
        options.pop("request_checksum_calculation", None)
        options.pop("response_checksum_validation", None)
    return Config(**options)


#: botocore retries a 200 answer whose body is cut or garbled (measured: 1.44 does, Debian 12's 1.29 does not)
RETRIES_GARBLED_ANSWERS = tuple(int(part) for part in botocore.__version__.split(".")[:2]) >= (1, 36)
