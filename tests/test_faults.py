"""Issue 4's guarantees under faults on the wire: a FaultProxy between the night and a real S3 endpoint.

The night (``executeAction``) reaches moto only through the proxy; the assertions look at moto directly, with
plain boto3, for what an administrator would check: the exception and its message, the store indicator, the
bytes and keys in S3, the manifest, and multipart uploads left open.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig

from cedar_s3.bucketformat import INCOMPLETE_MARKER, MANIFEST_NAME
from cedar_s3.config import LocalConfig
from cedar_s3.s3.errors import S3ConnectionError, S3Error, S3IntegrityError
from cedar_s3.s3.session import buildStore
from cedar_s3.verify import VerificationError, verifyObjects
from clikit import cli
from faultkit import (
    MIB,
    MULTIPART,
    PART_1,
    PART_2,
    assertDayStored,
    assertNothingRecordedAsGood,
    keyPath,
    manifestBytes,
    manifestOf,
    multipartUploads,
    onceFired,
    partsSent,
    retriedAfterEachFault,
    sentObjects,
    sha256,
)
from faultproxy import (
    FaultProxy,
    corrupt_request_body,
    corrupt_response_body,
    delay,
    reset_after,
    status,
    truncate_response_body,
)
from nightkit import MotoServer, Night, getBytes, listKeys, s3Client
from versions import RETRIES_GARBLED_ANSWERS

BIG = "host9/big.tar"  # sorts last, so with <max_concurrency>1 every small file is stored before it


def smallFiles() -> dict[str, bytes]:
    return {"host1/a.tar": os.urandom(20_000), "host1/b.tar": os.urandom(30_000), "host2/c.tar": os.urandom(10_000)}


def withBig(files: dict[str, bytes]) -> dict[str, bytes]:
    return files | {BIG: os.urandom(6 * MIB + 5)}  # two parts at a 5 MiB part size


# -- transient faults ---------------------------------------------------------------------------------------


def test_slowdown_and_internal_errors_are_retried_until_the_night_succeeds(
    night: Night, s3: Any, proxy: FaultProxy
) -> None:
    files = withBig(smallFiles())
    night.stage(files)
    night.settings |= MULTIPART | {"max_attempts": 10, "max_concurrency": 4}
    throttledPart = proxy.add_rule(  # at least one data upload is throttled and retried
        status(503, "SlowDown", "Please reduce your request rate."), method="PUT", path=PART_1, nth=1
    )
    # A fraction of everything else, seeded so that each rule fires once within the night's first (sequential)
    # requests whatever the threads do later, and no request there fails twice in a row (backoff costs seconds).
    slow = proxy.add_rule(status(503, "SlowDown", "Please reduce your request rate."), probability=0.12, seed=6)
    broken = proxy.add_rule(status(500, "InternalError", "We encountered an internal error."), probability=0.06, seed=2)
    night.run()
    assertDayStored(night, s3, files)
    assert throttledPart.injected == 1 and slow.injected >= 1 and broken.injected >= 1
    assert proxy.faults_injected == throttledPart.injected + slow.injected + broken.injected
    retriedAfterEachFault(proxy)


# -- the connection dies mid-upload -------------------------------------------------------------------------


def test_connection_reset_mid_multipart_fails_cleanly_and_a_rerun_resumes(
    night: Night, s3: Any, proxy: FaultProxy
) -> None:
    files = withBig(smallFiles())
    night.stage(files)
    night.settings |= MULTIPART | {"max_attempts": 2, "max_concurrency": 1}
    reset = proxy.add_rule(reset_after(256 * 1024), method="PUT", path=PART_2)  # every attempt at part 2
    with pytest.raises(S3ConnectionError) as caught:
        night.run()
    message = str(caught.value)
    assert f"uploading part 2 of s3://{night.bucket}/{night.key(BIG)}: the connection to S3 dropped" in message
    assert reset.injected == 2  # <max_attempts>2: two attempts in all, then a clear error
    assertNothingRecordedAsGood(night, s3)
    assert night.key(BIG) not in listKeys(s3, night.bucket)
    assert multipartUploads(s3, night.bucket) == [night.key(BIG)]  # kept for the next night to continue

    proxy.clear_rules()
    since = proxy.requests_total
    night.run()
    assertDayStored(night, s3, files)  # includes: no multipart upload left open
    assert sentObjects(proxy, night, since) == []  # the small files stored before the reset are not sent again
    assert partsSent(proxy, night, BIG, since) == 1  # part 1 is proven by its MD5 and kept; only part 2 goes


def keptBigUpload(night: Night, s3: Any, proxy: FaultProxy) -> dict[str, bytes]:
    """A night whose connection breaks at part 2 of the big file: the upload is kept for the next night."""
    files = withBig(smallFiles())
    night.stage(files)
    night.settings |= MULTIPART | {"max_attempts": 2, "max_concurrency": 1}
    proxy.add_rule(reset_after(256 * 1024), method="PUT", path=PART_2)
    with pytest.raises(S3ConnectionError):
        night.run()
    proxy.clear_rules()
    assert multipartUploads(s3, night.bucket) == [night.key(BIG)]
    return files


def test_an_upload_whose_parts_the_store_will_not_list_is_sent_again_whole(
    night: Night, s3: Any, proxy: FaultProxy
) -> None:
    """No s3:ListMultipartUploadParts for the credentials: the kept upload cannot be continued, so the file goes
    again whole and the night still stores the day (the old upload is aborted with the other leftovers)."""
    files = keptBigUpload(night, s3, proxy)
    listParts = keyPath(night, BIG).removesuffix(r"(\?|$)") + r"\?(.*&)?uploadId="
    denied = proxy.add_rule(status(403, "AccessDenied", "Access Denied"), method="GET", path=listParts)
    since = proxy.requests_total
    night.run()
    assertDayStored(night, s3, files)  # includes: no multipart upload left open
    assert denied.injected == 1
    assert partsSent(proxy, night, BIG, since) == 2


def test_a_night_failing_before_it_reaches_a_kept_upload_leaves_it_for_the_next(
    night: Night, s3: Any, proxy: FaultProxy
) -> None:
    files = keptBigUpload(night, s3, proxy)
    changed = os.urandom(len(files["host1/a.tar"]))
    (night.dayDir() / "host1" / "a.tar").write_bytes(changed)
    files["host1/a.tar"] = changed
    refused = proxy.add_rule(status(400, "InvalidRequest", "Refused"), method="PUT", path=keyPath(night, "host1/a.tar"))
    with pytest.raises(S3Error, match=r"host1/a\.tar"):
        night.run()  # fails at the first file; the big one, last in key order, is never reached
    assert refused.injected >= 1
    assert multipartUploads(s3, night.bucket) == [night.key(BIG)]  # still there to continue
    proxy.clear_rules()
    since = proxy.requests_total
    night.run()
    assertDayStored(night, s3, files)
    assert partsSent(proxy, night, BIG, since) == 1  # part 1 from the first night is proven and kept


def test_endpoint_dying_mid_multipart_leaves_an_upload_that_the_rerun_aborts(
    night: Night, s3: Any, proxy: FaultProxy
) -> None:
    files = withBig(smallFiles())
    night.stage(files)
    night.settings |= MULTIPART | {"max_attempts": 2, "max_concurrency": 1}
    stall = proxy.add_rule(delay(30), method="PUT", path=PART_2, nth=1)

    def kill() -> None:  # the server "dies" while part 2 is in flight: RST now, connection refused from then on
        proxy.refuse("closed")
        proxy.sever_all()

    killer = onceFired(lambda: stall.injected == 1, kill)
    with pytest.raises(S3ConnectionError, match=night.key(BIG)):
        night.run()
    killer.join()
    assert not night.indicator().exists()
    assert manifestBytes(s3, night) is None
    assert multipartUploads(s3, night.bucket) == [night.key(BIG)]  # nobody could reach S3 to abort it

    proxy.restore()
    proxy.clear_rules()
    since = proxy.requests_total
    night.run()
    assertDayStored(night, s3, files)  # includes: the upload left open is gone
    assert sentObjects(proxy, night, since) == []  # resumed where part 2 broke, nothing else sent again
    assert partsSent(proxy, night, BIG, since) == 1


# -- bytes damaged on the way in ----------------------------------------------------------------------------


def test_corrupted_put_is_caught_on_arrival_and_never_recorded(
    night: Night, s3: Any, moto: MotoServer, proxy: FaultProxy
) -> None:
    """moto keeps bytes damaged in transit even against their Content-MD5; the ETag it answers gives them away."""
    files = smallFiles()
    night.stage(files)
    key = night.key("host1/b.tar")
    flip = proxy.add_rule(corrupt_request_body(1234), method="PUT", path=keyPath(night, "host1/b.tar"), nth=1)
    with pytest.raises(S3IntegrityError, match=f"uploading s3://{night.bucket}/{key}: S3 stored other bytes"):
        night.run()
    assert flip.injected == 1
    raw = s3Client(moto.url, response_checksum_validation="when_required")  # read what is there, unchecked
    assert getBytes(raw, night.bucket, key) != files["host1/b.tar"]  # moto kept the bad bytes; the night did not
    assertNothingRecordedAsGood(night, s3)

    proxy.clear_rules()
    since = proxy.requests_total
    night.run()
    assertDayStored(night, s3, files)
    assert sentObjects(proxy, night, since) == ["host1/b.tar"]  # the damaged one again, the good ones not


def test_corrupted_part_on_a_rerun_is_caught_and_keeps_the_old_manifest(
    night: Night, s3: Any, proxy: FaultProxy
) -> None:
    files = withBig(smallFiles())
    night.stage(files)
    night.settings |= MULTIPART | {"max_concurrency": 2}
    night.run()
    oldManifest = manifestBytes(s3, night)
    night.indicator().unlink()
    night.stage({BIG: os.urandom(6 * MIB + 5)})
    flip = proxy.add_rule(corrupt_request_body(4096), method="PUT", path=PART_1, nth=1)
    with pytest.raises(
        S3IntegrityError, match=f"uploading part 1 of s3://{night.bucket}/{night.key(BIG)}: S3 stored other"
    ):
        night.run()
    assert flip.injected == 1
    assertNothingRecordedAsGood(night, s3, previousManifest=oldManifest)
    assert multipartUploads(s3, night.bucket) == []  # a damaged part is not worth resuming


# -- answers damaged on the way back ------------------------------------------------------------------------

RESPONSE_FAULTS = {
    "create-multipart-truncated": ("POST", r"\?uploads", truncate_response_body(30)),
    "create-multipart-garbled": ("POST", r"\?uploads", corrupt_response_body(0)),
    "complete-multipart-truncated": ("POST", r"\?uploadId=", truncate_response_body(30)),
    "complete-multipart-garbled": ("POST", r"\?uploadId=", corrupt_response_body(0)),
    # PutObject and UploadPart answer in headers only (ETag, checksums): cutting their empty body changes nothing
    "upload-part-truncated": ("PUT", PART_1, truncate_response_body(0)),
    "put-object-truncated": ("PUT", r"/host1/a\.tar$", truncate_response_body(0)),
}


@pytest.mark.parametrize("name", RESPONSE_FAULTS)
def test_mangled_upload_answers_end_in_correct_bytes_or_a_clean_failure(
    night: Night, s3: Any, proxy: FaultProxy, name: str
) -> None:
    """Never an indicator over bad bytes. A clean failure would keep that promise too, but today botocore retries
    every one of these (a garbled or short 200 is retried), so a failure here means that changed: worth knowing.
    A retried CreateMultipartUpload leaves the first upload open on the server; the night must abort it.
    """
    method, path, action = RESPONSE_FAULTS[name]
    files = withBig(smallFiles())
    night.stage(files)
    night.settings |= MULTIPART | {"max_attempts": 3, "max_concurrency": 2}
    rule = proxy.add_rule(action, method=method, path=path, nth=1)
    try:
        night.run()
    except OSError as error:  # acceptable only as a clean failure: a message, nothing recorded, nothing open
        assert str(error)
        assertNothingRecordedAsGood(night, s3)
        assert multipartUploads(s3, night.bucket) == []
        if RETRIES_GARBLED_ANSWERS:
            pytest.fail(f"expected botocore to retry {name} to success, got: {error}")
        return
    assert rule.injected == 1
    assertDayStored(night, s3, files)  # includes: no multipart upload left open by a retried request


# -- damage after the night ---------------------------------------------------------------------------------


def test_objects_replaced_remotely_by_same_size_bytes_are_named_by_verify(
    night: Night, s3: Any, proxy: FaultProxy
) -> None:
    files = withBig(smallFiles())
    night.stage(files)
    night.settings |= MULTIPART
    night.run()
    victims = ["host1/a.tar", "host1/b.tar", BIG]
    s3.put_object(Bucket=night.bucket, Key=night.key("host1/b.tar"), Body=os.urandom(len(files["host1/b.tar"])))
    (night.root / "impostor").write_bytes(os.urandom(len(files[BIG])))
    s3.upload_file(  # same size and same part size: the ETag even has the same "-2" form
        str(night.root / "impostor"), night.bucket, night.key(BIG), Config=TransferConfig(**_fiveMib())
    )
    s3.put_object(  # claims the original's SHA-256, which moto keeps unchecked and reports back on HEAD
        Bucket=night.bucket,
        Key=night.key("host1/a.tar"),
        Body=os.urandom(len(files["host1/a.tar"])),
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=base64.b64encode(hashlib.sha256(files["host1/a.tar"]).digest()).decode(),
    )
    expected = [night.key(victim) for victim in victims]
    manifest = manifestOf(s3, night)
    settings = LocalConfig(xmlPath=str(night.configPath)).amazons3
    assert settings is not None
    with buildStore(settings, None) as store, pytest.raises(VerificationError) as caught:
        verifyObjects(store, f"{night.suffix}/", manifest.objects)
    assert sorted(problem.split(": ")[0] for problem in caught.value.problems) == expected

    outcome = cli(night, "verify", "latest")  # the operator's command says the same
    assert outcome.code == 1
    named = sorted(line.strip().split(": ")[0] for line in outcome.stdout.splitlines() if line.startswith("  "))
    assert named == expected, outcome.stdout + outcome.stderr

    # The next night of that day does not take the impostors for stored copies: it sends exactly those again.
    night.indicator().unlink()
    since = proxy.requests_total
    night.run()
    assertDayStored(night, s3, files)
    assert sentObjects(proxy, night, since) == sorted(victims)


def _fiveMib() -> dict[str, int]:
    return {"multipart_threshold": 5 * MIB, "multipart_chunksize": 5 * MIB}


# -- a re-run of a stored day dies half-way -----------------------------------------------------------------


def test_same_day_rerun_failing_half_way_leaves_every_file_old_or_new(night: Night, s3: Any, proxy: FaultProxy) -> None:
    old = {f"host{index % 2}/f{index}.tar": os.urandom(5_000 + index) for index in range(6)}
    night.stage(old)
    night.settings |= {"max_attempts": 2, "max_concurrency": 1}
    night.run()
    oldManifest = manifestBytes(s3, night)
    oldRecords = manifestOf(s3, night).byRelative()
    night.indicator().unlink()

    new = {relative: os.urandom(len(data)) for relative, data in old.items()}  # same sizes: only content differs
    night.stage(new)
    order = sorted(new)
    third = order[2]
    broken = proxy.add_rule(
        status(500, "InternalError", "We encountered an internal error."), path=keyPath(night, third)
    )
    with pytest.raises(S3Error) as caught:
        night.run()
    assert night.key(third) in str(caught.value) and "InternalError" in str(caught.value)
    assert broken.injected == 2  # retried, then given up
    assertNothingRecordedAsGood(night, s3, previousManifest=oldManifest)

    remote = {relative: getBytes(s3, night.bucket, night.key(relative)) for relative in order}
    for relative, data in remote.items():
        assert data in (old[relative], new[relative]), relative
        assert sha256(data) in (oldRecords[relative].plaintextSha256, sha256(new[relative]))
    assert [relative for relative in order if remote[relative] == new[relative]] == order[:2]
    stillOld = [oldRecords[relative] for relative in order[2:]]
    settings = LocalConfig(xmlPath=str(night.configPath)).amazons3
    assert settings is not None
    with buildStore(settings, None) as store:  # the old copies still match the old manifest, checksum for checksum
        assert verifyObjects(store, f"{night.suffix}/", stillOld) == len(stillOld)

    proxy.clear_rules()
    since = proxy.requests_total
    night.run()
    assertDayStored(night, s3, new)
    assert sentObjects(proxy, night, since) == order[2:]  # the two already new are not sent again
    keys = listKeys(s3, night.bucket)
    assert night.key(INCOMPLETE_MARKER) not in keys and night.key(MANIFEST_NAME) in keys
