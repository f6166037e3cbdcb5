"""The nights and commands that cross the wire, on every S3 implementation the tests can start here.

moto always; s3rver (npm) and Ceph RGW (Debian's radosgw, over HTTP and HTTPS) where installed, and in CI always
(``CEDAR_S3_REQUIRE`` makes a missing one fail, not skip). Every night runs with cedar-s3's defaults for a non-AWS
endpoint: Content-MD5 on every upload and no flexible checksums. Where an implementation cannot do something
(s3rver lists no unfinished multipart uploads), the test says what the night does instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clikit import cli, tree
from endpoints import Endpoint
from faultkit import MULTIPART, PART_2, partsSent, sentObjects
from faultproxy import FaultProxy, corrupt_request_body, reset_after, truncate_response_body
from formatkit import MANIFEST_NAME
from gpgkit import decrypt, writePassphraseFile
from nightkit import MotoServer, Night, getBytes, listKeys, newBucketName

MIB = 1024 * 1024
IMPLEMENTATIONS = [
    pytest.param("moto", id="moto"),
    pytest.param("s3rver", id="s3rver", marks=pytest.mark.s3rver),
    pytest.param("s3rver-https", id="s3rver-https", marks=pytest.mark.s3rver),
    pytest.param("ceph", id="ceph", marks=pytest.mark.ceph),
    pytest.param("ceph-https", id="ceph-https", marks=pytest.mark.ceph),
]
HTTP_ONLY = [param for param in IMPLEMENTATIONS if not str(param.values[0]).endswith("https")]
CHECKSUM_HEADERS = ("x-amz-checksum-", "x-amz-sdk-checksum-", "x-amz-trailer")


@dataclass
class Target:
    """One implementation under test: its endpoint, the URL the night uses, a fresh bucket on it."""

    name: str
    endpoint: Endpoint
    https: bool
    bucket: str
    client: Any

    @property
    def url(self) -> str:
        return str(self.endpoint.httpsUrl if self.https else self.endpoint.url)

    @property
    def port(self) -> int:
        return int(urllib.parse.urlsplit(self.endpoint.url).port or 80)

    @property
    def resumesUploads(self) -> bool:
        """s3rver answers 501 to ListMultipartUploads: no unfinished upload can be found, so none is continued."""
        return not self.name.startswith("s3rver")


@pytest.fixture(params=IMPLEMENTATIONS)
def target(request: pytest.FixtureRequest, moto: MotoServer) -> Target:
    name = request.param
    if name == "moto":
        endpoint = Endpoint("moto", moto.url, None, None, "testing", "testing")
    else:
        endpoint = request.getfixturevalue(name.removesuffix("-https"))
    https = name.endswith("https")
    client = endpoint.client(https=https)
    bucket = newBucketName()
    client.create_bucket(Bucket=bucket)
    return Target(name, endpoint, https, bucket, client)


def nightOn(tmp_path: Path, target: Target, url: str | None = None) -> Night:
    night = Night(tmp_path, target.bucket, url or target.url)
    if target.https:
        night.settings["ca_bundle"] = target.endpoint.caBundle
    return night


@pytest.fixture
def proxied(target: Target) -> Iterator[FaultProxy]:
    """A fault proxy in front of the implementation (plain HTTP only)."""
    with FaultProxy("127.0.0.1", target.port) as proxy:
        yield proxy
    assert proxy.errors == []


def dayFiles() -> dict[str, bytes]:
    return {
        "host1/etc.tar.gz": os.urandom(30_000),
        "host1/empty": b"",
        "host2/var/log.tar": os.urandom(2 * MIB + 17),  # between one read and one part: streamed from its descriptor
        "host2/big.tar": os.urandom(6 * MIB + 5),  # two 5 MiB parts
        "host2/odd name;$(x) \\.tar": b"odd",
    }


def assertStored(target: Target, night: Night, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        assert getBytes(target.client, target.bucket, night.key(relative)) == data, relative
    assert night.key(MANIFEST_NAME) in listKeys(target.client, target.bucket)


# -- a whole night, then the operator's commands -----------------------------------------------------------------


def test_a_night_stores_verifies_and_restores(tmp_path: Path, target: Target) -> None:
    files = dayFiles()
    night = nightOn(tmp_path, target)
    night.settings |= MULTIPART
    night.stage(files)
    night.run()
    assertStored(target, night, files)
    assert night.indicator().exists()
    assert getBytes(target.client, target.bucket, night.key("host2/big.tar")) == files["host2/big.tar"]
    verified = cli(night, "verify", "latest", "--download")
    assert verified.code == 0, verified.stdout + verified.stderr
    restored = cli(night, "restore", "latest", "--to", str(tmp_path / "restored"))
    assert restored.code == 0, restored.stderr
    assert tree(tmp_path / "restored") == files


def test_an_encrypted_night_streams_big_files_into_parts(tmp_path: Path, target: Target) -> None:
    files = {"host/big.tar": os.urandom(11 * MIB), "host/small.txt": b"small\n"}
    night = nightOn(tmp_path, target)
    passphrase = writePassphraseFile(tmp_path / "passphrase")
    night.settings |= MULTIPART | {"gpg_passphrase_file": str(passphrase)}
    night.stage(files)
    night.run()
    for relative, data in files.items():
        stored = getBytes(target.client, target.bucket, night.key(relative))
        assert decrypt(stored, passphraseFile=passphrase, home=tmp_path) == data
    verified = cli(night, "verify", "latest", "--download", "--passphrase-file", str(passphrase))
    assert verified.code == 0, verified.stdout + verified.stderr


@pytest.mark.slow
def test_a_day_of_more_than_1000_files_is_listed_and_verified_across_pages(tmp_path: Path, target: Target) -> None:
    files = {f"host/d{index % 10}/f{index:04d}": index.to_bytes(4, "big") for index in range(1_005)}
    night = nightOn(tmp_path, target)
    night.stage(files)
    night.run()
    assert len(listKeys(target.client, target.bucket, night.suffix)) == len(files) + 1
    night.indicator().unlink()
    night.run()  # a re-run reads the 1,005-entry listing (two pages) and the manifest, and reuses every object
    listed = cli(night, "list", "--json")
    assert listed.code == 0 and '"objects": 1005' in listed.stdout, listed.stdout + listed.stderr
    verified = cli(night, "verify", "latest")
    assert verified.code == 0, verified.stdout + verified.stderr


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("cback3") is None, reason="the real cback3 run needs root")
def test_the_real_cback3_night_stores_the_day(target: Target) -> None:
    root = Path("/var/tmp") / f"cedar-s3-matrix-{os.getpid()}-{target.name}"
    root.mkdir(mode=0o755)
    try:
        night = nightOn(root, target)
        (night.root / "data" / "notes.txt").write_text("notes\n")
        (night.root / "data" / "blob.bin").write_bytes(os.urandom(200_000))
        config = night.writeConfig()
        env = {"PATH": os.path.dirname(shutil.which("cback3") or "/usr/bin") + ":/usr/bin:/bin", "LANG": "C.UTF-8"}
        env |= {name: value for name, value in os.environ.items() if name.startswith("AWS_")}
        command = ["cback3", "--config", str(config), "--full", "--stack", "--logfile", str(root / "log")]
        done = subprocess.run(
            [*command, "collect", "stage", "amazons3"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr + (root / "log").read_text()
        staged = {
            path.relative_to(night.dayDir()).as_posix(): path.read_bytes()
            for path in night.dayDir().rglob("*")
            if path.is_file() and not path.name.startswith("cback.")
        }
        assert staged
        assertStored(target, night, staged)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- what goes on the wire -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", HTTP_ONLY, indirect=True)
def test_every_upload_carries_content_md5_and_no_flexible_checksum(
    tmp_path: Path, target: Target, proxied: FaultProxy
) -> None:
    night = nightOn(tmp_path, target, proxied.url)
    night.settings |= MULTIPART
    night.stage(dayFiles())
    night.run()
    uploads = [
        record for record in proxied.records if record.method == "PUT" and "x-amz-copy-source" not in record.headers
    ]
    assert len(uploads) >= 6  # five files (one in parts), the marker, the manifest
    for record in uploads:
        assert "content-md5" in record.headers, record.path
        assert not any(name.startswith(CHECKSUM_HEADERS) for name in record.headers), (record.path, record.headers)


@pytest.mark.parametrize("target", HTTP_ONLY, indirect=True)
def test_a_multipart_upload_broken_by_the_network_is_continued_by_the_next_night(
    tmp_path: Path, target: Target, proxied: FaultProxy
) -> None:
    files = {"host/a.tar": os.urandom(10_000), "host/big.tar": os.urandom(11 * MIB)}  # three parts
    night = nightOn(tmp_path, target, proxied.url)
    night.settings |= MULTIPART | {"max_attempts": 2, "max_concurrency": 1}
    night.stage(files)
    reset = proxied.add_rule(reset_after(64 * 1024), method="PUT", path=PART_2)
    with pytest.raises(OSError, match="part 2 of"):
        night.run()
    assert reset.injected == 2
    assert not night.indicator().exists()
    kept = 0
    if target.resumesUploads:
        (upload,) = target.client.list_multipart_uploads(Bucket=target.bucket)["Uploads"]
        parts = target.client.list_parts(Bucket=target.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        kept = len(parts.get("Parts", []))
        assert 1 <= kept <= 2  # part 1, and part 3 if it went while part 2 was failing
    proxied.clear_rules()
    since = proxied.requests_total
    night.run()
    assertStored(target, night, files)
    assert sentObjects(proxied, night, since) == ([] if target.resumesUploads else ["host/big.tar"])
    assert partsSent(proxied, night, "host/big.tar", since) == 3 - kept  # only what was missing


def storedBehindProxy(tmp_path: Path, target: Target, proxied: FaultProxy) -> tuple[Night, str, dict[str, bytes]]:
    """A night stores a big and a small file directly; the CLI then reads through the proxy.
    Returns the night, the big file's GET path, and the files."""
    files = {"host/big.tar": os.urandom(3 * MIB), "host/small": b"small"}
    night = nightOn(tmp_path, target)
    night.stage(files)
    night.run()
    night.endpoint = proxied.url
    night.writeConfig()
    return night, f"/{target.bucket}/{night.key('host/big.tar')}", files


@pytest.mark.parametrize("target", HTTP_ONLY, indirect=True)
def test_a_download_broken_mid_body_is_continued_with_a_ranged_get(
    tmp_path: Path, target: Target, proxied: FaultProxy
) -> None:
    night, key, files = storedBehindProxy(tmp_path, target, proxied)
    cut = proxied.add_rule(truncate_response_body(1_000_000), method="GET", path=f"^{key}$", nth=1)
    restored = cli(night, "restore", "latest", "--to", str(tmp_path / "restored"))
    assert restored.code == 0, restored.stderr
    assert cut.injected == 1
    assert tree(tmp_path / "restored") == files
    gets = [record for record in proxied.records if record.method == "GET" and record.path == key]
    assert [record.headers.get("range") for record in gets] == [None, "bytes=1000000-"]


@pytest.mark.parametrize("target", HTTP_ONLY, indirect=True)
def test_a_download_that_keeps_breaking_fails_that_file_alone_with_one_clear_line(
    tmp_path: Path, target: Target, proxied: FaultProxy
) -> None:
    night, key, _ = storedBehindProxy(tmp_path, target, proxied)
    cut = proxied.add_rule(truncate_response_body(1_000), method="GET", path=f"^{key}$")
    restored = cli(night, "restore", "latest", "--to", str(tmp_path / "restored"))
    assert restored.code == 1
    assert "Traceback" not in restored.stdout + restored.stderr
    assert "host/big.tar" in restored.stdout + restored.stderr
    assert cut.injected == 3  # the first GET and the two ranged retries from where each broke
    assert tree(tmp_path / "restored") == {"host/small": b"small"}  # nothing half-written under its name
    verified = cli(night, "verify", "latest", "--download")
    assert verified.code == 1 and "Traceback" not in verified.stdout + verified.stderr
    assert verified.stdout.split()[1] == "BAD" and "host/big.tar" in verified.stdout


# -- what only some implementations do --------------------------------------------------------------------------


@pytest.mark.ceph
def test_bytes_damaged_in_transit_are_refused_by_ceph_itself(tmp_path: Path, ceph: Endpoint) -> None:
    """Ceph checks Content-MD5 (moto and s3rver do not): the damage never reaches a stored object."""
    client = ceph.client()
    bucket = newBucketName()
    client.create_bucket(Bucket=bucket)
    port = int(urllib.parse.urlsplit(ceph.url).port or 80)
    with FaultProxy("127.0.0.1", port) as proxy:
        night = Night(tmp_path, bucket, proxy.url)
        night.stage({"host/a.tar": os.urandom(50_000)})
        flip = proxy.add_rule(corrupt_request_body(1234), method="PUT", path=r"/host/a\.tar$")
        # over plain HTTP the signed payload hash trips first; either way it is Ceph that refuses
        with pytest.raises(OSError, match=r"rejected the data as corrupt in transit \((BadDigest|XAmzContentSHA256)"):
            night.run()
        assert flip.injected >= 1
    assert night.key("host/a.tar") not in listKeys(client, bucket)
    assert not night.indicator().exists()


@pytest.mark.ceph
@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("storage_class", "STANDARD_IA", "refuses <storage_class>STANDARD_IA"),
        ("sse", "AES256", "<sse>AES256</sse> but its answer shows no x-amz-server-side-encryption"),
    ],
)
def test_a_setting_ceph_refuses_or_ignores_fails_the_night_before_any_upload(
    tmp_path: Path, ceph: Endpoint, setting: str, value: str, message: str
) -> None:
    client = ceph.client(https=True)
    bucket = newBucketName()
    client.create_bucket(Bucket=bucket)
    night = Night(tmp_path, bucket, str(ceph.httpsUrl))
    night.settings |= {"ca_bundle": ceph.caBundle, setting: value}
    night.stage({"host/a.tar": b"data"})
    with pytest.raises(OSError, match=message):
        night.run()
    assert listKeys(client, bucket) == {}  # not even the marker: nothing was stored


@pytest.mark.parametrize("target", [IMPLEMENTATIONS[0], IMPLEMENTATIONS[3]], indirect=True)
def test_object_lock_reaches_every_object_where_the_store_has_it(tmp_path: Path, target: Target) -> None:
    bucket = newBucketName()
    target.client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    night = Night(tmp_path, bucket, target.url)
    night.settings |= {"object_lock_mode": "GOVERNANCE", "object_lock_days": 1}
    files = {"host/a.tar": os.urandom(5_000)}
    night.stage(files)
    night.run()
    head = target.client.head_object(Bucket=bucket, Key=night.key("host/a.tar"))
    assert head["ObjectLockMode"] == "GOVERNANCE"
    digest = hashlib.sha256(files["host/a.tar"]).hexdigest()
    assert head["Metadata"]["cedar-plaintext-sha256"] == digest


@pytest.mark.s3rver
def test_object_lock_on_s3rver_is_a_clear_error_before_any_upload(tmp_path: Path, s3rver: Endpoint) -> None:
    client = s3rver.client()
    bucket = newBucketName()
    client.create_bucket(Bucket=bucket)
    night = Night(tmp_path, bucket, s3rver.url)
    night.settings |= {"object_lock_mode": "GOVERNANCE", "object_lock_days": 1}
    night.stage({"host/a.tar": b"data"})
    with pytest.raises(ValueError, match=r"<object_lock_mode> is set but bucket .* has no object lock"):
        night.run()
    assert listKeys(client, bucket) == {}


# -- object settings: applied where the store has them, refused before any upload where it does not ---------------


@pytest.mark.parametrize(
    ("target", "setting", "value", "refusal"),
    [
        pytest.param("moto", "storage_class", "STANDARD_IA", None, id="moto-storage-class"),
        pytest.param("moto", "sse", "AES256", None, id="moto-sse"),
        pytest.param(
            "s3rver", "storage_class", "STANDARD_IA", None, id="s3rver-storage-class", marks=pytest.mark.s3rver
        ),
        pytest.param(
            "s3rver",
            "sse",
            "AES256",
            "accepted <sse>AES256</sse> but its answer shows no x-amz-server-side-encryption",
            id="s3rver-sse",
            marks=pytest.mark.s3rver,
        ),
    ],
    indirect=["target"],
)
def test_object_settings_are_applied_or_refused_before_any_upload(
    tmp_path: Path, target: Target, setting: str, value: str, refusal: str | None
) -> None:
    night = nightOn(tmp_path, target)
    night.settings[setting] = value
    files = {"host/a.tar": os.urandom(5_000)}
    night.stage(files)
    if refusal is not None:
        with pytest.raises(OSError, match=refusal):
            night.run()
        assert listKeys(target.client, target.bucket) == {}
        return
    night.run()
    head = target.client.head_object(Bucket=target.bucket, Key=night.key("host/a.tar"))
    shown = {"storage_class": head.get("StorageClass"), "sse": head.get("ServerSideEncryption")}
    assert shown[setting] == value
    assertStored(target, night, files)


@pytest.mark.parametrize("target", [IMPLEMENTATIONS[0], IMPLEMENTATIONS[1], IMPLEMENTATIONS[3]], indirect=True)
def test_tags_are_kept_or_the_night_says_once_that_the_store_drops_them(
    tmp_path: Path, target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    """moto and Ceph keep ``x-amz-tagging``; s3rver drops it on a PUT. Either way the day is stored; where the tags are
    lost the night warns once, before any upload, so lifecycle rules that select on them are not trusted blindly."""
    night = nightOn(tmp_path, target)
    night.settings["tag"] = ["retention=nightly"]
    files = {"host/a.tar": os.urandom(5_000), "host/b.tar": os.urandom(6_000)}
    night.stage(files)
    with caplog.at_level(logging.WARNING, logger="CedarBackup3.log.extend.amazons3"):
        night.run()
    assertStored(target, night, files)
    kept = target.client.get_object_tagging(Bucket=target.bucket, Key=night.key("host/a.tar"))["TagSet"]
    warnings = [record.getMessage() for record in caplog.records if "keeps no tags" in record.getMessage()]
    if target.name in ("moto", "ceph"):
        assert kept == [{"Key": "retention", "Value": "nightly"}] and warnings == []
    else:
        assert kept == [] and len(warnings) == 1
