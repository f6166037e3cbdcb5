"""Turn botocore's exceptions into the errors a Cedar Backup action raises, each saying what to fix.

A nightly job has no one watching; the log line must tell the administrator which setting, permission, bucket
or clock is wrong. Permanent faults become ``OSError`` subclasses (``PermissionError``, ``FileNotFoundError``,
``ConnectionError``) or ``ValueError`` for configuration; messages never include credentials or request
signatures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from botocore import exceptions
from botocore.parsers import ResponseParserError

__all__ = ["S3Error", "S3IntegrityError", "translated"]

# The IAM action each S3 API call needs, so "access denied" can name the missing permission.
REQUIRED_PERMISSION = {
    "ListObjectsV2": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "HeadObject": "s3:GetObject",
    "GetObject": "s3:GetObject",
    "DeleteObjects": "s3:DeleteObject",
    "DeleteObject": "s3:DeleteObject",
    "GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
    "GetObjectRetention": "s3:GetObjectRetention",
    "GetObjectTagging": "s3:GetObjectTagging",
}


class S3Error(OSError):
    """An S3 request failed for a reason retrying will not fix (after botocore's own retries)."""


class S3AccessError(S3Error, PermissionError):
    """Credentials missing, wrong, expired, or lacking a permission."""


class S3NotFoundError(S3Error, FileNotFoundError):
    """The bucket (or an object that must exist) is not there."""


class S3ConnectionError(S3Error, ConnectionError):
    """The endpoint could not be reached or kept dropping the connection."""


class S3IntegrityError(S3Error):
    """Bytes failed a checksum: S3 refused an upload as damaged, or data read back does not match its checksum."""


def _clientError(error: exceptions.ClientError, what: str) -> OSError:
    info = error.response.get("Error", {})
    code = str(info.get("Code", "Unknown"))
    message = str(info.get("Message", "")).strip() or "no message"
    operation = error.operation_name
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == "NoSuchBucket":
        return S3NotFoundError(f"{what}: the bucket does not exist (check <s3_bucket>, <region> and <endpoint_url>).")
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired"):
        return S3AccessError(
            f"{what}: S3 rejected the credentials ({code}: {message}). Fix the access key / secret for the backup "
            "user (~/.aws/credentials, environment, or <profile>)."
        )
    if code == "RequestTimeTooSkewed":  # a 403 too, but no permission will fix it
        return S3Error(f"{what}: this machine's clock is too far from S3's ({message}). Fix the clock (NTP).")
    if code in ("AccessDenied", "AllAccessDisabled", "Forbidden") or status == 403:
        permission = REQUIRED_PERMISSION.get(operation, f"the permission for {operation}")
        return S3AccessError(
            f"{what}: access denied on {operation} ({code}: {message}). Grant {permission} to the backup "
            "credentials (see the IAM policy in the docs)."
        )
    if code in ("NoSuchKey",) or (operation in ("HeadObject", "GetObject") and status == 404):
        return S3NotFoundError(f"{what}: the object does not exist.")
    if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch") or "checksum" in code.lower():
        return S3IntegrityError(
            f"{what}: S3 rejected the data as corrupt in transit ({code}: {message}); nothing was stored."
        )
    if code == "InvalidObjectState":
        return S3Error(
            f"{what}: the object is archived ({message}). Restore it first (aws s3api restore-object) and retry "
            "once it is readable."
        )
    if code == "InvalidStorageClass":
        return S3Error(f"{what}: the endpoint does not support the configured <storage_class> ({message}).")
    if code.startswith("KMS.") or "KMS" in code:
        return S3AccessError(f"{what}: KMS refused the key ({code}: {message}); check <sse_kms_key_id> and its policy.")
    return S3Error(f"{what}: S3 answered {code} (HTTP {status}) on {operation}: {message}")


def translate(error: Exception, what: str) -> Exception:
    """Map one botocore/s3transfer exception to ours; anything unknown passes through unchanged."""
    if isinstance(error, exceptions.ClientError):
        return _clientError(error, what)
    if isinstance(error, exceptions.NoCredentialsError):
        return S3AccessError(
            f"{what}: no AWS credentials found. Configure them for the backup user (~/.aws/credentials), "
            "the environment, or <profile>."
        )
    if isinstance(error, exceptions.PartialCredentialsError):
        return S3AccessError(f"{what}: AWS credentials are incomplete ({error.kwargs.get('cred_var', 'a value')}).")
    if isinstance(error, exceptions.ProfileNotFound):
        return ValueError(f"{what}: the AWS profile named in <profile> or AWS_PROFILE does not exist.")
    if isinstance(error, exceptions.SSLError):
        return S3ConnectionError(f"{what}: TLS verification failed ({error}). Check <endpoint_url> and <ca_bundle>.")
    if isinstance(error, exceptions.EndpointConnectionError | exceptions.ConnectTimeoutError):
        endpoint = error.kwargs.get("endpoint_url", "the endpoint")
        return S3ConnectionError(f"{what}: could not connect to {endpoint}. Check <endpoint_url> and the network.")
    if isinstance(error, exceptions.ConnectionClosedError | exceptions.ReadTimeoutError):
        return S3ConnectionError(f"{what}: the connection to S3 dropped and retries did not help ({error}).")
    if isinstance(error, exceptions.HTTPClientError):
        return S3ConnectionError(f"{what}: HTTP failure talking to S3 ({error}).")
    if isinstance(error, ResponseParserError):
        return S3Error(f"{what}: S3's answer was garbled and could not be parsed; nothing is assumed stored.")
    if isinstance(error, exceptions.FlexibleChecksumError):
        return S3IntegrityError(f"{what}: the data read back failed its checksum ({error}).")
    if isinstance(error, exceptions.BotoCoreError):
        return S3Error(f"{what}: {error}")
    return error


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Run an S3 call, re-raising botocore errors as ours with ``what`` (a key, bucket or step) in the message."""
    try:
        yield
    except Exception as error:
        mapped = translate(error, what)
        if mapped is error:
            raise
        raise mapped from error
