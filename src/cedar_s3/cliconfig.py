"""What the operator's command reads: ``cback3.conf`` (its ``<options>`` and ``<amazons3>``) and overriding flags.

Nothing is configured twice: the same file the nightly run uses gives the bucket, endpoint, credentials
profile, checksum and tuning settings, and the backup user whose ``~/.aws`` root borrows. After losing the
server there may be no ``cback3.conf`` at all; then ``--bucket`` (with ``--endpoint-url``, ``--region`` and
``--profile`` where needed) is enough, and credentials come from boto3's usual chain.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cedar_s3.config import AmazonS3Config, LocalConfig, checkBucket

__all__ = ["DEFAULT_CONFIG", "Settings", "loadSettings"]

DEFAULT_CONFIG = "/etc/cback3.conf"


@dataclass(frozen=True)
class Settings:
    """The ``<amazons3>`` settings to use, and the backup user (from ``<options>``), when there is one."""

    amazons3: AmazonS3Config
    backupUser: str | None
    configPath: str | None


def loadSettings(
    configPath: str | None,
    *,
    bucket: str | None = None,
    endpointUrl: str | None = None,
    region: str | None = None,
    profile: str | None = None,
) -> Settings:
    """Read ``configPath`` (default ``/etc/cback3.conf``, skipped when absent and ``bucket`` is given)."""
    path: str | None = configPath or DEFAULT_CONFIG
    backupUser = None
    settings = None
    if configPath is not None or os.path.exists(DEFAULT_CONFIG) or bucket is None:
        settings, backupUser = _readConfig(configPath or DEFAULT_CONFIG, needSection=bucket is None)
    else:
        path = None
    if settings is None:
        settings = AmazonS3Config()
    for attribute, value in (("endpointUrl", endpointUrl), ("region", region), ("profile", profile)):
        if value is not None:
            setattr(settings, attribute, value)
    if bucket is not None:
        checkBucket("--bucket", bucket)
        settings.s3Bucket = bucket
    if not settings.s3Bucket:
        raise ValueError(f"No bucket: {path} has no <s3_bucket>; pass --bucket BUCKET[/PREFIX].")
    checkBucket("s3_bucket", settings.s3Bucket)
    return Settings(settings, backupUser, path)


def _readConfig(path: str, *, needSection: bool) -> tuple[AmazonS3Config | None, str | None]:
    from CedarBackup3.config import Config

    try:
        local = LocalConfig(xmlPath=path, validate=False)
        config = Config(xmlPath=path, validate=False)
    except FileNotFoundError:
        raise ValueError(
            f"Configuration file {path} does not exist: pass --config PATH, or --bucket BUCKET[/PREFIX] "
            "(with --endpoint-url/--region if not AWS) when there is no cback3.conf."
        ) from None
    except PermissionError:
        raise PermissionError(
            f"Configuration file {path} cannot be read by this user: run as root or the backup user, or pass "
            "--config with a readable copy, or --bucket."
        ) from None
    if local.amazons3 is None and needSection:
        raise ValueError(f"{path} has no <amazons3> section: pass --bucket BUCKET[/PREFIX], or --config another file.")
    options = config.options
    return local.amazons3, options.backupUser if options is not None else None
