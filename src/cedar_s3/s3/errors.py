"""Turn botocore's exceptions into the errors a Cedar Backup action raises, each saying what to fix.

A nightly job has no one watching; the log line must tell the administrator which setting, permission, bucket
or clock is wrong. Permanent faults become ``OSError`` subclasses (``PermissionError``, ``FileNotFoundError``,
``ConnectionError``) or ``ValueError`` for configuration; messages never include credentials or request
signatures.
"""

from __future__ import annotations

import contextlib
import http.client
from collections.abc import Iterator

import urllib3.exceptions
from botocore import exceptions
from botocore.parsers import ResponseParserError

__all__ = [
    "STREAM_ERRORS",
    "S3AccessError",
    "S3ConnectionError",
    "S3Error",
    "S3IntegrityError",
    "S3NotFoundError",
    "S3UnsupportedError",
    "errorCode",
    "translate",
    "translated",
]

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
    "ListParts": "s3:ListMultipartUploadParts",
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


class S3UnsupportedError(S3Error):
    """The endpoint does not implement a request (HTTP 501 NotImplemented, or 405 for an unknown method)."""

    def __init__(self, message: str, *, operation: str, code: str) -> None:
        super().__init__(message)
        self.operation = operation
        self.code = code


def errorCode(error: BaseException) -> str | None:
    """S3's error code behind one of our errors (``NoSuchKey``, ``ObjectLockConfigurationNotFoundError`` ...)."""
    cause = error.__cause__ if not isinstance(error, exceptions.ClientError) else error
    if isinstance(cause, exceptions.ClientError):
        return str(cause.response.get("Error", {}).get("Code") or "") or None
    return None


# A body that broke off mid-stream: botocore raises these while reading, not while calling (names vary by version).
_BOTOCORE_STREAM_ERRORS = (
    getattr(exceptions, "IncompleteReadError", None),
    getattr(exceptions, "ResponseStreamingError", None),
    exceptions.ConnectionClosedError,
    exceptions.ReadTimeoutError,
    getattr(exceptions, "HTTPClientError", None),
)
STREAM_ERRORS: tuple[type[BaseException], ...] = (
    *(kind for kind in _BOTOCORE_STREAM_ERRORS if kind is not None),
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)


def _clientError(error: exceptions.ClientError, what: str) -> OSError:  # noqa: PLR0911 - a table, one row each
    info = error.response.get("Error", {})
    code = str(info.get("Code", "Unknown"))
    message = str(info.get("Message") or "").strip() or "no message"
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
    if code in ("NotImplemented", "MethodNotAllowed") or status == 501:
        return S3UnsupportedError(
            f"{what}: the endpoint does not implement {operation} ({code}, HTTP {status}).",
            operation=operation,
            code=code,
        )
    if code == "InvalidStorageClass":
        return S3Error(f"{what}: the endpoint does not support the configured <storage_class> ({message}).")
    if code.startswith("KMS.") or "KMS" in code:
        return S3AccessError(f"{what}: KMS refused the key ({code}: {message}); check <sse_kms_key_id> and its policy.")
    return S3Error(f"{what}: S3 answered {code} (HTTP {status}) on {operation}: {message}")


def translate(error: Exception, what: str) -> Exception:  # noqa: PLR0911, PLR0912 - a table, one row each
    """Map one botocore/s3transfer exception to ours; anything unknown (or already ours) passes through unchanged."""
    if isinstance(error, S3Error):
        return error
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
    checksumError = getattr(exceptions, "FlexibleChecksumError", None)
    if checksumError is not None and isinstance(error, checksumError):
        return S3IntegrityError(f"{what}: the data read back failed its checksum ({error}).")
    incomplete = getattr(exceptions, "IncompleteReadError", None)
    if incomplete is not None and isinstance(error, incomplete):
        return S3ConnectionError(f"{what}: the transfer broke off before its end ({error}).")
    if isinstance(error, STREAM_ERRORS):
        return S3ConnectionError(f"{what}: the transfer broke off ({type(error).__name__}: {error}).")
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
