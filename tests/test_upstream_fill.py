"""What upstream's real CedarBackup3.extend.amazons3 stored: the bucket users migrate from (tests/upstreamkit.py).

Everything here was written by upstream's module through the AWS CLI, as a backup user, against moto; these tests
only read the bucket back and compare it with the staged files.
"""

from __future__ import annotations

from typing import Any

import pytest

import gpgkit
from nightkit import getBytes, listKeys
from upstreamkit import UpstreamDay, UpstreamDays, UpstreamNightError, stagedDir

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ENCRYPTED = ("symmetric", "publickey")
OPENPGP_TAG = {"symmetric": 3, "publickey": 1}  # the message's first packet: SKESK for gpg -c, PKESK for gpg -e


def dayKeys(s3: Any, days: UpstreamDays, day: UpstreamDay) -> dict[str, int]:
    return listKeys(s3, days.bucket, prefix=day.prefix)


def packetTag(first: int) -> int:
    """The OpenPGP packet tag of a message's first byte (RFC 4880 4.2, old and new formats)."""
    assert first & 0x80, f"first byte {first:#04x} is no OpenPGP packet header"
    return first & 0x3F if first & 0x40 else (first >> 2) & 0x0F


def test_the_aws_cli_upstream_ran_is_v1(upstreamDays: UpstreamDays) -> None:
    assert upstreamDays.awsVersion.startswith("aws-cli/1.")


@pytest.mark.parametrize("mode", ["plain", *ENCRYPTED])
def test_keys_are_the_date_then_the_path_relative_to_the_staging_dir(upstreamDays: UpstreamDays, mode: str) -> None:
    day = upstreamDays.days[mode]
    assert day.prefix == f"{mode}/{day.day:%Y/%m/%d}/"  # the dir stage made is the night's day's
    assert set(day.files) == {
        "localhost/var-tmp-"
        + day.stagingDir.parents[3].relative_to("/var/tmp").as_posix().replace("/", "-")
        + "-data.tar.gz",
        "localhost/mysqldump-app.sql",
        "localhost/random.bin",
        "localhost/empty.log",
    }
    keys = dayKeys(upstreamDays.client(), upstreamDays, day)
    assert set(keys) == {day.key(relative) for relative in day.files}


def test_no_indicator_is_stored_and_every_staged_day_got_its_store_indicator(upstreamDays: UpstreamDays) -> None:
    keys = [key for day in upstreamDays.days.values() for key in dayKeys(upstreamDays.client(), upstreamDays, day)]
    assert keys
    assert not [key for key in keys if key.rsplit("/", 1)[-1].startswith("cback.")]  # (adopt tests use copies)
    for day in upstreamDays.days.values():
        assert sorted(day.indicators) == ["cback.amazons3", "cback.stage", "localhost/cback.collect"]
        assert (day.stagingDir / "cback.amazons3").stat().st_uid == upstreamDays.user.pw_uid


def test_plain_day_objects_equal_the_staged_files(upstreamDays: UpstreamDays) -> None:
    s3, day = upstreamDays.client(), upstreamDays.days["plain"]
    for relative, plaintext in day.files.items():
        assert getBytes(s3, upstreamDays.bucket, day.key(relative)) == plaintext, relative
    assert day.files["localhost/empty.log"] == b""


@pytest.mark.parametrize("mode", ENCRYPTED)
def test_encrypted_day_holds_openpgp_messages_that_gpg_decrypts_to_the_staged_files(
    upstreamDays: UpstreamDays, mode: str
) -> None:
    s3, day = upstreamDays.client(), upstreamDays.days[mode]
    secret = {"passphraseFile": upstreamDays.passphraseFile} if mode == "symmetric" else {}
    nonEmpty = {relative: plaintext for relative, plaintext in day.files.items() if plaintext}
    assert len(nonEmpty) == 3
    for relative, plaintext in nonEmpty.items():
        stored = getBytes(s3, upstreamDays.bucket, day.key(relative))  # under the plaintext's own name
        assert stored != plaintext
        assert packetTag(stored[0]) == OPENPGP_TAG[mode], relative
        assert gpgkit.decrypt(stored, home=upstreamDays.gnupgHome, **secret) == plaintext, relative


@pytest.mark.parametrize("mode", ENCRYPTED)
def test_encrypt_mode_stores_an_empty_file_as_an_empty_plaintext_object(upstreamDays: UpstreamDays, mode: str) -> None:
    """Upstream does not encrypt empty files: it uploads a 0-byte object under the file's key, nothing to decrypt."""
    s3, day = upstreamDays.client(), upstreamDays.days[mode]
    assert day.files["localhost/empty.log"] == b""
    assert dayKeys(s3, upstreamDays, day)[day.key("localhost/empty.log")] == 0
    assert getBytes(s3, upstreamDays.bucket, day.key("localhost/empty.log")) == b""


def test_an_empty_file_listed_before_its_dir_exists_kills_upstreams_encrypt_after_it_cleared_the_day(
    upstreamDays: UpstreamDays,
) -> None:
    """Upstream copies an empty file to its encrypt dir with open(..., "a") before any non-empty file of the same
    directory has created that directory there: the night dies (FileNotFoundError) after `aws s3 rm` removed the
    day's previous copy. A peer that staged only empty files hits it whatever the listing order."""
    s3 = upstreamDays.client()
    earlier = upstreamDays.night("symmetric", "crash")
    assert dayKeys(s3, upstreamDays, earlier)  # a complete earlier copy of today
    with pytest.raises(UpstreamNightError) as failed:
        upstreamDays.night("symmetric", "crash", peers={"quiet": {"empty.dump": b""}}, survivable=False)
    assert failed.value.returncode != 0
    assert listKeys(s3, upstreamDays.bucket, prefix="crash/") == {}  # the earlier copy is gone, nothing new came
    stagingDir = stagedDir(failed.value.root)
    assert (stagingDir / "quiet" / "empty.dump").exists()
    assert not (stagingDir / "cback.amazons3").exists()
