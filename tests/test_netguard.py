"""The suite's network guard holds: a client aimed at real AWS is stopped at the closed proxy, loopback is not."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ProxyConnectionError

from nightkit import MotoServer


def test_a_client_aimed_at_aws_stops_at_the_closed_proxy() -> None:
    client = boto3.client("s3", region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
    with pytest.raises(ProxyConnectionError) as caught:
        client.list_buckets()
    assert "127.0.0.1:9" in str(caught.value)


def test_loopback_endpoints_bypass_the_guard(moto: MotoServer) -> None:
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=moto.url)
    client.create_bucket(Bucket="netguard-loopback")
    assert "netguard-loopback" in [bucket["Name"] for bucket in client.list_buckets()["Buckets"]]
