"""The pieces ``cback3-s3-sync`` added to shared modules: ``StagedTree.openDirectory``/``scan``, the
``cedar-source-mtime-ns`` metadata field, and how sourceDir's entries are sorted into what can be stored."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from cedar_s3.bucketformat import SOURCE_MTIME_NS, S3Location, StoredObject, objectMetadata, sourceMtimeNs
from cedar_s3.stagedtree import StagedTree
from cedar_s3.sync.source import SourceTree
from synckit import makeTree

RECORD = StoredObject("a.txt", 3, 3, "a" * 64, "a" * 64, "none", md5Etag="0" * 32)


def test_scan_lists_every_non_directory_entry_unfiltered_and_follows_no_link(tmp_path: Path) -> None:
    root = makeTree(tmp_path / "src", {"cback.collect": b"", "a/b.txt": b"b", "a/c/d.txt": b"d"})
    outside = makeTree(tmp_path / "outside", {"secret": b"s"})
    (root / "a" / "to-outside").symlink_to(outside)
    with StagedTree.openDirectory(str(root)) as tree:
        entries = tree.scan()
    names = [name for name, _ in entries]
    assert names == ["a/b.txt", "a/c/d.txt", "a/to-outside", "cback.collect"]
    assert stat.S_ISLNK(dict(entries)["a/to-outside"].st_mode)


def test_open_directory_names_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        StagedTree.openDirectory(str(tmp_path / "missing"))
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        StagedTree.openDirectory(str(tmp_path / "file"))


def test_the_source_mtime_is_recorded_only_when_given_and_read_back() -> None:
    assert SOURCE_MTIME_NS not in objectMetadata(RECORD, {})  # the nightly objects stay as the golden sample
    metadata = objectMetadata(RECORD, {}, sourceMtimeNs=1_700_000_000_123_456_789)
    assert metadata[SOURCE_MTIME_NS] == "1700000000123456789"
    assert sourceMtimeNs(metadata) == 1_700_000_000_123_456_789
    assert sourceMtimeNs({SOURCE_MTIME_NS: "-5"}) == -5  # before 1970
    assert sourceMtimeNs({SOURCE_MTIME_NS: "soon"}) is None
    assert sourceMtimeNs({}) is None


def test_names_that_cannot_be_keys_protect_the_directory_that_holds_them(tmp_path: Path) -> None:
    root = makeTree(tmp_path / "src", {"ok/x.txt": b"x", "cback.amazons3.upload.json": b"mine?", "a" * 200: b"y"})
    (root / "photos").mkdir()
    bad = os.path.join(os.fsencode(root / "photos"), b"\xe9t\xe9")
    os.mkdir(bad)
    Path(os.fsdecode(os.path.join(bad, b"one.jpg"))).write_bytes(b"jpg")
    with SourceTree.open(str(root), S3Location("bucket", "p" * 830)) as source:
        files = [file.relative for file in source.files]
        unstorable = {Path(entry.path).name: entry for entry in source.unstorable}
    assert files == ["ok/x.txt"]
    assert unstorable["one.jpg"].protects == "p" * 830 + "/photos/"
    assert unstorable["one.jpg"].path == f"{root}/photos/\\xe9t\\xe9/one.jpg"
    assert unstorable["cback.amazons3.upload.json"].protects is None
    assert "1024" in unstorable["a" * 200].reason  # 830 + 1 + 200 bytes


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files as another user")
def test_a_strangers_hard_link_is_not_read_but_the_owners_are(tmp_path: Path) -> None:
    root = makeTree(tmp_path / "src", {"mine.txt": b"m", "theirs.txt": b"t"})
    nobody = pwd.getpwnam("nobody").pw_uid
    os.link(root / "mine.txt", tmp_path / "mine-elsewhere")
    os.link(root / "theirs.txt", tmp_path / "theirs-elsewhere")
    os.chown(root / "theirs.txt", nobody, -1)
    with SourceTree.open(str(root), S3Location("bucket", "")) as source:
        assert [file.relative for file in source.files] == ["mine.txt"]
        assert [(Path(entry.path).name, entry.key) for entry in source.passed] == [("theirs.txt", "theirs.txt")]
    os.chown(root, nobody, -1)  # the tree's owner is trusted with hard links of their own
    with SourceTree.open(str(root), S3Location("bucket", "")) as source:
        assert [file.relative for file in source.files] == ["mine.txt", "theirs.txt"]
