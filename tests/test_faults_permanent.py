"""Permanent faults: one clear error each, naming what to fix, after one answer (no retry loop), nothing stored.

Each fault is what S3 itself answers (the proxy plays S3's error for credentials, permissions and clock; moto
answers for a missing bucket; a closed port or a reset plays a dead endpoint). Retry settings are the defaults
an administrator gets, so "not retried" is proven for the real configuration, not a tuned one: by the requests
the proxy saw, and for a dead endpoint by the connections the night tried to open.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from cedar_s3.s3.errors import S3AccessError, S3ConnectionError, S3Error, S3NotFoundError
from faultkit import connectAttempts
from faultproxy import FaultProxy, status
from nightkit import Night, listKeys

PREFLIGHT_ATTEMPTS = 2  # the bucket check before anything is sent: one try and one retry, whatever <max_attempts>


def runFailing(night: Night, expected: type[BaseException]) -> BaseException:
    """The night's error, caught as what Cedar Backup's caller sees (``OSError`` and its subclasses)."""
    night.stage({"host1/a.tar": os.urandom(10_000), "host2/b.tar": os.urandom(5_000)})
    with pytest.raises(expected) as caught:
        night.run()
    return caught.value


def assertNothingStored(night: Night, s3: Any) -> None:
    assert not night.indicator().exists()
    assert listKeys(s3, night.bucket.split("/")[0]) == {}


def test_invalid_credentials_say_to_fix_the_credentials(night: Night, s3: Any, proxy: FaultProxy) -> None:
    rule = proxy.add_rule(
        status(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
    )
    error = runFailing(night, PermissionError)
    assert type(error) is S3AccessError
    message = str(error)
    assert message.startswith(f"checking bucket {night.bucket}: S3 rejected the credentials (InvalidAccessKeyId")
    assert "Fix the access key / secret" in message
    assert "testing" not in message  # the access key id (and anything secret) never appears in a message
    assert rule.injected == 1 and proxy.requests_total == 1  # one answer, not retried, nothing after it
    assertNothingStored(night, s3)


def test_missing_bucket_says_the_bucket_does_not_exist(night: Night, s3: Any, proxy: FaultProxy) -> None:
    night.bucket = "cedar-no-such-bucket-4711"
    error = runFailing(night, FileNotFoundError)
    assert type(error) is S3NotFoundError
    assert str(error) == (
        "checking bucket cedar-no-such-bucket-4711: the bucket does not exist "
        "(check <s3_bucket>, <region> and <endpoint_url>)."
    )
    assert proxy.requests_total == 1  # a 404 is not retried, and nothing follows it
    assert not night.indicator().exists()


def test_access_denied_on_put_names_the_missing_permission(night: Night, s3: Any, proxy: FaultProxy) -> None:
    rule = proxy.add_rule(status(403, "AccessDenied", "Access Denied"), method="PUT")
    error = runFailing(night, PermissionError)
    assert type(error) is S3AccessError
    assert "access denied on PutObject (AccessDenied: Access Denied). Grant s3:PutObject" in str(error)
    assert rule.injected == 1  # refused once, not retried
    assert proxy.requests_total == 2  # the bucket check, then that PUT (the marker): the night stops there
    assertNothingStored(night, s3)


def test_clock_skew_says_to_fix_the_clock(night: Night, s3: Any, proxy: FaultProxy) -> None:
    rule = proxy.add_rule(
        status(
            403,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
        )
    )
    error = runFailing(night, OSError)
    assert type(error) is S3Error  # no PermissionError: no permission fixes a clock
    assert "this machine's clock is too far from S3's" in str(error) and "Fix the clock (NTP)" in str(error)
    assert rule.injected == 1 and proxy.requests_total == 1  # one answer, not retried, nothing after it
    assertNothingStored(night, s3)


@pytest.mark.parametrize("how", ["closed", "reset"])
def test_endpoint_down_is_one_clear_connection_error(night: Night, s3: Any, proxy: FaultProxy, how: Any) -> None:
    proxy.refuse(how)
    with connectAttempts(proxy.port) as attempts:
        error = runFailing(night, ConnectionError)
    assert type(error) is S3ConnectionError
    message = str(error)
    assert message.startswith(f"checking bucket {night.bucket}: ")
    refused = f"could not connect to {proxy.url}/" in message and message.endswith(
        "Check <endpoint_url> and the network."
    )
    if how == "closed":
        assert refused, message
    else:  # the RST lands during connect() or after the request went out, depending on timing
        assert refused or "the connection to S3 dropped and retries did not help" in message, message
    assert attempts.count == PREFLIGHT_ATTEMPTS  # a dead endpoint costs the bucket check's two tries, no more
    assert proxy.requests_total == 0 and proxy.refused_connections == (attempts.count if how == "reset" else 0)
    assertNothingStored(night, s3)
