"""The one-gpg-for-many-files session, on its own: real gpg for the good path, and tiny shell stand-ins for a
gpg that dies or claims success for a file it could not write (what a full disk made real gpg do).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cedar_s3.multifile import MultifileSession
from gpgkit import GPG, Key, decrypt, throwawayKey


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


def scratch(tmp_path: Path) -> Path:
    directory = tmp_path / "scratch"
    directory.mkdir(mode=0o700)
    return directory


def standIn(script: str) -> list[str]:
    """A 'gpg' made of one shell script; the session's own options arrive as its (ignored) arguments."""
    return ["/bin/sh", "-c", script, "gpg"]


def test_each_file_comes_out_encrypted_and_private_and_only_one_is_on_disk_at_a_time(tmp_path: Path, key: Key) -> None:
    home, fingerprint = key.home, key.fingerprint
    contents = [os.urandom(3_000), b"", b"plain text\n" * 100]
    sources, directory = stagedFiles(tmp_path, contents), scratch(tmp_path)
    argv = [GPG, "--homedir", str(home), "--batch", "--no-tty", "--trust-model", "always", "-r", fingerprint]
    session = MultifileSession(argv, str(directory))
    try:
        for source, data in zip(sources, contents, strict=True):
            output = Path(session.encrypt(str(source)))
            assert [path.name for path in directory.iterdir()] == [output.name]  # the link to the source is gone
            assert stat.S_IMODE(output.stat().st_mode) == 0o600
            assert decrypt(output.read_bytes(), home=home) == data
            output.unlink()
    finally:
        session.close()
    assert [source.stat().st_nlink for source in sources] == [1, 1, 1]
    assert [source.read_bytes() for source in sources] == contents


def test_a_gpg_that_dies_is_an_error_naming_the_file_and_what_gpg_said(tmp_path: Path) -> None:
    (source,) = stagedFiles(tmp_path, [b"data"])
    directory = scratch(tmp_path)
    session = MultifileSession(standIn("read name; echo 'gpg: fatal: out of core' >&2; exit 2"), str(directory))
    try:
        with pytest.raises(OSError) as caught:
            session.encrypt(str(source))
    finally:
        session.close()
    assert str(caught.value) == f"Error encrypting [{source}] with GnuPG: fatal: out of core; gpg exited (2)"
    assert list(directory.iterdir()) == []


def test_success_reported_after_a_write_error_is_not_trusted(tmp_path: Path) -> None:
    """Real gpg, its disk full, says END_ENCRYPTION for the truncated file it leaves behind."""
    sources = stagedFiles(tmp_path, [b"first", b"second"])
    directory = scratch(tmp_path)
    script = """
        read name; echo "[GNUPG:] FILE_START 2 $name"; printf 'partial' > "$name.gpg"
        echo "gpg: $name.gpg: write error: No space left on device"
        echo '[GNUPG:] END_ENCRYPTION'; echo '[GNUPG:] FILE_DONE'
        read name; printf 'whole' > "$name.gpg"; echo '[GNUPG:] END_ENCRYPTION'; echo '[GNUPG:] FILE_DONE'
    """
    session = MultifileSession(standIn(script), str(directory))
    try:
        with pytest.raises(OSError) as caught:
            session.encrypt(str(sources[0]))
        assert caught.value.errno == errno.ENOSPC
        assert caught.value.strerror == f"No space left in the working dir while encrypting {sources[0]}"
        assert list(directory.iterdir()) == []  # the truncated ciphertext is gone
        output = session.encrypt(str(sources[1]))  # the same gpg goes on with the next file
        assert Path(output).read_bytes() == b"whole"
    finally:
        session.close()


def test_a_start_up_warning_does_not_count_against_the_first_file(tmp_path: Path) -> None:
    (source,) = stagedFiles(tmp_path, [b"data"])
    script = """
        echo 'gpg: Warning: using insecure memory!'
        read name; echo "[GNUPG:] FILE_START 2 $name"; printf 'sealed' > "$name.gpg"
        echo '[GNUPG:] END_ENCRYPTION'; echo '[GNUPG:] FILE_DONE'
    """
    session = MultifileSession(standIn(script), str(scratch(tmp_path)))
    try:
        assert Path(session.encrypt(str(source))).read_bytes() == b"sealed"
    finally:
        session.close()


def test_a_session_never_asked_to_encrypt_starts_no_gpg(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    session = MultifileSession(standIn(f"touch {marker}"), str(scratch(tmp_path)))
    session.close()
    assert not marker.exists()
