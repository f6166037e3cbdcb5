"""The bucket format as the tests know it, spelled out by hand from the golden samples in ``golden/``.

Days laid out by hand in a test bucket use these, never the product's own writer: a field renamed in the product
then fails the tests (and the golden-sample test says which), instead of passing while breaking every bucket.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).parent / "golden"
MANIFEST_NAME = "cback.amazons3.manifest.json"
SIGNATURE_NAME = "cback.amazons3.manifest.json.sig"
INCOMPLETE_MARKER = "cback.amazons3.incomplete"
VERIFIED_RECORD = "cback.amazons3.verified.json"


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def plainEntry(relative: str, data: bytes) -> dict[str, Any]:
    """One object entry of an unencrypted file, field by field as format version 1 has it."""
    digest = hashlib.sha256(data).hexdigest()
    return {
        "relative": relative,
        "size": len(data),
        "plaintextSize": len(data),
        "plaintextSha256": digest,
        "storedSha256": digest,
        "encryption": "none",
        "partSize": None,
        "md5Etag": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        "compositeSha256": None,
        "storedAs": None,
        "wholeMd5": None,
    }


def manifestBody(day: str, bucket: str, prefix: str, entries: list[dict[str, Any]], **header: Any) -> bytes:
    """A version 1 manifest: the header fields, then ``objects``."""
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    document = {
        "format": "cedar-s3-manifest",
        "formatVersion": 1,
        "day": day,
        "bucket": bucket,
        "prefix": prefix,
        "host": "testhost",
        "tool": "tests",
        "encryption": "none",
        "started": stamp,
        "finished": stamp,
    } | header
    document["objects"] = entries
    return json.dumps(document).encode("utf-8")
