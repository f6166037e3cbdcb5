"""Each S3 setting of <amazons3> reaches S3: read back from the local endpoint, not from our own arguments.

Storage class, SSE, tags, metadata, addressing style, profile, TLS, checksums and transfer tuning are each
proven by a HEAD (or tagging / request capture) against the moto server; object lock has its own module.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import re
import socket
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from cedar_s3 import __version__
from cedar_s3.bucketformat import INCOMPLETE_MARKER, MANIFEST_NAME, parseManifest
from cedar_s3.config import AmazonS3Config, LocalConfig
from cedar_s3.s3.errors import S3ConnectionError
from cedar_s3.s3.session import buildStore
from cedar_s3.s3.store import TransferPlan
from cedar_s3.s3.thaw import thawStatus
from cedar_s3.verify import VerificationError, verifyObjects
from faultproxy import FaultProxy, opaque_etags
from nightkit import MOTO_PYTHON, REGION, MotoServer, Night, freePort, getBytes, listKeys
from versions import FLEXIBLE_DEFAULTS

MIB = 1024 * 1024
DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration-s3.rst"


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------


class _StoppedError(Exception):
    """Raised from a before-send hook to see a request's URL without sending it."""


SUBRESOURCES = {"tagging", "retention", "legal-hold", "acl", "attributes", "restore", "uploads", "uploadId"}


@dataclass(frozen=True)
class Sent:
    """One request to an object of the night's bucket, as the fault proxy in front of moto saw it on the wire."""

    method: str
    key: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased

    @property
    def operation(self) -> str:
        """The S3 operation, told apart by method and query as S3 itself does (those these tests look for)."""
        if self.method == "PUT":
            return "UploadPart" if "partNumber" in self.query else "PutObject"
        if self.method in ("GET", "HEAD") and not SUBRESOURCES & set(self.query):
            return "GetObject" if self.method == "GET" else "HeadObject"
        return f"{self.method} ?{'&'.join(self.query)}"


def sent(proxy: FaultProxy, night: Night, operation: str, key: str | None = None) -> list[Sent]:
    """The ``operation`` requests (on ``key``, if given) the night sent to its bucket, oldest first."""
    prefix = f"/{night.bucket.split('/')[0]}/"
    found = []
    for record in proxy.records:
        path, _, query = record.path.partition("?")
        if path.startswith(prefix):
            request = Sent(
                record.method,
                urllib.parse.unquote(path[len(prefix) :]),
                urllib.parse.parse_qs(query, keep_blank_values=True),
                record.headers,
            )
            if request.operation == operation and (key is None or request.key == key):
                found.append(request)
    return found


def metadataOf(request: Sent) -> dict[str, str]:
    meta = "x-amz-meta-"
    return {name.removeprefix(meta): value for name, value in request.headers.items() if name.startswith(meta)}


def settingsOf(night: Night) -> AmazonS3Config:
    night.writeConfig()
    settings = LocalConfig(xmlPath=str(night.configPath)).amazons3
    assert settings is not None
    return settings


def dataKeys(s3: Any, night: Night) -> list[str]:
    return sorted(key for key in listKeys(s3, night.bucket) if key != night.key(MANIFEST_NAME))


def stageSmall(night: Night) -> dict[str, bytes]:
    files = {"host1/etc.tar.gz": os.urandom(3000), "host2/var.tar": os.urandom(1000), "host2/empty": b""}
    night.stage(files)
    return files


# ---------------------------------------------------------------------------------------------------------------
# what each object gets: storage class, SSE, tags, metadata
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("storageClass", ["STANDARD_IA", "ONEZONE_IA", "GLACIER_IR"])
def test_storage_class_reaches_every_object_and_the_manifest_stays_standard(
    night: Night, s3: Any, storageClass: str
) -> None:
    stageSmall(night)
    night.settings["storage_class"] = storageClass
    night.run()
    keys = dataKeys(s3, night)
    assert len(keys) == 3
    for key in keys:
        assert s3.head_object(Bucket=night.bucket, Key=key)["StorageClass"] == storageClass
    manifest = s3.head_object(Bucket=night.bucket, Key=night.key(MANIFEST_NAME))
    assert manifest.get("StorageClass", "STANDARD") == "STANDARD"


@pytest.mark.parametrize("storageClass", ["GLACIER", "DEEP_ARCHIVE"])
def test_archived_class_night_and_rerun_never_read_an_archived_object(
    night: Night, s3: Any, proxy: FaultProxy, storageClass: str
) -> None:
    """moto, like S3, refuses GET on an archived object: a night that tried would fail, not just be slow."""
    stageSmall(night)
    night.settings["storage_class"] = storageClass
    night.run()
    (night.dayDir() / "host1" / "etc.tar.gz").write_bytes(os.urandom(3000))
    (night.dayDir() / "host2" / "var.tar").unlink()
    night.run()  # same-day re-run: skips, replaces and cleans up through LIST and HEAD only
    read = {request.key for request in sent(proxy, night, "GetObject")}
    assert read == {night.key(MANIFEST_NAME)}, "only the (STANDARD) manifest may be read back"
    keys = dataKeys(s3, night)
    assert keys == [night.key("host1/etc.tar.gz"), night.key("host2/empty")]
    for key in keys:
        assert s3.head_object(Bucket=night.bucket, Key=key)["StorageClass"] == storageClass
    assert "StorageClass" not in s3.head_object(Bucket=night.bucket, Key=night.key(MANIFEST_NAME))
    with pytest.raises(s3.exceptions.InvalidObjectState):
        s3.get_object(Bucket=night.bucket, Key=keys[0])


def test_restore_status_explains_archived_objects(night: Night, s3: Any) -> None:
    stageSmall(night)
    night.settings["storage_class"] = "GLACIER"
    night.run()
    key = night.key("host1/etc.tar.gz")
    with buildStore(settingsOf(night), None) as store:
        status = store.thawStatus(key)
        assert status.needed and not status.inProgress
        assert f"aws s3api restore-object --bucket {night.bucket} --key {key}" in status.message
        assert "GLACIER" in status.message
        manifest = store.thawStatus(night.key(MANIFEST_NAME))
        assert manifest.readable and manifest.message == ""
        s3.restore_object(Bucket=night.bucket, Key=key, RestoreRequest={"Days": 1})
        restored = store.thawStatus(key)
    assert restored.readable and "restored and readable until" in restored.message
    getBytes(s3, night.bucket, key)  # and it really is


def _thaw(storageClass: str, restore: str | None = None, archiveStatus: str | None = None) -> Any:
    return thawStatus(
        bucket="b",
        key="2026/01/02/h/it's a file.tar",
        storageClass=storageClass,
        archiveStatus=archiveStatus,
        restoreHeader=restore,
    )


def test_restore_status_reads_every_form_of_the_restore_header() -> None:
    assert not _thaw("GLACIER_IR").needed
    assert not _thaw("INTELLIGENT_TIERING").needed
    deep = _thaw("DEEP_ARCHIVE")
    assert deep.needed and "'2026/01/02/h/it'\"'\"'s a file.tar'" in deep.message and '"Days":7' in deep.message
    running = _thaw("GLACIER", restore='ongoing-request="true"')
    assert running.needed and running.inProgress and "still running" in running.message
    done = _thaw("GLACIER", restore='ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"')
    assert done.readable and "Fri, 21 Dec 2012 00:00:00 GMT" in done.message
    tiered = _thaw("INTELLIGENT_TIERING", archiveStatus="DEEP_ARCHIVE_ACCESS")
    assert tiered.needed and "DEEP_ARCHIVE_ACCESS" in tiered.message and "Days" not in tiered.message


def test_sse_s3_reaches_every_object_including_manifest_and_marker(night: Night, s3: Any, proxy: FaultProxy) -> None:
    stageSmall(night)
    night.settings["sse"] = "AES256"
    night.run()
    for key in [*dataKeys(s3, night), night.key(MANIFEST_NAME)]:
        assert s3.head_object(Bucket=night.bucket, Key=key)["ServerSideEncryption"] == "AES256", key
    (marker,) = sent(proxy, night, "PutObject", night.key(INCOMPLETE_MARKER))
    assert marker.headers["x-amz-server-side-encryption"] == "AES256"  # bucket policies demanding SSE need it
    assert "x-amz-storage-class" not in marker.headers and "x-amz-object-lock-mode" not in marker.headers


@pytest.fixture
def kmsKey(endpoint: str) -> str:
    kms = boto3.client(
        "kms", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    return str(kms.create_key(Description="cedar-s3 tests")["KeyMetadata"]["Arn"])


def test_sse_kms_with_key_id_reaches_every_object(night: Night, s3: Any, kmsKey: str) -> None:
    stageSmall(night)
    night.settings |= {"sse": "aws:kms", "sse_kms_key_id": kmsKey, "checksum_calculation": "when_supported"}
    night.run()
    for key in [*dataKeys(s3, night), night.key(MANIFEST_NAME)]:
        head = s3.head_object(Bucket=night.bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == kmsKey, key


def test_sse_kms_on_an_endpoint_without_flexible_checksums_is_refused_before_any_upload(
    night: Night, s3: Any, kmsKey: str
) -> None:
    """moto on 127.0.0.1 is not AWS: Content-MD5 only, which proves nothing about an SSE-KMS object."""
    stageSmall(night)
    night.settings |= {"sse": "aws:kms", "sse_kms_key_id": kmsKey}
    with pytest.raises(ValueError, match=r"<sse>aws:kms with Content-MD5 checksums leaves nothing to verify"):
        night.run()
    assert listKeys(s3, night.bucket) == {}


def test_sse_kms_verification_uses_head_checksums_when_etags_are_not_md5(
    night: Night, s3: Any, proxy: FaultProxy, kmsKey: str
) -> None:
    """On AWS a KMS object's ETag is not its MD5; moto still answers the MD5, so the proxy rewrites the ETag in every
    answer (PUT, HEAD, GET, listings), as AWS would send it (see ``opaque_etags``: no endpoint here does that)."""
    files = stageSmall(night)
    # moto on 127.0.0.1 is not AWS, so flexible checksums are asked for as an AWS night has them by default
    night.settings |= {"sse": "aws:kms", "sse_kms_key_id": kmsKey, "checksum_calculation": "when_supported"}
    proxy.add_rule(opaque_etags())  # every request; verification below goes through the proxy too
    night.run()
    headed = {r.key for r in sent(proxy, night, "HeadObject") if r.headers.get("x-amz-checksum-mode") == "ENABLED"}
    assert set(dataKeys(s3, night)) <= headed, "each object was proven by its HEAD checksum"
    manifest = parseManifest(getBytes(s3, night.bucket, night.key(MANIFEST_NAME)), source="test")
    key = night.key("host1/etc.tar.gz")
    same = len(files["host1/etc.tar.gz"])
    with buildStore(settingsOf(night), None) as store:
        assert verifyObjects(store, f"{night.suffix}/", manifest.objects) == 3
        # a same-size replacement with a SHA-256 checksum: the checksum differs
        s3.put_object(
            Bucket=night.bucket,
            Key=key,
            Body=os.urandom(same),
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=kmsKey,
            ChecksumAlgorithm="SHA256",
        )
        with pytest.raises(VerificationError, match=f"{key}: SHA-256 checksum differs"):
            verifyObjects(store, f"{night.suffix}/", manifest.objects)
        # ... and one without (the SDK default CRC32): nothing proves it, so it is not passed either
        s3.put_object(Bucket=night.bucket, Key=key, Body=os.urandom(same), ServerSideEncryption="aws:kms")
        with pytest.raises(VerificationError, match=f"{key}: the endpoint returns no checksum"):
            verifyObjects(store, f"{night.suffix}/", manifest.objects)
        with pytest.raises(VerificationError, match=f"{key}: downloaded bytes differ"):
            verifyObjects(store, f"{night.suffix}/", manifest.objects, download=True)


def test_tags_reach_every_object(night: Night, s3: Any, proxy: FaultProxy) -> None:
    stageSmall(night)
    night.settings["tag"] = ["backup=cedar", "cost-center=ops team+1", "path=a/b=c", "empty="]
    night.run()
    expected = {"backup": "cedar", "cost-center": "ops team+1", "path": "a/b=c", "empty": ""}
    for key in [*dataKeys(s3, night), night.key(MANIFEST_NAME)]:
        tagSet = s3.get_object_tagging(Bucket=night.bucket, Key=key)["TagSet"]
        assert {tag["Key"]: tag["Value"] for tag in tagSet} == expected, key
    (marker,) = sent(proxy, night, "PutObject", night.key(INCOMPLETE_MARKER))
    assert dict(urllib.parse.parse_qsl(marker.headers["x-amz-tagging"], keep_blank_values=True)) == expected


def test_fixed_metadata_on_every_object(night: Night, s3: Any, proxy: FaultProxy) -> None:
    stageSmall(night)
    night.run()
    fixed = {"cedar-host": socket.gethostname(), "cedar-day": night.suffix, "cedar-version": __version__}
    for key in [*dataKeys(s3, night), night.key(MANIFEST_NAME)]:
        metadata = s3.head_object(Bucket=night.bucket, Key=key)["Metadata"]
        assert fixed.items() <= metadata.items(), key
    (marker,) = sent(proxy, night, "PutObject", night.key(INCOMPLETE_MARKER))
    assert fixed.items() <= metadataOf(marker).items()


# ---------------------------------------------------------------------------------------------------------------
# where S3 is: addressing style, profile, TLS
# ---------------------------------------------------------------------------------------------------------------


def test_path_style_addressing_puts_the_bucket_in_the_path(night: Night, s3: Any, proxy: FaultProxy) -> None:
    night.endpoint = f"http://localhost:{proxy.port}"  # a host name: with an IP address botocore always uses path style
    night.settings["addressing_style"] = "path"
    stageSmall(night)
    night.run()
    assert len(listKeys(s3, night.bucket)) == 4
    records = proxy.records
    assert records and all(record.headers["host"] == f"localhost:{proxy.port}" for record in records)
    assert all(inBucketPath(record.path, night.bucket) for record in records)


def test_virtual_addressing_puts_the_bucket_in_the_host_name(night: Night, endpoint: str) -> None:
    """The contrast that shows <addressing_style> is what decides (bucket.localhost does not resolve here, so the
    request is looked at as the store's own client is about to send it)."""
    port = urllib.parse.urlsplit(endpoint).port
    night.endpoint = f"http://localhost:{port}"
    night.settings["addressing_style"] = "virtual"
    urls: list[str] = []
    with buildStore(settingsOf(night), None) as store:

        def stop(request: Any, **_: Any) -> None:
            urls.append(request.url)
            raise _StoppedError

        store.client.meta.events.register("before-send.s3", stop)
        with pytest.raises(_StoppedError):
            store.client.head_object(Bucket=night.bucket, Key="k")
    assert [urllib.parse.urlsplit(url).netloc for url in urls] == [f"{night.bucket}.localhost:{port}"]


def inBucketPath(url: str, bucket: str) -> bool:
    path = urllib.parse.urlsplit(url).path
    return path == f"/{bucket}" or path.startswith(f"/{bucket}/")


def _exampleXml(label: str) -> str:
    """The ``<amazons3>`` code block after ``.. _label:`` in the S3 configuration page."""
    text = DOC.read_text()
    after = text.split(f".. _{label}:", 1)[1]
    match = re.search(r"\.\. code-block:: xml\n\n((?:   .*\n|\n)+)", after)
    assert match, f"no xml code block after {label}"
    return "\n".join(line[3:] for line in match.group(1).splitlines())


def test_documented_path_style_example_works(night: Night, s3: Any, proxy: FaultProxy) -> None:
    """The MinIO-style example in docs/configuration-s3.rst, with only host, port and bucket name swapped."""
    xml = _exampleXml("s3-example-path-style")
    documentedUrl = re.search(r"<endpoint_url>(.*?)</endpoint_url>", xml)
    documentedBucket = re.search(r"<s3_bucket>([^/<]+)/([^<]+)</s3_bucket>", xml)
    assert documentedUrl and documentedBucket and "<addressing_style>path</addressing_style>" in xml
    assert urllib.parse.urlsplit(documentedUrl.group(1)).hostname != "127.0.0.1"
    local = f"http://localhost:{proxy.port}"
    xml = xml.replace(documentedUrl.group(0), f"<endpoint_url>{local}</endpoint_url>")
    xml = xml.replace(f"<s3_bucket>{documentedBucket.group(1)}/", f"<s3_bucket>{night.bucket}/")
    night.amazons3Xml = lambda: xml  # type: ignore[method-assign]
    stageSmall(night)
    night.run()
    keys = listKeys(s3, night.bucket)
    assert len(keys) == 4 and all(key.startswith(f"{documentedBucket.group(2)}/{night.suffix}/") for key in keys)
    records = proxy.records
    assert records and all(inBucketPath(record.path, night.bucket) for record in records)


@pytest.mark.parametrize("where", ["config", "credentials"])
def test_profile_supplies_the_credentials(
    night: Night, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proxy: FaultProxy, where: str
) -> None:
    """An explicit <profile> wins over AWS_ACCESS_KEY_ID in the environment (as with the AWS CLI)."""
    accessKey = "AKIACEDARPROFILE0001"
    header = "[profile cedar-backup]" if where == "config" else "[cedar-backup]"
    awsFile = tmp_path / f"aws-{where}"
    awsFile.write_text(f"{header}\naws_access_key_id = {accessKey}\naws_secret_access_key = profile-secret\n")
    monkeypatch.setenv("AWS_CONFIG_FILE" if where == "config" else "AWS_SHARED_CREDENTIALS_FILE", str(awsFile))
    stageSmall(night)
    night.settings["profile"] = "cedar-backup"
    night.run()
    assert len(listKeys(s3, night.bucket)) == 4
    signed = [record.headers["authorization"] for record in proxy.records]
    assert signed and all(f"Credential={accessKey}/" in value for value in signed)


def test_missing_profile_is_a_clear_value_error(
    night: Night, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "aws-config"
    config.write_text("[profile other]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = x\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    stageSmall(night)
    night.settings["profile"] = "cedar-backup"
    with pytest.raises(ValueError, match=rf"<profile> names AWS profile 'cedar-backup'.*{re.escape(str(config))}"):
        night.run()
    assert listKeys(s3, night.bucket) == {}


def test_missing_ca_bundle_is_a_clear_value_error(night: Night, s3: Any) -> None:
    stageSmall(night)
    night.settings["ca_bundle"] = "/nonexistent/cedar-s3/ca.pem"
    with pytest.raises(ValueError, match=r"<ca_bundle> /nonexistent/cedar-s3/ca.pem is not a readable file"):
        night.run()
    assert listKeys(s3, night.bucket) == {}


def test_ca_bundle_without_certificates_is_a_clear_value_error(night: Night, tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    stageSmall(night)
    night.settings["ca_bundle"] = str(garbage)
    with pytest.raises(ValueError, match=rf"<ca_bundle> {re.escape(str(garbage))} is not a readable file of PEM"):
        night.run()


@dataclass
class TlsEndpoint:
    url: str
    caBundle: str


def _selfSignedCertificate(directory: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cedar-s3 test endpoint")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    certPath, keyPath = directory / "cert.pem", directory / "key.pem"
    certPath.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyPath.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certPath, keyPath


@pytest.fixture(scope="module")
def tlsEndpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsEndpoint]:
    """A second moto server, on https with a certificate only our CA bundle trusts."""
    import ssl
    import subprocess
    import urllib.request

    certPath, keyPath = _selfSignedCertificate(tmp_path_factory.mktemp("tls"))
    port = freePort()
    process = subprocess.Popen(
        [
            MOTO_PYTHON,
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
            "-c",
            str(certPath),
            "-k",
            str(keyPath),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = MotoServer(port=port, process=process)
    url = f"https://localhost:{port}"
    context = ssl.create_default_context(cafile=str(certPath))
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1, context=context).read()  # noqa: S310
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server on https did not start") from None
                time.sleep(0.1)
        yield TlsEndpoint(url, str(certPath))
    finally:
        server.stop()


@pytest.fixture
def tlsNight(tmp_path: Path, tlsEndpoint: TlsEndpoint) -> Night:
    client = boto3.client(
        "s3",
        endpoint_url=tlsEndpoint.url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        verify=tlsEndpoint.caBundle,
    )
    bucket = f"cedar-tls-{os.urandom(6).hex()}"
    client.create_bucket(Bucket=bucket)
    night = Night(tmp_path, bucket, tlsEndpoint.url)
    night.stage({"h/a.tar": b"over tls"})
    return night


def test_https_endpoint_with_ca_bundle(tlsNight: Night, tlsEndpoint: TlsEndpoint) -> None:
    tlsNight.settings["ca_bundle"] = tlsEndpoint.caBundle
    tlsNight.run()
    assert tlsNight.indicator().exists()


def test_https_endpoint_without_its_ca_is_refused_naming_ca_bundle(tlsNight: Night) -> None:
    with pytest.raises(S3ConnectionError, match=r"TLS verification failed.*<ca_bundle>"):
        tlsNight.run()
    assert not tlsNight.indicator().exists()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verify_tls_off_trusts_any_certificate(tlsNight: Night, caplog: pytest.LogCaptureFixture) -> None:
    tlsNight.settings["verify_tls"] = False
    tlsNight.run()
    assert tlsNight.indicator().exists()
    assert any("TLS certificate verification is off" in record.getMessage() for record in caplog.records)


# ---------------------------------------------------------------------------------------------------------------
# checksums and transfer tuning
# ---------------------------------------------------------------------------------------------------------------


def test_checksums_when_required_send_content_md5_instead(night: Night, s3: Any, proxy: FaultProxy) -> None:
    """For endpoints that reject flexible checksums, S3 still checks every upload's bytes (Content-MD5)."""
    files = stageSmall(night)
    night.settings["checksum_calculation"] = "when_required"
    night.run()
    puts = sent(proxy, night, "PutObject")
    assert len(puts) == len(files) + 2  # marker, files, manifest
    for put in puts:
        assert "content-md5" in put.headers
        assert not any(name.startswith("x-amz-checksum-") for name in put.headers)
    data = files["host1/etc.tar.gz"]
    (put,) = sent(proxy, night, "PutObject", night.key("host1/etc.tar.gz"))
    assert put.headers["content-md5"] == base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def test_upload_tuning_reaches_the_wire(night: Night, s3: Any, proxy: FaultProxy) -> None:
    """Threshold, part size and concurrency: a 10.5 MiB file with 5 MiB parts is stored as three parts."""
    big = os.urandom(10 * MIB + MIB // 2)
    night.stage({"host/big.tar": big})
    night.settings |= {
        "multipart_threshold": "5 MB",
        "multipart_chunksize": "5 MB",
        "max_concurrency": 2,
        "checksum_calculation": "when_required",
    }
    night.run()
    key = night.key("host/big.tar")
    head = s3.head_object(Bucket=night.bucket, Key=key)
    assert head["ETag"].strip('"').endswith("-3")
    assert head["Metadata"]["cedar-part-size"] == str(5 * MIB)
    parts = sent(proxy, night, "UploadPart", key)
    assert len(parts) == 3 and all("content-md5" in part.headers for part in parts)
    assert getBytes(s3, night.bucket, key) == big
    with buildStore(settingsOf(night), None) as store:
        assert store.concurrency == 2


def test_max_bandwidth_caps_the_upload_rate(night: Night, s3: Any) -> None:
    """2 MiB at 1 MiB/s cannot take less than about 1.5 s (a lower bound: behaviour, not a speed target)."""
    data = os.urandom(2 * MIB)
    night.stage({"host/two.tar": data})
    night.settings["max_bandwidth"] = "1 MB"
    started = time.monotonic()
    night.run()
    assert time.monotonic() - started >= 1.5  # a lower bound: the cap itself is the behaviour (no upper bound here)
    assert getBytes(s3, night.bucket, night.key("host/two.tar")) == data


@pytest.mark.parametrize("size", [1, 5 * MIB, 100 * 1024**3, 1024**4, 5 * 1024**4])
def test_part_size_is_raised_so_no_file_needs_more_than_10000_parts(size: int) -> None:
    plan = TransferPlan(threshold=1, chunkSize=5 * MIB)
    partSize = plan.partSizeFor(size)
    assert partSize is not None
    assert 5 * MIB <= partSize <= 5 * 1024**3
    assert -(-size // partSize) <= 10_000
    if size <= 10_000 * 5 * MIB:
        assert partSize == 5 * MIB  # raised only when needed


def test_below_threshold_is_a_single_put() -> None:
    assert TransferPlan(threshold=64 * MIB, chunkSize=16 * MIB).partSizeFor(64 * MIB - 1) is None


# ---------------------------------------------------------------------------------------------------------------
# validation of the S3 settings (the config round trip itself is in test_config.py)
# ---------------------------------------------------------------------------------------------------------------


def section(body: str) -> str:
    return f'<?xml version="1.0"?><cb_config><amazons3><s3_bucket>bk1</s3_bucket>{body}</amazons3></cb_config>'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<storage_class>COLD</storage_class>", "<storage_class> must be one of STANDARD, .*DEEP_ARCHIVE.*'COLD'"),
        ("<storage_class>glacier</storage_class>", "<storage_class> must be one of"),
        ("<sse>aws:kms</sse><sse_kms_key_id>my-key</sse_kms_key_id>", "<sse_kms_key_id> is not a KMS key id"),
        (
            "<sse>aws:kms</sse><sse_kms_key_id>arn:aws:kms:us-east-1:123:key/x</sse_kms_key_id>",
            "<sse_kms_key_id> is not a KMS key id",
        ),
        ("<sse>AES256</sse><sse_kms_key_id>alias/backup</sse_kms_key_id>", "needs <sse>aws:kms"),
        ("<sse>aws:kms:dsse</sse>", "<sse> must be one of AES256, aws:kms"),
        ("<object_lock_mode>GOVERNANCE</object_lock_mode>", "<object_lock_mode> and <object_lock_days>"),
        ("<object_lock_days>30</object_lock_days>", "<object_lock_mode> and <object_lock_days>"),
        ("<object_lock_mode>LEGAL</object_lock_mode><object_lock_days>3</object_lock_days>", "object_lock_mode"),
        ("<object_lock_mode>COMPLIANCE</object_lock_mode><object_lock_days>0</object_lock_days>", "between 1"),
        ("<max_bandwidth>-1 MB</max_bandwidth>", "max_bandwidth.*negative"),
        ("<max_bandwidth>0</max_bandwidth>", "<max_bandwidth> must be at least 1 bytes"),
        ("<storage_class>GLACIER</storage_class><verify_download>Y</verify_download>", "verify_download.*GLACIER"),
        ("<storage_class>DEEP_ARCHIVE</storage_class><verify_download>Y</verify_download>", "restore"),
        (
            "<sse>aws:kms</sse><checksum_calculation>when_required</checksum_calculation>",
            "aws:kms with <checksum_calculation>when_required.*<verify_download>Y",
        ),
        ("<addressing_style>dns</addressing_style>", "<addressing_style> must be one of auto, path, virtual"),
        ("<ca_bundle>ca.pem</ca_bundle>", "<ca_bundle> must be an absolute path"),
        ("<verify_tls>N</verify_tls><ca_bundle>/etc/ca.pem</ca_bundle>", "ca_bundle.*verify_tls"),
        ("<retry_mode>forever</retry_mode>", "<retry_mode> must be one of"),
        ("<max_attempts>0</max_attempts>", "<max_attempts> must be between 1 and 20"),
        ("<checksum_calculation>never</checksum_calculation>", "<checksum_calculation> must be one of"),
        ("<endpoint_url>minio.lan:9000</endpoint_url>", "<endpoint_url> must be an http"),
        ("<tag>aws:createdBy=me</tag>", "<tag> must look like key=value"),
        ("<tag>a=1</tag><tag>a=2</tag>", "<tag> sets the key 'a' more than once"),
        ("".join(f"<tag>k{i}=v</tag>" for i in range(11)), "at most 10 tags"),
        ("<multipart_chunksize>6 GB</multipart_chunksize>", "multipart_chunksize.*5 GiB"),
        ("<multipart_threshold>4 MB</multipart_threshold>", "multipart_threshold.*at least"),
        ("<max_concurrency>65</max_concurrency>", "max_concurrency.*between 1 and 64"),
    ],
)
def test_bad_s3_setting_is_a_value_error_naming_it(body: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LocalConfig(xmlData=section(body))


@pytest.mark.parametrize(
    "keyId",
    [
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        "mrk-1234abcd12ab34cd56ef1234567890ab",
        "alias/cedar-backup",
        "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:eu-west-1:111122223333:alias/cedar-backup",
        "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
    ],
)
def test_every_kms_key_id_form_is_accepted(keyId: str) -> None:
    config = LocalConfig(xmlData=section(f"<sse>aws:kms</sse><sse_kms_key_id>{keyId}</sse_kms_key_id>")).amazons3
    assert config is not None and config.sseKmsKeyId == keyId


def test_instant_retrieval_class_may_verify_by_download() -> None:
    body = "<storage_class>GLACIER_IR</storage_class><verify_download>Y</verify_download>"
    config = LocalConfig(xmlData=section(body)).amazons3
    assert config is not None and config.verifyDownload


def test_documented_path_style_example_is_valid_config() -> None:
    xml = f'<?xml version="1.0"?><cb_config>{_exampleXml("s3-example-path-style")}</cb_config>'
    assert LocalConfig(xmlData=xml).amazons3 is not None


def test_s3_client_uses_endpoint_region_retries_and_checksum_settings(night: Night) -> None:
    night.settings |= {
        "region": "eu-central-1",
        "retry_mode": "adaptive",
        "max_attempts": 7,
        "checksum_calculation": "when_required",
        "checksum_validation": "when_required",
        "addressing_style": "path",
    }
    with buildStore(settingsOf(night), None) as store:
        config = store.client.meta.config
        assert store.client.meta.region_name == "eu-central-1"
        assert store.client.meta.endpoint_url == night.endpoint
        assert config.retries["mode"] == "adaptive"
        assert config.retries["total_max_attempts"] == 7  # every attempt, the first included
        if FLEXIBLE_DEFAULTS:  # older botocore has no such options, and never sends flexible checksums unasked
            assert config.request_checksum_calculation == "when_required"
            assert config.response_checksum_validation == "when_required"
        assert config.s3 == {"addressing_style": "path"}
