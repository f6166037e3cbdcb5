"""The one-gpg-for-many-files session, on its own, always with the real gpg: the good path, a gpg that fails a
file, a full disk (where real gpg claims success for a truncated file), a start-up warning, a gpg that hangs.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cedar_s3.children import ChildTimeoutError, Deadlines
from cedar_s3.gpg.multifile import MultifileSession
from gpgkit import GPG, Key, decrypt, throwawayKey, tmpfs

QUICK = Deadlines(allowance=2.0, minThroughput=1024 * 1024)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Key]:
    with throwawayKey(tmp_path_factory.mktemp("multifile"), "Multifile Test <multifile@example.org>") as made:
        yield made


def stagedFiles(tmp_path: Path, contents: list[bytes]) -> list[Path]:
    (tmp_path / "staged").mkdir()
    paths = [tmp_path / "staged" / f"file-{number}.tar" for number in range(len(contents))]
    for path, data in zip(paths, contents, strict=True):
        path.write_bytes(data)
    return paths


def scratch(parent: Path) -> Path:
    directory = parent / "scratch"
    directory.mkdir(mode=0o700)
    return directory


def session(
    key: Key, directory: Path, *, recipient: str | None = None, deadlines: Deadlines = QUICK
) -> MultifileSession:
    options = ["--trust-model", "always", "--recipient", recipient or key.fingerprint]
    return MultifileSession(GPG, str(key.home), options, str(directory), deadlines)


def encrypt(current: MultifileSession, path: Path) -> Path:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        return Path(current.encrypt(descriptor, path.stat().st_size, str(path)))
    finally:
        os.close(descriptor)


def test_each_file_comes_out_encrypted_and_private_and_only_one_is_on_disk_at_a_time(tmp_path: Path, key: Key) -> None:
    contents = [os.urandom(3_000), b"", b"plain text\n" * 100]
    sources, directory = stagedFiles(tmp_path, contents), scratch(tmp_path)
    current = session(key, directory)
    try:
        for source, data in zip(sources, contents, strict=True):
            output = encrypt(current, source)
            assert [path.name for path in directory.iterdir()] == [output.name]  # the link to the source is gone
            assert stat.S_IMODE(output.stat().st_mode) == 0o600
            assert decrypt(output.read_bytes(), home=key.home) == data
            output.unlink()
    finally:
        current.close()
    assert not directory.exists()  # the session's directory goes with it
    assert [source.stat().st_nlink for source in sources] == [1, 1, 1]
    assert [source.read_bytes() for source in sources] == contents


def test_a_file_gpg_refuses_is_an_error_naming_the_file_and_what_gpg_said(tmp_path: Path, key: Key) -> None:
    (source,) = stagedFiles(tmp_path, [b"data"])
    directory = scratch(tmp_path)
    current = session(key, directory, recipient="0123456789ABCDEF0123456789ABCDEF01234567")
    try:
        with pytest.raises(OSError, match=rf"Error encrypting \[{source}\] with GnuPG: .*No public key") as caught:
            encrypt(current, source)
    finally:
        current.close()
    assert caught.value.errno is None
    assert not directory.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs needs root")
def test_success_reported_after_a_write_error_is_not_trusted(tmp_path: Path, key: Key) -> None:
    """Real gpg on a full disk reports END_ENCRYPTION for the truncated file it leaves behind."""
    with tmpfs(tmp_path / "small", "64k") as small:
        big, tiny = stagedFiles(tmp_path, [os.urandom(200_000), b"tiny"])
        directory = scratch(small)
        current = session(key, directory)
        try:
            with pytest.raises(OSError) as caught:
                encrypt(current, big)
            assert caught.value.errno == errno.ENOSPC
            assert str(big) in str(caught.value)
            assert list(directory.iterdir()) == []  # the truncated ciphertext is gone
            output = encrypt(current, tiny)  # the same gpg goes on with the next file
            assert decrypt(output.read_bytes(), home=key.home) == b"tiny"
        finally:
            current.close()


def test_a_start_up_warning_does_not_count_against_the_first_file(tmp_path: Path, key: Key) -> None:
    """gpg warns about a home others may read before it reads the first name; the file still counts as good."""
    (source,) = stagedFiles(tmp_path, [b"data"])
    key.home.chmod(0o755)  # "WARNING: unsafe permissions on homedir", printed at start-up
    current = session(key, scratch(tmp_path))
    try:
        assert decrypt(encrypt(current, source).read_bytes(), home=key.home) == b"data"
    finally:
        current.close()
        key.home.chmod(0o700)


def test_a_session_never_asked_to_encrypt_starts_no_gpg(tmp_path: Path) -> None:
    """A gpg binary that does not exist would fail at once if the session started it."""
    current = MultifileSession("/nonexistent/gpg", str(tmp_path), [], str(scratch(tmp_path)), QUICK)
    current.close()
    assert not (tmp_path / "scratch").exists()


def test_a_gpg_that_hangs_is_killed_at_its_deadline_and_named(tmp_path: Path, key: Key) -> None:
    first, second = stagedFiles(tmp_path, [b"first", b"second"])
    current = session(key, scratch(tmp_path))
    try:
        encrypt(current, first).unlink()
        child = current._child
        assert child is not None
        os.kill(child.pid, signal.SIGSTOP)  # a wedged gpg: alive, never answering
        with pytest.raises(ChildTimeoutError, match=rf"encrypting \[{second}\].*deadline of 2 s"):
            encrypt(current, second)
        assert child.popen.poll() == -signal.SIGKILL
    finally:
        current.close()
