"""``cback3-s3 verify``: an object replaced by same-size different bytes is named, plain and encrypted."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from clikit import cli
from gpgkit import writePassphraseFile
from nightkit import Night, getBytes

VICTIM = "host1/etc.tar.gz"


def storeDay(night: Night, tmp_path: Path, *, encrypted: bool) -> None:
    night.stage({VICTIM: os.urandom(20_000), "host2/var.tar": os.urandom(2_000)})
    if encrypted:
        night.settings["gpg_passphrase_file"] = str(writePassphraseFile(tmp_path / "backup.pass"))
    night.run()


def tamper(night: Night, s3: Any) -> str:
    """Replace one stored object with different bytes of the same size, as a bad disk or an attacker might."""
    key = night.key(VICTIM)
    size = len(getBytes(s3, night.bucket, key))
    s3.put_object(Bucket=night.bucket, Key=key, Body=os.urandom(size))
    return key


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "symmetric"])
@pytest.mark.parametrize("download", [False, True], ids=["listing", "download"])
def test_replaced_object_is_named(night: Night, s3: Any, tmp_path: Path, encrypted: bool, download: bool) -> None:
    storeDay(night, tmp_path, encrypted=encrypted)
    flags = ["--download"] if download else []
    good = cli(night, "verify", *flags)
    assert good.code == 0, good.stderr
    assert good.stdout.startswith(f"{night.day.isoformat()}  OK   2 object(s)")
    key = tamper(night, s3)
    bad = cli(night, "verify", "latest", *flags)
    assert bad.code == 1
    problems = [line.strip() for line in bad.stdout.splitlines() if line.startswith("  ")]
    assert len(problems) == 1 and problems[0].startswith(f"{key}:"), bad.stdout
    assert "1 of 1 day(s) failed verification" in bad.lastError


def test_download_of_an_encrypted_day_needs_its_passphrase(night: Night, s3: Any, tmp_path: Path) -> None:
    storeDay(night, tmp_path, encrypted=True)
    night.settings["gpg_passphrase_file"] = None
    night.writeConfig()
    outcome = cli(night, "verify", "--download")
    assert outcome.code == 1 and "--passphrase-file" in outcome.stdout
    withFile = cli(night, "verify", "--download", "--passphrase-file", str(tmp_path / "backup.pass"))
    assert withFile.code == 0, withFile.stdout + withFile.stderr


def test_success_is_recorded_for_list_and_a_missing_object_is_named(night: Night, s3: Any, tmp_path: Path) -> None:
    storeDay(night, tmp_path, encrypted=False)
    assert cli(night, "verify", "--all", "--download").code == 0
    day = json.loads(cli(night, "list", "--json").stdout)["days"][0]
    assert day["verifiedBy"] == "verify --download" and day["verifiedAt"]
    s3.delete_object(Bucket=night.bucket, Key=night.key(VICTIM))
    outcome = cli(night, "verify", "--all")
    assert outcome.code == 1 and f"{night.key(VICTIM)}: missing" in outcome.stdout
