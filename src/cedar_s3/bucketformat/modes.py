"""The closed vocabularies of the format: how an object was encrypted, and what kind of day a prefix holds."""

from __future__ import annotations

import enum


class Encryption(enum.StrEnum):
    """How a stored object's bytes relate to the staged file (recorded per object and per manifest)."""

    NONE = "none"
    GPG_SYMMETRIC = "gpg-symmetric"
    GPG_PUBLIC_KEY = "gpg-public-key"
    COMMAND = "command"  # upstream's <encrypt> command: opaque to us, usually gpg

    @property
    def encrypted(self) -> bool:
        return self is not Encryption.NONE


class DayKind(enum.StrEnum):
    """What the bookkeeping under one day's prefix says about it."""

    COMPLETE = "complete"  # a manifest and no incomplete marker: stored, verified, described
    INCOMPLETE = "incomplete"  # our marker: a night or prune was interrupted (or is running)
    UPSTREAM = "upstream"  # objects but no bookkeeping of ours: written by upstream's extension
    BAD_MANIFEST = "bad manifest"  # a manifest we cannot read

    def __str__(self) -> str:
        return self.value
