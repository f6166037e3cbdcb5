"""What Ceph's RADOS gateway (Debian 12: Ceph 16.2 Pacific) does where it differs from AWS, measured on a real one.

Plain boto3 only, a fresh bucket per test: these pin the behaviours cedar-s3 has to cope with, so that a change of
Ceph or boto3 shows up here first, as a fact, rather than as a puzzling failure of a night.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import struct
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from endpoints import Endpoint
from endpoints.ceph import cephVersion
from versions import NEEDS_FLEXIBLE_DEFAULTS

pytestmark = pytest.mark.ceph

BODY = b"cedar-s3 facts\n"
CHECKSUM_HEADERS = ("content-md5", "x-amz-checksum-", "x-amz-sdk-checksum-", "x-amz-trailer")


def md5Base64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - S3's Content-MD5


def checksumBase64(algorithm: str, data: bytes) -> str:
    """The value of an ``x-amz-checksum-<algorithm>`` header for ``data``."""
    if algorithm == "CRC32":
        return base64.b64encode(struct.pack(">I", zlib.crc32(data))).decode()
    return base64.b64encode(hashlib.new(algorithm.lower(), data).digest()).decode()


def refusal(operation: Callable[..., Any], **args: Any) -> tuple[int, str]:
    """The HTTP status and S3 error code with which the server refused ``operation(**args)``."""
    with pytest.raises(ClientError) as caught:
        operation(**args)
    answer = caught.value.response
    return answer["ResponseMetadata"]["HTTPStatusCode"], answer["Error"]["Code"]


def keys(client: Any, bucket: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


class Wire:
    """The headers of every request a client sent, as they left it (after signing)."""

    def __init__(self, client: Any) -> None:
        self.sent: list[dict[str, str]] = []
        client.meta.events.register("before-send.s3", self._record)

    def _record(self, request: Any, **_: Any) -> None:
        headers = request.headers.items()
        self.sent.append(
            {name.lower(): value.decode() if isinstance(value, bytes) else value for name, value in headers}
        )

    def checksumHeaders(self, index: int = -1) -> dict[str, str]:
        return {name: value for name, value in self.sent[index].items() if name.startswith(CHECKSUM_HEADERS)}


def withoutChecksums(client: Any) -> Any:
    """``client`` with every Content-MD5 and checksum header removed before the request is signed."""

    def strip(request: Any, **_: Any) -> None:
        for name in list(request.headers.keys()):
            if name.lower().startswith(CHECKSUM_HEADERS):
                del request.headers[name]

    client.meta.events.register("before-sign.s3", strip)
    return client


@pytest.fixture
def http(ceph: Endpoint) -> Any:
    return ceph.client()


@pytest.fixture
def bucket(http: Any) -> str:
    """A fresh bucket; the session's cluster, and every bucket in it, goes at the end."""
    name = f"facts-{uuid.uuid4().hex[:16]}"
    http.create_bucket(Bucket=name)
    return name


def test_the_server_is_ceph_pacific(ceph: Endpoint) -> None:
    """Every fact below was measured on 16.2 (Debian 12's); another release may differ, which is why this says so."""
    assert " pacific " in cephVersion()


# (a) ------------------------------------------------------------------------------------------------------------


@NEEDS_FLEXIBLE_DEFAULTS  # pins boto3 >= 1.36's defaults
def test_a_put_object_over_http_with_boto3_defaults_works(http: Any, bucket: str) -> None:
    wire = Wire(http)
    http.put_object(Bucket=bucket, Key="a", Body=BODY)
    # over plain HTTP boto3 sends its default CRC32 as a header, not as an aws-chunked trailer
    assert "x-amz-checksum-crc32" in wire.checksumHeaders()
    assert "content-encoding" not in wire.sent[-1]
    assert http.get_object(Bucket=bucket, Key="a")["Body"].read() == BODY


# (b) ------------------------------------------------------------------------------------------------------------


@NEEDS_FLEXIBLE_DEFAULTS  # pins boto3 >= 1.36's defaults
def test_b_put_object_over_https_with_boto3_defaults_is_refused_411(ceph: Endpoint, http: Any, bucket: str) -> None:
    https = ceph.client(https=True)
    wire = Wire(https)
    assert refusal(https.put_object, Bucket=bucket, Key="b", Body=BODY) == (411, "MissingContentLength")
    assert wire.sent[-1]["content-encoding"] == "aws-chunked"
    assert wire.sent[-1]["x-amz-trailer"] == "x-amz-checksum-crc32"
    assert keys(http, bucket) == []


@NEEDS_FLEXIBLE_DEFAULTS  # pins boto3 >= 1.36's defaults
def test_b_put_object_over_https_works_when_checksums_only_when_required(ceph: Endpoint, bucket: str) -> None:
    https = ceph.client(https=True, request_checksum_calculation="when_required")
    https.put_object(Bucket=bucket, Key="b", Body=BODY)
    assert https.get_object(Bucket=bucket, Key="b")["Body"].read() == BODY


@NEEDS_FLEXIBLE_DEFAULTS  # pins boto3 >= 1.36's defaults
def test_b_an_explicit_flexible_checksum_over_https_is_refused_even_when_required(
    ceph: Endpoint, http: Any, bucket: str
) -> None:
    """Asking for a SHA-256 (or any algorithm) turns the trailer back on, whatever request_checksum_calculation says."""
    https = ceph.client(https=True, request_checksum_calculation="when_required")
    answer = refusal(https.put_object, Bucket=bucket, Key="b", Body=BODY, ChecksumAlgorithm="SHA256")
    assert answer == (411, "MissingContentLength")
    assert keys(http, bucket) == []


@NEEDS_FLEXIBLE_DEFAULTS  # pins boto3 >= 1.36's defaults
def test_b_upload_part_over_https_follows_the_same_rule(ceph: Endpoint, bucket: str) -> None:
    defaults = ceph.client(https=True)
    upload = defaults.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    part = {"Bucket": bucket, "Key": "m", "UploadId": upload, "PartNumber": 1, "Body": BODY}
    assert refusal(defaults.upload_part, **part) == (411, "MissingContentLength")
    whenRequired = ceph.client(https=True, request_checksum_calculation="when_required")
    assert whenRequired.upload_part(**part)["ETag"] == f'"{hashlib.md5(BODY).hexdigest()}"'  # noqa: S324


# (c) ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overHttps", [False, True], ids=["http", "https"])
@NEEDS_FLEXIBLE_DEFAULTS  # pins boto3 >= 1.36's defaults
def test_c_a_wrong_content_md5_is_refused_bad_digest(ceph: Endpoint, http: Any, bucket: str, overHttps: bool) -> None:
    client = ceph.client(https=overHttps, request_checksum_calculation="when_required")
    wrong = md5Base64(b"other bytes")
    assert refusal(client.put_object, Bucket=bucket, Key="c", Body=BODY, ContentMD5=wrong) == (400, "BadDigest")
    assert keys(http, bucket) == []


def test_c_a_right_content_md5_is_accepted(http: Any, bucket: str) -> None:
    http.put_object(Bucket=bucket, Key="c", Body=BODY, ContentMD5=md5Base64(BODY))
    assert http.get_object(Bucket=bucket, Key="c")["Body"].read() == BODY


# (d) ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overHttps", [False, True], ids=["http", "https"])
@pytest.mark.parametrize("algorithm", ["CRC32", "SHA256"])
def test_d_a_wrong_checksum_header_is_accepted_and_not_stored(
    ceph: Endpoint, http: Any, bucket: str, overHttps: bool, algorithm: str
) -> None:
    """A checksum value the client computed itself goes as a header (never a trailer): over HTTPS too, even with
    boto3's defaults. Ceph neither checks it nor keeps it."""
    client = ceph.client(https=overHttps)
    wire = Wire(client)
    wrong = checksumBase64(algorithm, b"other bytes")
    client.put_object(Bucket=bucket, Key="d", Body=BODY, **{f"Checksum{algorithm}": wrong})
    assert wire.checksumHeaders()[f"x-amz-checksum-{algorithm.lower()}"] == wrong
    assert "content-encoding" not in wire.sent[-1]
    assert http.get_object(Bucket=bucket, Key="d")["Body"].read() == BODY
    head = http.head_object(Bucket=bucket, Key="d", ChecksumMode="ENABLED")
    assert not {name for name in head if name.startswith("Checksum")}  # Ceph keeps no checksum it was sent


def test_d_a_right_sha256_is_not_reported_back_by_head(http: Any, bucket: str) -> None:
    """So verifying by HEAD's flexible checksum cannot work on Ceph: the MD5 ETag (or a download) must do."""
    http.put_object(Bucket=bucket, Key="d", Body=BODY, ChecksumAlgorithm="SHA256")
    head = http.head_object(Bucket=bucket, Key="d", ChecksumMode="ENABLED")
    assert "ChecksumSHA256" not in head
    assert head["ETag"] == f'"{hashlib.md5(BODY).hexdigest()}"'  # noqa: S324


@NEEDS_FLEXIBLE_DEFAULTS  # pins boto3 >= 1.36's defaults
def test_d_get_object_attributes_is_a_server_error(ceph: Endpoint, bucket: str) -> None:
    client = ceph.client(retries={"max_attempts": 1, "mode": "standard"})
    client.put_object(Bucket=bucket, Key="d", Body=BODY)
    answer = refusal(client.get_object_attributes, Bucket=bucket, Key="d", ObjectAttributes=["ETag"])
    assert answer == (500, "500")


# (e) ------------------------------------------------------------------------------------------------------------


def test_e_complete_multipart_upload_answers_an_empty_etag_head_has_it(http: Any, bucket: str) -> None:
    parts = [b"x" * (5 << 20), b"the last part"]
    upload = http.create_multipart_upload(Bucket=bucket, Key="e")["UploadId"]
    etags = [
        http.upload_part(Bucket=bucket, Key="e", UploadId=upload, PartNumber=number, Body=data)["ETag"]
        for number, data in enumerate(parts, start=1)
    ]
    done = http.complete_multipart_upload(
        Bucket=bucket,
        Key="e",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, start=1)]},
    )
    assert done["ETag"] == ""
    digests = b"".join(hashlib.md5(data).digest() for data in parts)  # noqa: S324
    expected = f'"{hashlib.md5(digests).hexdigest()}-2"'  # noqa: S324
    assert http.head_object(Bucket=bucket, Key="e")["ETag"] == expected
    assert http.list_objects_v2(Bucket=bucket)["Contents"][0]["ETag"] == expected


# (f) ------------------------------------------------------------------------------------------------------------


def test_f_list_multipart_uploads_with_a_delimiter_hides_uploads_below_a_slash(http: Any, bucket: str) -> None:
    nested = http.create_multipart_upload(Bucket=bucket, Key="2026/01/02/file")["UploadId"]
    top = http.create_multipart_upload(Bucket=bucket, Key="top")["UploadId"]

    def listed(**args: Any) -> tuple[list[tuple[str, str]], list[str]]:
        answer = http.list_multipart_uploads(Bucket=bucket, **args)
        uploads = [(item["Key"], item["UploadId"]) for item in answer.get("Uploads", [])]
        return uploads, [item["Prefix"] for item in answer.get("CommonPrefixes", [])]

    assert listed() == ([("2026/01/02/file", nested), ("top", top)], [])
    # AWS answers CommonPrefixes ["2026/"] here; Ceph leaves the nested upload out without a trace
    assert listed(Delimiter="/") == ([("top", top)], [])
    assert listed(Prefix="2026/01/02/", Delimiter="/") == ([("2026/01/02/file", nested)], [])
    assert listed(Prefix="2026/") == ([("2026/01/02/file", nested)], [])
    assert listed(Prefix="2026/01/02/file") == ([("2026/01/02/file", nested)], [])


# (g) ------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_g_list_objects_v2_pages_at_1000_keys(http: Any, bucket: str) -> None:
    names = [f"day/{number:05d}" for number in range(1005)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda key: http.put_object(Bucket=bucket, Key=key, Body=b""), names))
    first = http.list_objects_v2(Bucket=bucket, MaxKeys=5000)
    assert (first["KeyCount"], first["IsTruncated"], first["MaxKeys"]) == (1000, True, 1000)  # MaxKeys capped
    second = http.list_objects_v2(Bucket=bucket, ContinuationToken=first["NextContinuationToken"])
    assert (second["KeyCount"], second["IsTruncated"]) == (5, False)
    assert [item["Key"] for item in first["Contents"] + second["Contents"]] == names
    assert keys(http, bucket) == names


# (h) ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("storageClass", ["STANDARD_IA", "ONEZONE_IA", "GLACIER", "DEEP_ARCHIVE", "REDUCED_REDUNDANCY"])
def test_h_a_storage_class_other_than_standard_is_invalid_argument(http: Any, bucket: str, storageClass: str) -> None:
    """A default zone has one storage class, STANDARD; others exist only once an admin adds them to the placement."""
    args = {"Bucket": bucket, "Key": "h", "StorageClass": storageClass}
    assert refusal(http.put_object, Body=BODY, **args) == (400, "InvalidArgument")
    assert refusal(http.create_multipart_upload, **args) == (400, "InvalidArgument")
    assert keys(http, bucket) == []


def test_h_storage_class_standard_is_accepted(http: Any, bucket: str) -> None:
    http.put_object(Bucket=bucket, Key="h", Body=BODY, StorageClass="STANDARD")
    assert http.list_objects_v2(Bucket=bucket)["Contents"][0]["StorageClass"] == "STANDARD"


# (i) ------------------------------------------------------------------------------------------------------------


@NEEDS_FLEXIBLE_DEFAULTS  # pins boto3 >= 1.36's defaults
def test_i_sse_s3_over_https_is_accepted_but_never_reported(ceph: Endpoint, bucket: str) -> None:
    https = ceph.client(https=True, request_checksum_calculation="when_required")
    answer = https.put_object(Bucket=bucket, Key="i", Body=BODY, ServerSideEncryption="AES256")
    assert "ServerSideEncryption" not in answer
    assert "ServerSideEncryption" not in https.head_object(Bucket=bucket, Key="i")
    assert https.get_object(Bucket=bucket, Key="i")["Body"].read() == BODY


def test_i_sse_s3_over_http_is_refused_invalid_request(http: Any, bucket: str) -> None:
    answer = refusal(http.put_object, Bucket=bucket, Key="i", Body=BODY, ServerSideEncryption="AES256")
    assert answer == (400, "InvalidRequest")
    assert keys(http, bucket) == []


# (j) ------------------------------------------------------------------------------------------------------------


@NEEDS_FLEXIBLE_DEFAULTS  # pins boto3 >= 1.36's defaults
def test_j_object_lock_works_without_content_md5_or_any_checksum(ceph: Endpoint, http: Any) -> None:
    """AWS demands Content-MD5 or a checksum on these requests; Ceph Pacific accepts them bare."""
    client = withoutChecksums(ceph.client(request_checksum_calculation="when_required"))
    wire = Wire(client)
    bucket = f"facts-lock-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    assert client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled"
    }
    until = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(days=1)
    version = client.put_object(
        Bucket=bucket, Key="j", Body=BODY, ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until
    )["VersionId"]
    assert wire.checksumHeaders() == {}
    head = http.head_object(Bucket=bucket, Key="j")
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"]) == ("GOVERNANCE", until)
    rule = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}}
    client.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=rule)
    assert wire.checksumHeaders() == {}
    assert http.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"] == rule
    # the lock holds: the locked version cannot be deleted
    assert refusal(http.delete_object, Bucket=bucket, Key="j", VersionId=version) == (403, "AccessDenied")
    assert http.get_object(Bucket=bucket, Key="j", VersionId=version)["Body"].read() == BODY


@NEEDS_FLEXIBLE_DEFAULTS  # pins boto3 >= 1.36's defaults
def test_j_retention_over_https_with_boto3_defaults_is_refused_like_any_put(ceph: Endpoint, http: Any) -> None:
    bucket = f"facts-lock-{uuid.uuid4().hex[:12]}"
    http.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    https = ceph.client(https=True)
    args = {
        "Bucket": bucket,
        "Key": "j",
        "Body": BODY,
        "ObjectLockMode": "GOVERNANCE",
        "ObjectLockRetainUntilDate": until,
    }
    assert refusal(https.put_object, **args) == (411, "MissingContentLength")
