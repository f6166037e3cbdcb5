"""Day selection around midnight (date frozen in the test), size limits, and what a staged day may contain."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from CedarBackup3.config import ByteQuantity
from CedarBackup3.util import UNIT_BYTES

from cedar_s3.config import AmazonS3Config
from cedar_s3.stagedtree import StagedTree
from cedar_s3.staging import applySizeLimits, findCorrectDailyDir

FROZEN = datetime.date(2026, 3, 1)  # a Sunday, just after a month boundary


def day(offset: int) -> datetime.date:
    return FROZEN + datetime.timedelta(days=offset)


def make(stage: Path, when: datetime.date, *, staged: bool = True, stored: bool = False) -> Path:
    path = stage / when.strftime("%Y/%m/%d")
    path.mkdir(parents=True, exist_ok=True)
    if staged:
        (path / "cback.stage").touch()
    if stored:
        (path / "cback.amazons3").touch()
    return path


def pick(stage: Path, *, full: bool = False, warn: bool = True) -> dict[str, str]:
    options = SimpleNamespace(full=full)
    config = SimpleNamespace(stage=SimpleNamespace(targetDir=str(stage)))
    local = SimpleNamespace(amazons3=AmazonS3Config(warn, "bucket"))
    return findCorrectDailyDir(options, config, local, today=lambda: FROZEN)


def test_today_wins(tmp_path: Path) -> None:
    for offset in (-1, 0, 1):
        make(tmp_path, day(offset))
    assert pick(tmp_path) == {str(tmp_path / "2026/03/01"): "2026/03/01"}


def test_yesterday_across_a_month_boundary_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make(tmp_path, day(0), stored=True)
    make(tmp_path, day(-1))
    assert pick(tmp_path) == {str(tmp_path / "2026/02/28"): "2026/02/28"}
    assert "crossed midnite boundary" in caplog.text


def test_no_warning_when_warn_midnite_is_off(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make(tmp_path, day(-1))
    pick(tmp_path, warn=False)
    assert "midnite" not in caplog.text


def test_tomorrow_when_today_and_yesterday_are_done(tmp_path: Path) -> None:
    make(tmp_path, day(0), stored=True)
    make(tmp_path, day(-1), staged=False)
    make(tmp_path, day(1))
    assert pick(tmp_path) == {str(tmp_path / "2026/03/02"): "2026/03/02"}


def test_full_uses_today_only_even_if_stored(tmp_path: Path) -> None:
    make(tmp_path, day(0), stored=True)
    make(tmp_path, day(-1))
    assert pick(tmp_path, full=True) == {str(tmp_path / "2026/03/01"): "2026/03/01"}


def test_full_without_today_is_an_oserror(tmp_path: Path) -> None:
    make(tmp_path, day(-1))
    with pytest.raises(OSError, match="only tried today"):
        pick(tmp_path, full=True)


def test_nothing_unstored_is_an_oserror_naming_the_stage_dir(tmp_path: Path) -> None:
    make(tmp_path, day(0), stored=True)
    with pytest.raises(OSError, match=str(tmp_path)):
        pick(tmp_path)


def limits(full: int | None, incremental: int | None) -> Any:
    return SimpleNamespace(
        amazons3=AmazonS3Config(
            s3Bucket="bucket",
            fullBackupSizeLimit=ByteQuantity(full, UNIT_BYTES) if full is not None else None,
            incrementalBackupSizeLimit=ByteQuantity(incremental, UNIT_BYTES) if incremental is not None else None,
        )
    )


def cbconfig(startingDay: str) -> Any:
    return SimpleNamespace(options=SimpleNamespace(startingDay=startingDay))


def notToday() -> str:
    names = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
    return names[(datetime.date.today().weekday() + 3) % 7]


def test_full_limit_applies_with_full_option() -> None:
    with pytest.raises(ValueError, match=r"exceeded: .* > .*full_size_limit"):
        applySizeLimits(SimpleNamespace(full=True), cbconfig(notToday()), limits(100, 10**9), {"/d": "x"}, 101)
    applySizeLimits(SimpleNamespace(full=True), cbconfig(notToday()), limits(100, 1), {"/d": "x"}, 100)


def test_full_limit_applies_on_the_starting_day() -> None:
    today = datetime.date.today().strftime("%A").lower()
    with pytest.raises(ValueError, match="full_size_limit"):
        applySizeLimits(SimpleNamespace(full=False), cbconfig(today), limits(100, 10**9), {"/d": "x"}, 101)


def test_incremental_limit_applies_otherwise() -> None:
    with pytest.raises(ValueError, match="incr_size_limit"):
        applySizeLimits(SimpleNamespace(full=False), cbconfig(notToday()), limits(10**9, 5), {"/d": "x"}, 6)
    applySizeLimits(SimpleNamespace(full=False), cbconfig(notToday()), limits(None, None), {"/d": "x"}, 10**12)


def listed(root: Path) -> list[tuple[str, int]]:
    """The day ``root/day`` as the night lists it: (key suffix, size) in key order."""
    with StagedTree.open(str(root), "day") as tree:
        return [(staged.relative, staged.size) for staged in tree.list(900)]


def test_listing_excludes_only_cedar_indicators(tmp_path: Path) -> None:
    day = tmp_path / "day"
    (day / "peer" / "deep" / "er").mkdir(parents=True)
    for name in ("cback.stage", "peer/cback.collect", "peer/foo.cback.tar", "peer/deep/er/x.tar", "peer/cback"):
        (day / name).write_bytes(b"x")
    assert [relative for relative, _ in listed(tmp_path)] == ["peer/cback", "peer/deep/er/x.tar", "peer/foo.cback.tar"]


def test_listing_is_in_key_order_across_directories(tmp_path: Path) -> None:
    """S3 lists keys in byte order: ``a.txt`` before ``a/b``, whatever order directories are walked in."""
    day = tmp_path / "day"
    (day / "a").mkdir(parents=True)
    for name in ("a/b", "a.txt", "a-z", "A"):
        (day / name).write_bytes(b"12345")
    assert listed(tmp_path) == [("A", 5), ("a-z", 5), ("a.txt", 5), ("a/b", 5)]


def test_a_symlink_to_a_file_is_refused_not_followed(tmp_path: Path) -> None:
    """Root would read whatever the backup user points the link at (``/etc/shadow``): never followed."""
    day = tmp_path / "day"
    day.mkdir()
    (tmp_path / "real").write_bytes(b"12345")
    (day / "link").symlink_to(tmp_path / "real")
    with pytest.raises(ValueError, match=rf"{day}/link' is a symbolic link, which is never followed"):
        listed(tmp_path)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files as two users")
def test_a_hard_link_to_a_file_the_backup_user_does_not_own_is_refused(tmp_path: Path) -> None:
    """With fs.protected_hardlinks off, the backup user can link root's files into its day: root must not read them."""
    backupUid = 65534
    day = tmp_path / "day"
    day.mkdir()
    (tmp_path / "root-only").write_bytes(b"secret")
    (tmp_path / "root-only").chmod(0o600)
    (tmp_path / "backups-own").write_bytes(b"mine")
    os.chown(tmp_path / "backups-own", backupUid, -1)
    os.link(tmp_path / "backups-own", day / "own-link")
    with StagedTree.open(str(tmp_path), "day", frozenset({backupUid})) as tree:
        assert [staged.relative for staged in tree.list(900)] == ["own-link"]
    os.link(tmp_path / "root-only", day / "planted")
    with (
        pytest.raises(ValueError, match=r"planted' is one of 2 hard links to a file of uid 0, not the backup user's"),
        StagedTree.open(str(tmp_path), "day", frozenset({backupUid})) as tree,
    ):
        tree.list(900)


def test_a_day_directory_that_is_a_symlink_is_refused(tmp_path: Path) -> None:

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "day").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="must be a real directory tree"):
        listed(tmp_path)


@pytest.mark.parametrize("kind", ["fifo", "dangling", "dirlink", "badname"])
def test_unstorable_entries_are_refused_by_name(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "day" / "peer"
    target.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(target / "pipe")
    elif kind == "dangling":
        (target / "gone").symlink_to(tmp_path / "nowhere")
    elif kind == "dirlink":
        (target / "loop").symlink_to(tmp_path)
    else:
        os.close(os.open(os.path.join(os.fsencode(target), b"bad-\xff-name"), os.O_CREAT | os.O_WRONLY, 0o600))
    with pytest.raises(ValueError, match=str(target)):
        listed(tmp_path)
