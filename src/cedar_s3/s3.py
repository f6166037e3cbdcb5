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
import shlex
import ssl
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import boto3
import botocore.session
from botocore.config import Config as BotocoreConfig
from botocore.exceptions import ClientError
from s3transfer.manager import TransferConfig, TransferManager
from s3transfer.utils import ChunksizeAdjuster

from cedar_s3 import __version__
from cedar_s3.config import ARCHIVED_STORAGE_CLASSES
from cedar_s3.s3errors import S3Error, translate, translated

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from cedar_s3.config import AmazonS3Config

__all__ = [
    "RemoteHead",
    "RemoteObject",
    "RestoreStatus",
    "S3Location",
    "S3Store",
    "TransferPlan",
    "buildStore",
    "restoreStatus",
]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.s3")

MIB = 1024 * 1024
DEFAULT_CONCURRENCY = 8
# Like rclone's 200 MiB cut-off: below it one PUT (one request, one retry unit of at most 128 MiB, checked by
# S3 against our own SHA-256) beats parts; measured against moto, 4 x 96 MiB took 2.2 s as PUTs, 3.2 s in parts.
DEFAULT_THRESHOLD = 128 * MIB
DEFAULT_CHUNK = 16 * MIB
DEFAULT_MAX_ATTEMPTS = 5
DELETE_BATCH = 1000
ARCHIVED_TIERS = ("ARCHIVE_ACCESS", "DEEP_ARCHIVE_ACCESS")  # INTELLIGENT_TIERING's opt-in archive tiers
RESTORE_DAYS = 7


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
    archiveStatus: str | None = None  # INTELLIGENT_TIERING objects moved to an archive tier


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

    def objectArgs(self, *, manifest: bool = False, marker: bool = False) -> dict[str, Any]:
        """Request arguments for one stored object, by kind.

        Backup objects get everything. The manifest stays STANDARD, so listing, verifying and restoring never
        wait for a thaw, but is locked like the data it describes. The incomplete marker is bookkeeping that
        a run deletes again: STANDARD and never locked (a locked marker could not be tidied away), yet it keeps
        SSE (bucket policies often refuse unencrypted PUTs) and tags (lifecycle rules select on them).
        """
        args: dict[str, Any] = {}
        if self.storageClass and not (manifest or marker):
            args["StorageClass"] = self.storageClass
        if self.serverSideEncryption:
            args["ServerSideEncryption"] = self.serverSideEncryption
        if self.sseKmsKeyId:
            args["SSEKMSKeyId"] = self.sseKmsKeyId
        if self.objectLockMode and self.objectLockDays and not marker:
            until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=self.objectLockDays)
            args["ObjectLockMode"] = self.objectLockMode
            args["ObjectLockRetainUntilDate"] = until
        if self.tags:
            # %20 rather than "+" for a space: every S3 implementation decodes it the same way
            pairs = [tag.partition("=")[::2] for tag in self.tags]
            args["Tagging"] = urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)
        return args


@dataclass(frozen=True)
class RestoreStatus:
    """Whether an object can be read now, and if not, what the operator has to do about it."""

    needed: bool  # a GET fails now: archived and not (yet) restored
    inProgress: bool  # a restore was requested and is still running
    message: str  # empty when the object is readable without any restore

    @property
    def readable(self) -> bool:
        return not self.needed


def restoreStatus(head: RemoteHead, bucket: str) -> RestoreStatus:
    """Read a HEAD's storage class, archive tier and ``Restore`` header the way S3 means them.

    GLACIER and DEEP_ARCHIVE objects (and INTELLIGENT_TIERING objects in an opt-in archive tier) answer HEAD
    and LIST but refuse GET until restored; the message names the exact command, so ``verify`` and
    ``restore`` can explain instead of failing on InvalidObjectState.
    """
    archivedTier = head.archiveStatus in ARCHIVED_TIERS
    if head.storageClass not in ARCHIVED_STORAGE_CLASSES and not archivedTier:
        return RestoreStatus(needed=False, inProgress=False, message="")
    where = f"s3://{bucket}/{head.key}"
    kind = head.archiveStatus if archivedTier else head.storageClass
    restore = head.restore or ""
    if 'ongoing-request="true"' in restore:
        return RestoreStatus(
            needed=True,
            inProgress=True,
            message=f"{where} is archived ({kind}) and its restore is still running; retry once it has finished "
            "(hours for GLACIER, up to 48 hours for DEEP_ARCHIVE).",
        )
    if 'ongoing-request="false"' in restore:
        expiry = restore.partition("expiry-date=")[2].strip().strip('"')
        until = f" until {expiry}" if expiry else ""
        return RestoreStatus(needed=False, inProgress=False, message=f"{where} is restored and readable{until}.")
    request = (
        '{"GlacierJobParameters":{"Tier":"Standard"}}'
        if archivedTier  # INTELLIGENT_TIERING takes no Days: the object moves back to its frequent tier
        else f'{{"Days":{RESTORE_DAYS},"GlacierJobParameters":{{"Tier":"Standard"}}}}'
    )
    command = (
        f"aws s3api restore-object --bucket {shlex.quote(bucket)} --key {shlex.quote(head.key)} "
        f"--restore-request '{request}'"
    )
    return RestoreStatus(
        needed=True,
        inProgress=False,
        message=f"{where} is archived ({kind}) and must be restored before it can be read: run {command} "
        "(Tier Bulk is cheaper, Expedited faster; DEEP_ARCHIVE has no Expedited), wait until "
        "'aws s3api head-object' shows Restore: ongoing-request=\"false\", then retry.",
    )


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
        with translated("reading the AWS config files"):
            known = core.available_profiles
        if settings.profile not in known:
            files = f"{core.get_config_variable('config_file')} and {core.get_config_variable('credentials_file')}"
            raise ValueError(
                f"<profile> names AWS profile {settings.profile!r}, which is not defined in {files} "
                "(add a [profile NAME] section to the config file or a [NAME] section to the credentials file)."
            )
        core.set_config_variable("profile", settings.profile)  # an explicit profile beats AWS_ACCESS_KEY_ID
        logger.debug("Using AWS profile [%s].", settings.profile)
    return boto3.Session(botocore_session=core, region_name=settings.region)


def _clientConfig(settings: AmazonS3Config, concurrency: int, *, preflight: bool = False) -> BotocoreConfig:
    options: dict[str, Any] = {
        "retries": {
            "mode": settings.retryMode or "standard",
            # a preflight must fail fast on a dead endpoint: one retry, short timeouts
            # total_max_attempts counts the first try too, so <max_attempts> means what it says
            "total_max_attempts": 2 if preflight else settings.maxAttempts or DEFAULT_MAX_ATTEMPTS,
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


def _checkTls(settings: AmazonS3Config) -> None:
    """A missing or unreadable CA bundle must fail at start-up naming the file, not as a TLS error per request."""
    if settings.caBundle:
        try:
            ssl.create_default_context(cafile=settings.caBundle)
        except (OSError, ssl.SSLError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            raise ValueError(
                f"<ca_bundle> {settings.caBundle} is not a readable file of PEM CA certificates: {reason}."
            ) from None
    if not settings.verifyTls:
        logger.warning("TLS certificate verification is off (<verify_tls>N); anyone on the path can impersonate S3.")


def _addContentMd5(params: dict[str, Any], **_kwargs: Any) -> None:
    """Content-MD5 on each upload request that carries no flexible checksum (``<checksum_calculation>`` is
    ``when_required``): S3 still refuses bytes damaged in transit, and object lock uploads need one of the two.
    """
    headers = params["headers"]
    if any(name.lower() == "content-md5" or name.lower().startswith("x-amz-checksum-") for name in headers):
        return
    body = params.get("body")
    if body is None:
        return
    md5 = hashlib.md5(usedforsecurity=False)
    if isinstance(body, bytes | bytearray):
        md5.update(body)
    else:  # s3transfer's seekable file chunk: hash it, then rewind for the send
        start = body.tell()
        while chunk := body.read(MIB):
            md5.update(chunk)
        body.seek(start)
    headers["Content-MD5"] = base64.b64encode(md5.digest()).decode("ascii")


def _makeClient(session: boto3.Session, settings: AmazonS3Config, config: BotocoreConfig) -> S3Client:
    # None (not True) when nothing is configured, so botocore still honours AWS_CA_BUNDLE and the AWS config
    # file's ca_bundle, as it would for the AWS CLI upstream used
    verify: bool | str | None = settings.caBundle or (None if settings.verifyTls else False)
    with translated("creating the S3 client"):
        client = session.client("s3", endpoint_url=settings.endpointUrl, verify=verify, config=config)
    if settings.checksumCalculation == "when_required":
        for operation in ("PutObject", "UploadPart"):
            client.meta.events.register(f"before-call.s3.{operation}", _addContentMd5)
    return client


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
            # A listing of our own prefix rather than HeadBucket: a HEAD answer has no body, so its 403 cannot say
            # why (wrong credentials, skewed clock, missing permission all look alike), and HeadBucket cannot be
            # allowed by a policy that scopes s3:ListBucket to the backup prefix.
            self._preflight.list_objects_v2(Bucket=self.bucket, Prefix=self.location.rootPrefix, MaxKeys=1)
        if needObjectLock:
            try:
                with translated(where):
                    answer = self._preflight.get_object_lock_configuration(Bucket=self.bucket)
            except S3Error as error:
                cause = error.__cause__
                code = cause.response.get("Error", {}).get("Code") if isinstance(cause, ClientError) else None
                if code != "ObjectLockConfigurationNotFoundError":
                    raise  # access denied names s3:GetBucketObjectLockConfiguration; a network fault says so
                raise ValueError(
                    f"<object_lock_mode> is set but bucket {self.bucket} has no object lock configuration: object "
                    "lock can only be enabled when a bucket is created (or by AWS support), so create a new bucket "
                    f"with object lock enabled, or remove <object_lock_mode>/<object_lock_days>. ({error})"
                ) from None
            enabled = answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
            if enabled != "Enabled":
                raise ValueError(f"<object_lock_mode> is set but object lock is not enabled on bucket {self.bucket}.")

    # -- writes --------------------------------------------------------------------------------------------------

    def uploadFile(self, path: str, key: str, extraArgs: dict[str, Any], *, body: bytes | None = None) -> None:
        """Send one file (s3transfer: multipart and concurrency for large ones, aborted on failure).

        ``body``, when the caller already holds a small file's bytes, is sent with one direct PutObject: the
        file is not read twice and s3transfer's per-transfer machinery (measured: about a third of the client's
        CPU on a day of 2,000 small files) is skipped. Under a bandwidth cap everything goes through s3transfer,
        whose limiter enforces it.
        """
        values = [name for name in extraArgs if name.startswith("Checksum") and name[8:] not in ("Algorithm", "Type")]
        if len(values) == 1 and "ChecksumAlgorithm" not in extraArgs:
            # a checksum we computed also names its algorithm (x-amz-sdk-checksum-algorithm): S3 demands that
            # header, or Content-MD5, on every upload to an object lock bucket
            extraArgs = extraArgs | {"ChecksumAlgorithm": values[0].removeprefix("Checksum")}
        with translated(f"uploading {self.location.url(key)}"):
            if body is not None and self._transferConfig.max_bandwidth is None:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **extraArgs)
            else:
                self.transfer.upload(path, self.bucket, key, extra_args=extraArgs).result()

    def putBytes(
        self,
        key: str,
        body: bytes,
        *,
        contentType: str,
        manifest: bool = False,
        metadata: dict[str, str] | None = None,
    ) -> None:
        """Store a small object (manifest, marker) in one request, integrity-checked by S3 on arrival.

        ``manifest=False`` means bookkeeping (the incomplete marker): encrypted and tagged, never locked.
        """
        args: dict[str, Any] = self.options.objectArgs(manifest=manifest, marker=not manifest)
        if metadata:
            args["Metadata"] = metadata
        if self.options.flexibleChecksums:
            args["ChecksumAlgorithm"] = "SHA256"
        else:
            args["ContentMD5"] = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        with translated(f"writing {self.location.url(key)}"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=contentType, **args)

    def deleteKeys(self, keys: Iterable[str]) -> None:
        """Delete keys in batches; any key S3 refuses is an error naming it.

        Never version-specific, on purpose: on a versioned (object-lock) bucket this only adds delete markers,
        which S3 allows even for locked objects, so the locked versions stay retrievable by version id until
        their retention ends and a same-day re-run never fails on them (``deleteVersions`` is the prune's).
        """
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
            archiveStatus=answer.get("ArchiveStatus"),
        )

    def restoreStatus(self, key: str) -> RestoreStatus:
        """Whether ``key`` can be read now (one HEAD, never a GET), and if not, what to run to restore it."""
        return restoreStatus(self.head(key), self.bucket)

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

    # -- versions and object lock (the operator's prune) ---------------------------------------------------------

    def versioningStatus(self) -> str | None:
        """``Enabled`` or ``Suspended`` when the bucket keeps object versions, None when it never has."""
        with translated(f"reading the versioning status of bucket {self.bucket}"):
            answer = self.client.get_bucket_versioning(Bucket=self.bucket)
        return answer.get("Status")

    def objectLockEnabled(self) -> bool:
        """Whether the bucket has object lock on (only then can a version be under retention or legal hold)."""
        where = f"reading the object lock configuration of bucket {self.bucket}"
        try:
            answer = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ObjectLockConfigurationNotFoundError":
                return False
            raise translate(error, where) from error
        except Exception as error:
            raise translate(error, where) from error
        return answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"

    def listVersions(self, prefix: str) -> Iterator[RemoteVersion]:
        """Every version and delete marker under ``prefix`` (a versioned bucket keeps deleted data as versions)."""
        with translated(f"listing object versions under {self.location.url(prefix)}"):
            pages = self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for entry in page.get("Versions", []):
                    yield RemoteVersion(entry["Key"], entry["VersionId"], entry.get("Size", 0), deleteMarker=False)
                for marker in page.get("DeleteMarkers", []):
                    yield RemoteVersion(marker["Key"], marker["VersionId"], 0, deleteMarker=True)

    def versionLock(self, key: str, versionId: str | None) -> VersionLock:
        """The retention and legal hold on one object version (HEAD; needs s3:GetObjectRetention to see them)."""
        args: dict[str, Any] = {"VersionId": versionId} if versionId else {}
        with translated(f"reading the object lock of {self.location.url(key)}"):
            answer = self.client.head_object(Bucket=self.bucket, Key=key, **args)
        return VersionLock(
            mode=answer.get("ObjectLockMode"),
            until=answer.get("ObjectLockRetainUntilDate"),
            legalHold=answer.get("ObjectLockLegalHoldStatus") == "ON",
        )

    def deleteVersions(self, entries: Iterable[tuple[str, str | None]]) -> list[str]:
        """Delete ``(key, versionId)`` pairs (None: the current object) in batches; return what S3 refused.

        Unlike ``deleteKeys`` this does not raise for refused objects (for instance versions under object lock):
        the caller decides what a partial deletion means. Each refusal names the key, version and S3's reason.
        """
        batch: list[Any] = []  # ObjectIdentifierTypeDef
        failures: list[str] = []
        for key, versionId in entries:
            batch.append({"Key": key, "VersionId": versionId} if versionId else {"Key": key})
            if len(batch) == DELETE_BATCH:
                failures += self._deleteVersionBatch(batch)
                batch = []
        if batch:
            failures += self._deleteVersionBatch(batch)
        return failures

    def _deleteVersionBatch(self, objects: list[Any]) -> list[str]:
        with translated(f"deleting {len(objects)} objects under {self.location.url()}"):
            answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
        failures = []
        for error in answer.get("Errors", []):
            version = f" (version {error['VersionId']})" if error.get("VersionId") else ""
            failures.append(f"{error.get('Key')}{version}: {error.get('Code')} {error.get('Message', '')}".strip())
        return failures


def buildStore(settings: AmazonS3Config, backupUser: str | None) -> S3Store:
    """An ``S3Store`` configured from ``<amazons3>``: endpoint, credentials, retries, checksums, tuning."""
    concurrency = settings.maxConcurrency or DEFAULT_CONCURRENCY
    _checkTls(settings)
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


@dataclass(frozen=True)
class RemoteVersion:
    """One entry of a version listing: a stored version of a key, or a delete marker."""

    key: str
    versionId: str
    size: int
    deleteMarker: bool


@dataclass(frozen=True)
class VersionLock:
    """What object lock says about one version: retention mode and date, and legal hold."""

    mode: str | None
    until: datetime.datetime | None
    legalHold: bool

    def holds(self, now: datetime.datetime) -> bool:
        """True while S3 will refuse to delete this version."""
        return self.legalHold or (self.until is not None and self.until > now)
