"""Credentials, client settings and clients: how cedar-s3 reaches S3 before any request is made.

Credentials come from boto3's usual chain, plus the backup user's ``~/.aws`` files when running as root, since
upstream ran the AWS CLI as that user and existing installations keep them there. Those files sit in a
directory the backup user can write, so root opens them without following links and hands botocore the opened
descriptors (``/proc/self/fd/N``), never the paths: a ``config`` repointed at ``/etc/shadow`` is refused, not
parsed (a parse error would quote its first line into cback3's log, which the backup user may read).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import pwd
import ssl
import stat
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session
from botocore.config import Config as BotocoreConfig

from cedar_s3 import __version__
from cedar_s3.s3.compat import hasChecksumConfig
from cedar_s3.s3.endpoint import ChecksumPolicy, Endpoint
from cedar_s3.s3.errors import translated

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from cedar_s3.config import AmazonS3Config
    from cedar_s3.s3.store import S3Store

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "SessionFiles",
    "buildSession",
    "buildStore",
    "checkTls",
    "clientConfig",
    "makeClient",
]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.s3")

DEFAULT_MAX_ATTEMPTS = 5
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class SessionFiles:
    """Descriptors of the backup user's AWS files, held open for as long as botocore may read them."""

    def __init__(self) -> None:
        self.descriptors: list[int] = []
        self.shown: dict[str, str] = {}  # /proc/self/fd/N -> the path it was opened from, for messages

    def close(self) -> None:
        for descriptor in self.descriptors:
            with contextlib.suppress(OSError):
                os.close(descriptor)
        self.descriptors.clear()

    def openBackupUsers(self, user: str) -> dict[str, str]:
        """``{botocore variable: /proc/self/fd/N}`` for the backup user's ``~/.aws/config`` and ``credentials``."""
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise ValueError(f"Backup user {user!r} (<backup_user> in <options>) does not exist.") from None
        try:
            homeFd = os.open(entry.pw_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return {}
        try:
            awsFd = os.open(".aws", _DIR, dir_fd=homeFd)
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise ValueError(
                f"{entry.pw_dir}/.aws cannot be opened without following a link ({error.strerror}); "
                "make it a real directory."
            ) from None
        finally:
            os.close(homeFd)
        files: dict[str, str] = {}
        try:
            for variable, envName, name in (
                ("config_file", "AWS_CONFIG_FILE", "config"),
                ("credentials_file", "AWS_SHARED_CREDENTIALS_FILE", "credentials"),
            ):
                if envName in os.environ:
                    continue
                descriptor = self._openOwned(awsFd, name, entry, f"{entry.pw_dir}/.aws/{name}")
                if descriptor is not None:
                    files[variable] = f"/proc/self/fd/{descriptor}"
                    self.shown[files[variable]] = f"{entry.pw_dir}/.aws/{name}"
        finally:
            os.close(awsFd)
        return files

    def _openOwned(self, directory: int, name: str, owner: pwd.struct_passwd, shown: str) -> int | None:
        try:
            descriptor = os.open(name, _FILE, dir_fd=directory)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise ValueError(
                f"{shown} cannot be opened without following a link ({error.strerror}); make it a regular file."
            ) from None
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or info.st_uid not in (owner.pw_uid, 0):
            os.close(descriptor)
            raise ValueError(f"{shown} is not a regular file owned by {owner.pw_name} or root; fix it.")
        self.descriptors.append(descriptor)
        return descriptor


def buildSession(settings: AmazonS3Config, backupUser: str | None, files: SessionFiles) -> boto3.Session:
    """boto3's normal credential chain, plus the backup user's ``~/.aws`` files when running as root.

    Environment variables and an explicit ``<profile>`` still win, as they would for the AWS CLI.
    """
    core = botocore.session.Session()
    if os.geteuid() == 0 and backupUser and backupUser != "root":
        for variable, path in files.openBackupUsers(backupUser).items():
            core.set_config_variable(variable, path)
            logger.debug("Using the backup user's AWS %s.", variable.replace("_", " "))
    if settings.profile:
        with translated("reading the AWS config files"):
            known = core.available_profiles
        if settings.profile not in known:
            names = [str(core.get_config_variable(name)) for name in ("config_file", "credentials_file")]
            shown = " and ".join(files.shown.get(name, name) for name in names)
            raise ValueError(
                f"<profile> names AWS profile {settings.profile!r}, which is not defined in {shown} (add a "
                "[profile NAME] section to the config file or a [NAME] section to the credentials file)."
            )
        core.set_config_variable("profile", settings.profile)  # an explicit profile beats AWS_ACCESS_KEY_ID
        logger.debug("Using AWS profile [%s].", settings.profile)
    return boto3.Session(botocore_session=core, region_name=settings.region)


def scopedConfig(session: boto3.Session) -> tuple[dict[str, Any], str]:
    """The active profile's section of the AWS config file, and the profile's name."""
    core = session._session
    with translated("reading the AWS config files"):
        return dict(core.get_scoped_config() or {}), str(core.profile or "default")


def clientConfig(
    settings: AmazonS3Config, concurrency: int, policy: ChecksumPolicy, *, preflight: bool = False
) -> BotocoreConfig:
    options: dict[str, Any] = {
        "retries": {
            "mode": settings.retryMode or "standard",
            # a preflight must fail fast on a dead endpoint: one retry, short timeouts
            # total_max_attempts counts the first try too, so <max_attempts> means what it says
            "total_max_attempts": 2 if preflight else settings.maxAttempts or DEFAULT_MAX_ATTEMPTS,
        },
        "max_pool_connections": concurrency * 2 + 4,
        "connect_timeout": 3 if preflight else 10,
        "read_timeout": 10 if preflight else 120,
        "user_agent_extra": f"cedar-s3/{__version__}",
        "tcp_keepalive": True,
    }
    if settings.addressingStyle:
        options["s3"] = {"addressing_style": settings.addressingStyle}
    if hasChecksumConfig():
        # Every checksum we send is computed by us and passed explicitly (the policy decides which); botocore's
        # own default CRC32 (an aws-chunked trailer over TLS) is what non-AWS stores refuse, so it stays off.
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = policy.validation
    return BotocoreConfig(**options)


def checkTls(settings: AmazonS3Config) -> None:
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
    """Content-MD5 on a request whose body botocore builds (DeleteObjects): botocore >= 1.36 sends a CRC32 there
    instead, and stores that ignore flexible checksums (Ceph) require Content-MD5 for it."""
    headers = params["headers"]
    body = params.get("body")
    if any(name.lower() == "content-md5" for name in headers) or not isinstance(body, bytes | bytearray):
        return
    headers["Content-MD5"] = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode("ascii")


def makeClient(
    session: boto3.Session,
    settings: AmazonS3Config,
    endpoint: Endpoint,
    config: BotocoreConfig,
    policy: ChecksumPolicy,
) -> S3Client:
    # None (not True) when nothing is configured, so botocore still honours AWS_CA_BUNDLE and the AWS config
    # file's ca_bundle, as it would for the AWS CLI upstream used
    verify: bool | str | None = settings.caBundle or (None if settings.verifyTls else False)
    with translated("creating the S3 client"):
        client = session.client("s3", endpoint_url=endpoint.url, verify=verify, config=config)
    if not policy.flexible:
        client.meta.events.register("before-call.s3.DeleteObjects", _addContentMd5)
    return client


DEFAULT_CONCURRENCY = 8
# Like rclone's 200 MiB cut-off: below it one PUT (one request, one retry unit of at most 128 MiB, checked by
# S3 against our own digest) beats parts; measured against moto, 4 x 96 MiB took 2.2 s as PUTs, 3.2 s in parts.
DEFAULT_THRESHOLD = 128 * 1024 * 1024
DEFAULT_CHUNK = 16 * 1024 * 1024


def buildStore(settings: AmazonS3Config, backupUser: str | None) -> S3Store:
    """An ``S3Store`` configured from ``<amazons3>``: endpoint, credentials, checksum policy, retries, tuning."""
    from cedar_s3.bucketformat import S3Location
    from cedar_s3.s3.endpoint import checksumPolicy, resolveEndpoint
    from cedar_s3.s3.store import ObjectSettings, S3Store, TransferPlan
    from cedar_s3.s3.throttle import Throttle

    concurrency = settings.maxConcurrency or DEFAULT_CONCURRENCY
    checkTls(settings)
    files = SessionFiles()
    try:
        session = buildSession(settings, backupUser, files)
        endpoint = resolveEndpoint(settings.endpointUrl, *scopedConfig(session))
        policy = checksumPolicy(endpoint, settings.checksumCalculation, settings.checksumValidation)
        if settings.serverSideEncryption == "aws:kms" and not policy.flexible and not settings.verifyDownload:
            raise ValueError(
                "<sse>aws:kms with Content-MD5 checksums leaves nothing to verify uploads by: an SSE-KMS object's "
                f"ETag is not its MD5 and no SHA-256 checksum is sent ({policy.reason}). Set <verify_download>Y, or "
                "<checksum_calculation>when_supported if the endpoint accepts flexible checksums."
            )
        client = makeClient(session, settings, endpoint, clientConfig(settings, concurrency, policy), policy)
        preflight = makeClient(
            session, settings, endpoint, clientConfig(settings, concurrency, policy, preflight=True), policy
        )
    except BaseException:
        files.close()
        raise
    threshold = int(settings.multipartThreshold.bytes) if settings.multipartThreshold else DEFAULT_THRESHOLD
    chunk = int(settings.multipartChunkSize.bytes) if settings.multipartChunkSize else DEFAULT_CHUNK
    bandwidth = int(settings.maxBandwidth.bytes) if settings.maxBandwidth else None
    objectSettings = ObjectSettings(
        storageClass=settings.storageClass,
        serverSideEncryption=settings.serverSideEncryption,
        sseKmsKeyId=settings.sseKmsKeyId,
        objectLockMode=settings.objectLockMode,
        objectLockDays=settings.objectLockDays,
        tags=list(settings.tags),
    )
    return S3Store(
        client,
        preflight,
        S3Location.parse(settings.s3Bucket or ""),
        endpoint=endpoint,
        policy=policy,
        plan=TransferPlan(threshold, chunk),
        concurrency=concurrency,
        throttle=Throttle(client, bandwidth) if bandwidth else None,
        settings=objectSettings,
        onClose=[files],
    )
