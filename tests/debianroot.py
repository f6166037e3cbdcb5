"""Debian roots for the Debian-native tests: Debian's own cback3, boto3 and gpg, in a chroot on this machine.

A base root per suite is built once with ``debootstrap --variant=minbase`` plus the packages below and cached
under ``/var/cache/cedar-s3-ci/`` (``CEDAR_S3_DEBIAN_CACHE``); a marker beside it records the suite, mirror and
exact package list, and a cache whose marker differs is rebuilt. Tests never change the cached root: each use
gets an overlay (``OverlayRoot``) whose changes vanish on teardown, with ``/proc`` and a read-only bind of
``/dev`` mounted inside and always unmounted afterwards.

Processes in a root get a clean environment whose proxy points at a closed port (127.0.0.1:9, except for
127.0.0.1 itself) and an empty ``resolv.conf``, so nothing in a test reaches the internet; only the cache build
talks to the Debian mirror.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from netguard import GUARD_ENV, outsideEnvironment

MIRROR = os.environ.get("CEDAR_S3_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CACHE = Path(os.environ.get("CEDAR_S3_DEBIAN_CACHE", "/var/cache/cedar-s3-ci"))
SUPPORTED_SUITES = ("trixie", "bookworm")
REPO = Path(__file__).resolve().parents[1]

# What Debian's cedar-backup3 users have, then what building and checking the .deb needs (debian/control's
# Build-Depends, build-essential, lintian), then pip for the second install route.
RUNTIME_PACKAGES = ("cedar-backup3", "python3-boto3", "python3-gnupg", "gnupg", "python3-rich")
BUILD_PACKAGES = (
    "build-essential",
    "debhelper",
    "dh-python",
    "pybuild-plugin-pyproject",
    "python3-all",
    "python3-setuptools",
    "python3-wheel",
    "lintian",
)
PIP_PACKAGES = ("python3-pip",)
PACKAGES = RUNTIME_PACKAGES + BUILD_PACKAGES + PIP_PACKAGES
MARKER_FORMAT = 1

CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEBOOTSTRAP_TIMEOUT = 1800
APT_TIMEOUT = 1800
COMMAND_TIMEOUT = 600


# ---------------------------------------------------------------------------------------------------------------
# Skip or fail
# ---------------------------------------------------------------------------------------------------------------


def required() -> bool:
    """True when ``CEDAR_S3_REQUIRE`` (a comma list) names ``debian``: a missing root is then a failure."""
    return "debian" in {part.strip() for part in os.environ.get("CEDAR_S3_REQUIRE", "").split(",")}


def unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail with it when the Debian job is required."""
    if required():
        pytest.fail(f"CEDAR_S3_REQUIRE names 'debian', but {reason}", pytrace=False)
    pytest.skip(reason)


def suites() -> list[str]:
    """The suites to test: ``CEDAR_S3_DEBIAN_SUITES`` (a comma list), trixie by default."""
    names = [part.strip() for part in os.environ.get("CEDAR_S3_DEBIAN_SUITES", "trixie").split(",") if part.strip()]
    unknown = sorted(set(names) - set(SUPPORTED_SUITES))
    if unknown:
        raise ValueError(f"CEDAR_S3_DEBIAN_SUITES names unknown suites {unknown}; known: {SUPPORTED_SUITES}")
    return names


def whyUnusable() -> str | None:
    """Why this machine cannot build or enter a Debian root, or None."""
    if os.geteuid() != 0:
        return "the Debian roots need root (debootstrap, chroot, mount)"
    for tool in ("debootstrap", "chroot", "mount", "umount", "git"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (run .ci/install-debian-tools.sh)"
    return None


# ---------------------------------------------------------------------------------------------------------------
# Host commands and mounts
# ---------------------------------------------------------------------------------------------------------------


def host(argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT, what: str = "") -> str:
    """Run a host command; on failure raise with its own words (the tail of its output)."""
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False, env=outsideEnvironment()
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-4000:]
        raise RuntimeError(f"{what or ' '.join(argv)} failed with exit code {result.returncode}:\n{output}")
    return result.stdout


def lastLine(output: str) -> str:
    """The last non-empty line of a command's output: where a traceback names its exception."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def mountsUnder(path: Path) -> list[Path]:
    """Mount points at or below ``path``, deepest first (from this process's mount table)."""
    found: list[Path] = []
    text = Path("/proc/self/mountinfo").read_text()
    for line in text.splitlines():
        point = Path(line.split()[4].encode().decode("unicode_escape"))
        if point == path or path in point.parents:
            found.append(point)
    return sorted(found, key=lambda point: len(point.parts), reverse=True)


def removeTree(path: Path) -> None:
    """``rm -rf`` that refuses to run while anything is mounted below (a bind of /dev would be emptied)."""
    if not path.exists():
        return
    left = mountsUnder(path)
    if left:
        raise RuntimeError(f"Not removing {path}: still mounted below it: {', '.join(map(str, left))}")
    shutil.rmtree(path)


def processesIn(root: Path) -> list[int]:
    """Processes whose root directory is ``root``: the ones started in that chroot (gpg-agents, mostly)."""
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(entry / "root") == str(root):
                pids.append(int(entry.name))
    return pids


def endProcessesIn(root: Path) -> None:
    """TERM, then KILL, each process left running in the chroot ``root``, by its id."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = processesIn(root)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while processesIn(root) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not processesIn(root):
            return


def tryHost(argv: Sequence[str], *, timeout: float = 30) -> bool:
    """Run a host command that may be refused here (a mount in a locked-down container); True if it worked."""
    return subprocess.run(list(argv), capture_output=True, timeout=timeout, check=False).returncode == 0


@contextlib.contextmanager
def systemMounts(root: Path) -> Iterator[list[str]]:
    """``/proc`` and a read-only bind of the host's ``/dev`` inside ``root``; always unmounted afterwards.

    Read-only, so nothing in the root can create or delete device nodes of the host; writing to /dev/null and
    reading /dev/urandom still work (device nodes ignore a read-only mount). Where a mount is refused, the root
    does without: debootstrap made the device nodes gpg and Python need (null, zero, random, urandom, tty) in
    the root's own /dev, and neither needs /proc. Yields what was mounted.
    """
    proc, dev = root / "proc", root / "dev"
    mounted: list[Path] = []
    try:
        if tryHost(["mount", "-t", "proc", "proc", str(proc)]):
            mounted.append(proc)
        if tryHost(["mount", "--bind", "/dev", str(dev)]):
            mounted.append(dev)
            tryHost(["mount", "-o", "remount,bind,ro", str(dev)])  # best effort; removeTree guards either way
        if not (dev / "null").is_char_device():
            raise RuntimeError(f"{dev}/null is no device: bind-mounting /dev was refused and the root has none")
        yield [str(point) for point in mounted]
    finally:
        endProcessesIn(root)
        for point in reversed(mounted):
            unmount(point)


def unmount(point: Path) -> None:
    """Unmount ``point``; if it stays busy, detach it lazily (it is then gone from the tree at once)."""
    result = subprocess.run(["umount", str(point)], capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0 and point in mountsUnder(point):
        host(["umount", "--lazy", str(point)], timeout=60)


# ---------------------------------------------------------------------------------------------------------------
# The cached base root
# ---------------------------------------------------------------------------------------------------------------


def wantedMarker(suite: str) -> dict[str, object]:
    return {
        "format": MARKER_FORMAT,
        "suite": suite,
        "variant": "minbase",
        "mirror": MIRROR,
        "packages": sorted(PACKAGES),
    }


@dataclass(frozen=True)
class BaseRoot:
    """A cached Debian root: ``path`` is never changed by a test, only overlaid."""

    suite: str
    path: Path
    built: bool  # True when this run built it (a cold cache), False when it was reused

    @property
    def marker(self) -> Path:
        return self.path.parent / "marker.json"


def _chrootApt(root: Path, *args: str, timeout: float) -> str:
    env = ["PATH=" + CLEAN_PATH, "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive", "HOME=/root"]
    return host(["chroot", str(root), "env", "-i", *env, "apt-get", *args], timeout=timeout, what=f"apt-get {args[0]}")


def _buildBase(suite: str, target: Path) -> None:
    """debootstrap ``suite`` into ``target`` and install ``PACKAGES`` from the mirror."""
    host(
        ["debootstrap", "--variant=minbase", suite, str(target), MIRROR],
        timeout=DEBOOTSTRAP_TIMEOUT,
        what=f"debootstrap --variant=minbase {suite}",
    )
    shutil.copyfile("/etc/resolv.conf", target / "etc" / "resolv.conf")  # only the build resolves names
    policy = target / "usr" / "sbin" / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")  # a package must never start a daemon in the cache
    policy.chmod(0o755)
    with systemMounts(target):
        _chrootApt(target, "update", "-q", timeout=APT_TIMEOUT)
        _chrootApt(target, "install", "-y", "-q", "--no-install-recommends", *PACKAGES, timeout=APT_TIMEOUT)
        _chrootApt(target, "clean", timeout=120)


@contextlib.contextmanager
def _locked(path: Path, mode: int) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def baseRoot(suite: str) -> Iterator[BaseRoot]:
    """The cached root of ``suite``, built first if missing or if its marker does not match.

    Held under a shared lock while in use, so another run (another worktree's CI) cannot rebuild it under an
    overlay; building takes the lock exclusively.
    """
    directory = CACHE / suite
    root, marker, lock = directory / "root", directory / "marker.json", CACHE / f"{suite}.lock"
    built = False
    with _locked(lock, fcntl.LOCK_EX):
        current = json.loads(marker.read_text()) if marker.exists() else None
        if current != wantedMarker(suite) or not (root / "usr" / "bin" / "cback3").exists():
            building = directory / "root.building"
            removeTree(building)
            directory.mkdir(parents=True, exist_ok=True)
            marker.unlink(missing_ok=True)
            _buildBase(suite, building)
            removeTree(root)
            building.rename(root)
            marker.write_text(json.dumps(wantedMarker(suite), indent=2) + "\n")  # last: only a whole root counts
            built = True
    with _locked(lock, fcntl.LOCK_SH):
        if json.loads(marker.read_text()) != wantedMarker(suite):
            raise RuntimeError(f"{root} was rebuilt for other packages while this run waited for it")
        yield BaseRoot(suite, root, built)


# ---------------------------------------------------------------------------------------------------------------
# A root to work in: an overlay of the base
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class User:
    name: str
    uid: int
    gid: int
    home: str  # inside the root


@dataclass
class OverlayRoot:
    """A writable overlay of a base root, mounted at ``path``; ``run`` executes a command chrooted in it."""

    suite: str
    path: Path
    overlay: bool = True  # False: a full copy (the kernel refused an overlay mount)
    mounted: list[str] = field(default_factory=list)  # what systemMounts got mounted inside

    def inside(self, hostPath: Path) -> Path:
        """The path a process in the root sees for ``hostPath`` (which must lie in the root)."""
        return Path("/") / hostPath.relative_to(self.path)

    def outside(self, innerPath: str | Path) -> Path:
        """The host path of a path inside the root."""
        return self.path / Path(innerPath).relative_to("/")

    def run(
        self,
        *argv: str,
        user: User | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | None = None,
        timeout: float = COMMAND_TIMEOUT,
    ) -> subprocess.CompletedProcess[bytes]:
        """``argv`` in the root, as root or ``user``, with a clean environment and cron's umask (022).

        Never raises on the exit code; ``check`` does.
        """
        home = user.home if user is not None else "/root"
        name = user.name if user is not None else "root"
        clean = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "HOME": home, "USER": name, "LOGNAME": name}
        clean |= GUARD_ENV | (env or {})
        chroot = ["chroot"]
        if user is not None:
            chroot += [f"--userspec={user.uid}:{user.gid}", f"--groups={user.gid}"]
        command = [*chroot, str(self.path), "env", "-i", *(["-C", cwd] if cwd else [])]
        command += [f"{key}={value}" for key, value in clean.items()] + list(argv)
        return subprocess.run(command, input=stdin, capture_output=True, timeout=timeout, check=False, umask=0o022)

    def check(
        self,
        *argv: str,
        user: User | None = None,
        cwd: str | None = None,
        stdin: bytes | None = None,
        timeout: float = COMMAND_TIMEOUT,
    ) -> str:
        """``run``, failing with the command's own output unless it exits 0; returns its stdout."""
        result = self.run(*argv, user=user, cwd=cwd, stdin=stdin, timeout=timeout)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")[-6000:]
            raise AssertionError(
                f"in the {self.suite} root: {' '.join(argv)} exited {result.returncode}: {lastLine(output)}\n{output}"
            )
        return result.stdout.decode(errors="replace")

    def addUser(self, name: str) -> User:
        """A system user with a home and /bin/sh, as an administrator makes a backup user."""
        self.check("useradd", "--system", "--user-group", "--create-home", "--shell", "/bin/sh", name, timeout=60)
        return self.user(name)

    def user(self, name: str) -> User:
        for line in self.outside("/etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return User(name, int(fields[2]), int(fields[3]), fields[5])
        raise KeyError(f"no user {name} in the {self.suite} root")

    def chown(self, hostPath: Path, user: User, recursive: bool = False) -> None:
        for path in [hostPath, *(hostPath.rglob("*") if recursive else [])]:
            os.lchown(path, user.uid, user.gid)

    def killAgents(self, home: str, user: User | None = None) -> None:
        """Stop the gpg-agent (and friends) that gpg started for ``home`` in the root."""
        self.run("gpgconf", "--homedir", home, "--kill", "all", user=user, timeout=60)

    def packageVersion(self, package: str) -> str:
        return self.check("dpkg-query", "-W", "-f", "${Version}", package, timeout=60)


@contextlib.contextmanager
def overlayRoot(base: BaseRoot, label: str) -> Iterator[OverlayRoot]:
    """A writable copy of ``base`` with /proc and /dev mounted and no DNS, removed afterwards.

    An overlay where the kernel allows one (instant; the cached root stays as it was), else a full copy.
    """
    scratch = Path(tempfile.mkdtemp(prefix=f"cedar-s3-{base.suite}-{label}-", dir="/var/tmp"))
    upper, work, merged = scratch / "upper", scratch / "work", scratch / "root"
    for directory in (upper, work, merged):
        directory.mkdir()
    overlay = False
    try:
        options = f"lowerdir={base.path},upperdir={upper},workdir={work}"
        overlay = tryHost(["mount", "-t", "overlay", "overlay", "-o", options, str(merged)], timeout=60)
        if not overlay:
            merged.rmdir()
            host(["cp", "-a", "--reflink=auto", str(base.path), str(merged)], timeout=COMMAND_TIMEOUT)
        (merged / "etc" / "resolv.conf").write_text("")  # no name resolves inside: no mirror, no PyPI
        with systemMounts(merged) as mounted:
            yield OverlayRoot(base.suite, merged, overlay=overlay, mounted=mounted)
    finally:
        if overlay:
            unmount(merged)
        removeTree(scratch)


# ---------------------------------------------------------------------------------------------------------------
# The working tree, copied into a root
# ---------------------------------------------------------------------------------------------------------------


def sourceFiles() -> list[str]:
    """The working tree's files, tracked or new but not ignored (so no venv, cache or build output)."""
    listing = host(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"], timeout=60)
    return sorted({name for name in listing.split("\0") if name and (REPO / name).is_file()})


def copySource(target: Path, *, withDebian: bool = True) -> None:
    """Copy the working tree (uncommitted changes included) to ``target``."""
    target.mkdir(parents=True)
    for name in sourceFiles():
        if not withDebian and name.startswith("debian/"):
            continue
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, destination)


def debianVersion() -> tuple[str, str]:
    """(upstream version, full version) from the top entry of ``debian/changelog``."""
    first = (REPO / "debian" / "changelog").read_text().splitlines()[0]
    full = first.split("(", 1)[1].split(")", 1)[0]
    return full.rsplit("-", 1)[0], full


@dataclass(frozen=True)
class BuiltPackage:
    """What ``dpkg-buildpackage`` left in the root's build directory (paths inside the root)."""

    directory: str
    deb: str
    changes: str
    log: str


def buildPackage(root: OverlayRoot, builder: User) -> BuiltPackage:
    """Build the source and binary packages from a copy of the working tree, as an unprivileged user."""
    upstream, full = debianVersion()
    build = root.outside(builder.home) / "build"
    source = build / f"cedar-s3-{upstream}"
    copySource(source)
    root.chown(build, builder, recursive=True)
    inner = str(root.inside(build))
    orig = f"cedar-s3_{upstream}.orig.tar.gz"
    tar = ["tar", "--exclude", f"{source.name}/debian", "--sort=name", "--owner=0", "--group=0", "-czf", orig]
    root.check(*tar, source.name, user=builder, cwd=inner, timeout=120)
    result = root.run("dpkg-buildpackage", "-us", "-uc", user=builder, cwd=str(root.inside(source)), timeout=900)
    log = (result.stdout + result.stderr).decode(errors="replace")
    (build / "dpkg-buildpackage.log").write_text(log)
    if result.returncode != 0:
        raise AssertionError(f"dpkg-buildpackage failed in the {root.suite} root:\n{log[-6000:]}")
    arch = root.check("dpkg", "--print-architecture", timeout=30).strip()
    return BuiltPackage(
        directory=inner,
        deb=f"{inner}/python3-cedar-s3_{full}_all.deb",
        changes=f"{inner}/cedar-s3_{full}_{arch}.changes",
        log=f"{inner}/dpkg-buildpackage.log",
    )
