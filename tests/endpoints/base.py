"""What every S3 endpoint fixture yields: where it listens, how to trust it, and whose keys it accepts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config as BotocoreConfig


@dataclass
class Endpoint:
    name: str  # "moto" | "s3rver" | "ceph"
    url: str  # http://127.0.0.1:PORT
    httpsUrl: str | None  # https://... when served, else None
    caBundle: str | None
    accessKey: str
    secretKey: str
    region: str = "us-east-1"

    def client(self, *, https: bool = False, **config: Any) -> Any:
        """A plain boto3 S3 client for this endpoint; ``config`` goes to botocore's ``Config``."""
        if https and self.httpsUrl is None:
            raise ValueError(f"the {self.name} endpoint serves no HTTPS")
        return boto3.client(
            "s3",
            endpoint_url=self.httpsUrl if https else self.url,
            region_name=self.region,
            aws_access_key_id=self.accessKey,
            aws_secret_access_key=self.secretKey,
            verify=(self.caBundle or True) if https else None,
            config=BotocoreConfig(**config) if config else None,
        )
