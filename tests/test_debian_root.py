"""Debian's own cback3 with cedar-s3 installed the two ways Debian admins will: the .deb, and pip beside it.

Each suite's root comes from ``debianroot`` (debootstrap, cached). In it the .deb is built from a copy of this
working tree by an unprivileged user, checked with lintian and installed with apt; a second overlay of the same
root gets ``pip install --no-deps --no-build-isolation --break-system-packages`` instead. Then real nights run
as root in the chroot (``/usr/bin/cback3 --full collect stage amazons3``) against the suite's moto server,
which runs outside the chroot on 127.0.0.1 (same network namespace). After each night every object in the
bucket is read back from outside with boto3 and compared with the staged files (decrypted with the host's own
gpg where encrypted), and ``cback3-s3 list``, ``verify`` and ``restore`` run inside the root.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import debianroot
from debianroot import BaseRoot, BuiltPackage, OverlayRoot, User
from gpgkit import decrypt, generateKey, gpg, killAgent, newHome, writePassphraseFile
from nightkit import Night, getBytes, listKeys

pytestmark = [pytest.mark.debian, pytest.mark.slow]

BACKUP_USER = "cedars3bk"
BUILD_USER = "builder"
MANIFEST = "cback.amazons3.manifest.json"
NIGHT_TIMEOUT = 600
MIB = 1024 * 1024

Decrypt = Callable[[bytes], bytes]


# ---------------------------------------------------------------------------------------------------------------
# Roots
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session", params=debianroot.suites())
def base(request: pytest.FixtureRequest) -> Iterator[BaseRoot]:
    """The cached root of one suite (built on a cold cache); skipped, or failed if required, when impossible."""
    suite: str = request.param
    reason = debianroot.whyUnusable()
    if reason is not None:
        debianroot.unavailable(reason)
    with contextlib.ExitStack() as stack:
        try:
            root = stack.enter_context(debianroot.baseRoot(suite))
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
            debianroot.unavailable(f"the {suite} root could not be built: {error}")
        yield root


def addBackupUser(root: OverlayRoot) -> User:
    """The backup user of cback3.conf, keeping the S3 credentials in its ~/.aws as upstream users do."""
    user = root.addUser(BACKUP_USER)
    aws = root.outside(user.home) / ".aws"
    aws.mkdir(mode=0o700)
    (aws / "credentials").write_text("[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    (aws / "credentials").chmod(0o600)
    root.chown(aws, user, recursive=True)
    return user


@dataclass
class InstalledRoot:
    """A root with cedar-s3 installed one way, and its backup user."""

    root: OverlayRoot
    backup: User
    package: BuiltPackage | None = None  # the .deb route only
    builder: User | None = None


Tree = Callable[[InstalledRoot], Path]  # makes a fresh night directory in a root


@pytest.fixture(scope="session")
def debRoot(base: BaseRoot) -> Iterator[InstalledRoot]:
    """The .deb built in the root from this working tree, then ``apt-get install ./python3-cedar-s3_*.deb``."""
    with debianroot.overlayRoot(base, "deb") as root:
        builder = root.addUser(BUILD_USER)
        package = debianroot.buildPackage(root, builder)
        root.check("apt-get", "install", "-y", "-q", "--no-install-recommends", package.deb, timeout=600)
        yield InstalledRoot(root, addBackupUser(root), package, builder)


@pytest.fixture(scope="session")
def pipRoot(base: BaseRoot) -> Iterator[InstalledRoot]:
    """What the README tells Debian admins without the .deb: pip beside Debian's cback3, no dependencies.

    ``--no-build-isolation`` builds with Debian's own setuptools: an isolated build would fetch setuptools
    from PyPI, which nothing in the root can reach.
    """
    with debianroot.overlayRoot(base, "pip") as root:
        source = root.outside("/usr/local/src/cedar-s3")
        debianroot.copySource(source, withDebian=False)
        pip = ["python3", "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--break-system-packages"]
        root.check(*pip, "--no-input", "--no-cache-dir", str(root.inside(source)), timeout=600)
        yield InstalledRoot(root, addBackupUser(root))


@pytest.fixture(params=["deb", "pip"])
def installed(request: pytest.FixtureRequest, base: BaseRoot) -> InstalledRoot:
    """Each night runs on both routes: the .deb, and pip --no-deps beside Debian's cback3 (``base`` is named
    so that the suite's parameter reaches the route's root)."""
    del base

    root: InstalledRoot = request.getfixturevalue(f"{request.param}Root")
    return root


@pytest.fixture
def tree(request: pytest.FixtureRequest) -> Iterator[Callable[[InstalledRoot], Path]]:
    """A fresh directory in a root for one night (removed afterwards), traversable by the backup user."""
    made: list[Path] = []

    def make(installed: InstalledRoot) -> Path:
        parent = installed.root.outside("/srv")
        parent.mkdir(exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix="night-", dir=parent))
        path.chmod(0o755)
        made.append(path)
        return path

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def hostGnupg() -> Iterator[Path]:
    """A short GnuPG home on the host: the administrator's machine, which keeps the secret key."""
    parent = Path(tempfile.mkdtemp(prefix="cs3d-", dir="/tmp"))
    home = newHome(parent / "g")
    yield home
    killAgent(home)
    shutil.rmtree(parent, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# A night in a root
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class RootNight:
    """A ``Night`` (staging tree and cback3.conf) laid out inside a root, run by the root's own cback3."""

    installed: InstalledRoot
    night: Night

    @property
    def root(self) -> OverlayRoot:
        return self.installed.root

    @property
    def inner(self) -> Path:
        return self.root.inside(self.night.root)

    @property
    def config(self) -> str:
        return str(self.root.inside(self.night.configPath))

    def writeConfig(self) -> None:
        """The suite's cback3.conf, with every path as the chroot sees it."""
        self.night.writeConfig()
        text = self.night.configPath.read_text().replace(str(self.night.root), str(self.inner))
        self.night.configPath.write_text(text)

    def cback3(self) -> None:
        """``/usr/bin/cback3 --full collect stage amazons3`` as root in the chroot, as cron runs it."""
        self.writeConfig()
        log = self.inner / "cback3.log"
        command = ["/usr/bin/cback3", "--config", self.config, "--full", "--stack", "--logfile", str(log)]
        result = self.root.run(*command, "collect", "stage", "amazons3", cwd="/", timeout=NIGHT_TIMEOUT)
        hostLog = self.root.outside(log)
        text = hostLog.read_text(errors="replace") if hostLog.exists() else "(no log)"
        output = (result.stdout + result.stderr).decode(errors="replace")
        summary = debianroot.lastLine(output)  # the exception cback3 died of, first in pytest's summary
        assert result.returncode == 0, (
            f"cback3 exited {result.returncode} in {self.root.suite}: {summary}\n{output}\n{text}"
        )

    def cli(self, *args: str) -> str:
        """``cback3-s3 --config CONF ARGS...`` as root in the chroot; its stdout, or a failure with its words."""
        return self.root.check("cback3-s3", "--config", self.config, *args, cwd="/", timeout=300)

    @property
    def dayDir(self) -> Path:
        return self.night.dayDir()


def newNight(installed: InstalledRoot, hostTree: Path, bucket: str, endpoint: str, **settings: Any) -> RootNight:
    """Data to collect and the settings of the night.

    The blob makes the archive 3 MiB: above the size cedar-s3 sends from memory in one PutObject (1 MiB), below
    the multipart threshold, so it takes the path most real archives take (s3transfer, one PUT).
    """
    night = Night(hostTree, bucket, endpoint, settings=settings, backupUser=BACKUP_USER, backupGroup=BACKUP_USER)
    (night.root / "data" / "dir with space").mkdir()
    (night.root / "data" / "dir with space" / "notes.txt").write_text("some notes\n")
    (night.root / "data" / "blob.bin").write_bytes(os.urandom(3 * MIB))
    return RootNight(installed, night)


def stagedFiles(dayDir: Path) -> dict[str, bytes]:
    """The staged day as the extension must store it: every regular file but cback3's own indicators."""
    files = {
        path.relative_to(dayDir).as_posix(): path.read_bytes()
        for path in sorted(dayDir.rglob("*"))
        if path.is_file() and not path.is_symlink() and not path.name.startswith("cback.")
    }
    assert files, f"stage left nothing in {dayDir}"
    return files


def assertStored(s3: Any, bucket: str, rootNight: RootNight, decryptWith: Decrypt | None = None) -> dict[str, bytes]:
    """Every object of the bucket, read from outside: the staged files (decrypted where encrypted), the manifest."""
    staged = stagedFiles(rootNight.dayDir)
    prefix = rootNight.night.suffix + "/"
    keys = listKeys(s3, bucket)
    assert set(keys) == {prefix + relative for relative in staged} | {prefix + MANIFEST}
    for relative, data in staged.items():
        stored = getBytes(s3, bucket, prefix + relative)
        if decryptWith is None:
            assert stored == data, f"{relative}: stored bytes differ from the staged file"
        else:
            assert stored != data, f"{relative}: stored in the clear"
            assert decryptWith(stored) == data, f"{relative}: decrypts to something else"
    manifest = json.loads(getBytes(s3, bucket, prefix + MANIFEST))
    recorded = {entry["relative"]: entry["plaintextSha256"] for entry in manifest["objects"]}
    assert recorded == {relative: hashlib.sha256(data).hexdigest() for relative, data in staged.items()}
    assert (rootNight.dayDir / "cback.amazons3").exists(), "no store indicator after a successful night"
    return staged


def assertCliRoundTrip(rootNight: RootNight, staged: dict[str, bytes], encryption: str, *keys: str) -> None:
    """``cback3-s3 list``, ``verify`` (listing and download) and ``restore`` in the root, on the night's day."""
    day = rootNight.night.day.isoformat()
    listing = json.loads(rootNight.cli("list", "--json"))
    summary = {entry["date"]: entry for entry in listing["days"]}[day]
    assert (summary["complete"], summary["encryption"]) == (True, encryption)
    rootNight.cli("verify", day)
    rootNight.cli("verify", day, "--download", *keys)
    target = rootNight.inner / "restored"
    rootNight.cli("restore", day, "--to", str(target), *keys)
    hostTarget = rootNight.root.outside(target)
    restored = {
        path.relative_to(hostTarget).as_posix(): path.read_bytes() for path in hostTarget.rglob("*") if path.is_file()
    }
    assert restored == staged


# ---------------------------------------------------------------------------------------------------------------
# The package itself
# ---------------------------------------------------------------------------------------------------------------


def test_package_is_lintian_clean(debRoot: InstalledRoot) -> None:
    """No lintian error or warning on the .changes (source and binary) and the .deb, run as the builder."""
    package, root = debRoot.package, debRoot.root
    assert package is not None
    result = root.run(
        "lintian", "--fail-on", "error,warning", package.changes, package.deb, user=debRoot.builder, timeout=600
    )
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, f"lintian in {root.suite}:\n{output}"


def test_package_installs_the_extension_and_the_command(debRoot: InstalledRoot) -> None:
    """Depends on Debian's packages; Debian's python3 imports the extension; cback3-s3 and its manpage exist."""
    package, root = debRoot.package, debRoot.root
    assert package is not None
    depends = {item.strip().split(" ")[0] for item in root.check("dpkg-deb", "-f", package.deb, "Depends").split(",")}
    assert set(debianroot.RUNTIME_PACKAGES) <= depends
    assert root.packageVersion("python3-cedar-s3") == debianroot.debianVersion()[1]
    location = root.check("/usr/bin/python3", "-c", "import cedar_s3.amazons3 as m; print(m.__file__)").strip()
    assert location.startswith("/usr/lib/python3/dist-packages/cedar_s3/")
    assert root.check("cback3-s3", "--version").split() == ["cback3-s3", debianroot.debianVersion()[0]]
    assert root.outside("/usr/share/man/man1/cback3-s3.1.gz").is_file()
    metadata = "import importlib.metadata as m; print(m.metadata('cedar-s3')['License'])"
    assert root.check("/usr/bin/python3", "-c", metadata).strip() == "GPL-2.0-or-later"


# ---------------------------------------------------------------------------------------------------------------
# Nights, on both routes (.deb and pip --no-deps)
# ---------------------------------------------------------------------------------------------------------------


def test_plain_night(installed: InstalledRoot, tree: Tree, s3: Any, bucket: str, endpoint: str) -> None:
    rootNight = newNight(installed, tree(installed), bucket, endpoint)
    rootNight.cback3()
    staged = assertStored(s3, bucket, rootNight)
    assertCliRoundTrip(rootNight, staged, "none")


def test_symmetric_night(
    installed: InstalledRoot, tree: Tree, s3: Any, bucket: str, endpoint: str, hostGnupg: Path
) -> None:
    """``<gpg_passphrase_file>``, root-only, as the docs make it; restore takes it from the config."""
    root = installed.root
    secrets = root.outside("/etc/cedar-s3")
    secrets.mkdir(mode=0o700, exist_ok=True)
    passphrase = writePassphraseFile(secrets / "passphrase")
    rootNight = newNight(installed, tree(installed), bucket, endpoint, gpg_passphrase_file=str(root.inside(passphrase)))
    rootNight.cback3()
    staged = assertStored(s3, bucket, rootNight, lambda data: decrypt(data, passphraseFile=passphrase, home=hostGnupg))
    assertCliRoundTrip(rootNight, staged, "gpg-symmetric")


@pytest.mark.parametrize(
    "importCommand",
    [
        pytest.param("gpg --batch --import {key}", id="as-documented"),
        pytest.param("umask 077 && gpg --batch --import {key}", id="umask-077"),
    ],
)
def test_public_key_night(
    installed: InstalledRoot, tree: Tree, s3: Any, bucket: str, endpoint: str, hostGnupg: Path, importCommand: str
) -> None:
    """``<gpg_recipient>`` + ``<gpg_home>``: the public key imported by the backup user with its own gpg.

    ``as-documented`` is the docs' step as a Debian admin types it (``su backup -c 'gpg --import ...'``), with the
    umask Debian's PAM gives that user; ``umask-077`` imports into a keyring only the backup user can write.
    """
    root, backup = installed.root, installed.backup
    fingerprint = generateKey(hostGnupg, "Backup restore <restore@example.org>")
    public = root.outside("/tmp/restore-key.pub.asc")
    public.write_bytes(gpg(hostGnupg, "--armor", "--export", fingerprint).stdout)
    public.chmod(0o644)
    gnupgHome = root.outside(backup.home) / ".gnupg"
    restoreHome = "/root/restore-gnupg"  # where the secret key is brought for a restore
    try:
        root.check("su", BACKUP_USER, "-c", importCommand.format(key=root.inside(public)), timeout=120)
        root.outside(restoreHome).mkdir(mode=0o700)
        secret = gpg(hostGnupg, "--export-secret-keys", fingerprint).stdout
        root.check("gpg", "--homedir", restoreHome, "--batch", "--import", stdin=secret, timeout=120)
        rootNight = newNight(
            installed,
            tree(installed),
            bucket,
            endpoint,
            gpg_recipient=[fingerprint],
            gpg_home=str(root.inside(gnupgHome)),
        )
        rootNight.cback3()
        staged = assertStored(s3, bucket, rootNight, lambda data: decrypt(data, home=hostGnupg))
        assertCliRoundTrip(rootNight, staged, "gpg-public-key", "--gpg-home", restoreHome)
    finally:
        root.killAgents(str(root.inside(gnupgHome)), user=backup)
        root.killAgents(restoreHome)
        shutil.rmtree(gnupgHome, ignore_errors=True)
        shutil.rmtree(root.outside(restoreHome), ignore_errors=True)


def test_multipart_night(installed: InstalledRoot, tree: Tree, s3: Any, bucket: str, endpoint: str) -> None:
    """A staged archive above 12 MiB with ``<multipart_threshold>`` and ``<multipart_chunksize>`` 5 MB: in parts."""
    settings = {"multipart_threshold": "5 MB", "multipart_chunksize": "5 MB"}
    rootNight = newNight(installed, tree(installed), bucket, endpoint, **settings)
    (rootNight.night.root / "data" / "big.bin").write_bytes(os.urandom(12 * MIB))
    rootNight.cback3()
    staged = assertStored(s3, bucket, rootNight)
    big = [relative for relative, data in staged.items() if len(data) > 12 * MIB]
    assert len(big) == 1, f"expected one staged archive above 12 MiB: {sorted(staged)}"
    etag = s3.head_object(Bucket=bucket, Key=rootNight.night.key(big[0]))["ETag"].strip('"')
    parts = -(-len(staged[big[0]]) // (5 * MIB))
    assert etag.endswith(f"-{parts}"), f"not stored in {parts} parts of 5 MiB: ETag {etag}"
    assertCliRoundTrip(rootNight, staged, "none")


# ---------------------------------------------------------------------------------------------------------------
# pip route
# ---------------------------------------------------------------------------------------------------------------


def test_pip_installs_beside_debian_cback3_under_usr_local(pipRoot: InstalledRoot) -> None:
    """pip puts cedar-s3 under /usr/local, where Debian's python3 (and so /usr/bin/cback3) finds it; the nights
    above run on this route too."""
    root = pipRoot.root
    location = root.check("/usr/bin/python3", "-c", "import cedar_s3.amazons3 as m; print(m.__file__)").strip()
    assert location.startswith("/usr/local/lib/python3"), location
    assert root.outside("/usr/local/bin/cback3-s3").is_file()
    assert root.outside("/usr/local/bin/cback3-s3-sync").is_file()
