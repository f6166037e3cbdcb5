"""``cback3-s3-sync``'s command line as upstream's tool defines it: switches, log file, exit codes, configuration
from the environment and the AWS config files alone; and the newer long options."""

from __future__ import annotations

import grp
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faultproxy import FaultProxy, delay
from nightkit import MotoServer
from synckit import deleteRequests, makeTree, objects, putKeys, run, script, syncArgs

FILES = {"a.txt": b"alpha\n", "sub/b.txt": b"bravo\n"}
UPSTREAM_SWITCHES = [
    ("-h", "--help"),
    ("-V", "--version"),
    ("-b", "--verbose"),
    ("-q", "--quiet"),
    ("-l", "--logfile"),
    ("-o", "--owner"),
    ("-m", "--mode"),
    ("-O", "--output"),
    ("-d", "--debug"),
    ("-s", "--stack"),
    ("-D", "--diagnostics"),
    ("-v", "--verifyOnly"),
    ("-u", "--uploadOnly"),
    ("-w", "--ignoreWarnings"),
]
NEWER = ["--endpoint-url", "--region", "--profile", "--checksum-calculation", "--dry-run", "--jobs", "--json"]


@pytest.fixture
def wire(moto: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", moto.port) as proxy:
        yield proxy
    assert proxy.errors == []


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return makeTree(tmp_path / "src", FILES)


def test_help_is_a_manual_page_with_every_switch(tmp_path: Path) -> None:
    outcome = run("--help", "-l", tmp_path / "never.log")
    assert outcome.code == 0
    for short, long in UPSTREAM_SWITCHES:
        assert f"{short}, {long}" in outcome.stdout
    for option in [*NEWER, "--checksum", "--max-delete"]:
        assert option in outcome.stdout
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "ARGUMENTS", "SWITCHES", "ENVIRONMENT", "EXIT STATUS"):
        assert f"\n{section}\n" in f"\n{outcome.stdout}"
    assert not (tmp_path / "never.log").exists()  # like upstream: -h, -V and -D return before logging


@pytest.mark.parametrize("switch", ["-V", "--version", "-D", "--diagnostics"])
def test_version_and_diagnostics_print_and_exit_0(tmp_path: Path, switch: str) -> None:
    outcome = run(switch, "-l", tmp_path / "never.log")
    assert outcome.code == 0
    assert outcome.stdout.strip()
    assert not (tmp_path / "never.log").exists()


@pytest.mark.parametrize(
    "arguments",
    [
        [],
        ["SRC"],
        ["SRC", "s3://cedar-bucket/p", "extra"],
        ["--bogus", "SRC", "s3://cedar-bucket/p"],
        ["-m", "9z", "SRC", "s3://cedar-bucket/p"],
        ["-o", "rootonly", "SRC", "s3://cedar-bucket/p"],
        ["SRC", "cedar-bucket/no-scheme"],
        ["SRC", "s3://Not_A..Bucket/p"],
        ["--max-delete", "lots", "SRC", "s3://cedar-bucket/p"],
        ["--jobs", "0", "SRC", "s3://cedar-bucket/p"],
        ["--checksum-calculation", "sometimes", "SRC", "s3://cedar-bucket/p"],
        ["--endpoint-url", "ftp://127.0.0.1", "SRC", "s3://cedar-bucket/p"],
    ],
)
def test_bad_arguments_exit_2_before_anything_happens(tmp_path: Path, source: Path, arguments: list[str]) -> None:
    log = tmp_path / "sync.log"
    outcome = run("-l", log, *[str(source) if argument == "SRC" else argument for argument in arguments])
    assert outcome.code == 2
    assert outcome.stderr.strip()
    assert not log.exists()


def test_a_log_file_that_cannot_be_set_up_exits_3(tmp_path: Path, source: Path, endpoint: str, bucket: str) -> None:
    outcome = run("-l", tmp_path / "no-such-dir" / "sync.log", "--endpoint-url", endpoint, source, f"s3://{bucket}")
    assert outcome.code == 3


def test_a_new_log_file_gets_mode_and_owner_an_existing_one_keeps_its_own(
    tmp_path: Path, source: Path, endpoint: str, bucket: str
) -> None:
    created = tmp_path / "created.log"
    outcome = run(
        "-l", created, "-m", "600", "-o", "nobody:nogroup", "--endpoint-url", endpoint, source, f"s3://{bucket}"
    )
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    info = created.stat()
    assert info.st_mode & 0o777 == 0o600
    if os.geteuid() == 0:
        assert (info.st_uid, info.st_gid) == (pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)
    default = tmp_path / "default.log"
    assert run("-l", default, "--endpoint-url", endpoint, source, f"s3://{bucket}").code == 0
    assert default.stat().st_mode & 0o777 == 0o640  # upstream's DEFAULT_MODE
    existing = tmp_path / "existing.log"
    existing.write_text("")
    existing.chmod(0o644)
    assert run("--logfile", existing, "--mode", "600", "--endpoint-url", endpoint, source, f"s3://{bucket}").code == 0
    assert existing.stat().st_mode & 0o777 == 0o644
    assert existing.stat().st_size > 0


def test_a_missing_sourceDir_exits_6_and_with_stack_shows_the_traceback(
    tmp_path: Path, endpoint: str, bucket: str
) -> None:
    missing = tmp_path / "not-there"
    assert run(*syncArgs(tmp_path / "sync.log", endpoint, missing, f"s3://{bucket}")).code == 6
    stacked = run(*syncArgs(tmp_path / "sync.log", endpoint, "-s", missing, f"s3://{bucket}"))
    assert stacked.code == 1  # an uncaught exception, as upstream's -s
    assert "Traceback" in stacked.stderr


def test_long_forms_their_unique_prefixes_and_switches_after_the_arguments(
    tmp_path: Path, source: Path, endpoint: str, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="p/kept.txt", Body=b"upload only")
    outcome = run(f"--logfile={tmp_path / 'sync.log'}", "--endpoint", endpoint, source, f"s3://{bucket}/p", "--upload")
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    assert objects(s3, bucket) == {"p/kept.txt": b"upload only"} | {f"p/{key}": data for key, data in FILES.items()}


def test_it_works_from_the_environment_alone(tmp_path: Path, source: Path, endpoint: str, s3: Any, bucket: str) -> None:
    outcome = run("-l", tmp_path / "sync.log", source, f"s3://{bucket}/env", env={"AWS_ENDPOINT_URL": endpoint})
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    assert objects(s3, bucket) == {f"env/{key}": data for key, data in FILES.items()}


def test_it_works_from_an_aws_config_profile_alone(
    tmp_path: Path, source: Path, endpoint: str, s3: Any, bucket: str
) -> None:
    config = tmp_path / "aws-config"
    config.write_text(f"[profile backup]\nregion = us-east-1\nendpoint_url = {endpoint}\n")
    credentials = tmp_path / "aws-credentials"
    credentials.write_text("[backup]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    environment = {"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(credentials)}
    outcome = run("-l", tmp_path / "sync.log", "--profile", "backup", source, f"s3://{bucket}/prof", env=environment)
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    assert objects(s3, bucket) == {f"prof/{key}": data for key, data in FILES.items()}
    unknown = run("-l", tmp_path / "sync.log", "--profile", "nobody", source, f"s3://{bucket}/prof", env=environment)
    assert unknown.code == 6


def test_checksum_calculation_chooses_what_proves_each_upload(
    tmp_path: Path, source: Path, wire: FaultProxy, bucket: str
) -> None:
    log = tmp_path / "sync.log"
    assert run(*syncArgs(log, wire.url, source, f"s3://{bucket}/md5")).code == 0
    puts = [record for record in wire.records if record.method == "PUT"]
    assert puts and all("content-md5" in r.headers and "x-amz-checksum-sha256" not in r.headers for r in puts)
    since = len(wire.records)
    flexible = run(*syncArgs(log, wire.url, "--checksum-calculation", "when_supported", source, f"s3://{bucket}/sha"))
    assert flexible.code == 0, flexible.stdout + flexible.stderr
    puts = [record for record in wire.records[since:] if record.method == "PUT"]
    assert len(puts) == len(FILES)
    assert all("x-amz-checksum-sha256" in record.headers for record in puts)


def test_an_interrupt_exits_5_and_deletes_nothing(
    tmp_path: Path, source: Path, wire: FaultProxy, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="p/a.txt", Body=b"old")
    s3.put_object(Bucket=bucket, Key="p/gone.txt", Body=b"no file")
    wire.add_rule(delay(60), method="PUT", nth=1)
    process = subprocess.Popen(
        [script(), *syncArgs(tmp_path / "sync.log", wire.url, source, f"s3://{bucket}/p")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not putKeys(wire, bucket) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert putKeys(wire, bucket), "the sync never started an upload"
        process.send_signal(signal.SIGINT)
        wire.sever_all()  # the held request fails now, so the file being sent ends
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 5
    assert deleteRequests(wire) == []
    assert objects(s3, bucket)["p/gone.txt"] == b"no file"
