"""What a night asks the store before it sends a byte: is the bucket there and ours to use, and does the store
honour the object settings (storage class, SSE, tags) or only accept them?

A refusal here costs a second and names the setting to change, instead of failing at the first file an hour
later. ``S3Store.checkBucket`` and ``S3Store.probeObjectSettings`` are the doors; this module is their body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cedar_s3.s3.errors import S3AccessError, S3Error, S3UnsupportedError, errorCode, translated
from cedar_s3.s3.objects import ObjectKind

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from cedar_s3.s3.store import S3Store

__all__ = ["checkBucket", "probeObjectSettings"]

PROBE_BODY = b"cedar-s3 probe of the object settings\n"


def checkBucket(store: S3Store, preflight: S3Client, *, needObjectLock: bool = False) -> None:
    """The bucket answers a listing of our prefix, and has object lock where the settings need it."""
    where = f"checking bucket {store.bucket}"
    with translated(where):
        # A listing of our own prefix rather than HeadBucket: a HEAD answer has no body, so its 403 cannot say
        # why (wrong credentials, skewed clock, missing permission all look alike), and HeadBucket cannot be
        # allowed by a policy that scopes s3:ListBucket to the backup prefix.
        preflight.list_objects_v2(Bucket=store.bucket, Prefix=store.location.rootPrefix, MaxKeys=1)
    if not needObjectLock:
        return
    try:
        with translated(where):
            answer = preflight.get_object_lock_configuration(Bucket=store.bucket)
    except S3Error as error:
        if errorCode(error) != "ObjectLockConfigurationNotFoundError" and not isinstance(error, S3UnsupportedError):
            raise  # access denied names s3:GetBucketObjectLockConfiguration; a network fault says so
        raise ValueError(
            f"<object_lock_mode> is set but bucket {store.bucket} has no object lock configuration: object "
            "lock can only be enabled when a bucket is created (or by AWS support), so create a new bucket "
            f"with object lock enabled, or remove <object_lock_mode>/<object_lock_days>. ({error})"
        ) from None
    enabled = answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
    if enabled != "Enabled":
        raise ValueError(f"<object_lock_mode> is set but object lock is not enabled on bucket {store.bucket}.")


def probeObjectSettings(store: S3Store, key: str) -> None:
    """Store and delete one tiny object with the data settings (storage class, SSE, tags).

    A store that refuses one of them fails the night here, naming the setting; one that accepts SSE without
    applying it fails too (no error is not proof). Tags a store drops are a warning: they steer lifecycle rules,
    not what is stored. Only run when such a setting is configured.
    """
    args = store.settings.args(ObjectKind.DATA)
    args.pop("ObjectLockMode", None)  # a locked probe could not be deleted again
    args.pop("ObjectLockRetainUntilDate", None)
    url = store.location.url(key)
    try:
        with translated(f"storing a probe object {url} with the configured settings"):
            answer = store.client.put_object(
                Bucket=store.bucket, Key=key, Body=PROBE_BODY, **store.checksumArgs(PROBE_BODY), **args
            )
    except S3Error as error:
        raise S3Error(f"{error} {_settingHint(error, args)}") from error
    try:
        store.settings.checkApplied(dict(answer), f"storing a probe object {url}")
        if store.settings.tags:
            _checkTagsKept(store, key)
    finally:
        store.deleteKeys([key])


def _checkTagsKept(store: S3Store, key: str) -> None:
    """Some stores accept ``x-amz-tagging`` on a PUT and drop it (s3rver does): say so, once, before the night."""
    wanted = dict(tag.partition("=")[::2] for tag in store.settings.tags)
    try:
        with translated(f"reading the tags of the probe object {store.location.url(key)}"):
            answer = store.client.get_object_tagging(Bucket=store.bucket, Key=key)
    except (S3AccessError, S3UnsupportedError) as error:
        store.warnOnce("tags", "Could not check that the store keeps the <tag> values on objects: %s", error)
        return
    kept = {tag["Key"]: tag["Value"] for tag in answer.get("TagSet", [])}
    if kept != wanted:
        store.warnOnce(
            "tags",
            "The store accepted <tag> but keeps %s on a new object instead of %s: tonight's objects are stored "
            "without the configured tags, so lifecycle rules or policies that select on them will not apply. "
            "Remove <tag>, or use a store that keeps object tags.",
            kept or "no tags",
            wanted,
        )


def _settingHint(error: S3Error, args: dict[str, Any]) -> str:
    """Which setting to change when a store refuses the probe."""
    code = errorCode(error) or ""
    if "StorageClass" in args and ("StorageClass" in code or code == "InvalidArgument"):
        return f"The store refuses <storage_class>{args['StorageClass']}: remove it or pick one the store offers."
    if "ServerSideEncryption" in args and (code in ("InvalidArgument", "InvalidRequest") or "KMS" in code):
        return "The store refuses the <sse>/<sse_kms_key_id> settings: remove them or configure the store for them."
    if "Tagging" in args and "Tag" in code:
        return "The store refuses the object tags: remove <tag> or fix the tag."
    return "Check <storage_class>, <sse> and <tag> against what the store supports."
