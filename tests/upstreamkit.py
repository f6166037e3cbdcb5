"""Days stored by upstream's real ``CedarBackup3.extend.amazons3``, for the tests of what users migrate from.

``upstreamNight`` runs the real ``cback3 --full collect stage`` and then ``cback3 --full amazons3`` as root, with
``<module>CedarBackup3.extend.amazons3</module>``: real collect and stage, then upstream's own
``su <backup_user> -c "aws s3 rm/cp/s3api ..."`` (and, with ``<encrypt>``, its ``su <backup_user> -c "<encrypt
command>"`` per file) against moto on 127.0.0.1. Nothing in the bucket is imitated.

- Upstream's ``<encrypt>`` mode dies (FileNotFoundError) on a staged day where ``os.listdir`` lists an empty file
  of a peer dir (``cback.collect`` is always one) before that dir's first non-empty file; on ext4 that listing is
  in hash order, so it hits about every other real night. The staging is therefore checked between the two
  cback3 runs (``encryptSurvives``) and, when upstream would crash, made again in a fresh tree: the days yielded
  are the ones a user whose night worked has. ``survivable=False`` runs the crash on purpose.
- The backup user (``cedarupst``) is a real unprivileged user; its ``~/.aws/config`` and ``credentials`` hold the
  endpoint and keys, as upstream users keep them. The AWS CLI v1 lives in a venv built from /usr/bin/python3 under
  /var/cache (``.ci/install-awscli.sh``), readable by that user; ``$CEDAR_S3_AWSCLI`` may point elsewhere.
- The AWS CLI never reaches the internet: ``AWS_ENDPOINT_URL`` is set as well, and HTTP(S)_PROXY point at a
  127.0.0.1 port that refuses connections, with NO_PROXY=127.0.0.1,localhost, so a client that ignored the
  endpoint would fail at once instead of calling AWS. Before the first night, a probe checks that this CLI, as
  the backup user, honours ``endpoint_url`` from ``~/.aws/config`` alone.
- Every tree lives under /var/tmp (the backup user must read it; pytest's own tmp dirs are root-only).
- Each day goes under its own ``<s3_bucket>`` prefix of one bucket (``BUCKET/plain``, ``BUCKET/symmetric``, ...):
  the nights all run today, and upstream clears ``s3://<s3_bucket>/YYYY/MM/DD/`` before each upload.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import gpgkit
from endpoints.base import unavailable
from nightkit import MotoServer, s3Client

UPSTREAM_USER = "cedarupst"
AWSCLI_DEFAULT = Path("/var/cache/cedar-s3-ci/awscli-venv/bin/aws")
GPG = "/usr/bin/gpg"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NIGHT_TIMEOUT = 600
PROBE_TIMEOUT = 120
UPSTREAM_MODULE = "CedarBackup3.extend.amazons3"

# What the nights collect and stage. The data dir becomes one tarball by the real collect action; the "extras"
# land in the peer's collect dir (where other extensions, mysql or postgresql, write their dumps), so the real
# stage action copies them next to the tarball. One is empty, to see what upstream stores for empty files.
DATA_FILES: dict[str, bytes] = {
    "etc/app.conf": b"[app]\nname = cedar\n",
    "home/notes.txt": b"upstream wrote these days\n" * 40,
    "home/blob.bin": bytes(range(256)) * 300,
}
EXTRA_FILES: dict[str, bytes] = {
    "mysqldump-app.sql": b"-- MySQL dump\nCREATE TABLE t (id int);\n" * 20,
    "random.bin": os.urandom(70_000),
    "empty.log": b"",
}


def findAwsCli() -> tuple[Path | None, str]:
    """The AWS CLI to hand upstream, or None and why there is none."""
    configured = os.environ.get("CEDAR_S3_AWSCLI")
    aws = Path(configured) if configured else AWSCLI_DEFAULT
    where = f"$CEDAR_S3_AWSCLI={configured}" if configured else str(AWSCLI_DEFAULT)
    if not (aws.is_file() and os.access(aws, os.X_OK)):
        return None, f"the AWS CLI is not installed at {where} (run .ci/install-awscli.sh, or set $CEDAR_S3_AWSCLI)"
    return aws, ""


def cback3Command() -> Path:
    """The ``cback3`` console script of the Python running the tests (upstream's own entry point)."""
    script = Path(sys.executable).with_name("cback3")
    return script if script.exists() else Path(shutil.which("cback3") or "cback3")


def ensureUser(name: str = UPSTREAM_USER) -> pwd.struct_passwd:
    """The real unprivileged backup user upstream su's to, created once as a system user with a home."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    subprocess.run(
        ["useradd", "--system", "--user-group", "--create-home", "--shell", "/bin/sh", name],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return pwd.getpwnam(name)


def chownTo(user: pwd.struct_passwd, *paths: Path) -> None:
    for path in paths:
        os.chown(path, user.pw_uid, user.pw_gid)


@contextlib.contextmanager
def deadProxy() -> Iterator[str]:
    """A 127.0.0.1 port held bound but never listening: every connection to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def childEnvironment(proxy: str, endpoint: str | None) -> dict[str, str]:
    """A clean environment for cback3 and, through ``su`` (which keeps it), for the AWS CLI and gpg."""
    env = {"PATH": f"{cback3Command().parent}:{CLEAN_PATH}", "HOME": "/root", "LANG": "C.UTF-8"}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[name] = proxy
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    if endpoint is not None:
        env["AWS_ENDPOINT_URL"] = endpoint
    return env


def asUser(user: pwd.struct_passwd, command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``su USER -c COMMAND`` exactly as upstream runs its commands (non-login su, environment kept)."""
    return subprocess.run(
        ["su", user.pw_name, "-c", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def awsSettings(user: pwd.struct_passwd, endpoint: str) -> Iterator[Path]:
    """The backup user's ``~/.aws/config`` (with ``endpoint_url``) and ``credentials``; removed afterwards."""
    aws = Path(user.pw_dir) / ".aws"
    shutil.rmtree(aws, ignore_errors=True)
    aws.mkdir(mode=0o700)
    (aws / "config").write_text(f"[default]\nregion = us-east-1\nendpoint_url = {endpoint}\n")
    (aws / "credentials").write_text("[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    for path in (aws / "config", aws / "credentials"):
        path.chmod(0o600)
    chownTo(user, aws, aws / "config", aws / "credentials")
    try:
        yield aws
    finally:
        shutil.rmtree(aws, ignore_errors=True)


def awsCliVersion(aws: Path, user: pwd.struct_passwd) -> str:
    with deadProxy() as proxy:
        done = asUser(user, f"{shlex.quote(str(aws))} --version", childEnvironment(proxy, None))
    if done.returncode != 0:
        raise RuntimeError(f"{aws} --version failed as {user.pw_name}: {(done.stdout + done.stderr).strip()}")
    return (done.stdout + done.stderr).strip()


def checkEndpointHonoured(aws: Path, user: pwd.struct_passwd, endpoint: str) -> None:
    """As the backup user, with only ``~/.aws/config`` naming the endpoint, the CLI sees a bucket made in moto."""
    probe = f"upst-probe-{uuid.uuid4().hex[:12]}"
    client = s3Client(endpoint)
    client.create_bucket(Bucket=probe)
    try:
        with deadProxy() as proxy:
            command = f"{shlex.quote(str(aws))} s3api list-buckets --query 'Buckets[].Name' --output text"
            done = asUser(user, command, childEnvironment(proxy, None))
        if done.returncode != 0 or probe not in done.stdout.split():
            raise RuntimeError(
                f"{aws} as {user.pw_name} does not reach {endpoint} through ~/.aws/config endpoint_url "
                f"(needs AWS CLI >= 1.29): [{done.returncode}] {(done.stdout + done.stderr).strip()[-600:]}"
            )
    finally:
        client.delete_bucket(Bucket=probe)


def killAgentAs(user: pwd.struct_passwd, home: Path) -> None:
    """Stop the gpg-agent that the backup user's gpg started for ``home`` (as that user: its socket, its agent)."""
    with deadProxy() as proxy:
        asUser(user, f"gpgconf --homedir {shlex.quote(str(home))} --kill all", childEnvironment(proxy, None))


@dataclass
class UpstreamDay:
    """One day as upstream stored it, and the plaintext it was made from."""

    mode: str  # "plain" | "symmetric" | "publickey" | ...
    day: datetime.date  # the day the night ran (today when it started)
    s3Bucket: str  # the <s3_bucket> upstream was given: "BUCKET/MODE"
    prefix: str  # key prefix of the day in the bucket: "MODE/YYYY/MM/DD/"
    stagingDir: Path  # the staged day upstream read (kept, with its cback.* indicators, until teardown)
    files: dict[str, bytes]  # path relative to the staging dir -> staged plaintext, every non-cback.* file
    indicators: list[str]  # the cback.* files in the staged day, relative to it, after the night
    encrypt: str | None  # upstream's <encrypt> command, None for a plain day
    log: Path  # cback3's own log of the night
    restaged: int = 0  # stagings thrown away first because upstream's encrypt would have crashed on them

    def key(self, relative: str) -> str:
        return self.prefix + relative


class UpstreamNightError(RuntimeError):
    """cback3 exited non-zero; ``root`` is the night's tree (left in place for the caller to look at)."""

    def __init__(self, message: str, returncode: int, root: Path) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.root = root


def upstreamConfig(
    root: Path,
    s3Bucket: str,
    user: pwd.struct_passwd,
    aws: Path,
    encrypt: str | None,
    module: str,
    peers: list[str],
) -> Path:
    """A cback3.conf as an upstream user has it: collect, stage, and the amazons3 action on upstream's module."""
    encryptXml = f"<encrypt>{_xmlText(encrypt)}</encrypt>" if encrypt else ""
    peerXml = "".join(
        f"<peer><name>{name}</name><type>local</type><collect_dir>{root / 'peers' / name}</collect_dir></peer>"
        for name in peers
    )
    config = root / "cback3.conf"
    config.write_text(
        f"""<?xml version="1.0"?>
<cb_config>
  <reference><author>tests</author><revision>1</revision><description>upstream night</description></reference>
  <extensions>
    <action><name>amazons3</name><module>{module}</module><function>executeAction</function>
      <index>201</index></action>
  </extensions>
  <options>
    <starting_day>monday</starting_day>
    <working_dir>{root / "work"}</working_dir>
    <backup_user>{user.pw_name}</backup_user>
    <backup_group>{user.pw_name}</backup_group>
    <rcp_command>/usr/bin/scp -B</rcp_command>
    <override><command>aws</command><abs_path>{aws}</abs_path></override>
  </options>
  <collect>
    <collect_dir>{root / "collect"}</collect_dir>
    <collect_mode>daily</collect_mode>
    <archive_mode>targz</archive_mode>
    <ignore_file>.cbignore</ignore_file>
    <dir><abs_path>{root / "data"}</abs_path></dir>
  </collect>
  <stage>
    <staging_dir>{root / "stage"}</staging_dir>
    <peer><name>localhost</name><type>local</type><collect_dir>{root / "collect"}</collect_dir></peer>
    {peerXml}
  </stage>
  <amazons3>
    <warn_midnite>Y</warn_midnite>
    <s3_bucket>{s3Bucket}</s3_bucket>
    {encryptXml}
  </amazons3>
</cb_config>
"""
    )
    return config


def _xmlText(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def runCback3(root: Path, *actions: str, endpoint: str) -> None:
    """The real ``cback3 --full ACTIONS`` as root on ``root/cback3.conf``; raises UpstreamNightError with its log."""
    log = root / "cback3.log"
    with deadProxy() as proxy:
        command = [str(cback3Command()), "--config", str(root / "cback3.conf"), "--full", "--stack"]
        done = subprocess.run(
            [*command, "--logfile", str(log), *actions],
            env=childEnvironment(proxy, endpoint),
            capture_output=True,
            text=True,
            timeout=NIGHT_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    if done.returncode != 0:
        text = log.read_text(errors="replace") if log.exists() else "(no log)"
        message = (
            f"cback3 {' '.join(actions)} failed [{done.returncode}] in {root}:\n{done.stdout}{done.stderr}\n{text}"
        )
        raise UpstreamNightError(message, done.returncode, root)


def encryptSurvives(stagingDir: Path) -> bool:
    """Whether upstream's ``_encryptStagingDir`` gets through this staged day.

    It walks the day in ``FilesystemList`` order (``os.listdir`` order, which on ext4 is hash order) and creates
    an empty file's copy with ``open(path, "a")`` without creating its directory: that directory exists only once
    a non-empty file of it (or below it) was encrypted. An empty file met before that (every peer dir holds an
    empty ``cback.collect``) makes the night die with FileNotFoundError, after it cleared the day in S3.
    """
    from CedarBackup3.filesystem import FilesystemList

    files = FilesystemList()
    files.addDirContents(str(stagingDir))
    made = {stagingDir}
    for entry in map(Path, files):
        if not entry.is_file():
            continue
        if entry.stat().st_size > 0:
            made.update(entry.parents)
        elif entry.parent not in made:
            return False
    return True


def upstreamNight(
    parent: Path,
    *,
    s3Bucket: str,
    endpoint: str,
    aws: Path,
    user: pwd.struct_passwd,
    mode: str = "plain",
    encrypt: str | None = None,
    data: dict[str, bytes] | None = None,
    extras: dict[str, bytes] | None = None,
    peers: dict[str, dict[str, bytes]] | None = None,
    module: str = UPSTREAM_MODULE,
    survivable: bool = True,
    attempts: int = 16,
) -> UpstreamDay:
    """Run the real cback3 as root, upstream's module storing today's staged day into ``s3Bucket``.

    A fresh tree under ``parent`` (which the backup user must be able to traverse) gets ``data`` to collect,
    ``extras`` in the local peer's collect dir and further local ``peers`` (each a collect dir with those files and
    a ``cback.collect``). Then ``cback3 --full collect stage`` and ``cback3 --full amazons3``: two runs of the
    real command, as a master running its actions from separate cron lines would. With ``encrypt`` and
    ``survivable``, a staging that upstream's encrypt step would crash on (see ``encryptSurvives``) is thrown away
    and made again in a fresh tree (new paths, so a new listing order) up to ``attempts`` times.
    The backup user's ``~/.aws`` must already name ``endpoint`` (see ``awsSettings``).
    """
    for attempt in range(attempts):
        root = Path(tempfile.mkdtemp(prefix=f"{mode}-", dir=parent))
        root.chmod(0o755)
        for name in ("data", "collect", "stage", "work"):
            (root / name).mkdir()
        chownTo(user, root / "work")
        for relative, content in (DATA_FILES if data is None else data).items():
            path = root / "data" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        for relative, content in (EXTRA_FILES if extras is None else extras).items():
            (root / "collect" / relative).write_bytes(content)
        for name, contents in (peers or {}).items():
            collectDir = root / "peers" / name
            collectDir.mkdir(parents=True)
            for relative, content in contents.items():
                (collectDir / relative).write_bytes(content)
            (collectDir / "cback.collect").touch()  # what that peer's own collect run leaves
        upstreamConfig(root, s3Bucket, user, aws, encrypt, module, list(peers or {}))
        day = datetime.date.today()
        runCback3(root, "collect", "stage", endpoint=endpoint)
        stagingDir = stagedDir(root)
        if encrypt and survivable and not encryptSurvives(stagingDir) and attempt + 1 < attempts:
            shutil.rmtree(root)
            continue
        runCback3(root, "amazons3", endpoint=endpoint)
        return stagedDay(root, day, stagingDir, mode, s3Bucket, encrypt, attempt)
    raise AssertionError("unreachable")


def stagedDir(root: Path) -> Path:
    """The staging dir the real stage action made in the tree ``root`` (``stage/YYYY/MM/DD``, with cback.stage)."""
    made = [marker.parent for marker in (root / "stage").glob("*/*/*/cback.stage")]
    assert len(made) == 1, f"stage made {len(made)} staging dirs in {root}: {made}"
    return made[0]


def stagedDay(
    root: Path, day: datetime.date, stagingDir: Path, mode: str, s3Bucket: str, encrypt: str | None, restaged: int
) -> UpstreamDay:
    staged = sorted(path for path in stagingDir.rglob("*") if path.is_file())
    files = {str(p.relative_to(stagingDir)): p.read_bytes() for p in staged if not p.name.startswith("cback.")}
    indicators = [str(p.relative_to(stagingDir)) for p in staged if p.name.startswith("cback.")]
    prefix = f"{s3Bucket.split('/', 1)[1]}/" if "/" in s3Bucket else ""
    suffix = stagingDir.relative_to(root / "stage")
    return UpstreamDay(
        mode, day, s3Bucket, f"{prefix}{suffix}/", stagingDir, files, indicators, encrypt, root / "cback3.log", restaged
    )


@dataclass
class UpstreamDays:
    """One bucket in the session's moto holding days stored by upstream, and what they were made from."""

    bucket: str
    endpoint: str
    awsVersion: str  # `aws --version` of the CLI upstream ran
    passphraseFile: Path  # the symmetric day's passphrase (root's copy)
    gnupgHome: Path  # GnuPG home with the public-key day's secret key (the administrator's, not the server's)
    fingerprint: str  # the public-key day's recipient
    # what it takes to run one more upstream night in the same setting (see upstreamNight)
    tree: Path  # under /var/tmp, removed at the end of the session
    user: pwd.struct_passwd  # the backup user, its ~/.aws naming ``endpoint`` while the fixture lasts
    aws: Path
    commands: dict[str, str | None]  # mode -> the <encrypt> command its night used
    days: dict[str, UpstreamDay] = field(default_factory=dict)

    def client(self) -> Any:
        return s3Client(self.endpoint)

    def night(self, mode: str, prefix: str, **settings: Any) -> UpstreamDay:
        """One more upstream night with ``mode``'s <encrypt> command into ``BUCKET/prefix``."""
        return upstreamNight(
            self.tree,
            s3Bucket=f"{self.bucket}/{prefix}",
            endpoint=self.endpoint,
            aws=self.aws,
            user=self.user,
            mode=mode,
            encrypt=self.commands[mode],
            **settings,
        )


def symmetricCommand(home: Path, passphraseFile: Path) -> str:
    """Upstream's documented symmetric command, spelled for GnuPG 2.2 (``--no-use-agent`` is obsolete there)."""
    return (
        f"{GPG} --homedir {home} -c --batch --yes --pinentry-mode loopback --passphrase-file {passphraseFile} "
        "--cipher-algo AES256 -o ${output} ${input}"
    )


def publicKeyCommand(home: Path, fingerprint: str) -> str:
    """Upstream's <encrypt> for a public key: the backup user's GnuPG home holds only the recipient's public key."""
    head = f"{GPG} --homedir {home} --encrypt --batch --yes --trust-model always -r {fingerprint}"
    return head + " -o ${output} ${input}"


def upstreamPrerequisites() -> tuple[Path | None, str]:
    """The AWS CLI, or why upstream's nights cannot run here (not root, no cback3, no AWS CLI, no gpg)."""
    if os.geteuid() != 0:
        return None, "upstream's amazons3 action must run as root (it su's to the backup user)"
    if not cback3Command().exists():
        return None, f"cback3 is not installed next to {sys.executable}"
    if not Path(GPG).exists():
        return None, f"{GPG} is missing"
    return findAwsCli()


@pytest.fixture(scope="session")
def upstreamDays(moto: MotoServer) -> Iterator[UpstreamDays]:
    """Three days stored by upstream's real extension, each under its own prefix of one bucket in moto:
    ``plain`` (no encryption), ``symmetric`` (``gpg -c`` with a passphrase file), ``publickey`` (``gpg -e -r``)."""
    aws, reason = upstreamPrerequisites()
    if aws is None:
        unavailable("upstream", reason)
    user = ensureUser()
    tree = Path(tempfile.mkdtemp(prefix="cedar-s3-upstream-", dir="/var/tmp"))
    tree.chmod(0o755)
    serverHome = tree / "server-gnupg"  # the backup user's GnuPG home: public key only
    try:
        with (
            awsSettings(user, moto.url),
            gpgkit.throwawayKey(tree / "admin", "upstream day <day@cedar-s3.invalid>") as key,
        ):
            awsVersion = awsCliVersion(aws, user)
            checkEndpointHonoured(aws, user, moto.url)
            bucket = f"cedar-upst-{uuid.uuid4().hex[:12]}"
            s3Client(moto.url).create_bucket(Bucket=bucket)
            gpgkit.newHome(serverHome)
            gpgkit.exportPublicKey(key.home, key.fingerprint, serverHome)
            secret = tree / "passphrase"  # the backup user's, as upstream users keep it
            secret.touch(mode=0o600)
            secret.write_text(gpgkit.PASSPHRASE + "\n")
            chownTo(user, secret, serverHome, *serverHome.rglob("*"))
            rootCopy = tree / "admin" / "passphrase"
            rootCopy.touch(mode=0o600)
            shutil.copyfile(secret, rootCopy)
            commands = {
                "plain": None,
                "symmetric": symmetricCommand(serverHome, secret),
                "publickey": publicKeyCommand(serverHome, key.fingerprint),
            }
            days = UpstreamDays(
                bucket, moto.url, awsVersion, rootCopy, key.home, key.fingerprint, tree, user, aws, commands
            )
            try:
                for mode in commands:
                    days.days[mode] = days.night(mode, mode)
                yield days
            finally:
                killAgentAs(user, serverHome)
                gpgkit.killAgent(serverHome)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
