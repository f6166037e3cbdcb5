"""``cback3-s3-sync`` against a real S3 endpoint (moto on 127.0.0.1), run as an operator runs it.

Each test lays out a source tree, runs the installed command as a child process through a recording proxy,
and checks what a user would notice: the bytes in the bucket, the exit code, the requests on the wire.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cedar_s3.bucketformat import hostMetadata, objectMetadata
from cedar_s3.digest import ObjectHasher
from cedar_s3.stagedtree import StagedFile
from cedar_s3.sync.compare import localRecord
from cedar_s3.sync.source import LocalFile
from faultproxy import FaultProxy, corrupt_request_body
from nightkit import MotoServer
from synckit import deleteRequests, headCount, makeTree, objects, putKeys, run, runOnTerminal, syncArgs, writes

FILES = {"a.txt": b"alpha\n", "sub/b.txt": b"bravo bravo\n", "sub/deeper/c.bin": bytes(range(256)) * 4}


@pytest.fixture
def wire(moto: MotoServer) -> Iterator[FaultProxy]:
    """A recording (and, on request, fault-injecting) proxy in front of moto: the endpoint the command uses."""
    with FaultProxy("127.0.0.1", moto.port) as proxy:
        yield proxy
    assert proxy.errors == []


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return makeTree(tmp_path / "src", FILES)


def sync(tmp_path: Path, wire: FaultProxy, source: Path, url: str, *more: str) -> Any:
    return run(*syncArgs(tmp_path / "sync.log", wire.url, "--json", *more, source, url))


# -- upstream's behaviours -------------------------------------------------------------------------------------------


def test_keys_are_the_url_prefix_plus_the_path_relative_to_sourceDir(
    tmp_path: Path, wire: FaultProxy, source: Path, s3: Any, bucket: str
) -> None:
    (source / "cback.collect").write_bytes(b"")  # aws s3 sync stored Cedar Backup's indicator files too
    outcome = sync(tmp_path, wire, source, f"s3://{bucket}/host1/home")
    assert outcome.code == 0, outcome.stderr
    expected = {f"host1/home/{relative}": data for relative, data in FILES.items()} | {"host1/home/cback.collect": b""}
    assert objects(s3, bucket) == expected
    assert sorted(putKeys(wire, bucket)) == sorted(expected)
    assert outcome.summary["verified"] == len(expected)


def test_a_whole_bucket_and_a_trailing_slash_work_too(
    tmp_path: Path, wire: FaultProxy, source: Path, s3: Any, bucket: str
) -> None:
    assert sync(tmp_path, wire, source, f"s3://{bucket}").code == 0
    assert objects(s3, bucket) == FILES
    assert sync(tmp_path, wire, Path(f"{source}/"), f"s3://{bucket}/").code == 0
    assert objects(s3, bucket) == FILES


def test_each_object_records_its_files_digest_size_and_mtime(
    tmp_path: Path, wire: FaultProxy, source: Path, s3: Any, bucket: str
) -> None:
    assert sync(tmp_path, wire, source, f"s3://{bucket}/p").code == 0
    metadata = s3.head_object(Bucket=bucket, Key="p/sub/b.txt")["Metadata"]
    assert metadata["cedar-plaintext-sha256"] == hashlib.sha256(FILES["sub/b.txt"]).hexdigest()
    assert metadata["cedar-plaintext-size"] == str(len(FILES["sub/b.txt"]))
    assert metadata["cedar-source-mtime-ns"] == str((source / "sub/b.txt").stat().st_mtime_ns)


# -- change detection by content --------------------------------------------------------------------------------------


def test_a_second_run_sends_nothing_and_hashes_nothing(
    tmp_path: Path, wire: FaultProxy, source: Path, bucket: str
) -> None:
    assert sync(tmp_path, wire, source, f"s3://{bucket}/p").code == 0
    since = len(wire.records)
    outcome = sync(tmp_path, wire, source, f"s3://{bucket}/p")
    assert outcome.code == 0, outcome.stderr
    assert writes(wire, since) == []
    assert (outcome.summary["kept"], outcome.summary["hashed"], outcome.summary["sent"]) == (len(FILES), 0, [])


def test_a_same_size_edit_with_an_old_mtime_is_sent(
    tmp_path: Path, wire: FaultProxy, source: Path, s3: Any, bucket: str
) -> None:
    """The AWS CLI's size-and-mtime rule never sends this edit; comparing digests does."""
    assert sync(tmp_path, wire, source, f"s3://{bucket}/p").code == 0
    edited = source / "sub/b.txt"
    before = edited.stat()
    edited.write_bytes(b"BRAVO BRAVO\n")  # same size
    os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns - 86400 * 10**9 * 365))
    since = len(wire.records)
    outcome = sync(tmp_path, wire, source, f"s3://{bucket}/p")
    assert outcome.code == 0, outcome.stderr
    assert putKeys(wire, bucket, since) == ["p/sub/b.txt"]
    assert s3.get_object(Bucket=bucket, Key="p/sub/b.txt")["Body"].read() == b"BRAVO BRAVO\n"
    assert s3.head_object(Bucket=bucket, Key="p/sub/b.txt")["Metadata"]["cedar-source-mtime-ns"] == str(
        edited.stat().st_mtime_ns
    )


def test_a_touched_file_is_hashed_and_not_sent(tmp_path: Path, wire: FaultProxy, source: Path, bucket: str) -> None:
    assert sync(tmp_path, wire, source, f"s3://{bucket}/p").code == 0
    os.utime(source / "a.txt")
    since = len(wire.records)
    outcome = sync(tmp_path, wire, source, f"s3://{bucket}/p")
    assert outcome.code == 0, outcome.stderr
    assert writes(wire, since) == []
    assert outcome.summary["hashed"] == 1


def test_checksum_hashes_every_file_and_catches_an_edit_that_kept_its_mtime(
    tmp_path: Path, wire: FaultProxy, source: Path, s3: Any, bucket: str
) -> None:
    assert sync(tmp_path, wire, source, f"s3://{bucket}/p").code == 0
    edited = source / "a.txt"
    before = edited.stat()
    edited.write_bytes(b"ALPHA\n")
    os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime put back: only the bytes tell
    since = len(wire.records)
    plain = sync(tmp_path, wire, source, f"s3://{bucket}/p")
    assert (plain.code, plain.summary["hashed"], writes(wire, since)) == (0, 0, [])
    outcome = sync(tmp_path, wire, source, f"s3://{bucket}/p", "--checksum")
    assert outcome.code == 0, outcome.stderr
    assert outcome.summary["hashed"] == len(FILES)
    assert putKeys(wire, bucket, since) == ["p/a.txt"]
    assert s3.get_object(Bucket=bucket, Key="p/a.txt")["Body"].read() == b"ALPHA\n"


def test_an_unchanged_run_costs_one_head_per_file_or_with_checksum_none(
    tmp_path: Path, wire: FaultProxy, source: Path, bucket: str
) -> None:
    """The recorded mtime is in each object's metadata (a HEAD); --checksum reads every file instead and lets the
    listing's MD5 ETags decide."""
    assert sync(tmp_path, wire, source, f"s3://{bucket}/p").code == 0
    since = len(wire.records)
    assert sync(tmp_path, wire, source, f"s3://{bucket}/p").summary["hashed"] == 0
    assert headCount(wire, since) == len(FILES)
    since = len(wire.records)
    assert sync(tmp_path, wire, source, f"s3://{bucket}/p", "--checksum").summary["hashed"] == len(FILES)
    assert headCount(wire, since) == 0
    assert writes(wire, since) == []


def test_objects_written_by_aws_s3_sync_are_compared_by_their_md5_etag(
    tmp_path: Path, wire: FaultProxy, source: Path, s3: Any, bucket: str
) -> None:
    """No metadata of ours: an identical single-part object is kept, one with other bytes is sent, and a
    multipart one (its ETag is no MD5) is sent again once, after which it is ours and kept."""
    big = os.urandom(6 * 1024 * 1024)
    (source / "big.bin").write_bytes(big)
    s3.put_object(Bucket=bucket, Key="p/a.txt", Body=FILES["a.txt"])
    s3.put_object(Bucket=bucket, Key="p/sub/b.txt", Body=b"bravo BRAVO\n")  # same size, other bytes
    upload = s3.create_multipart_upload(Bucket=bucket, Key="p/big.bin")["UploadId"]
    parts = []
    for number, offset in enumerate(range(0, len(big), 5 * 1024 * 1024), 1):
        body = big[offset : offset + 5 * 1024 * 1024]
        etag = s3.upload_part(Bucket=bucket, Key="p/big.bin", UploadId=upload, PartNumber=number, Body=body)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(Bucket=bucket, Key="p/big.bin", UploadId=upload, MultipartUpload={"Parts": parts})
    outcome = sync(tmp_path, wire, source, f"s3://{bucket}/p")
    assert outcome.code == 0, outcome.stderr
    assert sorted(putKeys(wire, bucket)) == ["p/big.bin", "p/sub/b.txt", "p/sub/deeper/c.bin"]
    assert objects(s3, bucket)["p/sub/b.txt"] == FILES["sub/b.txt"]
    since = len(wire.records)
    again = sync(tmp_path, wire, source, f"s3://{bucket}/p")
    assert (again.code, writes(wire, since)) == (0, [])


# -- deletion ---------------------------------------------------------------------------------------------------------


def test_objects_without_a_file_are_deleted_only_after_every_upload_was_verified(
    tmp_path: Path, wire: FaultProxy, source: Path, s3: Any, bucket: str
) -> None:
    (source / "gone.txt").write_bytes(b"deleted locally")
    assert sync(tmp_path, wire, source, f"s3://{bucket}/p").code == 0
    (source / "gone.txt").unlink()
    (source / "a.txt").write_bytes(b"alpha, edited\n")
    since = len(wire.records)
    outcome = sync(tmp_path, wire, source, f"s3://{bucket}/p")
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    assert outcome.summary["deleted"] == ["p/gone.txt"]
    assert objects(s3, bucket) == {f"p/{relative}": data for relative, data in FILES.items()} | {
        "p/a.txt": b"alpha, edited\n"
    }
    records = wire.records
    deletions = deleteRequests(wire, since)
    assert len(deletions) == 1
    lastPut = max(index for index, record in enumerate(records) if record.method == "PUT")
    verifyListing = [
        index for index, record in enumerate(records) if record.method == "GET" and "list-type=2" in record.path
    ]
    assert lastPut > since
    assert verifyListing[-1] > lastPut  # the verification's listing came after the last upload ...
    assert deletions[0] > verifyListing[-1]  # ... and the deletion after it


def test_nothing_is_deleted_when_an_upload_fails(
    tmp_path: Path, wire: FaultProxy, source: Path, s3: Any, bucket: str
) -> None:
    (source / "gone.txt").write_bytes(b"deleted locally")
    assert sync(tmp_path, wire, source, f"s3://{bucket}/p").code == 0
    (source / "gone.txt").unlink()
    (source / "a.txt").write_bytes(b"alpha, edited\n")
    (source / "sub/b.txt").write_bytes(b"bravo, edited\n")
    rule = wire.add_rule(corrupt_request_body(0), method="PUT", path=r"/sub/b\.txt")  # S3 refuses it: BadDigest
    outcome = sync(tmp_path, wire, source, f"s3://{bucket}/p")
    assert rule.injected >= 1
    assert outcome.code == 6
    assert outcome.problemPaths() == [str(source / "sub/b.txt")]
    assert outcome.summary["errors"] == []  # not --max-delete: the failed upload alone kept the deletion back
    assert outcome.summary["notDeleted"] == ["p/gone.txt"]
    assert deleteRequests(wire) == []
    stored = objects(s3, bucket)
    assert stored["p/gone.txt"] == b"deleted locally"
    assert stored["p/a.txt"] == b"alpha, edited\n"  # the others were still sent
    # moto keeps damaged bytes that AWS would refuse (BadDigest); the ETag gave them away, and the next run,
    # seeing an object that its own record does not describe, sends the file again
    wire.clear_rules()
    repaired = sync(tmp_path, wire, source, f"s3://{bucket}/p")
    assert repaired.code == 0, repaired.stdout + repaired.stderr
    assert objects(s3, bucket)["p/sub/b.txt"] == b"bravo, edited\n"
    assert repaired.summary["deleted"] == ["p/gone.txt"]


def test_upload_only_never_deletes(tmp_path: Path, wire: FaultProxy, source: Path, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="p/gone.txt", Body=b"keep me")
    outcome = sync(tmp_path, wire, source, f"s3://{bucket}/p", "-u")
    assert outcome.code == 0, outcome.stderr
    assert deleteRequests(wire) == []
    assert objects(s3, bucket)["p/gone.txt"] == b"keep me"
    assert outcome.summary["notDeleted"] == ["p/gone.txt"]


def test_an_empty_sourceDir_deletes_nothing_and_fails(tmp_path: Path, wire: FaultProxy, s3: Any, bucket: str) -> None:
    """An unmounted disk leaves an empty mount point: upstream's ``aws s3 sync --delete`` emptied the bucket."""
    stored = {f"p/{relative}": data for relative, data in FILES.items()}
    for key, data in stored.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    empty = tmp_path / "mnt"
    empty.mkdir()
    outcome = sync(tmp_path, wire, empty, f"s3://{bucket}/p")
    assert outcome.code == 6
    assert deleteRequests(wire) == []
    assert objects(s3, bucket) == stored
    assert outcome.summary["notDeleted"] == sorted(stored)
    allowed = sync(tmp_path, wire, empty, f"s3://{bucket}/p", "--max-delete", "100%")
    assert allowed.code == 0, allowed.stderr
    assert objects(s3, bucket) == {}


def test_a_wrong_sourceDir_that_would_delete_most_objects_deletes_nothing(
    tmp_path: Path, wire: FaultProxy, source: Path, s3: Any, bucket: str
) -> None:
    for index in range(4):
        s3.put_object(Bucket=bucket, Key=f"p/other{index}.txt", Body=b"another machine's")
    outcome = sync(tmp_path, wire, source, f"s3://{bucket}/p")  # 4 of 7 objects would go: more than half
    assert outcome.code == 6
    assert deleteRequests(wire) == []
    assert len(objects(s3, bucket)) == 4 + len(FILES)  # the upload itself still happened
    counted = sync(tmp_path, wire, source, f"s3://{bucket}/p", "--max-delete", "4")
    assert counted.code == 0, counted.stderr
    assert sorted(objects(s3, bucket)) == sorted(f"p/{relative}" for relative in FILES)


def test_dry_run_changes_nothing_and_says_what_it_would_do(
    tmp_path: Path, wire: FaultProxy, source: Path, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="p/gone.txt", Body=b"still here")
    s3.put_object(Bucket=bucket, Key="p/a.txt", Body=FILES["a.txt"])
    outcome = sync(tmp_path, wire, source, f"s3://{bucket}/p", "--dry-run")
    assert outcome.code == 0, outcome.stderr
    assert writes(wire) == []
    assert objects(s3, bucket) == {"p/gone.txt": b"still here", "p/a.txt": FILES["a.txt"]}
    assert sorted(item["key"] for item in outcome.summary["sent"]) == ["p/sub/b.txt", "p/sub/deeper/c.bin"]
    assert outcome.summary["deleted"] == ["p/gone.txt"]


# -- verification only -------------------------------------------------------------------------------------------------


def test_verify_only_checks_checksums_names_what_differs_and_changes_nothing(
    tmp_path: Path, wire: FaultProxy, source: Path, s3: Any, bucket: str
) -> None:
    assert sync(tmp_path, wire, source, f"s3://{bucket}/p").code == 0
    s3.put_object(Bucket=bucket, Key="p/extra.txt", Body=b"only in the bucket")
    since = len(wire.records)
    good = sync(tmp_path, wire, source, f"s3://{bucket}/p", "-v")
    assert good.code == 0, good.stderr
    assert good.summary["verified"] == len(FILES)
    assert good.summary["onlyInBucket"] == ["p/extra.txt"]
    s3.put_object(Bucket=bucket, Key="p/sub/b.txt", Body=b"bravo-bravo\n")  # same size: upstream's check passed
    s3.delete_object(Bucket=bucket, Key="p/a.txt")
    since2 = len(wire.records)
    bad = sync(tmp_path, wire, source, f"s3://{bucket}/p", "--verifyOnly")
    assert bad.code == 6
    assert bad.problemPaths() == sorted([str(source / "a.txt"), str(source / "sub/b.txt")])
    assert writes(wire, since) == []
    assert headCount(wire, since2) == 1  # the listing's ETags prove the others; only the differing one is HEAD
    assert objects(s3, bucket)["p/extra.txt"] == b"only in the bucket"


def test_verify_only_proves_a_multipart_object_of_aws_s3_sync(
    tmp_path: Path, wire: FaultProxy, source: Path, s3: Any, bucket: str
) -> None:
    """The AWS CLI sends files above 8 MiB in 8 MiB parts: that part size is tried for an object without ours."""
    big = os.urandom(9 * 1024 * 1024)
    (source / "big.bin").write_bytes(big)
    for relative, data in FILES.items():
        s3.put_object(Bucket=bucket, Key=f"p/{relative}", Body=data)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="p/big.bin")["UploadId"]
    parts = []
    for number, offset in enumerate(range(0, len(big), 8 * 1024 * 1024), 1):
        body = big[offset : offset + 8 * 1024 * 1024]
        etag = s3.upload_part(Bucket=bucket, Key="p/big.bin", UploadId=upload, PartNumber=number, Body=body)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(Bucket=bucket, Key="p/big.bin", UploadId=upload, MultipartUpload={"Parts": parts})
    outcome = sync(tmp_path, wire, source, f"s3://{bucket}/p", "-v")
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    assert outcome.summary["verified"] == len(FILES) + 1
    (source / "big.bin").write_bytes(big[:-1] + bytes([big[-1] ^ 1]))
    assert sync(tmp_path, wire, source, f"s3://{bucket}/p", "-v").problemPaths() == [str(source / "big.bin")]


def test_verify_only_proves_a_multipart_object_by_its_recorded_part_size(
    tmp_path: Path, wire: FaultProxy, source: Path, s3: Any, bucket: str
) -> None:
    """An object cedar-s3 sent in parts records its part size (``cedar-part-size``): -v hashes the file so."""
    big = os.urandom(6 * 1024 * 1024 + 5)
    partSize = 5 * 1024 * 1024
    (source / "big.bin").write_bytes(big)
    assert sync(tmp_path, wire, source, f"s3://{bucket}/p").code == 0  # small files; big.bin replaced below
    hasher = ObjectHasher(partSize)
    hasher.update(big)
    record = localRecord(
        LocalFile(StagedFile(0, "big.bin", len(big), 0, 0, 0, ""), "big.bin", "p/big.bin"), hasher.finish()
    )
    metadata = objectMetadata(record, hostMetadata("elsewhere"))
    upload = s3.create_multipart_upload(Bucket=bucket, Key="p/big.bin", Metadata=metadata)["UploadId"]
    parts = []
    for number, offset in enumerate(range(0, len(big), partSize), 1):
        body = big[offset : offset + partSize]
        etag = s3.upload_part(Bucket=bucket, Key="p/big.bin", UploadId=upload, PartNumber=number, Body=body)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(Bucket=bucket, Key="p/big.bin", UploadId=upload, MultipartUpload={"Parts": parts})
    assert s3.head_object(Bucket=bucket, Key="p/big.bin")["ETag"].strip('"') == record.md5Etag
    outcome = sync(tmp_path, wire, source, f"s3://{bucket}/p", "-v")
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    assert outcome.summary["verified"] == len(FILES) + 1
    (source / "big.bin").write_bytes(bytes([big[0] ^ 1]) + big[1:])
    assert sync(tmp_path, wire, source, f"s3://{bucket}/p", "-v").problemPaths() == [str(source / "big.bin")]


# -- names and entries that cannot be stored ---------------------------------------------------------------------------


def test_a_name_that_is_not_utf8_stops_the_run_before_anything_is_sent(
    tmp_path: Path, wire: FaultProxy, source: Path, s3: Any, bucket: str
) -> None:
    bad = os.path.join(os.fsencode(source / "sub"), b"caf\xe9.txt")
    Path(os.fsdecode(bad)).write_bytes(b"latin-1 name")
    outcome = sync(tmp_path, wire, source, f"s3://{bucket}/p")
    assert outcome.code == 6
    assert writes(wire) == []
    assert objects(s3, bucket) == {}
    assert [entry["path"] for entry in outcome.summary["unstorable"]] == [f"{source}/sub/caf\\xe9.txt"]


def test_w_stores_everything_else_and_deletes_nothing_in_that_names_directory(
    tmp_path: Path, wire: FaultProxy, source: Path, s3: Any, bucket: str
) -> None:
    Path(os.fsdecode(os.path.join(os.fsencode(source / "sub"), b"caf\xe9.txt"))).write_bytes(b"latin-1 name")
    s3.put_object(Bucket=bucket, Key="p/sub/café.txt", Body=b"latin-1 name")  # aws s3 sync decoded it so
    s3.put_object(Bucket=bucket, Key="p/gone.txt", Body=b"deleted locally")
    outcome = sync(tmp_path, wire, source, f"s3://{bucket}/p", "-w")
    assert outcome.code == 0, outcome.stderr
    stored = objects(s3, bucket)
    assert stored == {f"p/{relative}": data for relative, data in FILES.items()} | {"p/sub/café.txt": b"latin-1 name"}
    assert outcome.summary["deleted"] == ["p/gone.txt"]
    assert outcome.summary["protected"] == ["p/sub/café.txt"]
    assert [entry["path"] for entry in outcome.summary["unstorable"]] == [f"{source}/sub/caf\\xe9.txt"]


def test_symlinks_are_never_followed_and_the_objects_under_them_are_kept(
    tmp_path: Path, wire: FaultProxy, source: Path, s3: Any, bucket: str
) -> None:
    secret = makeTree(tmp_path / "elsewhere", {"secret.txt": b"not for the bucket"})
    (source / "link.txt").symlink_to(secret / "secret.txt")
    (source / "linkdir").symlink_to(secret)
    os.mkfifo(source / "fifo")
    s3.put_object(Bucket=bucket, Key="p/link.txt", Body=b"from aws s3 sync, which followed it")
    s3.put_object(Bucket=bucket, Key="p/linkdir/secret.txt", Body=b"from aws s3 sync, which followed it")
    outcome = sync(tmp_path, wire, source, f"s3://{bucket}/p")
    assert outcome.code == 0, outcome.stderr
    stored = objects(s3, bucket)
    assert b"not for the bucket" not in stored.values()
    assert stored["p/link.txt"] == stored["p/linkdir/secret.txt"] == b"from aws s3 sync, which followed it"
    assert sorted(outcome.summary["protected"]) == ["p/link.txt", "p/linkdir/secret.txt"]
    assert sorted(entry["path"] for entry in outcome.summary["passed"]) == sorted(
        str(source / name) for name in ("fifo", "link.txt", "linkdir")
    )


# -- output ------------------------------------------------------------------------------------------------------------


def test_quiet_under_cron_a_successful_run_prints_nothing(
    tmp_path: Path, wire: FaultProxy, source: Path, s3: Any, bucket: str
) -> None:
    log = tmp_path / "sync.log"
    outcome = run(*syncArgs(log, wire.url, source, f"s3://{bucket}/p"))
    assert (outcome.code, outcome.stdout, outcome.stderr) == (0, "", "")
    assert len(objects(s3, bucket)) == len(FILES)
    assert log.stat().st_size > 0  # it all went to the log file


def test_a_failed_run_under_cron_says_why(tmp_path: Path, wire: FaultProxy, source: Path) -> None:
    outcome = run(*syncArgs(tmp_path / "sync.log", wire.url, source, "s3://cedar-no-such-bucket/p"))
    assert outcome.code == 6
    assert "cedar-no-such-bucket" in outcome.stdout + outcome.stderr  # the screen log: what cron mails


def test_on_a_terminal_it_shows_progress_and_a_summary(
    tmp_path: Path, wire: FaultProxy, source: Path, bucket: str
) -> None:
    code, screen = runOnTerminal(*syncArgs(tmp_path / "sync.log", wire.url, source, f"s3://{bucket}/p"))
    assert code == 0, screen
    assert "Uploading" in screen  # the progress bar's label
    assert f"Sent {len(FILES)} file(s)" in screen
