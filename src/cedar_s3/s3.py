"""The only module that talks to S3: session and credentials, uploads, listing, heads, deletes.

Everything else in cedar-s3 sees plain dataclasses and our own exceptions (``s3errors``), never boto3, so the
nightly logic stays readable and the S3 surface stays small enough to review in one sitting.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import logging
import os
import pwd
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import boto3
import botocore.session
from botocore.config import Config as BotocoreConfig
from s3transfer.manager import TransferConfig, TransferManager
from s3transfer.utils import ChunksizeAdjuster

from cedar_s3 import __version__
from cedar_s3.s3errors import S3Error, translated

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from cedar_s3.config import AmazonS3Config

__all__ = ["RemoteHead", "RemoteObject", "S3Location", "S3Store", "TransferPlan", "buildStore"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.s3")

MIB = 1024 * 1024
DEFAULT_CONCURRENCY = 8
DEFAULT_THRESHOLD = 64 * MIB
DEFAULT_CHUNK = 16 * MIB
DEFAULT_MAX_ATTEMPTS = 5
DELETE_BATCH = 1000


@dataclass(frozen=True)
class S3Location:
    """Bucket and optional prefix from ``<s3_bucket>`` (``bucket`` or ``bucket/some/prefix``)."""

    bucket: str
    prefix: str

    @classmethod
    def fromSetting(cls, s3Bucket: str) -> S3Location:
        bucket, _, prefix = s3Bucket.strip().partition("/")
        return cls(bucket, prefix.strip("/"))

    def dayPrefix(self, dateSuffix: str) -> str:
        """Upstream's layout: ``[prefix/]YYYY/MM/DD/``."""
        return f"{self.prefix}/{dateSuffix}/" if self.prefix else f"{dateSuffix}/"

    @property
    def rootPrefix(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"


@dataclass(frozen=True)
class RemoteObject:
    """One listing entry."""

    key: str
    size: int
    etag: str
    storageClass: str


@dataclass(frozen=True)
class RemoteHead:
    """What a HEAD request says about one object."""

    key: str
    size: int
    etag: str
    checksumSha256: str | None  # base64, without any "-N" part-count suffix
    checksumType: str | None  # FULL_OBJECT or COMPOSITE where the endpoint says
    metadata: dict[str, str]
    storageClass: str
    serverSideEncryption: str | None
    kmsKeyId: str | None
    lockMode: str | None
    lockUntil: datetime.datetime | None
    restore: str | None
    versionId: str | None


@dataclass(frozen=True)
class TransferPlan:
    """How a stored stream of a given size will be sent: the part size decides which checksums S3 can give."""

    threshold: int
    chunkSize: int

    def partSizeFor(self, size: int) -> int | None:
        """The part size s3transfer will use for ``size`` bytes, or None for a single PUT (same rule, same code)."""
        if size < self.threshold:
            return None
        return int(ChunksizeAdjuster().adjust_chunksize(self.chunkSize, size))


@dataclass
class StoreOptions:
    """Per-object settings from ``<amazons3>`` that become request arguments."""

    storageClass: str | None = None
    serverSideEncryption: str | None = None
    sseKmsKeyId: str | None = None
    objectLockMode: str | None = None
    objectLockDays: int | None = None
    tags: list[str] = field(default_factory=list)
    flexibleChecksums: bool = True

    def objectArgs(self, *, manifest: bool = False) -> dict[str, Any]:
        """Request arguments shared by every stored object; the manifest always stays STANDARD (no thaw)."""
        args: dict[str, Any] = {}
        if self.storageClass and not manifest:
            args["StorageClass"] = self.storageClass
        if self.serverSideEncryption:
            args["ServerSideEncryption"] = self.serverSideEncryption
        if self.sseKmsKeyId:
            args["SSEKMSKeyId"] = self.sseKmsKeyId
        if self.objectLockMode and self.objectLockDays:
            until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=self.objectLockDays)
            args["ObjectLockMode"] = self.objectLockMode
            args["ObjectLockRetainUntilDate"] = until
        if self.tags:
            args["Tagging"] = urllib.parse.urlencode([tag.partition("=")[::2] for tag in self.tags])
        return args


def _awsFilesOf(user: str) -> dict[str, str]:
    """The backup user's AWS config and credentials files, where upstream users keep them."""
    try:
        home = pwd.getpwnam(user).pw_dir
    except KeyError:
        raise ValueError(f"Backup user {user!r} (<backup_user> in <options>) does not exist.") from None
    files = {}
    for variable, envName, name in (
        ("config_file", "AWS_CONFIG_FILE", "config"),
        ("credentials_file", "AWS_SHARED_CREDENTIALS_FILE", "credentials"),
    ):
        path = os.path.join(home, ".aws", name)
        if envName not in os.environ and os.path.exists(path):
            files[variable] = path
    return files


def buildSession(settings: AmazonS3Config, backupUser: str | None) -> boto3.Session:
    """boto3's normal credential chain, plus the backup user's ``~/.aws`` files when running as root.

    Upstream ran the AWS CLI as the backup user, so that is where existing installations keep credentials.
    Environment variables and an explicit ``<profile>`` still win, as they would for the AWS CLI.
    """
    core = botocore.session.Session()
    if os.geteuid() == 0 and backupUser and backupUser != "root":
        for variable, path in _awsFilesOf(backupUser).items():
            core.set_config_variable(variable, path)
            logger.debug("Using the backup user's AWS %s [%s].", variable.replace("_", " "), path)
    if settings.profile:
        core.set_config_variable("profile", settings.profile)
    return boto3.Session(botocore_session=core, region_name=settings.region)


def _clientConfig(settings: AmazonS3Config, concurrency: int, *, preflight: bool = False) -> BotocoreConfig:
    options: dict[str, Any] = {
        "retries": {
            "mode": settings.retryMode or "standard",
            # a preflight must fail fast on a dead endpoint: one retry, short timeouts
            "max_attempts": 2 if preflight else settings.maxAttempts or DEFAULT_MAX_ATTEMPTS,
        },
        "max_pool_connections": concurrency + 4,
        "connect_timeout": 3 if preflight else 10,
        "read_timeout": 10 if preflight else 120,
        "user_agent_extra": f"cedar-s3/{__version__}",
        "tcp_keepalive": True,
    }
    if settings.addressingStyle:
        options["s3"] = {"addressing_style": settings.addressingStyle}
    if settings.checksumCalculation:
        options["request_checksum_calculation"] = settings.checksumCalculation
    if settings.checksumValidation:
        options["response_checksum_validation"] = settings.checksumValidation
    return BotocoreConfig(**options)


def _makeClient(session: boto3.Session, settings: AmazonS3Config, config: BotocoreConfig) -> S3Client:
    verify: bool | str = settings.caBundle if settings.caBundle else settings.verifyTls
    with translated("creating the S3 client"):
        return session.client("s3", endpoint_url=settings.endpointUrl, verify=verify, config=config)


def _stripQuotes(etag: str | None) -> str:
    return (etag or "").strip('"')


def _stripPartCount(checksum: str | None) -> str | None:
    """AWS reports composite checksums as ``base64-N``; some endpoints omit the suffix."""
    return checksum.split("-", 1)[0] if checksum else None


class S3Store:
    """One bucket reached through one client: the narrow surface the rest of cedar-s3 uses."""

    def __init__(
        self,
        client: S3Client,
        preflightClient: S3Client,
        location: S3Location,
        plan: TransferPlan,
        concurrency: int,
        maxBandwidth: int | None,
        options: StoreOptions,
    ) -> None:
        self.client = client
        self._preflight = preflightClient
        self.location = location
        self.plan = plan
        self.concurrency = concurrency
        self.options = options
        self._transferConfig = TransferConfig(
            multipart_threshold=plan.threshold,
            multipart_chunksize=plan.chunkSize,
            max_request_concurrency=concurrency,
            max_in_memory_upload_chunks=max(2, concurrency),
            max_in_memory_download_chunks=max(2, concurrency),
            max_bandwidth=maxBandwidth,
        )
        self._transfer: TransferManager | None = None

    @property
    def bucket(self) -> str:
        return self.location.bucket

    def __enter__(self) -> S3Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._transfer is not None:
            self._transfer.shutdown(cancel=True)
            self._transfer = None

    @property
    def transfer(self) -> TransferManager:
        if self._transfer is None:
            self._transfer = TransferManager(self.client, self._transferConfig)
        return self._transfer

    # -- checks --------------------------------------------------------------------------------------------------

    def checkBucket(self, *, needObjectLock: bool = False) -> None:
        """Fail in a second, with a message that says what to fix, before an hour of uploads."""
        where = f"checking bucket {self.bucket}"
        with translated(where):
            self._preflight.head_bucket(Bucket=self.bucket)
        if needObjectLock:
            try:
                with translated(where):
                    answer = self._preflight.get_object_lock_configuration(Bucket=self.bucket)
            except S3Error as error:
                raise ValueError(
                    f"<object_lock_mode> is set but bucket {self.bucket} has no object lock configuration "
                    f"(create the bucket with object lock enabled): {error}"
                ) from None
            enabled = answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
            if enabled != "Enabled":
                raise ValueError(f"<object_lock_mode> is set but object lock is not enabled on bucket {self.bucket}.")

    # -- writes --------------------------------------------------------------------------------------------------

    def uploadFile(self, path: str, key: str, extraArgs: dict[str, Any]) -> None:
        """Send one file (s3transfer: multipart and concurrency for large ones, aborted on failure)."""
        with translated(f"uploading {self.location.url(key)}"):
            self.transfer.upload(path, self.bucket, key, extra_args=extraArgs).result()

    def putBytes(self, key: str, body: bytes, *, contentType: str, manifest: bool = False) -> None:
        """Store a small object (manifest, marker) in one request, integrity-checked by S3 on arrival."""
        args: dict[str, Any] = self.options.objectArgs(manifest=manifest) if manifest else {}
        if self.options.flexibleChecksums:
            args["ChecksumAlgorithm"] = "SHA256"
        else:
            args["ContentMD5"] = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        with translated(f"writing {self.location.url(key)}"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=contentType, **args)

    def deleteKeys(self, keys: Iterable[str]) -> None:
        """Delete keys in batches; any key S3 refuses (for instance an object-locked one) is an error naming it."""
        batch: list[str] = []
        failures: list[str] = []
        for key in keys:
            batch.append(key)
            if len(batch) == DELETE_BATCH:
                failures += self._deleteBatch(batch)
                batch = []
        if batch:
            failures += self._deleteBatch(batch)
        if failures:
            shown = "; ".join(failures[:10])
            more = f" (and {len(failures) - 10} more)" if len(failures) > 10 else ""
            raise S3Error(f"S3 refused to delete {len(failures)} object(s): {shown}{more}")

    def _deleteBatch(self, keys: list[str]) -> list[str]:
        with translated(f"deleting {len(keys)} objects under {self.location.url()}"):
            answer = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True}
            )
        errors = answer.get("Errors", [])
        return [f"{error.get('Key')}: {error.get('Code')} {error.get('Message', '')}" for error in errors]

    def abortIncompleteUploads(self, prefix: str) -> int:
        """Abort multipart uploads left under ``prefix`` (by a killed run), so no invisible parts keep costing."""
        aborted = 0
        with translated(f"listing incomplete uploads under {self.location.url(prefix)}"):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix)
            uploads = [upload for page in pages for upload in page.get("Uploads", [])]
        for upload in uploads:
            with translated(f"aborting incomplete upload of {self.location.url(upload['Key'])}"):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            aborted += 1
        return aborted

    # -- reads ---------------------------------------------------------------------------------------------------

    def listObjects(self, prefix: str) -> Iterator[RemoteObject]:
        """Every object under ``prefix``, across as many pages as it takes."""
        with translated(f"listing {self.location.url(prefix)}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for entry in page.get("Contents", []):
                    yield RemoteObject(
                        entry["Key"], entry["Size"], _stripQuotes(entry.get("ETag")), entry.get("StorageClass", "")
                    )

    def listCommonPrefixes(self, prefix: str) -> list[str]:
        """The "directories" directly under ``prefix`` (years, months, days)."""
        found: list[str] = []
        with translated(f"listing {self.location.url(prefix)}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                found += [entry["Prefix"] for entry in page.get("CommonPrefixes", [])]
        return found

    def head(self, key: str) -> RemoteHead:
        with translated(f"reading {self.location.url(key)}"):
            answer = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        return RemoteHead(
            key=key,
            size=answer["ContentLength"],
            etag=_stripQuotes(answer.get("ETag")),
            checksumSha256=_stripPartCount(answer.get("ChecksumSHA256")),
            checksumType=answer.get("ChecksumType"),
            metadata=dict(answer.get("Metadata", {})),
            storageClass=answer.get("StorageClass", "STANDARD"),
            serverSideEncryption=answer.get("ServerSideEncryption"),
            kmsKeyId=answer.get("SSEKMSKeyId"),
            lockMode=answer.get("ObjectLockMode"),
            lockUntil=answer.get("ObjectLockRetainUntilDate"),
            restore=answer.get("Restore"),
            versionId=answer.get("VersionId"),
        )

    def getBytes(self, key: str, *, limit: int) -> bytes | None:
        """A small object's bytes, or None when it does not exist; more than ``limit`` bytes is an error."""
        with translated(f"reading {self.location.url(key)}"):
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=key)
            except self.client.exceptions.NoSuchKey:
                return None
            if answer["ContentLength"] > limit:
                raise S3Error(f"{self.location.url(key)} is {answer['ContentLength']} bytes; expected at most {limit}.")
            return answer["Body"].read()

    def getJson(self, key: str, *, limit: int) -> Any | None:
        body = self.getBytes(key, limit=limit)
        if body is None:
            return None
        try:
            return json.loads(body)
        except ValueError as error:
            raise ValueError(f"{self.location.url(key)} is not valid JSON: {error}") from None

    def download(self, key: str, sink: IO[bytes]) -> None:
        """Stream an object into ``sink`` (s3transfer: ranged, concurrent, retried)."""
        with translated(f"downloading {self.location.url(key)}"):
            self.transfer.download(self.bucket, key, sink).result()

    def openStream(self, key: str) -> IO[bytes]:
        """A streaming body for sequential reads (verification that must not touch disk)."""
        with translated(f"downloading {self.location.url(key)}"):
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
        return answer["Body"]  # type: ignore[return-value]


def buildStore(settings: AmazonS3Config, backupUser: str | None) -> S3Store:
    """An ``S3Store`` configured from ``<amazons3>``: endpoint, credentials, retries, checksums, tuning."""
    concurrency = settings.maxConcurrency or DEFAULT_CONCURRENCY
    session = buildSession(settings, backupUser)
    client = _makeClient(session, settings, _clientConfig(settings, concurrency))
    preflight = _makeClient(session, settings, _clientConfig(settings, concurrency, preflight=True))
    threshold = int(settings.multipartThreshold.bytes) if settings.multipartThreshold else DEFAULT_THRESHOLD
    chunk = int(settings.multipartChunkSize.bytes) if settings.multipartChunkSize else DEFAULT_CHUNK
    bandwidth = int(settings.maxBandwidth.bytes) if settings.maxBandwidth else None
    options = StoreOptions(
        storageClass=settings.storageClass,
        serverSideEncryption=settings.serverSideEncryption,
        sseKmsKeyId=settings.sseKmsKeyId,
        objectLockMode=settings.objectLockMode,
        objectLockDays=settings.objectLockDays,
        tags=list(settings.tags),
        flexibleChecksums=settings.checksumCalculation != "when_required",
    )
    location = S3Location.fromSetting(settings.s3Bucket or "")
    return S3Store(client, preflight, location, TransferPlan(threshold, chunk), concurrency, bandwidth, options)
