"""The bucket format, pinned by the golden samples in ``golden/``: what existing buckets hold must stay readable.

A change to any of these tests is a change of the format: it needs a reason, a note in the changelog, and (if an
older cedar-s3 would misread it) a new ``formatVersion``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from cedar_s3.bucketformat import (
    Adoption,
    IncompleteMarker,
    Manifest,
    ManifestHeader,
    S3Location,
    StoredObject,
    UploadRecord,
    VerifiedRecord,
    checkRelativeKey,
    objectMetadata,
    parseManifest,
    recordFromMetadata,
)
from formatkit import golden

HEADER = ManifestHeader(
    day="2026/05/01",
    bucket="example-backups",
    prefix="server1/2026/05/01/",
    host="backup1.example.org",
    tool="cedar-s3 0.1.0",
    encryption="gpg-public-key",
    started="2026-05-01T02:00:05+00:00",
    finished="2026-05-01T02:14:41+00:00",
)
RECORDS = [
    StoredObject(
        "localhost/etc.tar.gz",
        40969,
        40812,
        "a" * 64,
        "b" * 64,
        "gpg-public-key",
        None,
        "0123456789abcdef0123456789abcdef",
        None,
        "f00dcafe12345678",
    ),
    StoredObject(
        "localhost/home with space/big.tar",
        403701770,
        403701660,
        "c" * 64,
        "d" * 64,
        "gpg-public-key",
        16777216,
        "fedcba9876543210fedcba9876543210-25",
        "q5hr8Gz1UkZz7O2lqf7hXy9m2wDDl9gWcsP1e2r7Tx4=",
        "f00dcafe12345678",
        "00112233445566778899aabbccddeeff",
    ),
    StoredObject(
        "peer2/notes.txt",
        5,
        5,
        "e" * 64,
        "e" * 64,
        "none",
        None,
        "1f3870be274f6c49b3e31a0c6728957f",
        None,
        "f00dcafe12345678",
    ),
]
COMMON = {"cedar-version": "0.1.0", "cedar-host": "backup1.example.org", "cedar-day": "2026/05/01"}


def test_the_golden_manifest_reads_as_it_was_written() -> None:
    manifest = parseManifest(golden("manifest-v1.json"), source="golden")
    assert manifest.header == HEADER
    assert manifest.objects == RECORDS
    assert manifest.rejected == []


def test_a_manifest_in_another_json_layout_reads_the_same() -> None:
    """The night's layout is read line by line; the same document pretty-printed (by hand, by jq) is read whole."""
    pretty = json.dumps(json.loads(golden("manifest-v1.json")), indent=2).encode()
    assert parseManifest(pretty, source="golden") == parseManifest(golden("manifest-v1.json"), source="golden")


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda raw: raw[: raw.rindex(b"\n]}")], id="closing-line-lost"),
        pytest.param(lambda raw: raw.replace(b"},\n{", b"}\n{", 1), id="comma-lost-between-entries"),
        pytest.param(lambda raw: raw.replace(b'"size":5,', b'"size":5', 1), id="one-entry-damaged"),
        pytest.param(lambda raw: raw + b"{}", id="text-after-the-document"),
    ],
)
def test_a_damaged_manifest_is_refused_whole(damage: Any) -> None:
    with pytest.raises(ValueError, match=r"Manifest golden is not valid JSON"):
        parseManifest(damage(golden("manifest-v1.json")), source="golden")


def test_the_manifest_written_today_is_the_golden_one_byte_for_byte() -> None:
    assert Manifest(HEADER, list(RECORDS)).toJson() == golden("manifest-v1.json")


def test_an_adopted_manifest_says_when_by_what_and_from_which_evidence() -> None:
    manifest = parseManifest(golden("manifest-v1-adopted.json"), source="golden")
    assert manifest.header.adoption == Adoption(
        at="2026-06-01T10:00:00+00:00", by="cedar-s3 0.1.0", evidence="downloaded, decrypted and hashed every object"
    )
    assert Manifest(manifest.header, manifest.objects).toJson() == golden("manifest-v1-adopted.json")


def test_object_metadata_is_the_golden_one_and_gives_the_record_back() -> None:
    expected = json.loads(golden("object-metadata.json"))
    assert objectMetadata(RECORDS[1], COMMON) == expected
    assert recordFromMetadata(RECORDS[1].relative, RECORDS[1].size, expected) == RECORDS[1]


def test_bookkeeping_bodies_are_the_golden_ones() -> None:
    assert IncompleteMarker("backup1.example.org", "2026-05-01T02:00:05+00:00", "cedar-s3 0.1.0").toJson() + b"\n" == (
        golden("incomplete-marker.json")
    )
    pruning = IncompleteMarker("backup1.example.org", "2026-08-01T09:30:00+00:00", "cedar-s3 0.1.0", pruning=True)
    assert pruning.toJson() + b"\n" == golden("prune-marker.json")
    verified = VerifiedRecord(
        "2026-05-02T08:00:00+00:00", "verify --download", "2026-05-01T02:14:41+00:00", 3, "cedar-s3 0.1.0"
    )
    assert verified.toJson() + b"\n" == golden("verified-record.json")
    assert VerifiedRecord.parse(json.loads(golden("verified-record.json"))) == verified
    upload = UploadRecord.parse(json.loads(golden("upload-record.json")))
    assert upload is not None and upload.toJson() + b"\n" == golden("upload-record.json")
    assert (upload.key, upload.partSize) == ("server1/2026/05/01/localhost/home with space/big.tar", 16777216)


def test_a_newer_format_version_is_refused_and_says_to_upgrade() -> None:
    document = json.loads(golden("manifest-v1.json"))
    document["formatVersion"] = 2
    with pytest.raises(ValueError, match=r"format version 2, newer than this cedar-s3 reads \(1\); upgrade cedar-s3"):
        parseManifest(json.dumps(document), source="golden")


def test_fields_a_later_version_adds_are_ignored_by_this_reader() -> None:
    document = json.loads(golden("manifest-v1.json"))
    document["comment"] = "added by a later cedar-s3"
    document["objects"][0]["wholeObjectCrc64"] = "x"
    manifest = parseManifest(json.dumps(document), source="golden")
    assert manifest.objects == RECORDS and manifest.rejected == []


def test_each_bad_entry_is_refused_alone_and_named() -> None:
    document = json.loads(golden("manifest-v1.json"))
    good = document["objects"]
    escape = dict(good[0], relative="../outside/passwd")
    twice = dict(good[2])
    broken = dict(good[0], relative="peer2/other", plaintextSha256="not hex")
    document["objects"] = [escape, *good, twice, broken]
    manifest = parseManifest(json.dumps(document), source="s3://b/m")
    assert manifest.objects == RECORDS
    assert len(manifest.rejected) == 3
    assert "entry 1 refused: Unsafe object path '../outside/passwd'" in manifest.rejected[0]
    assert "entry 5 refused: 'peer2/notes.txt' is listed twice" in manifest.rejected[1]
    assert "entry 6 refused" in manifest.rejected[2] and "plaintextSha256" in manifest.rejected[2]


@pytest.mark.parametrize(
    "name", ["a", "host/a b;$(touch x).tar", "back\\slash", "dir/..hidden", "a/b/c.tar", "ünïcødé", "cback/x"]
)
def test_names_the_naming_rule_accepts(name: str) -> None:
    assert checkRelativeKey(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/etc/passwd",
        "../x",
        "a/../b",
        "a//b",
        "./a",
        "a/.",
        "a\x00b",
        "bad-\udcff-name",
        "host/cback.stage",
        "cback.amazons3.manifest.json",
    ],
)
def test_names_the_naming_rule_refuses(name: str) -> None:
    with pytest.raises(ValueError, match="Unsafe object path"):
        checkRelativeKey(name)


def test_the_bucket_setting_splits_into_bucket_and_prefix() -> None:
    assert S3Location.parse("example-backups") == S3Location("example-backups", "")
    location = S3Location.parse("example-backups/server1/nightly/")
    assert location == S3Location("example-backups", "server1/nightly")
    assert location.dayPrefix("2026/05/01") == "server1/nightly/2026/05/01/"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("s3://bucket/x", "not a URL"),
        ("bucket/./x", r"'\.' or '\.\.' segment"),
        ("bucket/a/../b", r"'\.' or '\.\.' segment"),
        ("bucket/a//b", "empty"),
        ("bucket/a b", "whitespace"),
        ("x", "valid S3 bucket name"),
    ],
)
def test_the_bucket_setting_refuses_what_would_become_odd_keys(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        S3Location.parse(text)
