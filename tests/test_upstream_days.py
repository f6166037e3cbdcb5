"""Days stored by upstream's real extension (tests/upstreamkit.py): listed, verified, restored and adopted.

The session's upstream days are shared, so every test that changes a day works on a copy of it under a prefix
of its own (server-side copies: the very bytes and ETags upstream left).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig

from clikit import Outcome, run, tree
from faultproxy import FaultProxy, truncate_response_body
from formatkit import MANIFEST_NAME
from nightkit import MotoServer, dateSuffix, getBytes, listKeys
from upstreamkit import UpstreamDay, UpstreamDays

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MIB = 1024 * 1024


def copyDay(days: UpstreamDays, day: UpstreamDay) -> str:
    """A copy of ``day`` under a fresh prefix; returns the ``--bucket`` value that reaches it."""
    client = days.client()
    prefix = f"copy-{uuid.uuid4().hex[:10]}"
    for key in listKeys(client, days.bucket, day.prefix):
        target = f"{prefix}/{key[len(day.prefix.split('/', 1)[0]) + 1 :]}"
        client.copy_object(Bucket=days.bucket, Key=target, CopySource={"Bucket": days.bucket, "Key": key})
    return f"{days.bucket}/{prefix}"


def cli(days: UpstreamDays, bucket: str, *args: str, endpoint: str | None = None) -> Outcome:
    return run("--bucket", bucket, "--endpoint-url", endpoint or days.endpoint, *args)


def keyArgs(days: UpstreamDays, mode: str) -> list[str]:
    if mode == "symmetric":
        return ["--passphrase-file", str(days.passphraseFile)]
    if mode == "publickey":
        return ["--gpg-home", str(days.gnupgHome)]
    return []


def when(day: UpstreamDay) -> str:
    """The day as the operator types it."""
    return day.day.isoformat()


def suffix(day: UpstreamDay) -> str:
    return dateSuffix(day.day)


# -- list ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["plain", "symmetric", "publickey"])
def test_list_shows_an_upstream_day_as_such_with_its_objects_and_bytes(upstreamDays: UpstreamDays, mode: str) -> None:
    day = upstreamDays.days[mode]
    outcome = cli(upstreamDays, day.s3Bucket, "list", "--json")
    assert outcome.code == 0, outcome.stderr
    (listed,) = json.loads(outcome.stdout)["days"]
    stored = listKeys(upstreamDays.client(), upstreamDays.bucket, day.prefix)
    assert (listed["kind"], listed["objects"], listed["bytes"]) == ("upstream", len(stored), sum(stored.values()))
    assert (listed["complete"], listed["encryption"]) == (False, None)


# -- restore ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["plain", "symmetric", "publickey"])
def test_restore_of_an_upstream_day_gives_back_every_staged_file(
    upstreamDays: UpstreamDays, tmp_path: Path, mode: str
) -> None:
    day = upstreamDays.days[mode]
    target = tmp_path / "restored"
    outcome = cli(
        upstreamDays,
        day.s3Bucket,
        "restore",
        when(upstreamDays.days[mode]),
        "--to",
        str(target),
        *keyArgs(upstreamDays, mode),
    )
    assert outcome.code == 0, outcome.stderr
    assert tree(target) == day.files  # encrypted objects decrypted, upstream's unencrypted empty file as it was
    assert "no recorded digest existed for this day" in outcome.stderr


def test_restore_of_an_encrypted_upstream_day_without_keys_names_what_to_give(
    upstreamDays: UpstreamDays, tmp_path: Path
) -> None:
    day = upstreamDays.days["symmetric"]
    outcome = cli(
        upstreamDays, day.s3Bucket, "restore", when(upstreamDays.days["symmetric"]), "--to", str(tmp_path / "restored")
    )
    assert outcome.code == 1
    assert "--passphrase-file or --gpg-home" in outcome.stderr
    assert {path for path in tree(tmp_path / "restored")} <= {"localhost/empty.log"}  # no decrypted file


def test_a_damaged_ciphertext_of_an_upstream_day_fails_gpgs_integrity_check(
    upstreamDays: UpstreamDays, tmp_path: Path
) -> None:
    bucket = copyDay(upstreamDays, upstreamDays.days["symmetric"])
    client = upstreamDays.client()
    prefix = bucket.split("/", 1)[1]
    key = f"{prefix}/{suffix(upstreamDays.days['symmetric'])}/localhost/random.bin"
    data = bytearray(getBytes(client, upstreamDays.bucket, key))
    data[len(data) // 2] ^= 0xFF
    client.put_object(Bucket=upstreamDays.bucket, Key=key, Body=bytes(data))
    target = tmp_path / "restored"
    outcome = cli(
        upstreamDays,
        bucket,
        "restore",
        when(upstreamDays.days["symmetric"]),
        "--to",
        str(target),
        *keyArgs(upstreamDays, "symmetric"),
    )
    assert outcome.code == 1
    assert f"{key}: gpg could not decrypt it" in outcome.stderr
    restored = tree(target)
    expected = upstreamDays.days["symmetric"].files
    assert "localhost/random.bin" not in restored  # nothing of it written
    assert restored == {name: data for name, data in expected.items() if name != "localhost/random.bin"}


# -- verify -------------------------------------------------------------------------------------------------------


def test_verify_of_an_upstream_day_is_unverifiable_not_ok_and_not_bad(upstreamDays: UpstreamDays) -> None:
    day = upstreamDays.days["plain"]
    outcome = cli(upstreamDays, day.s3Bucket, "verify", when(upstreamDays.days["plain"]))
    assert outcome.code == 3, outcome.stdout + outcome.stderr
    assert outcome.stdout.split()[:2] == [when(upstreamDays.days["plain"]), "UNVERIFIABLE"]
    assert f"{len(day.files)} object(s) listed and readable" in outcome.stdout


@pytest.mark.parametrize("mode", ["symmetric", "publickey"])
def test_verify_download_of_an_upstream_day_decrypts_every_object(upstreamDays: UpstreamDays, mode: str) -> None:
    day = upstreamDays.days[mode]
    outcome = cli(
        upstreamDays, day.s3Bucket, "verify", when(upstreamDays.days[mode]), "--download", *keyArgs(upstreamDays, mode)
    )
    assert outcome.code == 3, outcome.stdout + outcome.stderr
    assert "read whole and decrypted where encrypted" in outcome.stdout


def test_verify_download_names_a_damaged_object_of_an_upstream_day(upstreamDays: UpstreamDays) -> None:
    bucket = copyDay(upstreamDays, upstreamDays.days["symmetric"])
    client = upstreamDays.client()
    key = f"{bucket.split('/', 1)[1]}/{suffix(upstreamDays.days['symmetric'])}/localhost/mysqldump-app.sql"
    client.put_object(Bucket=upstreamDays.bucket, Key=key, Body=getBytes(client, upstreamDays.bucket, key)[:-40])
    outcome = cli(
        upstreamDays,
        bucket,
        "verify",
        when(upstreamDays.days["symmetric"]),
        "--download",
        *keyArgs(upstreamDays, "symmetric"),
    )
    assert outcome.code == 1
    assert outcome.stdout.split()[:2] == [when(upstreamDays.days["symmetric"]), "BAD"] and key in outcome.stdout


# -- adopt --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["plain", "symmetric", "publickey"])
def test_an_adopted_upstream_day_is_verified_and_restored_like_any_day(
    upstreamDays: UpstreamDays, tmp_path: Path, mode: str
) -> None:
    bucket = copyDay(upstreamDays, upstreamDays.days[mode])
    client = upstreamDays.client()
    before = {
        key: getBytes(client, upstreamDays.bucket, key)
        for key in listKeys(client, upstreamDays.bucket, bucket.split("/", 1)[1])
    }
    dry = cli(
        upstreamDays,
        bucket,
        "adopt",
        when(upstreamDays.days[mode]),
        "--dry-run",
        "--state-dir",
        str(tmp_path / "state"),
        *keyArgs(upstreamDays, mode),
    )
    assert dry.code == 0 and "would adopt" in dry.stdout, dry.stdout + dry.stderr
    assert listKeys(client, upstreamDays.bucket, bucket.split("/", 1)[1]).keys() == before.keys()

    adopted = cli(
        upstreamDays,
        bucket,
        "adopt",
        when(upstreamDays.days[mode]),
        "--state-dir",
        str(tmp_path / "state"),
        *keyArgs(upstreamDays, mode),
    )
    assert adopted.code == 0, adopted.stdout + adopted.stderr
    prefix = f"{bucket.split('/', 1)[1]}/{suffix(upstreamDays.days[mode])}/"
    manifest = json.loads(getBytes(client, upstreamDays.bucket, prefix + MANIFEST_NAME))
    assert (
        manifest["adoption"]["by"].startswith("cedar-s3 ")
        and "downloaded every object" in manifest["adoption"]["evidence"]
    )
    after = {key: getBytes(client, upstreamDays.bucket, key) for key in before}
    assert after == before  # not one object touched
    assert list(Path(tmp_path / "state").iterdir()) == []  # no state left once the manifest is written

    listed = json.loads(cli(upstreamDays, bucket, "list", "--json").stdout)["days"][0]
    assert listed["kind"] == "complete"
    verified = cli(upstreamDays, bucket, "verify", when(upstreamDays.days[mode]))
    assert verified.code == 0 and verified.stdout.split()[1] == "OK", verified.stdout + verified.stderr
    deep = cli(
        upstreamDays, bucket, "verify", when(upstreamDays.days[mode]), "--download", *keyArgs(upstreamDays, mode)
    )
    assert deep.code == 0, deep.stdout + deep.stderr
    target = tmp_path / "restored"
    restored = cli(
        upstreamDays,
        bucket,
        "restore",
        when(upstreamDays.days[mode]),
        "--to",
        str(target),
        *keyArgs(upstreamDays, mode),
    )
    assert restored.code == 0, restored.stderr
    assert tree(target) == upstreamDays.days[mode].files
    assert "no recorded digest" not in restored.stderr


def test_adopt_refuses_a_day_that_already_has_a_manifest(upstreamDays: UpstreamDays, tmp_path: Path) -> None:
    bucket = copyDay(upstreamDays, upstreamDays.days["plain"])
    assert cli(upstreamDays, bucket, "adopt", when(upstreamDays.days["plain"]), "--state-dir", str(tmp_path)).code == 0
    again = cli(upstreamDays, bucket, "adopt", when(upstreamDays.days["plain"]), "--state-dir", str(tmp_path))
    assert again.code == 1 and "already has a manifest" in again.stdout


def test_an_interrupted_adoption_reads_only_what_it_had_not_read(
    upstreamDays: UpstreamDays, tmp_path: Path, moto: MotoServer
) -> None:
    """The first adoption cannot read one object (its body is cut short every time) and writes no manifest; the
    next one reads that object alone (GETs counted on the wire) and adopts the day."""
    bucket = copyDay(upstreamDays, upstreamDays.days["symmetric"])
    prefix = f"{bucket.split('/', 1)[1]}/{suffix(upstreamDays.days['symmetric'])}/"
    victim = f"/{upstreamDays.bucket}/{prefix}localhost/random.bin"
    state = ["--state-dir", str(tmp_path / "state"), *keyArgs(upstreamDays, "symmetric"), "--jobs", "1"]
    with FaultProxy("127.0.0.1", moto.port) as proxy:
        proxy.add_rule(truncate_response_body(100), method="GET", path=f"^{victim}$")
        first = cli(upstreamDays, bucket, "adopt", when(upstreamDays.days["symmetric"]), *state, endpoint=proxy.url)
        assert first.code == 1 and "FAILED" in first.stdout, first.stdout + first.stderr
        assert MANIFEST_NAME not in {
            key.rsplit("/", 1)[-1] for key in listKeys(upstreamDays.client(), upstreamDays.bucket, prefix)
        }
        proxy.clear_rules()
        since = proxy.requests_total
        second = cli(upstreamDays, bucket, "adopt", when(upstreamDays.days["symmetric"]), *state, endpoint=proxy.url)
        assert second.code == 0 and "read before an interruption" in second.stdout, second.stdout + second.stderr
        gets = {record.path for record in proxy.records[since:] if record.method == "GET" and "?" not in record.path}
    assert gets == {victim}


def test_an_upstream_like_multipart_object_is_adopted_with_its_part_etag(
    upstreamDays: UpstreamDays, tmp_path: Path
) -> None:
    """The AWS CLI sends files over 8 MiB in 8 MiB parts: the adopted record keeps that ETag form, so the
    nightly-style verify proves it from one listing."""
    client = upstreamDays.client()
    prefix = f"multi-{uuid.uuid4().hex[:8]}"
    source = tmp_path / "big.tar"
    source.write_bytes(os.urandom(17 * MIB))
    client.upload_file(
        str(source),
        upstreamDays.bucket,
        f"{prefix}/{suffix(upstreamDays.days['plain'])}/localhost/big.tar",
        Config=TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB),
    )
    bucket = f"{upstreamDays.bucket}/{prefix}"
    assert (
        cli(upstreamDays, bucket, "adopt", when(upstreamDays.days["plain"]), "--state-dir", str(tmp_path / "s")).code
        == 0
    )
    manifest = json.loads(
        getBytes(client, upstreamDays.bucket, f"{prefix}/{suffix(upstreamDays.days['plain'])}/{MANIFEST_NAME}")
    )
    (record,) = manifest["objects"]
    assert (record["partSize"], record["md5Etag"].endswith("-3")) == (8 * MIB, True)
    verified = cli(upstreamDays, bucket, "verify", when(upstreamDays.days["plain"]))
    assert verified.code == 0, verified.stdout + verified.stderr


# -- coexistence --------------------------------------------------------------------------------------------------


def test_adopting_one_day_changes_no_other(upstreamDays: UpstreamDays, tmp_path: Path) -> None:
    client = upstreamDays.client()
    others = {key: getBytes(client, upstreamDays.bucket, key) for key in listKeys(client, upstreamDays.bucket)}
    bucket = copyDay(upstreamDays, upstreamDays.days["plain"])
    assert cli(upstreamDays, bucket, "adopt", when(upstreamDays.days["plain"]), "--state-dir", str(tmp_path)).code == 0
    assert {key: getBytes(client, upstreamDays.bucket, key) for key in others} == others
