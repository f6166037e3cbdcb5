"""executeAction against a real S3 endpoint: key layout, bytes, indicator, re-runs, and nothing lost on failure."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import pytest

from cedar_s3.bucketformat import MANIFEST_NAME, parseManifest
from cedar_s3.s3.errors import S3Error
from faultkit import sentObjects
from faultproxy import FaultProxy
from nightkit import Night, dateSuffix, getBytes, listKeys


def staged(night: Night) -> dict[str, bytes]:
    files = {
        "host1/etc.tar.gz": os.urandom(70_000),
        "host1/nested/deeper/home.tar.gz": os.urandom(3_000),
        "host2/var.tar.bz2": os.urandom(10_000),
        "host2/empty.tar": b"",
        "host2/foo.cback.tar": b"not an indicator, must be stored",
    }
    night.stage(files)
    return files


def test_stores_day_under_upstream_key_layout_with_bytes_and_indicator(night: Night, s3: Any) -> None:
    files = staged(night)
    night.run()
    keys = listKeys(s3, night.bucket)
    assert set(keys) == {night.key(relative) for relative in files} | {night.key(MANIFEST_NAME)}
    for relative, data in files.items():
        assert getBytes(s3, night.bucket, night.key(relative)) == data
    assert night.indicator().exists()
    assert not any(key.endswith(("cback.stage", "cback.collect")) for key in keys)


def test_bucket_prefix_is_honoured(night: Night, s3: Any) -> None:
    files = staged(night)
    night.bucket = f"{night.bucket}/nightly/server1/"
    night.run()
    bucket = night.bucket.split("/")[0]
    keys = listKeys(s3, bucket)
    assert f"nightly/server1/{night.key('host1/etc.tar.gz')}" in keys
    assert all(key.startswith(f"nightly/server1/{night.suffix}/") for key in keys)
    assert len(keys) == len(files) + 1


def test_manifest_describes_every_object(night: Night, s3: Any) -> None:
    files = staged(night)
    night.run()
    manifest = parseManifest(getBytes(s3, night.bucket, night.key(MANIFEST_NAME)), source="test")
    records = manifest.byRelative()
    assert set(records) == set(files)
    for relative, data in files.items():
        assert records[relative].plaintextSha256 == hashlib.sha256(data).hexdigest()
        assert records[relative].size == len(data)
        assert records[relative].encryption == "none"
    assert manifest.header.day == night.suffix and manifest.header.finished >= manifest.header.started


def test_rerun_replaces_changed_objects_and_removes_stale_ones(night: Night, s3: Any) -> None:
    staged(night)
    night.run()
    day = night.dayDir()
    (day / "host2" / "var.tar.bz2").unlink()
    (day / "host1" / "etc.tar.gz").write_bytes(b"new content")
    night.run()
    keys = listKeys(s3, night.bucket)
    assert night.key("host2/var.tar.bz2") not in keys
    assert getBytes(s3, night.bucket, night.key("host1/etc.tar.gz")) == b"new content"
    manifest = json.loads(getBytes(s3, night.bucket, night.key(MANIFEST_NAME)))
    assert "host2/var.tar.bz2" not in {entry["relative"] for entry in manifest["objects"]}


def test_rerun_skips_what_is_already_stored(night: Night, s3: Any, proxy: FaultProxy) -> None:
    files = staged(night)
    night.run()
    assert sentObjects(proxy, night) == sorted(files)
    since = proxy.requests_total
    night.run()
    assert sentObjects(proxy, night, since) == []  # none of the five is sent again
    assert {relative: getBytes(s3, night.bucket, night.key(relative)) for relative in files} == files


def test_failed_rerun_deletes_nothing_and_writes_no_indicator(night: Night, s3: Any) -> None:
    files = staged(night)
    night.run()
    before = {key: getBytes(s3, night.bucket, key) for key in listKeys(s3, night.bucket)}
    night.indicator().unlink()
    (night.dayDir() / "host1" / "etc.tar.gz").unlink()  # would become stale ...
    os.mkfifo(night.dayDir() / "host2" / "pipe")  # ... but the night fails on a special file first
    with pytest.raises(ValueError, match="not a regular file"):
        night.run()
    after = {key: getBytes(s3, night.bucket, key) for key in listKeys(s3, night.bucket)}
    assert after == before
    assert not night.indicator().exists()
    assert night.key("host1/etc.tar.gz") in after and len(files) + 1 == len(after)


def test_size_limit_exceeded_sends_nothing(night: Night, s3: Any) -> None:
    staged(night)
    night.settings["full_size_limit"] = "50000"
    with pytest.raises(ValueError, match=r"size limit exceeded: .* > .*full_size_limit"):
        night.run()
    assert listKeys(s3, night.bucket) == {}
    assert not night.indicator().exists()


def test_a_day_of_more_than_a_thousand_files_paginates(night: Night, s3: Any) -> None:
    night.stage({f"host/{index // 100:02d}/f{index:04d}": b"%d" % index for index in range(1100)})
    night.settings["max_concurrency"] = 16
    night.run()
    keys = listKeys(s3, night.bucket)
    assert len(keys) == 1101
    manifest = json.loads(getBytes(s3, night.bucket, night.key(MANIFEST_NAME)))
    assert len(manifest["objects"]) == 1100


def test_multipart_objects_are_stored_and_verified(night: Night, s3: Any) -> None:
    big = os.urandom(11 * 1024 * 1024 + 17)
    night.stage({"host/big.tar": big})
    night.settings |= {"multipart_threshold": "5 MB", "multipart_chunksize": "5 MB"}
    night.run()
    head = s3.head_object(Bucket=night.bucket, Key=night.key("host/big.tar"))
    assert head["ETag"].strip('"').endswith("-3")
    assert getBytes(s3, night.bucket, night.key("host/big.tar")) == big


def test_missing_bucket_fails_fast_with_a_clear_message(night: Night, s3: Any) -> None:
    staged(night)
    night.bucket = "cedar-no-such-bucket"
    with pytest.raises(FileNotFoundError, match="bucket does not exist"):
        night.run()
    assert not night.indicator().exists()


def test_nothing_staged_is_a_clear_oserror(night: Night) -> None:
    with pytest.raises(OSError, match="only tried today"):
        night.run()


def test_already_stored_day_is_skipped_without_full(night: Night) -> None:
    staged(night)
    night.run()
    with pytest.raises(OSError, match="tried today, yesterday, tomorrow"):
        night.run(full=False)


def test_object_replaced_remotely_is_caught_by_verification(night: Night, s3: Any) -> None:
    from cedar_s3.config import LocalConfig
    from cedar_s3.s3.session import buildStore
    from cedar_s3.verify import VerificationError, verifyObjects

    files = staged(night)
    night.run()
    key = night.key("host1/etc.tar.gz")
    s3.put_object(Bucket=night.bucket, Key=key, Body=os.urandom(len(files["host1/etc.tar.gz"])))
    manifest = parseManifest(getBytes(s3, night.bucket, night.key(MANIFEST_NAME)), source="test")
    settings = LocalConfig(xmlPath=str(night.configPath)).amazons3
    assert settings is not None
    with buildStore(settings, None) as store, pytest.raises(VerificationError, match=key) as caught:
        verifyObjects(store, f"{night.suffix}/", manifest.objects)
    assert len(caught.value.problems) == 1


def test_unreachable_endpoint_fails_after_two_tries_at_the_bucket(night: Night) -> None:
    """Nothing listens on the port: the bucket check tries twice (one retry, not <max_attempts>) and gives up."""
    from faultkit import connectAttempts
    from nightkit import freePort

    staged(night)
    port = freePort()
    night.endpoint = f"http://127.0.0.1:{port}"
    with connectAttempts(port) as attempts, pytest.raises(S3Error, match="could not connect"):
        night.run()
    assert attempts.count == 2


def test_yesterday_is_used_when_today_is_not_staged(night: Night, s3: Any) -> None:
    import datetime

    yesterday = night.day - datetime.timedelta(days=1)
    night.stage({"h/a": b"a"}, day=yesterday)
    night.run(full=False)
    assert f"{dateSuffix(yesterday)}/h/a" in listKeys(s3, night.bucket)
    assert night.indicator(yesterday).exists()


def test_rerun_after_a_storage_setting_change_sends_files_again(night: Night, s3: Any, proxy: FaultProxy) -> None:
    files = staged(night)
    night.run()
    night.settings["storage_class"] = "STANDARD_IA"
    since = proxy.requests_total
    night.run()
    assert sentObjects(proxy, night, since) == sorted(files)  # every one again, none taken as stored
    assert s3.head_object(Bucket=night.bucket, Key=night.key("host1/etc.tar.gz"))["StorageClass"] == "STANDARD_IA"


def test_a_path_too_long_for_an_s3_key_is_refused_before_sending(night: Night, s3: Any) -> None:
    night.bucket = f"{night.bucket}/{'p' * 200}"
    deep = "/".join(["d" * 200] * 4)
    night.stage({f"host/{deep}/file.tar": b"x"})
    with pytest.raises(ValueError, match=r"S3 key of \d+ bytes"):
        night.run()
    assert listKeys(s3, night.bucket.split("/")[0]) == {}
