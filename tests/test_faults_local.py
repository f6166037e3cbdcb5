"""Local faults during a night: the working dir filling up while encrypting, and the staged day changing under it.

Neither is retried. Each must end the night with a clear error naming the file, with nothing recorded as
good: no store indicator, no manifest for the day, and no scratch files left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faultkit import (
    MIB,
    assertNothingRecordedAsGood,
    keyPath,
    manifestOf,
    onceFired,
    sha256,
)
from faultproxy import FaultProxy, delay, status
from formatkit import INCOMPLETE_MARKER, MANIFEST_NAME
from gpgkit import Key, decrypt, throwawayKey, tmpfs, tmpfsTempDir, writePassphraseFile
from nightkit import MotoServer, Night, getBytes, listKeys


@pytest.fixture
def recipient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Key]:
    """The key public-key nights encrypt to (public-key mode batches small files)."""
    with throwawayKey(tmp_path_factory.mktemp("recipient"), "Batch Restore <batch@example.org>") as key:
        yield key


def test_encrypting_big_files_needs_no_scratch_space(
    night: Night, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """6 MiB of ciphertext, a 1 MiB working dir and a 1 MiB temp dir: gpg's output goes straight into the upload."""
    files = {"host1/big.tar": os.urandom(4 * MIB), "host1/bigger.tar": os.urandom(2 * MIB), "host1/small": b"s"}
    night.stage(files)
    passphrase = writePassphraseFile(tmp_path / "passphrase")
    night.settings |= {
        "gpg_passphrase_file": str(passphrase),
        "multipart_threshold": "5 MB",
        "multipart_chunksize": "5 MB",
    }
    with tmpfs(night.workDir, "1m") as workDir, tmpfsTempDir(monkeypatch, "1m") as tempDir:
        night.run()
        assert list(workDir.iterdir()) == [] and list(tempDir.iterdir()) == []
    assert night.indicator().exists()
    for relative, data in files.items():
        stored = getBytes(s3, night.bucket, night.key(relative))
        assert decrypt(stored, passphraseFile=passphrase, home=tmp_path) == data


def test_batched_small_files_need_room_for_one_ciphertext_per_upload(
    night: Night, s3: Any, recipient: Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 small files (1.5 MB of ciphertext in all) go through gpg batches in a 1 MiB temp dir."""
    files = {f"host1/small-{index:03d}.tar": os.urandom(15_000) for index in range(100)}
    night.stage(files)
    night.settings |= recipient.asRecipient() | {"max_concurrency": 2}
    with tmpfsTempDir(monkeypatch, "1m") as tempDir:
        night.run()
        assert list(tempDir.iterdir()) == []
    assert night.indicator().exists()
    assert len(listKeys(s3, night.bucket, night.suffix)) == len(files) + 1
    for relative in ("host1/small-000.tar", "host1/small-099.tar"):
        assert decrypt(getBytes(s3, night.bucket, night.key(relative)), home=recipient.home) == files[relative]


def test_batch_filling_the_temp_dir_is_a_clear_oserror(
    night: Night, s3: Any, recipient: Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    night.stage({"host1/a.tar": os.urandom(1_000), "host1/b.tar": os.urandom(200_000)})
    night.settings |= recipient.asRecipient() | {"max_concurrency": 1}
    with tmpfsTempDir(monkeypatch, "96k") as tempDir:
        with pytest.raises(OSError) as caught:
            night.run()
        assert list(tempDir.iterdir()) == []
    assert caught.value.errno == errno.ENOSPC
    assert f"{night.dayDir()}/host1/b.tar" in caught.value.strerror and "No space left" in caught.value.strerror
    assertNothingRecordedAsGood(night, s3)


def test_batch_with_the_temp_dir_on_another_filesystem_than_staging(
    night: Night, s3: Any, recipient: Key, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staged files cannot be hard-linked into another filesystem: gpg reads them through a /proc link."""
    files = {f"host1/small-{index:02d}.tar": os.urandom(2_000 + index) for index in range(70)}
    night.stage(files)
    night.settings |= recipient.asRecipient()
    with tmpfsTempDir(monkeypatch, "64m") as tempDir:
        night.run()
        assert list(tempDir.iterdir()) == []
    assert night.indicator().exists()
    expected = {night.key(relative) for relative in [*files, MANIFEST_NAME]}
    assert set(listKeys(s3, night.bucket, night.suffix)) == expected
    for relative, data in files.items():
        assert decrypt(getBytes(s3, night.bucket, night.key(relative)), home=recipient.home) == data, relative
    records = manifestOf(s3, night).byRelative()
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


@contextlib.contextmanager
def _changeAfterListing(night: Night, moto: MotoServer, victim: Path, change: str) -> Iterator[FaultProxy]:
    """A proxy that holds up the night's first PUT (the incomplete marker: after the day is listed, before any
    file is read) and changes ``victim`` meanwhile, as a collect still running would."""
    with FaultProxy("127.0.0.1", moto.port) as proxy:
        night.endpoint = proxy.url
        held = proxy.add_rule(delay(0.5), method="PUT", path=f"/{INCOMPLETE_MARKER}", nth=1)
        watcher = onceFired(lambda: held.injected == 1, lambda: _alter(victim, change))
        yield proxy
        watcher.join()
        assert proxy.errors == []


def _alter(victim: Path, change: str) -> None:
    if change == "grow":
        with open(victim, "ab") as handle:
            handle.write(b"late data from a collect that is still running")
    else:
        victim.unlink()


def test_staged_file_growing_after_the_listing_is_a_clear_valueerror(night: Night, s3: Any, moto: MotoServer) -> None:
    night.stage({"host1/a.tar": os.urandom(10_000), "host1/b.tar": os.urandom(20_000)})
    victim = night.dayDir() / "host1" / "b.tar"
    with (
        _changeAfterListing(night, moto, victim, "grow"),
        pytest.raises(ValueError, match=f"Staged file changed while being read: {victim} "),
    ):
        night.run()
    assertNothingRecordedAsGood(night, s3)
    assert night.key("host1/b.tar") not in listKeys(s3, night.bucket)


def test_staged_file_vanishing_after_the_listing_is_a_clear_error(night: Night, s3: Any, moto: MotoServer) -> None:
    night.stage({"host1/a.tar": os.urandom(10_000), "host1/b.tar": os.urandom(20_000)})
    victim = night.dayDir() / "host1" / "b.tar"
    with (
        _changeAfterListing(night, moto, victim, "vanish"),
        pytest.raises(ValueError, match=f"Staged file '{victim}' changed while the night was running"),
    ):
        night.run()
    assertNothingRecordedAsGood(night, s3)
    assert night.key("host1/b.tar") not in listKeys(s3, night.bucket)


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
