"""Object lock: every object of a night is locked, the tool's own cleanup cannot destroy a locked version, and
same-day re-runs on a locked day still work (new versions, delete markers, never a version-specific delete)."""

from __future__ import annotations

import datetime
import os
from typing import Any

import pytest

from cedar_s3.bucketformat import INCOMPLETE_MARKER, MANIFEST_NAME
from faultproxy import FaultProxy
from nightkit import Night, getBytes, listKeys, newBucketName


@pytest.fixture
def lockedNight(night: Night, s3: Any) -> Night:
    """A night whose bucket was created with object lock (and therefore versioning) enabled."""
    night.bucket = newBucketName()
    s3.create_bucket(Bucket=night.bucket, ObjectLockEnabledForBucket=True)
    return night


def versionsOf(s3: Any, bucket: str, key: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(versions, delete markers) of one key, newest first."""
    answer = s3.list_object_versions(Bucket=bucket, Prefix=key)
    versions = [entry for entry in answer.get("Versions", []) if entry["Key"] == key]
    markers = [entry for entry in answer.get("DeleteMarkers", []) if entry["Key"] == key]
    return versions, markers


def test_lock_reaches_every_object_but_not_the_marker(lockedNight: Night, s3: Any) -> None:
    lockedNight.stage({"h/a.tar": os.urandom(2000), "h/b.tar": b"b"})
    lockedNight.settings |= {"object_lock_mode": "GOVERNANCE", "object_lock_days": 2}
    before = datetime.datetime.now(datetime.UTC)
    lockedNight.run()
    after = datetime.datetime.now(datetime.UTC)
    for key in (lockedNight.key("h/a.tar"), lockedNight.key("h/b.tar"), lockedNight.key(MANIFEST_NAME)):
        head = s3.head_object(Bucket=lockedNight.bucket, Key=key)
        assert head["ObjectLockMode"] == "GOVERNANCE", key
        until = head["ObjectLockRetainUntilDate"]
        slack = datetime.timedelta(seconds=2)
        assert before + datetime.timedelta(days=2) - slack <= until <= after + datetime.timedelta(days=2) + slack
    # the incomplete marker was written and deleted (a delete marker); its version is unlocked and can be purged
    markerKey = lockedNight.key(INCOMPLETE_MARKER)
    (marker,), (deleteMarker,) = versionsOf(s3, lockedNight.bucket, markerKey)
    assert deleteMarker["IsLatest"]
    head = s3.head_object(Bucket=lockedNight.bucket, Key=markerKey, VersionId=marker["VersionId"])
    assert "ObjectLockMode" not in head
    s3.delete_object(Bucket=lockedNight.bucket, Key=markerKey, VersionId=marker["VersionId"])
    assert lockedNight.indicator().exists()


def test_lock_on_a_bucket_without_object_lock_is_a_clear_value_error(night: Night, s3: Any) -> None:
    night.stage({"h/a.tar": b"a"})
    night.settings |= {"object_lock_mode": "COMPLIANCE", "object_lock_days": 1}
    with pytest.raises(ValueError, match=f"bucket {night.bucket} has no object lock configuration.*new bucket"):
        night.run()
    assert listKeys(s3, night.bucket) == {}
    assert not night.indicator().exists()


def test_locked_versions_survive_the_tools_cleanup_and_same_day_reruns(lockedNight: Night, s3: Any) -> None:
    bucket, key = lockedNight.bucket, lockedNight.key
    manifest = key(MANIFEST_NAME)
    first = {"h/changed.tar": os.urandom(1500), "h/dropped.tar": os.urandom(700), "h/kept.tar": b"kept"}
    lockedNight.stage(first)
    lockedNight.settings |= {"object_lock_mode": "COMPLIANCE", "object_lock_days": 1}
    lockedNight.run()
    oldChanged = s3.head_object(Bucket=bucket, Key=key("h/changed.tar"))["VersionId"]
    oldDropped = s3.head_object(Bucket=bucket, Key=key("h/dropped.tar"))["VersionId"]

    # same-day re-run on the locked day: one file changed, one dropped, one unchanged
    day = lockedNight.dayDir()
    (day / "h" / "changed.tar").write_bytes(b"second version")
    (day / "h" / "dropped.tar").unlink()
    lockedNight.run()
    assert set(listKeys(s3, bucket)) == {key("h/changed.tar"), key("h/kept.tar"), manifest}
    assert getBytes(s3, bucket, key("h/changed.tar")) == b"second version"

    # the tool only added delete markers; every locked version it replaced or dropped is still there
    versions, deleteMarkers = versionsOf(s3, bucket, key("h/dropped.tar"))
    assert [entry["VersionId"] for entry in versions] == [oldDropped] and deleteMarkers[0]["IsLatest"]
    old = s3.get_object(Bucket=bucket, Key=key("h/dropped.tar"), VersionId=oldDropped)["Body"].read()
    assert old == first["h/dropped.tar"]
    old = s3.get_object(Bucket=bucket, Key=key("h/changed.tar"), VersionId=oldChanged)["Body"].read()
    assert old == first["h/changed.tar"]
    versions, _ = versionsOf(s3, bucket, key("h/kept.tar"))
    assert len(versions) == 1, "an unchanged file is not uploaded again"
    versions, _ = versionsOf(s3, bucket, manifest)
    assert len(versions) == 2 and all(
        s3.head_object(Bucket=bucket, Key=manifest, VersionId=entry["VersionId"])["ObjectLockMode"] == "COMPLIANCE"
        for entry in versions
    )

    # and the lock is real: a version-specific delete (what ransomware with these credentials would try) fails
    answer = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": key("h/dropped.tar"), "VersionId": oldDropped}]}
    )
    assert [error["Code"] for error in answer.get("Errors", [])] == ["AccessDenied"]

    # a third run that drops everything but one file still succeeds on the locked day
    (day / "h" / "changed.tar").unlink()
    lockedNight.run()
    assert set(listKeys(s3, bucket)) == {key("h/kept.tar"), manifest}


def test_lock_with_checksums_when_required_sends_content_md5(lockedNight: Night, s3: Any, proxy: FaultProxy) -> None:
    """S3 refuses an object lock PUT without Content-MD5 or a flexible checksum; when_required must still work."""
    lockedNight.stage({"h/a.tar": os.urandom(1000)})
    lockedNight.settings |= {"object_lock_mode": "GOVERNANCE", "object_lock_days": 1}
    lockedNight.settings["checksum_calculation"] = "when_required"
    lockedNight.run()
    locked = [record.headers for record in proxy.records if "x-amz-object-lock-mode" in record.headers]
    assert len(locked) == 2  # the file and the manifest
    assert all("content-md5" in headers for headers in locked)
    assert s3.head_object(Bucket=lockedNight.bucket, Key=lockedNight.key("h/a.tar"))["ObjectLockMode"] == "GOVERNANCE"
