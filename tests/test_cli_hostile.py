"""A hostile or damaged bucket cannot make ``restore`` write outside its directory, or write unproven bytes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from clikit import cli, putDay, tree
from formatkit import plainEntry
from nightkit import Night

FILES = {"host1/a.tar": b"A" * 5000, "host1/b.tar": b"B" * 300, "host2/c.tar": b"C" * 70}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the restore target that must never change."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "passwd").write_bytes(b"root:x:0:0\n")
    return path


def entry(relative: str, data: bytes, **changes: Any) -> dict[str, Any]:
    raw = plainEntry(relative, data)
    raw.update(changes)
    return raw


def assertUntouched(outside: Path) -> None:
    assert tree(outside) == {"passwd": b"root:x:0:0\n"}


@pytest.mark.parametrize("relative", ["../../outside/passwd", "/etc/passwd", "host1/../../outside/passwd"])
def test_manifest_with_a_key_escaping_the_target_is_refused(
    night: Night, s3: Any, tmp_path: Path, outside: Path, relative: str
) -> None:
    putDay(s3, night.bucket, night.day, FILES, records=[entry(relative, b"owned\n")])
    s3.put_object(Bucket=night.bucket, Key=night.key(relative), Body=b"owned\n")
    target = tmp_path / "restore"
    outcome = cli(night, "restore", night.day.isoformat(), "--to", str(target))
    assert outcome.code == 1
    assert "Unsafe object path" in outcome.lastError and repr(relative) in outcome.lastError
    assert not target.exists() or tree(target) == {}
    assertUntouched(outside)


def test_manifest_lying_about_a_checksum_leaves_no_file_and_names_it(
    night: Night, s3: Any, tmp_path: Path, outside: Path
) -> None:
    lie = hashlib.sha256(b"something else").hexdigest()
    records = [entry(relative, data) for relative, data in FILES.items()]
    records[1] |= {"plaintextSha256": lie, "storedSha256": lie}
    putDay(s3, night.bucket, night.day, FILES, records=records)
    target = tmp_path / "restore"
    outcome = cli(night, "restore", night.day.isoformat(), "--to", str(target))
    assert outcome.code == 1
    assert "host1/b.tar" in outcome.stderr and "SHA-256" in outcome.stderr
    assert "1 of 3 file(s) could not be restored" in outcome.lastError
    assert tree(target) == {"host1/a.tar": FILES["host1/a.tar"], "host2/c.tar": FILES["host2/c.tar"]}
    assertUntouched(outside)


@pytest.mark.parametrize("claimed", [100, 9000])
def test_manifest_lying_about_a_size_leaves_no_file_and_names_it(
    night: Night, s3: Any, tmp_path: Path, claimed: int
) -> None:
    data = FILES["host1/a.tar"]
    records = [entry(relative, value) for relative, value in FILES.items()]
    records[0] |= {"size": claimed, "plaintextSize": claimed}
    putDay(s3, night.bucket, night.day, FILES, records=records)
    target = tmp_path / "restore"
    outcome = cli(night, "restore", night.day.isoformat(), "--to", str(target))
    assert outcome.code == 1
    assert "host1/a.tar" in outcome.stderr and str(claimed) in outcome.stderr
    assert "host1/a.tar" not in tree(target) and len(data) == 5000
    assert not any(name.startswith(".cback3-s3-") for name in os.listdir(target / "host1"))


def test_symlinked_directory_in_the_target_is_refused(night: Night, s3: Any, tmp_path: Path, outside: Path) -> None:
    putDay(s3, night.bucket, night.day, FILES)
    target = tmp_path / "restore"
    target.mkdir()
    (target / "host1").symlink_to(outside)
    outcome = cli(night, "restore", night.day.isoformat(), "--to", str(target))
    assert outcome.code == 1
    assert "host1 is a symbolic link" in outcome.lastError
    assertUntouched(outside)
    assert tree(target) == {"host1": b"<symlink>"}  # refused before anything was written


def test_symlinked_file_is_replaced_not_followed_with_overwrite(
    night: Night, s3: Any, tmp_path: Path, outside: Path
) -> None:
    putDay(s3, night.bucket, night.day, FILES)
    target = tmp_path / "restore"
    (target / "host1").mkdir(parents=True)
    (target / "host1" / "a.tar").symlink_to(outside / "passwd")
    outcome = cli(night, "restore", night.day.isoformat(), "--to", str(target), "--overwrite")
    assert outcome.code == 0, outcome.stderr
    assertUntouched(outside)
    assert tree(target) == FILES
    assert not (target / "host1" / "a.tar").is_symlink()


def test_symlink_planted_as_a_deeper_directory_is_refused(night: Night, s3: Any, tmp_path: Path, outside: Path) -> None:
    putDay(s3, night.bucket, night.day, {"host1/deeper/x.tar": b"x"})
    target = tmp_path / "restore"
    (target / "host1").mkdir(parents=True)
    (target / "host1" / "deeper").symlink_to(outside)
    outcome = cli(night, "restore", night.day.isoformat(), "--to", str(target), "--overwrite")
    assert outcome.code == 1 and "symbolic link" in outcome.lastError
    assertUntouched(outside)


def test_manifest_that_is_not_a_manifest_is_a_clear_error(night: Night, s3: Any, tmp_path: Path) -> None:
    prefix = putDay(s3, night.bucket, night.day, FILES, manifest=False)
    s3.put_object(Bucket=night.bucket, Key=prefix + "cback.amazons3.manifest.json", Body=b"<html>nope</html>")
    outcome = cli(night, "restore", night.day.isoformat(), "--to", str(tmp_path / "restore"))
    assert outcome.code == 1 and "is not valid JSON" in outcome.lastError


def test_a_day_without_bookkeeping_restores_as_stored_and_says_nothing_proves_it(
    night: Night, s3: Any, tmp_path: Path
) -> None:
    """A day laid out as upstream's extension stored it: the objects come back byte for byte, and the operator
    is told plainly that no digest existed to prove them (tests/test_upstream_days.py has upstream's own)."""
    putDay(s3, night.bucket, night.day, FILES, manifest=False)
    outcome = cli(night, "restore", night.day.isoformat(), "--to", str(tmp_path / "restore"))
    assert outcome.code == 0, outcome.stderr
    assert tree(tmp_path / "restore") == FILES
    assert "no recorded digest existed for this day" in outcome.stderr


def test_an_interrupted_day_without_manifest_is_refused(night: Night, s3: Any, tmp_path: Path) -> None:
    putDay(s3, night.bucket, night.day, FILES, manifest=False, marker=True)
    outcome = cli(night, "restore", night.day.isoformat(), "--to", str(tmp_path / "restore"))
    assert outcome.code == 1 and "marked incomplete and has no manifest" in outcome.lastError
    assert not (tmp_path / "restore").exists()
