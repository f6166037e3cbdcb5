"""What every test endpoint offers: where it listens, how to verify its TLS, which credentials it accepts."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, NoReturn

import boto3
import pytest
from botocore.config import Config as BotocoreConfig

REQUIRE_VARIABLE = "CEDAR_S3_REQUIRE"


def freePort() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Endpoint:
    """One running S3 implementation on 127.0.0.1."""

    name: str  # "moto" | "s3rver" | "ceph"
    url: str  # http://127.0.0.1:PORT
    httpsUrl: str | None  # https://127.0.0.1:PORT when the implementation serves TLS, else None
    caBundle: str | None  # PEM file that verifies httpsUrl
    accessKey: str
    secretKey: str
    region: str = "us-east-1"

    def client(self, *, https: bool = False, **config: Any) -> Any:
        """A plain boto3 S3 client for assertions; ``config`` goes to botocore's ``Config``."""
        if https and self.httpsUrl is None:
            raise ValueError(f"the {self.name} endpoint serves no HTTPS")
        return boto3.client(
            "s3",
            endpoint_url=self.httpsUrl if https else self.url,
            region_name=self.region,
            aws_access_key_id=self.accessKey,
            aws_secret_access_key=self.secretKey,
            verify=self.caBundle if https else None,
            config=BotocoreConfig(**config) if config else None,
        )


def isRequired(name: str) -> bool:
    """True when ``CEDAR_S3_REQUIRE`` (comma-separated, e.g. ``moto,s3rver,ceph``) names this endpoint."""
    listed = os.environ.get(REQUIRE_VARIABLE, "")
    return name in {item.strip() for item in listed.split(",")}


def unavailable(name: str, reason: str) -> NoReturn:
    """An endpoint cannot run here: fail the test when CI requires it, else skip it with the reason."""
    if isRequired(name):
        pytest.fail(f"the {name} S3 endpoint is required ({REQUIRE_VARIABLE}) but unavailable: {reason}", pytrace=False)
    pytest.skip(f"{name} S3 endpoint unavailable: {reason}")
