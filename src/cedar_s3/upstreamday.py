"""Days stored by upstream's extension, before the switch: no manifest, no marker, one object per staged file.

Upstream copied each staged file to ``[prefix/]YYYY/MM/DD/<path>`` with the AWS CLI, and with ``<encrypt>`` it
uploaded each file's ciphertext under the plaintext's key name (empty files unencrypted). Nothing recorded a
digest, so the only evidence such a day holds is its listing (names, sizes, ETags) and its bytes. Whether an
object is encrypted is told from its own first bytes (an OpenPGP packet header), never from today's
configuration, which may have changed since.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cedar_s3.bucketformat import checkRelativeKey

if TYPE_CHECKING:
    from cedar_s3.catalog import DayListing

__all__ = ["UNKNOWN", "UpstreamEvidence", "UpstreamObject", "looksLikeOpenPgp", "upstreamObjects"]

UNKNOWN = "unknown"  # encryption of an upstream object until its first bytes are seen
# First bytes of an OpenPGP message as ``gpg -c`` or ``gpg -e`` starts it: a symmetric-key (tag 3) or public-key
# (tag 1) session key packet, in the old format (lengths of 1, 2 or 4 bytes) or the new one.
_SESSION_KEY_TAGS = (1, 3)
_VERSIONS = {1: (3, 6), 3: (4, 5, 6)}


@dataclass(frozen=True)
class UpstreamObject:
    """One object of an upstream day, as its listing shows it."""

    relative: str
    size: int
    etag: str
    storageClass: str
    encryption: str = UNKNOWN


@dataclass(frozen=True)
class UpstreamEvidence:
    """What reading an upstream object once proved: both byte streams' sizes and digests, and whether it was
    an OpenPGP message (decrypted, its integrity check passed)."""

    storedSize: int
    storedSha256: str
    storedMd5: str
    plaintextSize: int
    plaintextSha256: str
    encrypted: bool
    partEtags: dict[int, str] = field(default_factory=dict)  # part size -> the multipart ETag at that size


def looksLikeOpenPgp(head: bytes) -> bool:
    """Whether these first bytes start an OpenPGP message (a session key packet of a known version)."""
    if len(head) < 3 or not head[0] & 0x80:
        return False
    if head[0] & 0x40:  # new format: tag in the low six bits, then a length of 1, 2 or 5 bytes
        tag = head[0] & 0x3F
        first = head[1]
        offset = 2 if first < 192 else 3 if first < 224 else 6
    else:  # old format: tag in bits 5-2, length type in bits 1-0 (1, 2 or 4 bytes)
        tag = (head[0] >> 2) & 0x0F
        offset = 1 + (1, 2, 4, 0)[head[0] & 0x03]
    return tag in _SESSION_KEY_TAGS and len(head) > offset and head[offset] in _VERSIONS[tag]


def upstreamObjects(listing: DayListing) -> tuple[list[UpstreamObject], list[str]]:
    """The day's objects with names the naming rule accepts, and a message for each one it refuses."""
    objects: list[UpstreamObject] = []
    refused: list[str] = []
    for entry in listing.objects:
        relative = entry.key[len(listing.prefix) :]
        try:
            checkRelativeKey(relative)
        except ValueError as error:
            refused.append(f"{entry.key}: refused: {error}")
            continue
        objects.append(UpstreamObject(relative, entry.size, entry.etag, entry.storageClass))
    return objects, refused
