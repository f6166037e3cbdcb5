"""What the installed botocore can do, asked once: Debian 12 ships botocore 1.29, which predates several options.

Everything here is feature detection, not version parsing, so a backport that has the feature is used.
"""

from __future__ import annotations

import functools

from botocore.config import Config as BotocoreConfig

__all__ = ["hasChecksumConfig"]


@functools.cache
def hasChecksumConfig() -> bool:
    """botocore >= 1.36 has ``request_checksum_calculation`` / ``response_checksum_validation``; older ones never
    send flexible checksums unasked, which is what ``when_required`` asks for anyway."""
    return "request_checksum_calculation" in getattr(BotocoreConfig, "OPTION_DEFAULTS", {})
