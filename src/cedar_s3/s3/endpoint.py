"""Which endpoint a night talks to, whether that is AWS, and the checksum policy that follows from it.

S3-compatible stores differ in what they accept: boto3 1.36+ sends a CRC32 flexible checksum by default (over
TLS as an ``aws-chunked`` trailer) that Ceph before Reef refuses (411 MissingContentLength), R2 and B2 have
refused outright, and GCS answers with SignatureDoesNotMatch. rclone's answer, and ours: the SDK's flexible
checksums for AWS itself only; everything else gets ``when_required`` and a precomputed ``Content-MD5`` on every
PutObject and UploadPart (S3 then still refuses bytes damaged in transit, and object lock uploads need one of
the two). An explicit ``<checksum_calculation>``/``<checksum_validation>`` always wins.

The endpoint is resolved here, not left to botocore, because botocore before 1.31 ignores ``AWS_ENDPOINT_URL``
and ``endpoint_url`` in the AWS config file: a night configured the documented way would go to AWS instead.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from typing import Any

__all__ = ["ChecksumPolicy", "Endpoint", "checksumPolicy", "isAwsEndpoint", "resolveEndpoint"]

AWS_HOST_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")


@dataclass(frozen=True)
class Endpoint:
    """The endpoint URL (None: AWS's own, chosen by region) and where that came from, for the log."""

    url: str | None
    source: str


def _configEndpoint(scoped: dict[str, Any]) -> str | None:
    """``endpoint_url`` of the profile: in its ``s3 =`` sub-section first, as the AWS CLI reads it, then its own."""
    service = scoped.get("s3")
    if isinstance(service, dict) and isinstance(service.get("endpoint_url"), str):
        return str(service["endpoint_url"])
    value = scoped.get("endpoint_url")
    return value if isinstance(value, str) and value else None


def resolveEndpoint(setting: str | None, scopedConfig: dict[str, Any], profile: str) -> Endpoint:
    """``<endpoint_url>``, else ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``, else the AWS config file, else AWS."""
    if setting:
        return Endpoint(setting, "<endpoint_url>")
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return Endpoint(None, "AWS (AWS_IGNORE_CONFIGURED_ENDPOINT_URLS)")
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        if os.environ.get(name):
            return Endpoint(os.environ[name], name)
    configured = _configEndpoint(scopedConfig)
    if configured:
        return Endpoint(configured, f"endpoint_url of profile [{profile}] in the AWS config file")
    return Endpoint(None, "AWS (no endpoint configured)")


def isAwsEndpoint(url: str | None) -> bool:
    """AWS when no endpoint is set, or when the host is one of AWS's own (a VPC or FIPS endpoint included)."""
    if url is None:
        return True
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    return host.endswith(AWS_HOST_SUFFIXES)


@dataclass(frozen=True)
class ChecksumPolicy:
    """What each upload carries: a SHA-256 flexible checksum (``flexible``), or ``Content-MD5`` only.

    ``validateResponses`` is botocore's ``response_checksum_validation``: whether GETs are checked against
    checksums the endpoint returns. ``reason`` is logged once per night.
    """

    flexible: bool
    validateResponses: bool
    reason: str

    @property
    def calculation(self) -> str:
        return "when_supported" if self.flexible else "when_required"

    @property
    def validation(self) -> str:
        return "when_supported" if self.validateResponses else "when_required"


def checksumPolicy(endpoint: Endpoint, calculation: str | None, validation: str | None) -> ChecksumPolicy:
    """The policy for ``endpoint``: flexible checksums for AWS only, unless a setting says otherwise."""
    aws = isAwsEndpoint(endpoint.url)
    where = "AWS" if aws else f"a non-AWS endpoint ({endpoint.url}, from {endpoint.source})"
    flexible = calculation == "when_supported" if calculation else aws
    validate = validation == "when_supported" if validation else aws
    if calculation:
        reason = f"<checksum_calculation>{calculation} for {where}"
    elif aws:
        reason = "flexible SHA-256 checksums: the endpoint is AWS"
    else:
        reason = f"Content-MD5 on every upload, no flexible checksums: {where} (set <checksum_calculation> to change)"
    return ChecksumPolicy(flexible=flexible, validateResponses=validate, reason=reason)
