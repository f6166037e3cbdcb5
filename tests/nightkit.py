"""Test helpers: a local S3 endpoint, a staged day on disk, and a real cback3.conf around them."""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from CedarBackup3.cli import Options
from CedarBackup3.config import Config

from versions import clientConfig

REGION = "us-east-1"
MOTO_PYTHON = os.environ.get("CEDAR_S3_MOTO_PYTHON") or sys.executable


def freePort() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MotoServer:
    """A real S3 endpoint over HTTP on 127.0.0.1 (moto's server mode) in a child process.

    ``CEDAR_S3_MOTO_PYTHON`` names the interpreter that runs moto (default: this one), so the client libraries
    under test can be older than the ones moto itself needs (``tox -e oldest``).
    """

    port: int = field(default_factory=freePort)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        self.process = subprocess.Popen(
            [MOTO_PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=1).read()  # noqa: S310 - loopback only
                return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("moto_server exited during start-up") from None
                time.sleep(0.1)
        raise RuntimeError("moto_server did not answer within 30 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def reset(self) -> None:
        """Forget every bucket (moto's own API), so tests stay independent and memory stays flat."""
        request = urllib.request.Request(self.url + "/moto-api/reset", method="POST")  # noqa: S310 - loopback only
        urllib.request.urlopen(request, timeout=10).read()  # noqa: S310 - loopback only


def s3Client(endpoint: str, **config: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=clientConfig(**config) if config else None,
    )


def newBucketName() -> str:
    return f"cedar-{uuid.uuid4().hex[:16]}"


def dateSuffix(day: datetime.date) -> str:
    return day.strftime("%Y/%m/%d")


def _element(name: str, value: Any) -> str:
    if isinstance(value, list):
        return "".join(_element(name, item) for item in value)
    if isinstance(value, bool):
        value = "Y" if value else "N"
    return f"<{name}>{value}</{name}>"


@dataclass
class Night:
    """A staging tree, working dir and cback3.conf in a temp dir, with the extension's settings.

    ``day`` is the day the night stages and stores: today as of the test's start, not of the session's (a suite
    that runs past midnight must not look for yesterday's keys). Keys and paths of the day come from it.
    """

    root: Path
    bucket: str
    endpoint: str
    settings: dict[str, Any] = field(default_factory=dict)
    backupUser: str = "root"
    backupGroup: str = "root"
    startingDay: str = "monday"
    day: datetime.date = field(default_factory=datetime.date.today)

    def __post_init__(self) -> None:
        for name in ("stage", "work", "collect", "data"):
            (self.root / name).mkdir(parents=True, exist_ok=True)

    @property
    def stageRoot(self) -> Path:
        return self.root / "stage"

    @property
    def workDir(self) -> Path:
        return self.root / "work"

    @property
    def configPath(self) -> Path:
        return self.root / "cback3.conf"

    @property
    def suffix(self) -> str:
        """The day's date suffix, ``YYYY/MM/DD``: its staging dir below the staging root, its keys' first part."""
        return dateSuffix(self.day)

    def key(self, relative: str) -> str:
        """The key of a staged file of the day (below ``<s3_bucket>``'s prefix, if any)."""
        return f"{self.suffix}/{relative}"

    def ago(self, days: int) -> datetime.date:
        """The day ``days`` before the night's."""
        return self.day - datetime.timedelta(days=days)

    def dayDir(self, day: datetime.date | None = None) -> Path:
        return self.stageRoot / dateSuffix(day or self.day)

    def stage(self, files: dict[str, bytes], day: datetime.date | None = None, peers: tuple[str, ...] = ()) -> Path:
        """Lay out a staged day as ``stage`` leaves it: cback.stage at the top, cback.collect in each peer dir."""
        directory = self.dayDir(day)
        directory.mkdir(parents=True, exist_ok=True)
        for relative, data in files.items():
            path = directory / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        for peer in peers or sorted({relative.split("/")[0] for relative in files if "/" in relative}):
            (directory / peer / "cback.collect").touch()
        (directory / "cback.stage").touch()
        return directory

    def amazons3Xml(self) -> str:
        settings = {"s3_bucket": self.bucket, "endpoint_url": self.endpoint, "region": REGION} | self.settings
        body = "".join(_element(name, value) for name, value in settings.items() if value is not None)
        return f"<amazons3>{body}</amazons3>"

    def writeConfig(self, extra: str = "") -> Path:
        self.configPath.write_text(
            f"""<?xml version="1.0"?>
<cb_config>
  <reference><author>tests</author><revision>1</revision><description>cedar-s3 tests</description></reference>
  <extensions>
    <action><name>amazons3</name><module>cedar_s3.amazons3</module><function>executeAction</function>
      <index>201</index></action>
  </extensions>
  <options>
    <starting_day>{self.startingDay}</starting_day>
    <working_dir>{self.workDir}</working_dir>
    <backup_user>{self.backupUser}</backup_user>
    <backup_group>{self.backupGroup}</backup_group>
    <rcp_command>/usr/bin/scp -B</rcp_command>
  </options>
  <collect>
    <collect_dir>{self.root / "collect"}</collect_dir>
    <collect_mode>daily</collect_mode>
    <archive_mode>targz</archive_mode>
    <ignore_file>.cbignore</ignore_file>
    <dir><abs_path>{self.root / "data"}</abs_path></dir>
  </collect>
  <stage>
    <staging_dir>{self.stageRoot}</staging_dir>
    <peer><name>localhost</name><type>local</type><collect_dir>{self.root / "collect"}</collect_dir></peer>
  </stage>
  {self.amazons3Xml()}
  {extra}
</cb_config>
"""
        )
        return self.configPath

    def run(self, *, full: bool = True) -> None:
        """``executeAction`` exactly as cback3 calls it."""
        from cedar_s3.amazons3 import executeAction

        self.writeConfig()
        config = Config(xmlPath=str(self.configPath), validate=False)
        options = Options(argumentList=["--full", "amazons3"] if full else ["amazons3"])
        executeAction(str(self.configPath), options, config)

    def indicator(self, day: datetime.date | None = None) -> Path:
        return self.dayDir(day) / "cback.amazons3"


def listKeys(client: Any, bucket: str, prefix: str = "") -> dict[str, int]:
    keys: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys |= {entry["Key"]: entry["Size"] for entry in page.get("Contents", [])}
    return keys


def getBytes(client: Any, bucket: str, key: str) -> bytes:
    return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# -- what the night does in this process, seen where it happens -----------------------------------------------

_AUDIT_WATCHERS: list[tuple[str, Callable[[tuple[Any, ...]], None]]] = []
_IN_AUDIT_HOOK = threading.local()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _AUDIT_WATCHERS or getattr(_IN_AUDIT_HOOK, "active", False):
        return
    _IN_AUDIT_HOOK.active = True  # a watcher's own os calls raise events too: never watch those
    try:
        for name, callback in list(_AUDIT_WATCHERS):
            if name == event:
                callback(args)
    finally:
        _IN_AUDIT_HOOK.active = False


sys.addaudithook(_audit)  # once, for the session: an audit hook cannot be removed, so it acts only when asked


@contextlib.contextmanager
def watchAudit(event: str, callback: Callable[[tuple[Any, ...]], None]) -> Iterator[None]:
    """Call ``callback(args)`` for each Python audit event ``event`` (``open``, ``socket.connect`` ...) raised in
    this process while the block runs: in the thread doing it, before it is done, so none is missed.

    The night (``Night.run``) runs in this process, so this sees what it does with no stand-in in its way. An
    exception in ``callback`` would abort the audited call in the product, so it is kept and raised afterwards.
    """
    errors: list[BaseException] = []

    def guarded(args: tuple[Any, ...]) -> None:
        try:
            callback(args)
        except Exception as error:
            errors.append(error)

    entry = (event, guarded)
    _AUDIT_WATCHERS.append(entry)
    try:
        yield
    finally:
        _AUDIT_WATCHERS.remove(entry)
    if errors:
        raise AssertionError(f"watching {event} failed: {errors[0]!r}") from errors[0]
