"""Self-tests for tests/faultproxy.py: a real moto server behind the proxy, driven by plain boto3.

A second, stdlib-only upstream (``echo``) returns the raw request body it received, so
byte-level claims (chunked framing kept, only payload bytes corrupted) are checked exactly.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import random
import re
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions as bexc
import pytest
from boto3.s3.transfer import TransferConfig

from faultkit import connectAttempts
from faultproxy import (
    FaultProxy,
    corrupt_request_body,
    corrupt_response_body,
    delay,
    opaque_etags,
    reset_after,
    status,
    truncate_response_body,
)
from nightkit import MotoServer
from versions import FLEXIBLE_DEFAULTS, NEEDS_FLEXIBLE_DEFAULTS, clientConfig

MiB = 1024 * 1024


@pytest.fixture
def proxy(moto: MotoServer) -> Iterator[FaultProxy]:
    """The proxy in front of the session's moto server (conftest's ``moto``)."""
    with FaultProxy("127.0.0.1", moto.port) as p:
        yield p
    assert p.errors == []  # no exception escaped a connection thread


def s3(url: str, attempts: int = 3, **config: Any) -> Any:
    """A plain boto3 client; ``attempts`` counts the first try too.

    (botocore's ``retries={"max_attempts": N}`` means N *retries*, i.e. N + 1 attempts.)
    """
    return boto3.session.Session().client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=clientConfig(retries={"mode": "standard", "total_max_attempts": attempts}, **config),
    )


@pytest.fixture
def bucket(proxy: FaultProxy) -> str:
    name = f"fp-{uuid.uuid4().hex[:12]}"
    s3(proxy.url).create_bucket(Bucket=name)
    proxy.reset_counters()
    return name


# -- against moto -------------------------------------------------------------------------------------
def test_passthrough_put_get_list_delete(proxy: FaultProxy, bucket: str) -> None:
    c = s3(proxy.url)
    c.put_object(Bucket=bucket, Key="a/1", Body=b"one")
    c.put_object(Bucket=bucket, Key="a/2", Body=b"two" * 1000)
    assert c.get_object(Bucket=bucket, Key="a/2")["Body"].read() == b"two" * 1000
    assert [o["Key"] for o in c.list_objects_v2(Bucket=bucket)["Contents"]] == ["a/1", "a/2"]
    c.delete_object(Bucket=bucket, Key="a/1")
    assert [o["Key"] for o in c.list_objects_v2(Bucket=bucket)["Contents"]] == ["a/2"]
    assert proxy.requests_by_method == {"PUT": 2, "GET": 3, "DELETE": 1}
    assert proxy.requests_total == 6 and proxy.faults_injected == 0
    assert [(r.action, r.status) for r in proxy.records] == [(None, 200)] * 4 + [(None, 204), (None, 200)]
    if FLEXIBLE_DEFAULTS:
        assert proxy.records[0].headers["x-amz-checksum-crc32"]  # default flexible checksum went through


@NEEDS_FLEXIBLE_DEFAULTS
def test_passthrough_multipart_upload_file(proxy: FaultProxy, bucket: str, tmp_path: Path) -> None:
    data = random.Random(1).randbytes(11 * MiB)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    c = s3(proxy.url)
    cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=2)
    c.upload_file(str(src), bucket, "big", Config=cfg)
    parts = [r for r in proxy.records if r.method == "PUT" and "partNumber=" in r.path]
    assert len(parts) == 3 and all(r.upstream_status == 200 for r in parts)
    assert all(r.headers["x-amz-checksum-crc32"] and r.headers["expect"] == "100-continue" for r in parts)
    assert sum(r.method == "POST" for r in proxy.records) == 2  # create + complete
    head = c.head_object(Bucket=bucket, Key="big")
    assert head["ContentLength"] == len(data) and head["ETag"].endswith('-3"')
    assert c.get_object(Bucket=bucket, Key="big")["Body"].read() == data


def test_slowdown_on_first_two_puts_is_retried(proxy: FaultProxy, bucket: str) -> None:
    rule = proxy.add_rule(
        status(503, "SlowDown", "Please reduce your request rate."), method="PUT", path=rf"^/{bucket}/k$", first=2
    )
    resp = s3(proxy.url, attempts=3).put_object(Bucket=bucket, Key="k", Body=b"payload")
    assert resp["ResponseMetadata"]["RetryAttempts"] == 2
    assert rule.injected == 2 and rule.matched == 3
    assert [(r.action, r.status, r.upstream_status) for r in proxy.records] == [
        ("status", 503, None),
        ("status", 503, None),
        (None, 200, 200),
    ]
    assert s3(proxy.url).get_object(Bucket=bucket, Key="k")["Body"].read() == b"payload"


def test_internal_error_everywhere_fails_after_the_configured_attempts(proxy: FaultProxy, bucket: str) -> None:
    rule = proxy.add_rule(status(500, "InternalError", "boom & <gone>"))
    with pytest.raises(bexc.ClientError) as ei:
        s3(proxy.url, attempts=2).put_object(Bucket=bucket, Key="k", Body=b"x")
    err = ei.value.response
    assert err["Error"] == {"Code": "InternalError", "Message": "boom & <gone>", "Resource": f"/{bucket}/k"}
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 500 and err["ResponseMetadata"]["RetryAttempts"] == 1
    assert rule.injected == 2 and proxy.requests_total == 2


def test_reset_after_on_upload_part(proxy: FaultProxy, bucket: str) -> None:
    c = s3(proxy.url, attempts=2)
    up = c.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    rule = proxy.add_rule(reset_after(64 * 1024), method="PUT", path=r"[?&]partNumber=1(&|$)")
    body = b"p" * (1 * MiB)
    with pytest.raises(bexc.ConnectionClosedError):
        c.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=body)
    assert rule.injected == 2
    assert [(r.action, r.status) for r in proxy.records[-2:]] == [("reset_after", None)] * 2
    assert c.list_parts(Bucket=bucket, Key="mp", UploadId=up).get("Parts", []) == []
    proxy.clear_rules()
    etag = c.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=body)["ETag"]
    c.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}
    )
    assert c.get_object(Bucket=bucket, Key="mp")["Body"].read() == body


GOOD = b"v2" * 500


@pytest.mark.parametrize(
    "extra",
    [{"ChecksumAlgorithm": "SHA256"}, {}, {"ContentMD5": base64.b64encode(hashlib.md5(GOOD).digest()).decode()}],  # noqa: S324
    ids=["sha256", "default-crc32", "content-md5"],
)
@NEEDS_FLEXIBLE_DEFAULTS
def test_corrupt_request_body_is_not_rejected_by_moto(proxy: FaultProxy, bucket: str, extra: dict[str, str]) -> None:
    """moto 5.2 validates neither Content-MD5 nor x-amz-checksum-*: corrupted bytes DO land.

    What still catches it: the ETag (MD5 of what was stored) and, on read-back, botocore's
    response checksum validation, because moto echoes the checksum the client claimed.
    """
    good = GOOD  # a checksum or Content-MD5 header for these exact bytes goes along with the PUT
    c = s3(proxy.url, attempts=1)
    c.put_object(Bucket=bucket, Key="k", Body=b"v1")
    rule = proxy.add_rule(corrupt_request_body(7), method="PUT", nth=1)
    resp = c.put_object(Bucket=bucket, Key="k", Body=good, **extra)
    assert rule.injected == 1
    assert resp["ETag"].strip('"') != hashlib.md5(good).hexdigest()  # noqa: S324
    with pytest.raises(bexc.FlexibleChecksumError):
        c.get_object(Bucket=bucket, Key="k")["Body"].read()
    raw = s3(proxy.url, response_checksum_validation="when_required").get_object(Bucket=bucket, Key="k")
    stored = raw["Body"].read()
    assert len(stored) == len(good) and stored != good
    assert [i for i in range(len(good)) if stored[i] != good[i]] == [7] and stored[7] == good[7] ^ 0xFF


@NEEDS_FLEXIBLE_DEFAULTS
def test_corrupt_response_body_on_get(proxy: FaultProxy, bucket: str) -> None:
    data = b"hello world " * 100
    c = s3(proxy.url, attempts=1)
    c.put_object(Bucket=bucket, Key="with-crc", Body=data)  # default: CRC32 stored with the object
    plain = s3(proxy.url, attempts=1, request_checksum_calculation="when_required")
    plain.put_object(Bucket=bucket, Key="no-crc", Body=data)  # no checksum stored at all
    rule = proxy.add_rule(corrupt_response_body(3), method="GET")
    with pytest.raises(bexc.FlexibleChecksumError):  # botocore validates GetObject by default
        c.get_object(Bucket=bucket, Key="with-crc")["Body"].read()
    got = c.get_object(Bucket=bucket, Key="no-crc")["Body"].read()  # nothing to validate against
    assert got != data and got[:3] == data[:3] and got[3] == data[3] ^ 0xFF and got[4:] == data[4:]
    assert rule.injected == 2


def test_truncate_response_body_on_get(proxy: FaultProxy, bucket: str) -> None:
    c = s3(proxy.url, attempts=1)
    c.put_object(Bucket=bucket, Key="k", Body=b"z" * 1000)
    proxy.add_rule(truncate_response_body(10), method="GET", nth=1)
    obj = c.get_object(Bucket=bucket, Key="k")
    assert obj["ContentLength"] == 1000
    with pytest.raises(bexc.ResponseStreamingError, match="IncompleteRead"):
        obj["Body"].read()
    assert c.get_object(Bucket=bucket, Key="k")["Body"].read() == b"z" * 1000  # nth=1 only


def test_delay_and_read_timeout(proxy: FaultProxy, bucket: str) -> None:
    c = s3(proxy.url, attempts=1, read_timeout=0.3)
    c.put_object(Bucket=bucket, Key="k", Body=b"x")
    proxy.add_rule(delay(0.1), method="HEAD", first=1)
    proxy.add_rule(delay(2), method="HEAD")
    t0 = time.monotonic()
    assert c.head_object(Bucket=bucket, Key="k")["ContentLength"] == 1
    assert time.monotonic() - t0 >= 0.1  # a lower bound: the stall is the behaviour under test, not a speed
    with pytest.raises(bexc.ReadTimeoutError):
        c.head_object(Bucket=bucket, Key="k")


def test_opaque_etags_hide_the_md5_in_headers_and_listings_but_not_in_object_bytes(
    proxy: FaultProxy, bucket: str
) -> None:
    c = s3(proxy.url, attempts=1)
    data = b"<ETag>&quot;not an answer, object bytes&quot;</ETag>"
    md5 = '"' + hashlib.md5(data).hexdigest() + '"'  # noqa: S324
    assert c.put_object(Bucket=bucket, Key="k", Body=data)["ETag"] == md5
    up = c.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    part = c.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=b"one part")["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": part}]}
    multipart = c.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload=parts)["ETag"]
    rule = proxy.add_rule(opaque_etags())
    head = c.head_object(Bucket=bucket, Key="k")["ETag"]
    listed = {o["Key"]: o["ETag"] for o in c.list_objects_v2(Bucket=bucket)["Contents"]}
    got = c.get_object(Bucket=bucket, Key="k")
    assert head != md5 and re.fullmatch(r'"[0-9a-f]{32}"', head)
    assert listed["k"] == head == got["ETag"]  # one stable value per object, wherever it is answered
    assert listed["mp"] != multipart and listed["mp"].endswith('-1"') and multipart.endswith('-1"')
    assert got["Body"].read() == data  # the object's own bytes are passed through untouched
    changed = c.put_object(Bucket=bucket, Key="k", Body=b"changed")["ETag"]  # an opaque answer to the PUT too
    assert c.head_object(Bucket=bucket, Key="k")["ETag"] == changed != head  # another object, another value
    assert changed != '"' + hashlib.md5(b"changed").hexdigest() + '"'  # noqa: S324
    assert rule.injected == 5


def waitFor(check: Any, what: str, timeout: float = 30.0) -> None:
    """Poll until ``check()`` holds; a guard against a hung test, not a claim about speed."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.01)


def test_sever_all_resets_in_flight_connections(proxy: FaultProxy, bucket: str) -> None:
    c = s3(proxy.url, attempts=1)
    c.put_object(Bucket=bucket, Key="k", Body=b"x")
    stall = proxy.add_rule(delay(3600), method="GET")  # only the sever can end this request
    errors: list[BaseException] = []

    def get() -> None:
        try:
            c.get_object(Bucket=bucket, Key="k")
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=get)
    t.start()
    waitFor(lambda: stall.injected == 1, "the GET reaching the proxy")
    assert proxy.sever_all() == 1
    t.join(30)
    assert not t.is_alive()  # the stall had an hour to go: the sever ended the request
    assert len(errors) == 1 and isinstance(errors[0], bexc.ConnectionClosedError)
    (held,) = [r for r in proxy.records if r.method == "GET"]
    assert (held.action, held.upstream_status, held.status) == ("delay", None, None)  # never forwarded, no answer


@pytest.mark.parametrize(
    ("how", "errors"),
    [
        # An RST can land while urllib3 is still inside its non-blocking connect(): either error is possible.
        ("reset", (bexc.ConnectionClosedError, bexc.EndpointConnectionError)),
        ("closed", bexc.EndpointConnectionError),
    ],
)
def test_refuse_then_restore(proxy: FaultProxy, bucket: str, how: Any, errors: Any) -> None:
    c = s3(proxy.url, attempts=1, connect_timeout=1)
    c.put_object(Bucket=bucket, Key="k", Body=b"x")
    proxy.refuse(how)
    with connectAttempts(proxy.port) as attempts, pytest.raises(errors) as caught:  # never a ConnectTimeoutError
        c.get_object(Bucket=bucket, Key="k")
    assert attempts.count == 1  # one connection tried, and no request through it (the one record is the PUT)
    assert proxy.requests_total == 1
    assert proxy.refused_connections == (1 if how == "reset" else 0)
    if how == "closed":  # refused by the kernel at once, not left to time out
        assert errno.ECONNREFUSED in [getattr(e, "errno", None) for e in causes(caught.value)]
    proxy.restore()
    assert c.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def causes(error: BaseException | None) -> list[BaseException]:
    """An exception and everything behind it (``__cause__``, ``__context__``, botocore's ``error`` argument)."""
    chain: list[BaseException] = []
    while error is not None and error not in chain:
        chain.append(error)
        behind = getattr(error, "kwargs", {}).get("error") if isinstance(error, bexc.BotoCoreError) else None
        error = error.__cause__ or error.__context__ or behind
    return chain


# -- against a stdlib echo upstream (exact bytes) -------------------------------------------------------
class _Echo(socketserver.StreamRequestHandler):
    """Answers 200 with the raw request body it received (chunk framing and trailers included)."""

    def handle(self) -> None:
        head = [self.rfile.readline()]
        while head[-1] not in (b"\r\n", b""):
            head.append(self.rfile.readline())
        hdrs = b"".join(head).lower()
        raw = b""
        if b"transfer-encoding: chunked" in hdrs:
            while (size := int((line := self.rfile.readline()).split(b";")[0], 16)) > 0:
                raw += line + self.rfile.read(size + 2)
            raw += line
            while (line := self.rfile.readline()) != b"\r\n":  # trailers
                raw += line
            raw += line
        elif b"content-length:" in hdrs:
            n = int(hdrs.split(b"content-length:")[1].split(b"\r\n")[0])
            with contextlib.suppress(OSError):
                while len(raw) < n and (data := self.rfile.read1(n - len(raw))):
                    raw += data
        assert isinstance(self.server, _EchoServer)
        if b"content-length:" in hdrs and len(raw) < n:
            self.server.seen.append(b"ABORTED " + head[0] + raw)
            return
        self.server.seen.append(head[0] + raw)
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(raw) + raw)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    seen: list[bytes]


@pytest.fixture
def echo_seen() -> list[bytes]:
    return []


@pytest.fixture
def echo(echo_seen: list[bytes]) -> Iterator[FaultProxy]:
    """A proxy in front of the echo upstream; ``echo_seen`` gets every request line + raw body."""
    srv = _EchoServer(("127.0.0.1", 0), _Echo)
    srv.seen = echo_seen
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    try:
        with FaultProxy("127.0.0.1", srv.server_address[1]) as p:
            yield p
        assert p.errors == []
    finally:
        srv.shutdown()
        srv.server_close()


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        out = b""
        while data := s.recv(65536):
            out += data
        return out


CHUNKED_BODY = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-amz-checksum-crc32: AAAAAA==\r\n\r\n"
CHUNKED = b"PUT /b/k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY


def test_chunked_body_forwarded_verbatim_and_corrupted_only_in_payload(echo: FaultProxy) -> None:
    assert _raw(echo.port, CHUNKED).endswith(b"\r\n\r\n" + CHUNKED_BODY)
    echo.add_rule(corrupt_request_body(6), nth=1)  # payload "hello world": byte 6 is the "w"
    resp = _raw(echo.port, CHUNKED)
    assert resp.endswith(CHUNKED_BODY.replace(b" world", b" " + bytes([ord("w") ^ 0xFF]) + b"orld"))
    assert [r.action for r in echo.records] == [None, "corrupt_request_body"]


def test_status_drains_chunked_body_and_never_forwards(echo: FaultProxy, echo_seen: list[bytes]) -> None:
    echo.add_rule(status(503, "SlowDown"), path=r"^/b/k$")
    resp = _raw(echo.port, CHUNKED)
    assert resp.startswith(b"HTTP/1.1 503 ") and b"<Code>SlowDown</Code>" in resp
    assert b"<Resource>/b/k</Resource>" in resp and echo_seen == []


def test_reset_after_resets_client_and_aborts_upstream(echo: FaultProxy, echo_seen: list[bytes]) -> None:
    echo.add_rule(reset_after(3))
    req = b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789"
    with pytest.raises(ConnectionResetError):
        _raw(echo.port, req)
    waitFor(lambda: echo_seen != [], "the echo upstream seeing the aborted request")
    assert len(echo_seen) == 1 and echo_seen[0].startswith(b"ABORTED PUT /x HTTP/1.1\r\n")
    assert b"0123"[:3].startswith(echo_seen[0][len(b"ABORTED PUT /x HTTP/1.1\r\n") :])  # at most 3 bytes got through


def test_rule_predicates_are_deterministic(echo: FaultProxy) -> None:
    nth = echo.add_rule(status(500), path=r"^/n", nth=3)
    prob = echo.add_rule(status(503, "SlowDown"), method="get", path=r"^/p", probability=0.3, seed=42)
    codes = [_raw(echo.port, b"GET /n HTTP/1.1\r\nHost: h\r\n\r\n")[9:12] for _ in range(4)]
    assert codes == [b"200", b"200", b"500", b"200"] and nth.injected == 1
    got = [_raw(echo.port, b"GET /p?i=%d HTTP/1.1\r\nHost: h\r\n\r\n" % i)[9:12] == b"503" for i in range(30)]
    rng = random.Random(42)
    assert got == [rng.random() < 0.3 for _ in range(30)] and prob.injected == sum(got) > 0
    assert echo.requests_total == 34 and echo.requests_by_method == {"GET": 34}
    echo.clear_rules()
    echo.reset_counters()
    assert _raw(echo.port, b"GET /p HTTP/1.1\r\nHost: h\r\n\r\n")[9:12] == b"200" and echo.requests_total == 1


def test_stop_frees_the_port(echo: FaultProxy) -> None:
    port = echo.port
    echo.stop()
    assert [t.name for t in threading.enumerate() if t.name.startswith("faultproxy")] == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
