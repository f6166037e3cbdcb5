"""What s3rver 3.7.1 does where it differs from AWS S3, pinned with plain boto3 (no cedar-s3 code).

Each test states one behaviour a client of s3rver meets; when s3rver (or boto3's defaults) change, the test that
breaks says which fact moved. Requests are inspected on the wire through botocore's ``before-send`` event.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import os
import subprocess
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from endpoints.base import Endpoint
from endpoints.s3rver import S3rverServer
from endpoints.s3rverfixture import s3rverBinary
from versions import NEEDS_FLEXIBLE_DEFAULTS

pytestmark = pytest.mark.s3rver

MiB = 1024 * 1024


@pytest.fixture
def client(s3rver: Endpoint) -> Any:
    return s3rver.client()


@pytest.fixture
def bucket(client: Any) -> Iterator[str]:
    name = f"facts-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    yield name
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for entry in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=entry["Key"])
    client.delete_bucket(Bucket=name)


def sentHeaders(client: Any, operation: str) -> list[dict[str, str]]:
    """The headers of every ``operation`` request this client sends from now on, as they went on the wire."""
    seen: list[dict[str, str]] = []

    def record(request: Any, **_: Any) -> None:
        seen.append(
            {
                name.lower(): (value.decode() if isinstance(value, bytes) else value)
                for name, value in request.headers.items()
            }
        )

    client.meta.events.register(f"before-send.s3.{operation}", record)
    return seen


def errorOf(call: Any) -> tuple[str, int]:
    """The S3 error code and HTTP status a call fails with."""
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def getBody(client: Any, bucket: str, key: str) -> bytes:
    return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def md5Hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - S3's ETag is an MD5


# (a) PutObject with boto3's defaults (flexible CRC32 checksums since boto3 1.36)


@NEEDS_FLEXIBLE_DEFAULTS  # pins boto3 >= 1.36's defaults
def test_put_with_default_crc32_over_http_stores_the_bytes(client: Any, bucket: str) -> None:
    headers = sentHeaders(client, "PutObject")
    body = os.urandom(1000)
    etag = client.put_object(Bucket=bucket, Key="plain", Body=body)["ETag"]
    assert "x-amz-checksum-crc32" in headers[0]  # over HTTP boto3 sends the CRC32 as a plain header
    assert "aws-chunked" not in headers[0].get("content-encoding", "")
    assert getBody(client, bucket, "plain") == body
    assert etag == f'"{md5Hex(body)}"'


@NEEDS_FLEXIBLE_DEFAULTS  # pins boto3 >= 1.36's defaults
def test_put_with_default_crc32_over_https_stores_the_aws_chunked_framing(s3rver: Endpoint, bucket: str) -> None:
    """Over TLS boto3 streams the body aws-chunked with a CRC32 trailer; s3rver does not decode it and keeps the
    framing as the object's content: silent corruption that only a content check (ETag vs MD5) catches."""
    tls = s3rver.client(https=True)
    headers = sentHeaders(tls, "PutObject")
    body = b"hello s3rver\n"
    etag = tls.put_object(Bucket=bucket, Key="framed", Body=body)["ETag"]
    assert headers[0]["content-encoding"] == "aws-chunked"
    assert headers[0]["x-amz-trailer"] == "x-amz-checksum-crc32"
    stored = getBody(tls, bucket, "framed")
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert stored == f"{len(body):x}\r\n".encode() + body + f"\r\n0\r\nx-amz-checksum-crc32:{crc}\r\n\r\n".encode()
    assert etag == f'"{md5Hex(stored)}"' != f'"{md5Hex(body)}"'


@NEEDS_FLEXIBLE_DEFAULTS  # pins boto3 >= 1.36's defaults
def test_put_over_https_with_checksums_when_required_stores_the_bytes(s3rver: Endpoint, bucket: str) -> None:
    tls = s3rver.client(https=True, request_checksum_calculation="when_required")
    headers = sentHeaders(tls, "PutObject")
    body = b"hello s3rver\n"
    etag = tls.put_object(Bucket=bucket, Key="plain", Body=body)["ETag"]
    assert "content-encoding" not in headers[0]
    assert not any(name.startswith("x-amz-checksum-") for name in headers[0])
    assert getBody(tls, bucket, "plain") == body
    assert etag == f'"{md5Hex(body)}"'


# (b) ListMultipartUploads


def test_list_multipart_uploads_is_not_implemented(client: Any, bucket: str) -> None:
    client.create_multipart_upload(Bucket=bucket, Key="pending")
    assert errorOf(lambda: client.list_multipart_uploads(Bucket=bucket)) == ("NotImplemented", 501)


# (c) multipart uploads and ETag forms


def test_single_part_etag_is_the_md5_hex(client: Any, bucket: str) -> None:
    body = os.urandom(4096)
    client.put_object(Bucket=bucket, Key="one", Body=body)
    listed = client.list_objects_v2(Bucket=bucket)["Contents"][0]["ETag"]
    assert client.head_object(Bucket=bucket, Key="one")["ETag"] == listed == f'"{md5Hex(body)}"'


def test_multipart_upload_works_and_its_etag_is_the_whole_object_md5_not_md5_dash_n(client: Any, bucket: str) -> None:
    body = os.urandom(11 * MiB)
    parts = [body[offset : offset + 5 * MiB] for offset in range(0, len(body), 5 * MiB)]
    headers = sentHeaders(client, "UploadPart")
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=2)
    client.upload_fileobj(io.BytesIO(body), bucket, "multi", Config=config)
    assert len(headers) == len(parts) == 3  # it really went as a multipart upload
    awsForm = hashlib.md5(b"".join(hashlib.md5(part).digest() for part in parts)).hexdigest()  # noqa: S324
    head = client.head_object(Bucket=bucket, Key="multi")
    listed = client.list_objects_v2(Bucket=bucket)["Contents"][0]
    assert head["ETag"] == listed["ETag"] == f'"{md5Hex(body)}"'
    assert head["ETag"] != f'"{awsForm}-3"'  # what AWS answers
    assert head["ContentLength"] == listed["Size"] == len(body)
    assert getBody(client, bucket, "multi") == body


def test_abort_and_list_parts_of_a_multipart_upload_are_refused(client: Any, bucket: str) -> None:
    upload = client.create_multipart_upload(Bucket=bucket, Key="pending")["UploadId"]
    client.upload_part(Bucket=bucket, Key="pending", UploadId=upload, PartNumber=1, Body=b"x" * 100)
    assert errorOf(lambda: client.list_parts(Bucket=bucket, Key="pending", UploadId=upload)) == (
        "MethodNotAllowed",
        405,
    )
    assert errorOf(lambda: client.abort_multipart_upload(Bucket=bucket, Key="pending", UploadId=upload)) == (
        "MethodNotAllowed",
        405,
    )


# (d) flexible checksums on the way back


def test_no_checksum_comes_back_with_checksum_mode_enabled(client: Any, bucket: str) -> None:
    headers = sentHeaders(client, "PutObject")
    body = os.urandom(2048)
    sha256 = base64.b64encode(hashlib.sha256(body).digest()).decode()
    client.put_object(Bucket=bucket, Key="summed", Body=body, ChecksumAlgorithm="SHA256")
    assert headers[0]["x-amz-checksum-sha256"] == sha256  # it was sent
    head = client.head_object(Bucket=bucket, Key="summed", ChecksumMode="ENABLED")
    got = client.get_object(Bucket=bucket, Key="summed", ChecksumMode="ENABLED")
    assert not [name for name in (*head, *got) if name.startswith("Checksum")]
    assert bytes(got["Body"].read()) == body


# (e) listing more than 1,000 keys


def test_listing_over_1000_keys_pages_with_continuation_tokens(client: Any, bucket: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    keys = [f"day/{number:05d}" for number in range(1005)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=bucket, Key=key, Body=b""), keys))
    requests = sentHeaders(client, "ListObjectsV2")
    pages = list(client.get_paginator("list_objects_v2").paginate(Bucket=bucket))
    assert len(requests) == 2
    assert [page["KeyCount"] for page in pages] == [1000, 5]
    assert pages[0]["IsTruncated"] is True and pages[0]["NextContinuationToken"]
    assert pages[1]["IsTruncated"] is False and "NextContinuationToken" not in pages[1]
    assert [entry["Key"] for page in pages for entry in page["Contents"]] == keys


def nodeOpensslMajor() -> int:
    done = subprocess.run(
        ["node", "-p", "process.versions.openssl"], capture_output=True, text=True, timeout=30, check=True
    )
    return int(done.stdout.strip().split(".")[0])


def test_without_the_legacy_openssl_provider_a_truncated_listing_fails() -> None:
    """Why the fixture runs node with --openssl-legacy-provider: the continuation token is DES-encrypted."""
    binary = s3rverBinary()
    if nodeOpensslMajor() < 3:
        pytest.skip("node's OpenSSL is older than 3 and still has DES")
    with S3rverServer(binary, https=False, legacyOpenssl=False) as endpoint:
        plain = endpoint.client(retries={"max_attempts": 1})
        plain.create_bucket(Bucket="legacy")
        for key in ("a", "b"):
            plain.put_object(Bucket="legacy", Key=key, Body=b"")
        assert plain.list_objects_v2(Bucket="legacy")["KeyCount"] == 2  # not truncated: no token, no DES
        assert errorOf(lambda: plain.list_objects_v2(Bucket="legacy", MaxKeys=1)) == ("InternalError", 500)


# (f) object tagging and storage classes


def test_tagging_header_on_put_is_dropped_but_put_object_tagging_is_kept(client: Any, bucket: str) -> None:
    headers = sentHeaders(client, "PutObject")
    client.put_object(Bucket=bucket, Key="tagged", Body=b"x", Tagging="cedar=night")
    assert headers[0]["x-amz-tagging"] == "cedar=night"
    assert client.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"] == []
    client.put_object_tagging(Bucket=bucket, Key="tagged", Tagging={"TagSet": [{"Key": "cedar", "Value": "night"}]})
    assert client.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"] == [{"Key": "cedar", "Value": "night"}]


@pytest.mark.parametrize(
    "storageClass", ["STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER", "DEEP_ARCHIVE"]
)
def test_storage_class_is_kept_on_head_but_listed_as_standard(client: Any, bucket: str, storageClass: str) -> None:
    client.put_object(Bucket=bucket, Key="classy", Body=b"x", StorageClass=storageClass)
    assert client.head_object(Bucket=bucket, Key="classy")["StorageClass"] == storageClass
    assert client.list_objects_v2(Bucket=bucket)["Contents"][0]["StorageClass"] == "STANDARD"
    assert getBody(client, bucket, "classy") == b"x"  # even GLACIER reads back at once, no restore


@pytest.mark.parametrize("storageClass", ["GLACIER_IR", "EXPRESS_ONEZONE", "NO_SUCH_CLASS"])
def test_newer_or_unknown_storage_classes_are_refused(client: Any, bucket: str, storageClass: str) -> None:
    call = lambda: client.put_object(Bucket=bucket, Key="classy", Body=b"x", StorageClass=storageClass)  # noqa: E731
    assert errorOf(call) == ("InvalidStorageClass", 400)
    assert client.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


# (g) integrity headers


def test_a_wrong_content_md5_is_accepted(client: Any, bucket: str) -> None:
    headers = sentHeaders(client, "PutObject")
    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()  # noqa: S324
    etag = client.put_object(Bucket=bucket, Key="md5", Body=b"hello", ContentMD5=wrong)["ETag"]
    assert headers[0]["content-md5"] == wrong
    assert etag == f'"{md5Hex(b"hello")}"'
    assert getBody(client, bucket, "md5") == b"hello"


def test_a_wrong_sha256_checksum_is_accepted(client: Any, bucket: str) -> None:
    headers = sentHeaders(client, "PutObject")
    wrong = base64.b64encode(hashlib.sha256(b"something else").digest()).decode()
    client.put_object(Bucket=bucket, Key="sha", Body=b"hello", ChecksumSHA256=wrong)
    assert headers[0]["x-amz-checksum-sha256"] == wrong
    assert getBody(client, bucket, "sha") == b"hello"


# (h) versioning and object lock


def test_versioning_is_not_supported_and_put_versioning_is_taken_for_create_bucket(client: Any, bucket: str) -> None:
    enable = {"Status": "Enabled"}
    assert errorOf(lambda: client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration=enable)) == (
        "BucketAlreadyExists",
        409,
    )
    assert "Status" not in client.get_bucket_versioning(Bucket=bucket)  # a plain listing, read as "never enabled"
    assert errorOf(lambda: client.list_object_versions(Bucket=bucket)) == ("MethodNotAllowed", 405)
    other = f"facts-{uuid.uuid4().hex[:12]}"
    client.put_bucket_versioning(Bucket=other, VersioningConfiguration=enable)  # "succeeds" by creating it
    try:
        assert other in [entry["Name"] for entry in client.list_buckets()["Buckets"]]
    finally:
        client.delete_bucket(Bucket=other)


def test_object_lock_is_accepted_on_create_and_put_but_never_enforced(client: Any) -> None:
    locked = f"facts-{uuid.uuid4().hex[:12]}"
    headers = sentHeaders(client, "PutObject")
    client.create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
    try:
        assert errorOf(lambda: client.get_object_lock_configuration(Bucket=locked)) == ("NotImplemented", 501)
        until = datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC)
        client.put_object(
            Bucket=locked, Key="k", Body=b"x", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until
        )
        assert headers[0]["x-amz-object-lock-mode"] == "COMPLIANCE"
        head = client.head_object(Bucket=locked, Key="k")
        assert "ObjectLockMode" not in head and "ObjectLockRetainUntilDate" not in head
        assert errorOf(lambda: client.get_object_retention(Bucket=locked, Key="k")) == ("NotImplemented", 501)
        client.delete_object(Bucket=locked, Key="k")  # a COMPLIANCE-locked object, gone
        assert errorOf(lambda: client.head_object(Bucket=locked, Key="k")) == ("404", 404)
    finally:
        client.delete_bucket(Bucket=locked)


# (i) credentials


def test_only_the_access_key_is_checked_never_the_signature(s3rver: Endpoint, bucket: str) -> None:
    wrongSecret = Endpoint("s3rver", s3rver.url, None, None, s3rver.accessKey, "not-the-secret")
    assert bucket in [entry["Name"] for entry in wrongSecret.client().list_buckets()["Buckets"]]
    builtin = Endpoint("s3rver", s3rver.url, None, None, "S3RVER", "S3RVER")
    assert bucket in [entry["Name"] for entry in builtin.client().list_buckets()["Buckets"]]
    unknown = Endpoint("s3rver", s3rver.url, None, None, "nobody", "testing")
    assert errorOf(lambda: unknown.client().list_buckets()) == ("InvalidAccessKeyId", 403)
