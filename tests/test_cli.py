"""``cback3-s3`` as a whole: list and its JSON, help for every command, exit codes, config and flags."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pty
import subprocess
from pathlib import Path
from typing import Any

import pytest

from clikit import cli, putDay, run, script
from nightkit import REGION, Night
from test_e2e_cback3 import backupUser  # noqa: F401 - the fixture: a backup user whose ~/.aws reaches moto

FILES = {"host1/a.tar": b"a" * 1000, "host2/b.tar": b"b" * 24}
AWS_SETTINGS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")
DAY_FIELDS = {
    "date",
    "prefix",
    "objects",
    "bytes",
    "encrypted",
    "encryption",
    "complete",
    "state",
    "kind",
    "verifiedAt",
    "verifiedBy",
    "problem",
}


def test_list_json_shape_newest_first_with_each_state(night: Night, s3: Any) -> None:
    night.stage(FILES)
    night.run()  # today: stored by the extension
    putDay(s3, night.bucket, night.ago(1), FILES, marker=True)
    putDay(s3, night.bucket, night.ago(2), FILES, manifest=False)
    outcome = cli(night, "list", "--json")
    assert outcome.code == 0, outcome.stderr
    document = json.loads(outcome.stdout)
    assert set(document) == {"bucket", "prefix", "days"}
    assert document["bucket"] == night.bucket and document["prefix"] == ""
    days = document["days"]
    assert [day["date"] for day in days] == [
        night.ago(0).isoformat(),
        night.ago(1).isoformat(),
        night.ago(2).isoformat(),
    ]
    assert all(set(day) == DAY_FIELDS for day in days)
    today, interrupted, upstream = days
    assert today | {"verifiedAt": None} == {
        "date": night.day.isoformat(),
        "prefix": f"{night.suffix}/",
        "objects": 2,
        "bytes": 1024,
        "encrypted": False,
        "encryption": "none",
        "complete": True,
        "state": "complete",
        "kind": "complete",
        "verifiedAt": None,
        "verifiedBy": "upload",
        "problem": None,
    }
    assert datetime.datetime.fromisoformat(today["verifiedAt"])
    assert (interrupted["state"], interrupted["complete"]) == ("incomplete", False)
    assert (upstream["state"], upstream["encrypted"], upstream["verifiedAt"]) == ("no manifest", None, None)
    assert (today["kind"], interrupted["kind"], upstream["kind"]) == ("complete", "incomplete", "upstream")


def test_list_table_for_people(night: Night, s3: Any) -> None:
    putDay(s3, night.bucket, night.ago(3), FILES)
    outcome = cli(night, "list")
    assert outcome.code == 0, outcome.stderr
    header, row = outcome.stdout.splitlines()
    assert header.split() == ["DATE", "OBJECTS", "SIZE", "ENCRYPTION", "KIND", "VERIFIED"]
    assert row.split()[:6] == [night.ago(3).isoformat(), "2", "1.00", "kB", "none", "complete"]


def test_bucket_prefix_and_unrelated_keys(night: Night, s3: Any) -> None:
    putDay(s3, night.bucket, night.ago(1), FILES, prefix="nightly/server1")
    putDay(s3, night.bucket, night.ago(2), FILES)  # outside the prefix
    s3.put_object(Bucket=night.bucket, Key="nightly/server1/2024/13/40/x", Body=b"not a date")
    night.bucket = f"{night.bucket}/nightly/server1"
    days = json.loads(cli(night, "list", "--json").stdout)["days"]
    assert [day["prefix"] for day in days] == [f"nightly/server1/{night.ago(1):%Y/%m/%d}/"]


@pytest.mark.parametrize("command", ["list", "restore", "verify", "prune", "adopt"])
def test_every_command_has_help_with_an_example(command: str) -> None:
    outcome = run(command, "--help")
    assert outcome.code == 0
    assert "examples:" in outcome.stdout and f"cback3-s3 {command}" in outcome.stdout
    codes = " ".join(outcome.stdout.split())  # argparse wraps the epilog
    if command == "verify":
        assert "exit codes: 0 every day OK, 1 a day failed (BAD)" in codes and "3 no day failed but" in codes
    else:
        assert "exit codes: 0 success, 1 failure" in codes


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["restore", "2026-02-30", "--to", "/tmp/x"],
        ["restore", "2026-01-01"],
        ["prune"],
        ["prune", "--keep-days", "0"],
        ["verify", "2026-01-01", "--all"],
        ["list", "--quiet", "--verbose"],
    ],
)
def test_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    outcome = run(*args, config=tmp_path / "never-read.conf")
    assert outcome.code == 2, outcome
    assert "usage:" in outcome.stderr


def test_missing_config_is_one_line_saying_what_to_do(tmp_path: Path) -> None:
    outcome = run("list", config=tmp_path / "missing.conf")
    assert outcome.code == 1
    assert outcome.stderr.count("\n") == 1
    assert "does not exist" in outcome.lastError and "--bucket" in outcome.lastError


def test_missing_bucket_is_a_clear_failure(night: Night) -> None:
    night.bucket = "cedar-no-such-bucket"
    outcome = cli(night, "list")
    assert outcome.code == 1
    assert outcome.lastError.startswith("cback3-s3: error:") and "bucket does not exist" in outcome.lastError


def test_flags_alone_reach_the_bucket_after_losing_the_server(
    night: Night, s3: Any, endpoint: str, tmp_path: Path
) -> None:
    night.stage(FILES)
    night.run()
    args = ["--bucket", night.bucket, "--endpoint-url", endpoint, "--region", REGION]
    absent = {"HOME": str(tmp_path)}  # no ~/.aws, no cback3.conf: only the environment's credentials
    listed = run(*args, "list", "--json", env=absent)
    assert listed.code == 0, listed.stderr
    assert json.loads(listed.stdout)["days"][0]["complete"] is True
    restored = run("restore", "latest", "--to", str(tmp_path / "r"), *args, env=absent)  # flags after the command
    assert restored.code == 0, restored.stderr
    assert (tmp_path / "r" / "host1" / "a.tar").read_bytes() == FILES["host1/a.tar"]


def test_progress_is_a_live_bar_on_a_terminal_and_log_lines_otherwise(night: Night, tmp_path: Path) -> None:
    night.stage(FILES)
    night.run()
    logged = cli(night, "restore", "latest", "--to", str(tmp_path / "logged"))
    assert logged.code == 0 and f"restore {night.day.isoformat()}: 2/2 files" in logged.stderr
    assert "\x1b[" not in logged.stderr
    quiet = cli(night, "--quiet", "restore", "latest", "--to", str(tmp_path / "quiet"))
    assert (quiet.code, quiet.stderr) == (0, "")

    primary, secondary = pty.openpty()
    try:
        process = subprocess.Popen(
            [script(), "--config", str(night.configPath), "restore", "latest", "--to", str(tmp_path / "tty")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=secondary,
        )
        os.close(secondary)
        screen = b""
        with contextlib.suppress(OSError):  # EIO once the child has gone and the terminal is closed
            while chunk := os.read(primary, 65536):
                screen += chunk
        assert process.wait(timeout=60) == 0
    finally:
        os.close(primary)
    text = screen.decode("utf-8", "replace")
    assert "2/2 files" in text and "━" in text  # rich's bar, with the file count beside it


@pytest.mark.skipif(os.geteuid() != 0, reason="creating a backup user needs root")
def test_root_uses_the_backup_users_aws_settings(night: Night, backupUser: Any) -> None:  # noqa: F811
    """As at night: root, no AWS settings of its own, the endpoint and keys in the backup user's ~/.aws."""
    night.stage(FILES)
    night.run()
    night.backupUser = backupUser.pw_name
    night.settings["endpoint_url"] = None
    night.writeConfig()
    outcome = run("list", "--json", config=night.configPath, unset=AWS_SETTINGS)
    assert outcome.code == 0, outcome.stderr
    assert json.loads(outcome.stdout)["days"][0]["complete"] is True
    night.backupUser = "root"
    night.writeConfig()
    without = run("list", config=night.configPath, unset=AWS_SETTINGS)
    assert without.code == 1 and "credentials" in without.lastError
