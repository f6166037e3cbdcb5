"""``cback3-s3 prune``: whole days go by policy, dry runs change nothing, locked or half-pruned days say so."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

from clikit import cli, putDay
from faultproxy import FaultProxy, status
from nightkit import Night, listKeys, newBucketName

FILES = {"host1/a.tar": b"a" * 300, "host2/b.tar": b"b" * 20}


def printedDays(stdout: str, verb: str) -> list[str]:
    return re.findall(rf"^{verb} (\d{{4}}-\d\d-\d\d): ", stdout, re.MULTILINE)


def dayOf(key: str) -> str:
    return "-".join(key.split("/")[:3])


def test_dry_run_changes_nothing_and_prune_deletes_exactly_what_it_printed(night: Night, s3: Any) -> None:
    for age in (0, 3, 10):
        putDay(s3, night.bucket, night.ago(age), FILES)
    putDay(s3, night.bucket, night.ago(40), FILES, manifest=False)  # stored by upstream's extension
    putDay(s3, night.bucket, night.ago(41), FILES, marker=True)  # an interrupted run
    s3.put_object(Bucket=night.bucket, Key="not-a-day/keep.txt", Body=b"not ours")
    before = listKeys(s3, night.bucket)

    dry = cli(night, "prune", "--keep-days", "7", "--dry-run")
    assert dry.code == 0, dry.stderr
    assert listKeys(s3, night.bucket) == before
    doomed = printedDays(dry.stdout, "would delete")
    assert doomed == [night.ago(41).isoformat(), night.ago(40).isoformat(), night.ago(10).isoformat()]  # oldest first

    real = cli(night, "prune", "--keep-days", "7")
    assert real.code == 0, real.stderr
    assert printedDays(real.stdout, "delete") == doomed
    after = listKeys(s3, night.bucket)
    assert after == {key: size for key, size in before.items() if dayOf(key) not in doomed}
    assert "not-a-day/keep.txt" in after


def test_keep_last_keeps_the_newest_days_and_the_newest_complete_day(night: Night, s3: Any) -> None:
    putDay(s3, night.bucket, night.ago(0), FILES, marker=True)  # tonight's run, still going
    putDay(s3, night.bucket, night.ago(1), FILES)
    putDay(s3, night.bucket, night.ago(2), FILES)
    outcome = cli(night, "prune", "--keep-last", "1")
    assert outcome.code == 0, outcome.stderr
    assert printedDays(outcome.stdout, "delete") == [night.ago(2).isoformat()]
    left = {dayOf(key) for key in listKeys(s3, night.bucket)}
    assert left == {night.ago(0).isoformat(), night.ago(1).isoformat()}


def test_locked_day_is_kept_whole_and_other_days_lose_every_version(night: Night, s3: Any) -> None:
    bucket = newBucketName()
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    night.bucket = bucket
    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30)
    locked = putDay(s3, bucket, night.ago(30), FILES, ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)
    old = putDay(s3, bucket, night.ago(20), FILES)
    s3.put_object(Bucket=bucket, Key=old + "host1/a.tar", Body=b"second version")  # a noncurrent version too
    putDay(s3, bucket, night.ago(0), FILES)

    outcome = cli(night, "prune", "--keep-days", "7")
    assert outcome.code == 0, outcome.stderr
    assert printedDays(outcome.stdout, "delete") == [night.ago(20).isoformat()]
    assert f"Keeping {night.ago(30).isoformat()}" in outcome.stderr and "object lock until" in outcome.stderr
    versions = s3.list_object_versions(Bucket=bucket, Prefix=old)
    assert not versions.get("Versions") and not versions.get("DeleteMarkers")
    assert {dayOf(key) for key in listKeys(s3, bucket)} == {night.ago(30).isoformat(), night.ago(0).isoformat()}
    assert len(listKeys(s3, bucket, locked)) == len(FILES) + 1


def test_interrupted_prune_leaves_the_day_marked_incomplete(night: Night, s3: Any, proxy: FaultProxy) -> None:
    old = putDay(s3, night.bucket, night.ago(20), FILES)
    putDay(s3, night.bucket, night.ago(0), FILES)
    rule = proxy.add_rule(status(403, "AccessDenied", "Access Denied"), method="POST", path=r"\?delete", first=1)
    outcome = cli(night, "prune", "--keep-days", "7")
    assert rule.injected == 1
    assert outcome.code == 1
    assert "left marked incomplete" in outcome.stderr and "run prune again" in outcome.lastError
    day = next(entry for entry in json.loads(cli(night, "list", "--json").stdout)["days"] if entry["prefix"] == old)
    assert day["state"] == "incomplete" and not day["complete"]

    again = cli(night, "prune", "--keep-days", "7")
    assert again.code == 0, again.stderr
    assert listKeys(s3, night.bucket, old) == {}
