"""Encryption before upload (issue 3), as a user sees it: objects that stock ``gpg`` alone turns back into
the staged bytes, settings that show in the ciphertext, bounded temp space, nothing left behind, and re-runs
that recognise encrypted objects although GnuPG output is randomised.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cedar_s3.bucketformat import MANIFEST_NAME, parseManifest
from cedar_s3.workarea import WorkArea
from faultkit import sentObjects
from faultproxy import FaultProxy
from gpgkit import (
    PASSPHRASE,
    Key,
    assertNothingLeft,
    decrypt,
    exportPublicKey,
    gpg,
    isolatedTempDir,
    killAgent,
    listPackets,
    newHome,
    shortHome,
    shortTmpfs,
    throwawayKey,
    writePassphraseFile,
)
from nightkit import Night, getBytes, listKeys, watchAudit
from test_e2e_cback3 import ensureBackupUser

MIB = 1024 * 1024
LEGACY_COMMAND = "gpg -c --batch --yes --pinentry-mode loopback --passphrase-file {pp} -o ${{output}} ${{input}}"


# -- fixtures ---------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def privateTemp(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The extension's private GnuPG homes land here, so any leak is ours to see (others run gpg too)."""
    with isolatedTempDir(monkeypatch, tmp_path_factory) as path:
        yield path


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Key]:
    """The key pair an administrator makes on their own machine; its secret half never reaches the server."""
    with throwawayKey(tmp_path_factory.mktemp("admin"), "Backup Restore <restore@example.org>") as key:
        yield key


@pytest.fixture(scope="module")
def colleague(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Key]:
    """A second recipient (an off-site colleague) who must be able to restore alone."""
    with throwawayKey(tmp_path_factory.mktemp("colleague"), "Off-site Restore <offsite@example.org>") as key:
        yield key


@pytest.fixture
def serverHome(tmp_path: Path, admin: Key, colleague: Key) -> Iterator[Path]:
    """The backup server's GnuPG home: the recipients' public keys and nothing else."""
    home = newHome(tmp_path / "server-gnupg")
    exportPublicKey(admin.home, admin.fingerprint, home)
    exportPublicKey(colleague.home, colleague.fingerprint, home)
    yield home
    killAgent(home)


@pytest.fixture
def passphraseFile(tmp_path: Path) -> Path:
    return writePassphraseFile(tmp_path / "backup.passphrase")


@pytest.fixture
def restoreHome(tmp_path: Path) -> Iterator[Path]:
    """An empty home for stock gpg on the restore side (the symmetric case needs no keys at all)."""
    home = newHome(tmp_path / "restore-gnupg")
    yield home
    killAgent(home)


@pytest.fixture
def commandHome() -> Iterator[Path]:
    with shortHome() as home:
        yield home


# -- helpers ----------------------------------------------------------------------------------------------------


def stageDay(night: Night) -> dict[str, bytes]:
    """A day as collect + stage leave it: peer dirs with cback.collect, nesting, a space, an empty file."""
    files = {
        "localhost/etc.tar.gz": os.urandom(60_000),
        "localhost/dir with space/notes.tar": b"notes\n" * 500,
        "remote/nested/deeper/home.tar.bz2": os.urandom(3_000),
        "remote/empty.tar": b"",
    }
    night.stage(files, peers=("localhost", "remote"))
    return files


def download(s3: Any, night: Night, relative: str) -> tuple[bytes, dict[str, str]]:
    """An object's bytes and user metadata, with plain boto3 (no cedar-s3 on the restore side)."""
    response = s3.get_object(Bucket=night.bucket, Key=night.key(relative))
    return response["Body"].read(), response["Metadata"]


def snapshot(home: Path) -> dict[str, tuple[int, int]]:
    return {path.name: (path.stat().st_size, path.stat().st_mtime_ns) for path in home.iterdir() if path.is_file()}


def assertOnlyDayStored(s3: Any, night: Night, files: dict[str, bytes]) -> None:
    """Keys exactly as upstream names them: no .gpg suffix, no indicator files, plus our manifest."""
    assert set(listKeys(s3, night.bucket)) == {night.key(relative) for relative in files} | {night.key(MANIFEST_NAME)}


# -- round trips ------------------------------------------------------------------------------------------------


def test_symmetric_night_restores_with_stock_gpg_and_the_passphrase_alone(
    night: Night,
    s3: Any,
    passphraseFile: Path,
    restoreHome: Path,
    privateTemp: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    files = stageDay(night)
    night.settings["gpg_passphrase_file"] = str(passphraseFile)
    night.run()
    assertOnlyDayStored(s3, night, files)
    for relative, data in files.items():
        ciphertext, metadata = download(s3, night, relative)
        assert ciphertext and ciphertext != data  # native mode encrypts empty files too
        assert decrypt(ciphertext, passphraseFile=passphraseFile, home=restoreHome) == data
        assert metadata["cedar-encryption"] == "gpg-symmetric"
        assert PASSPHRASE not in str(metadata) and str(passphraseFile) not in str(metadata)
    assert night.indicator().exists()
    assert PASSPHRASE not in caplog.text
    assertNothingLeft(night.workDir, privateTemp)


def test_public_key_night_restores_with_a_secret_key_kept_off_the_server(
    night: Night,
    s3: Any,
    admin: Key,
    colleague: Key,
    serverHome: Path,
    privateTemp: Path,
) -> None:
    files = stageDay(night)
    before = snapshot(serverHome)
    night.settings |= {"gpg_recipient": [admin.fingerprint, colleague.fingerprint], "gpg_home": str(serverHome)}
    night.run()
    assert snapshot(serverHome) == before  # the server's home is read, never written
    assert gpg(serverHome, "--list-secret-keys").stdout == b""  # it holds nothing that could decrypt
    assertOnlyDayStored(s3, night, files)
    for relative, data in files.items():
        ciphertext, metadata = download(s3, night, relative)
        assert ciphertext != data
        assert decrypt(ciphertext, home=admin.home) == data
        assert metadata["cedar-encryption"] == "gpg-public-key"
    ciphertext, _ = download(s3, night, "localhost/etc.tar.gz")
    assert decrypt(ciphertext, home=colleague.home) == files["localhost/etc.tar.gz"]  # each recipient alone
    assert night.indicator().exists()
    assertNothingLeft(night.workDir, privateTemp)


@pytest.mark.parametrize(
    ("settings", "expected", "unexpected"),
    [
        pytest.param({}, ["cipher 9,"], ["compressed packet"], id="defaults-aes256-uncompressed"),
        pytest.param(
            {"gpg_cipher": "CAMELLIA256", "gpg_compression": "zlib", "gpg_s2k_count": 65536},
            ["cipher 13,", "count 65536 ", "compressed packet: algo=2"],
            [],
            id="explicit",
        ),
        pytest.param({"gpg_s2k_count": 1024}, ["count 1088 "], [], id="lowest-s2k-count-is-really-low"),
    ],
)
def test_symmetric_settings_show_in_the_ciphertext(
    night: Night,
    s3: Any,
    passphraseFile: Path,
    restoreHome: Path,
    settings: dict[str, Any],
    expected: list[str],
    unexpected: list[str],
) -> None:
    night.stage({"host/data.tar": b"x" * 4096})
    night.settings |= {"gpg_passphrase_file": str(passphraseFile)} | settings
    night.run()
    ciphertext, _ = download(s3, night, "host/data.tar")
    packets = listPackets(ciphertext, restoreHome, passphraseFile)
    for text in expected:
        assert text in packets
    for text in unexpected:
        assert text not in packets


def test_legacy_encrypt_command_quotes_paths_and_keeps_empty_files_plain(
    night: Night,
    s3: Any,
    passphraseFile: Path,
    restoreHome: Path,
    commandHome: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In process (the real cback3 run as a backup user is in test_encryption_e2e.py)."""
    monkeypatch.setenv("HOME", str(commandHome))  # the command's own gpg keeps its agent out of ~root
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # where an unquoted $(touch x) would leave its mark
    files = {"host/a b;$(touch x).tar": os.urandom(5_000), "host/empty.tar": b""}
    night.stage(files)
    night.settings["encrypt"] = LEGACY_COMMAND.format(pp=passphraseFile)
    night.run()
    ciphertext, metadata = download(s3, night, "host/a b;$(touch x).tar")
    assert decrypt(ciphertext, passphraseFile=passphraseFile, home=restoreHome) == files["host/a b;$(touch x).tar"]
    assert metadata["cedar-encryption"] == "command"
    plain, metadata = download(s3, night, "host/empty.tar")
    assert (plain, metadata["cedar-encryption"]) == (b"", "none")  # upstream stores empty files unencrypted
    assert not list(tmp_path.rglob("x")) and not list(commandHome.rglob("x"))


# -- temp space, self-check, verification -----------------------------------------------------------------------


@dataclass
class CiphertextReads:
    """Every ciphertext the night reads back from a gpg batch directory (``batch-*`` in a private GnuPG home under
    ``root``), each seen as it is opened: Python raises its ``open`` audit event in the reading thread before the
    file is opened, so none is missed (a poller could miss them all). For each, the file's mode and the mode of
    every directory under ``root`` at that moment."""

    root: Path
    files: dict[str, int] = field(default_factory=dict)  # path -> mode
    dirModes: set[int] = field(default_factory=set)

    def saw(self, args: tuple[Any, ...]) -> None:
        path = args[0]
        if not isinstance(path, str) or not path.endswith(".gpg") or not path.startswith(f"{self.root}/"):
            return
        if not os.path.basename(os.path.dirname(path)).startswith("batch-"):
            return
        self.files[path] = os.stat(path).st_mode & 0o777
        for directory, dirNames, _ in os.walk(self.root):
            self.dirModes |= {os.stat(os.path.join(directory, name)).st_mode & 0o777 for name in dirNames}

    def during(self, night: Night) -> None:
        with watchAudit("open", self.saw):
            night.run()


def test_small_files_encrypted_in_batches_leave_staging_as_it_was_and_temp_files_private(
    night: Night, s3: Any, admin: Key, serverHome: Path, privateTemp: Path
) -> None:
    files = {f"host/d{index % 7}/small-{index:03d}.tar": os.urandom(100 + index * 37) for index in range(150)}
    night.stage(files)
    before = {path: (path.stat().st_nlink, path.stat().st_mode) for path in night.dayDir().rglob("*.tar")}
    night.settings |= {"gpg_recipient": [admin.fingerprint], "gpg_home": str(serverHome), "max_concurrency": 3}
    reads = CiphertextReads(privateTemp)
    reads.during(night)
    assert len(before) == len(files) and all(links == 1 for links, _ in before.values())
    assert {path: (path.stat().st_nlink, path.stat().st_mode) for path in before} == before  # links all gone
    assert len(reads.files) == len(files)  # each file's ciphertext, read back from a batch directory
    assert set(reads.files.values()) == {0o600}
    assert reads.dirModes == {0o700}
    for relative in ("host/d0/small-000.tar", "host/d3/small-087.tar", "host/d2/small-149.tar"):
        ciphertext, metadata = download(s3, night, relative)
        assert decrypt(ciphertext, home=admin.home) == files[relative]
        assert metadata["cedar-encryption"] == "gpg-public-key"
    assert len(listKeys(s3, night.bucket)) == len(files) + 1  # and the manifest
    assertNothingLeft(night.workDir, privateTemp)


PAGE = 4096  # tmpfs counts whole pages


def pages(size: int) -> int:
    return -(-size // PAGE) * PAGE


def test_batched_files_never_hold_more_than_one_ciphertext_per_upload_in_flight(
    bucket: str, endpoint: str, s3: Any, admin: Key, serverHome: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three batches at once (<max_concurrency>3, 64 files a batch), on one tmpfs holding the staged day, the temp
    dir and room for three ciphertexts: a fourth on disk at any moment would not fit, and the night would fail."""
    files = {f"host/d{index % 7}/file-{index:03d}.tar": os.urandom(200_000 + index * 37) for index in range(150)}
    ciphertext = pages(max(map(len, files.values())) + 1_000)  # at most: the file, gpg's packets, a partial page
    headroom = 96 * 1024  # cback3.conf, and the private home's keyring, trustdb, seed and lock files
    assert headroom < ciphertext // 2  # so even half a fourth ciphertext does not fit
    size = sum(pages(len(data)) for data in files.values()) + 3 * ciphertext + headroom
    with shortTmpfs(f"{size // 1024}k") as mounted:
        night = Night(mounted / "night", bucket, endpoint)  # staging and temp dir on one filesystem: hard links
        night.stage(files)
        (mounted / "temp").mkdir(mode=0o700)
        monkeypatch.setattr(tempfile, "tempdir", str(mounted / "temp"))
        night.settings |= {"gpg_recipient": [admin.fingerprint], "gpg_home": str(serverHome), "max_concurrency": 3}
        reads = CiphertextReads(mounted / "temp")
        reads.during(night)
        assert len(reads.files) == len(files)  # every ciphertext was on this tmpfs, in a batch directory
        assert night.indicator().exists()
        assert list((mounted / "temp").iterdir()) == []
    assert len(listKeys(s3, bucket)) == len(files) + 1
    for relative in ("host/d0/file-000.tar", "host/d2/file-149.tar"):
        assert decrypt(getBytes(s3, bucket, night.key(relative)), home=admin.home) == files[relative]


def test_broken_encrypt_command_fails_the_night_before_the_first_upload(
    night: Night, s3: Any, proxy: FaultProxy, tmp_path: Path
) -> None:
    night.stage({f"host/f{index}.tar": os.urandom(100_000) for index in range(10)})
    runs = tmp_path / "runs"  # one line per run of the command: the file it was given
    night.settings["encrypt"] = f"echo ${{input}} >> {runs}; /bin/false ${{input}} ${{output}}"
    with pytest.raises(ValueError, match=r"<encrypt> command self-check failed: Error \[1\]"):
        night.run()
    (run,) = runs.read_text().splitlines()  # run once, on the self-check's sample: not on any staged file
    assert run.endswith("/self-check.txt") and not run.startswith(str(night.stageRoot))
    assert proxy.requests_total == 0  # S3 was not even asked about the bucket
    assert listKeys(s3, night.bucket) == {}
    assert not night.indicator().exists()
    assert list(night.workDir.iterdir()) == []


def test_manifest_records_plaintext_and_stored_checksums(night: Night, s3: Any, passphraseFile: Path) -> None:
    files = stageDay(night)
    night.settings |= {"gpg_passphrase_file": str(passphraseFile), "gpg_s2k_count": 65536}
    night.run()
    manifest = parseManifest(getBytes(s3, night.bucket, night.key(MANIFEST_NAME)), source="test")
    assert manifest.header.encryption == "gpg-symmetric"
    records = manifest.byRelative()
    for relative, data in files.items():
        ciphertext, _ = download(s3, night, relative)
        record = records[relative]
        assert (record.plaintextSize, record.plaintextSha256) == (len(data), hashlib.sha256(data).hexdigest())
        assert (record.size, record.storedSha256) == (len(ciphertext), hashlib.sha256(ciphertext).hexdigest())
        assert record.encryption == "gpg-symmetric"


def test_rerun_recognises_encrypted_objects_already_stored(
    night: Night, s3: Any, proxy: FaultProxy, passphraseFile: Path, restoreHome: Path
) -> None:
    files = stageDay(night)
    night.settings |= {"gpg_passphrase_file": str(passphraseFile), "gpg_s2k_count": 65536}
    night.run()
    assert sentObjects(proxy, night) == sorted(files)
    first = {relative: download(s3, night, relative)[0] for relative in files}
    since = proxy.requests_total
    night.run()
    assert sentObjects(proxy, night, since) == []  # all four recognised, although gpg would encrypt them anew
    assert {relative: download(s3, night, relative)[0] for relative in files} == first
    (night.dayDir() / "localhost" / "etc.tar.gz").write_bytes(b"changed since the last run")
    since = proxy.requests_total
    night.run()
    assert sentObjects(proxy, night, since) == ["localhost/etc.tar.gz"]  # the changed one, and only it
    ciphertext, _ = download(s3, night, "localhost/etc.tar.gz")
    assert decrypt(ciphertext, passphraseFile=passphraseFile, home=restoreHome) == b"changed since the last run"


def test_a_long_temp_dir_leaves_gpg_agent_room_for_its_socket(
    night: Night, s3: Any, passphraseFile: Path, restoreHome: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket path holds 107 bytes; gpg-agent keeps its socket in the GnuPG home, so that home must be short."""
    longTemp = tmp_path / ("t" * 60) / ("m" * 40)
    longTemp.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(longTemp))
    night.stage({"host/data.tar": b"data"})
    night.settings["gpg_passphrase_file"] = str(passphraseFile)
    night.run()  # before the fix: "gpg: can't connect to the agent", exit 2, on the self-check
    ciphertext, _ = download(s3, night, "host/data.tar")
    assert decrypt(ciphertext, passphraseFile=passphraseFile, home=restoreHome) == b"data"
    assert list(longTemp.iterdir()) == []


# -- the docs' restore by hand, and the work area ----------------------------------------------------------------


def documentedBlock(after: str) -> str:
    """The shell code block that follows ``after`` in docs/encryption.rst, as a reader would copy it."""
    text = (Path(__file__).parent.parent / "docs" / "encryption.rst").read_text()
    block = text[text.index(after) :].split(".. code-block:: sh", 1)[1].split("\n\n", 2)[1]
    return "\n".join(line.removeprefix("   ") for line in block.splitlines())


def test_documented_restore_by_hand_needs_only_aws_and_gpg(
    night: Night, s3: Any, endpoint: str, admin: Key, serverHome: Path, tmp_path: Path
) -> None:
    files = stageDay(night)
    bucket = night.bucket
    night.bucket = f"{bucket}/server1"
    night.settings |= {"gpg_recipient": [admin.fingerprint], "gpg_home": str(serverHome)}
    night.run()
    workspace = tmp_path / "restore-by-hand"
    workspace.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GNUPGHOME": str(admin.home)}
    env |= {name: value for name, value in os.environ.items() if name.startswith("AWS_")}
    env |= {"AWS_ENDPOINT_URL": endpoint}
    for marker in ("One file:", ".. _encryption-restore-day:"):
        script = documentedBlock(marker).replace("example-backups", bucket).replace("2026/03/01", night.suffix)
        done = subprocess.run(["bash", "-e", "-c", script], cwd=workspace, env=env, capture_output=True, check=False)
        assert done.returncode == 0, done.stderr.decode()
    assert (workspace / "etc.tar.gz").read_bytes() == files["localhost/etc.tar.gz"]
    restored = {
        str(path.relative_to(workspace / "restored")): path.read_bytes()
        for path in (workspace / "restored").rglob("*")
        if path.is_file()
    }
    assert restored == files


@pytest.mark.skipif(os.geteuid() != 0, reason="giving the work area to the backup user needs root")
def test_work_area_gives_the_backup_user_only_its_output_dir_and_goes_on_every_exit(tmp_path: Path) -> None:
    user = ensureBackupUser()
    with pytest.raises(RuntimeError, match="half-way"), WorkArea(str(tmp_path), user.pw_uid, user.pw_gid) as area:
        modes = {
            name: os.stat(path) for name, path in (("area", area.path), ("in", area.inPath), ("out", area.outPath))
        }
        assert (modes["area"].st_uid, modes["area"].st_mode & 0o777) == (0, 0o711)
        assert (modes["in"].st_uid, modes["in"].st_gid, modes["in"].st_mode & 0o777) == (0, user.pw_gid, 0o710)
        assert (modes["out"].st_uid, modes["out"].st_gid, modes["out"].st_mode & 0o777) == (
            user.pw_uid,
            user.pw_gid,
            0o700,
        )
        Path(area.outPath, "00000002.enc").write_bytes(b"left by a failing upload")
        raise RuntimeError("the night fails half-way")
    assert list(tmp_path.iterdir()) == []
