"""Local faults during a night: the working dir filling up while encrypting, and the staged day changing under it.

Neither is retried. Each must end the night with a clear error naming the file, with nothing recorded as
good: no store indicator, no manifest for the day, and no scratch files left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cedar_s3.pipeline
from faultkit import (
    DAY,
    MANIFEST_KEY,
    MIB,
    assertNothingRecordedAsGood,
    keyPath,
    manifestOf,
    onceFired,
    sha256,
)
from faultproxy import FaultProxy, delay, status
from gpgkit import Key, decrypt, throwawayKey, writePassphraseFile
from nightkit import MotoServer, Night, getBytes, listKeys


@contextlib.contextmanager
def tmpfsWorkDir(night: Night, size: str) -> Iterator[Path]:
    """The night's <working_dir> as a tmpfs of ``size``: another filesystem than staging, and one that fills."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs as <working_dir> needs root")
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed")
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(night.workDir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (container without CAP_SYS_ADMIN?): {mount.stderr.strip()}")
    try:
        yield night.workDir
    finally:
        subprocess.run(["umount", str(night.workDir)], check=True)


@pytest.fixture
def tinyWorkDir(night: Night) -> Iterator[Path]:
    """A 1 MiB <working_dir>: a full disk that costs nothing to fill."""
    with tmpfsWorkDir(night, "1m") as path:
        yield path


@pytest.fixture
def recipient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Key]:
    """The key public-key nights encrypt to (public-key mode batches small files)."""
    with throwawayKey(tmp_path_factory.mktemp("recipient"), "Batch Restore <batch@example.org>") as key:
        yield key


def test_working_dir_filling_up_during_encryption_is_a_clear_oserror(
    night: Night, s3: Any, tinyWorkDir: Path, tmp_path: Path
) -> None:
    big = night.dayDir() / "host1" / "big.tar"
    night.stage({"host1/big.tar": os.urandom(MIB + MIB // 2), "host1/small.tar": os.urandom(10_000)})
    night.settings |= {"gpg_passphrase_file": str(writePassphraseFile(tmp_path / "passphrase")), "max_concurrency": 1}
    with pytest.raises(OSError) as caught:
        night.run()
    assert caught.value.errno == errno.ENOSPC
    assert "No space left" in str(caught.value) and str(big) in str(caught.value)
    assertNothingRecordedAsGood(night, s3)
    assert f"{DAY}/host1/big.tar" not in listKeys(s3, night.bucket)
    assert list(tinyWorkDir.iterdir()) == []  # the scratch dir and its partial ciphertext are gone


def test_batched_small_files_need_room_for_one_ciphertext_per_upload(
    night: Night, s3: Any, tinyWorkDir: Path, recipient: Key
) -> None:
    """100 small files (1.5 MB of ciphertext in all) go through one gpg run each way in a 1 MiB working dir."""
    files = {f"host1/small-{index:03d}.tar": os.urandom(15_000) for index in range(100)}
    night.stage(files)
    night.settings |= recipient.asRecipient() | {"max_concurrency": 2}
    night.run()
    assert night.indicator().exists()
    assert len(listKeys(s3, night.bucket, DAY)) == len(files) + 1
    for relative in ("host1/small-000.tar", "host1/small-099.tar"):
        assert decrypt(getBytes(s3, night.bucket, f"{DAY}/{relative}"), home=recipient.home) == files[relative]
    assert list(tinyWorkDir.iterdir()) == []


def test_batch_filling_the_working_dir_is_a_clear_oserror(night: Night, s3: Any, recipient: Key) -> None:
    night.stage({"host1/a.tar": os.urandom(1_000), "host1/b.tar": os.urandom(200_000)})
    night.settings |= recipient.asRecipient() | {"max_concurrency": 1}
    with tmpfsWorkDir(night, "64k") as workDir, pytest.raises(OSError) as caught:
        night.run()
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.strerror == f"No space left in the working dir while encrypting {night.dayDir()}/host1/b.tar"
    assertNothingRecordedAsGood(night, s3)
    assert list(workDir.iterdir()) == []


def test_batch_with_working_dir_on_another_filesystem_than_staging(
    night: Night, s3: Any, tmp_path: Path, recipient: Key
) -> None:
    """Staged files cannot be hard-linked into a working dir on another filesystem: gpg gets symlinks instead."""
    files = {f"host1/small-{index:02d}.tar": os.urandom(2_000 + index) for index in range(70)}
    night.stage(files)
    night.settings |= recipient.asRecipient()
    with tmpfsWorkDir(night, "64m") as workDir:
        night.run()
        assert list(workDir.iterdir()) == []
    assert night.indicator().exists()
    assert set(listKeys(s3, night.bucket, DAY)) == {f"{DAY}/{relative}" for relative in files} | {MANIFEST_KEY}
    for relative, data in files.items():
        assert decrypt(getBytes(s3, night.bucket, f"{DAY}/{relative}"), home=recipient.home) == data, relative
    records = manifestOf(s3, night.bucket).byRelative()
    assert {relative: record.plaintextSha256 for relative, record in records.items()} == {
        relative: sha256(data) for relative, data in files.items()
    }


def test_a_refused_upload_stops_the_batches_already_running(
    night: Night, s3: Any, proxy: FaultProxy, recipient: Key
) -> None:
    """Four batches of 64, two at a time; one PUT in the first is refused: the second stops at its next file."""
    night.stage({f"host1/small-{index:03d}.tar": os.urandom(2_000) for index in range(256)})
    night.settings |= recipient.asRecipient() | {"max_concurrency": 2}
    refused = proxy.add_rule(
        status(403, "AccessDenied", "Access Denied"), method="PUT", path=keyPath(night, "host1/small-010.tar")
    )
    with pytest.raises(PermissionError, match="access denied on PutObject"):
        night.run()
    assert refused.injected == 1
    puts = proxy.requests_by_method.get("PUT", 0)
    assert puts < 64, f"{puts} PUTs: the batch running beside the failed one went on to its end"
    assertNothingRecordedAsGood(night, s3)


# -- the staged day changes while the night reads it ----------------------------------------------------------


def _digestFirst(monkeypatch: pytest.MonkeyPatch, victim: Path, change: str) -> None:
    """Make the night's first read of ``victim`` (whole for a small file, digest for a big one) happen just
    after the file was changed."""
    realDigest = cedar_s3.pipeline.digestFile
    realRead = cedar_s3.pipeline._readSmall

    def alter(path: str) -> None:
        if path == str(victim):
            if change == "grow":
                with open(path, "ab") as handle:
                    handle.write(b"late data from a collect that is still running")
            else:
                os.unlink(path)

    def changedThenDigested(path: str, *args: Any, **kwargs: Any) -> Any:
        alter(path)
        return realDigest(path, *args, **kwargs)

    def changedThenRead(staged: Any) -> Any:
        alter(staged.path)
        return realRead(staged)

    monkeypatch.setattr(cedar_s3.pipeline, "digestFile", changedThenDigested)
    monkeypatch.setattr(cedar_s3.pipeline, "_readSmall", changedThenRead)


def test_staged_file_growing_while_read_is_a_clear_valueerror(
    night: Night, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    night.stage({"host1/a.tar": os.urandom(10_000), "host1/b.tar": os.urandom(20_000)})
    victim = night.dayDir() / "host1" / "b.tar"
    _digestFirst(monkeypatch, victim, "grow")
    with pytest.raises(ValueError, match=f"Staged file changed while being read: {victim} "):
        night.run()
    assertNothingRecordedAsGood(night, s3)


def test_staged_file_vanishing_while_read_is_a_clear_oserror(
    night: Night, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    night.stage({"host1/a.tar": os.urandom(10_000), "host1/b.tar": os.urandom(20_000)})
    victim = night.dayDir() / "host1" / "b.tar"
    _digestFirst(monkeypatch, victim, "vanish")
    with pytest.raises(OSError, match=f"Staged file vanished while the night was running: {victim}$"):
        night.run()
    assertNothingRecordedAsGood(night, s3)
    assert f"{DAY}/host1/b.tar" not in listKeys(s3, night.bucket)


def test_staged_file_growing_while_uploaded_is_a_clear_valueerror(night: Night, s3: Any, moto: MotoServer) -> None:
    """The append lands after the file was hashed, while its PUT is held up on the way to S3."""
    night.stage({"host1/a.tar": os.urandom(10_000), "host1/b.tar": os.urandom(20_000)})
    victim = night.dayDir() / "host1" / "b.tar"
    with FaultProxy("127.0.0.1", moto.port) as proxy:
        night.endpoint = proxy.url
        stall = proxy.add_rule(delay(0.5), method="PUT", path=keyPath(night, "host1/b.tar"), nth=1)

        def grow() -> None:
            with open(victim, "ab") as handle:
                handle.write(b"late data")

        grower = onceFired(lambda: stall.injected == 1, grow)
        with pytest.raises(ValueError, match=f"Staged file changed while being read: {victim} "):
            night.run()
        grower.join()
        assert proxy.errors == []
    assertNothingRecordedAsGood(night, s3)
