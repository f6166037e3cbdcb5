"""A one-host Ceph cluster with a RADOS gateway, built from nothing in a private directory on 127.0.0.1.

One monitor, one OSD on ``memstore`` (objects live in the OSD's memory: nothing to format, nothing on disk but
a few small files), no manager (a one-OSD cluster serves S3 without one), pools of size 1, no cephx, and
``radosgw`` with a beast frontend over HTTP and over HTTPS (a throwaway CA). Every daemon runs in the
foreground in its own process group, with every path (config, data, sockets, pid files, logs) inside the work
dir, so nothing of the machine's own Ceph (``/etc/ceph``, ``/var/lib/ceph``, ``/var/run/ceph``) is read or
written. Debian 12's packages (Ceph 16.2 Pacific) are what this was written against: ``.ci/install-ceph.sh``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import botocore.exceptions

from endpoints.base import Endpoint, freePort
from endpoints.tls import makeServerCertificate

BINARIES = ("monmaptool", "ceph-mon", "ceph-osd", "ceph", "radosgw-admin", "radosgw")
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
READY_TIMEOUT = 120.0  # seconds from the first command to a ListBuckets answered over HTTP and over HTTPS
COMMAND_TIMEOUT = 90.0  # any one set-up command (radosgw-admin waits for the gateway's pools to come up)
STOP_TIMEOUT = 15.0  # per daemon, for SIGKILL to take effect
RGW_NAME = "client.rgw.a"
MEMSTORE_BYTES = 4 << 30  # the OSD's capacity; memory is used only for what is stored


PR_SET_PDEATHSIG = 1  # linux/prctl.h
_SAYS_WHY = re.compile(r"(?i)error|fail|in use|denied|refused|unable")
LOG_SETTLE_SECONDS = 3.0  # at most, for a dead daemon's last log lines to reach the file


def _dieWithParent() -> None:
    """In the forked child before exec: the kernel SIGKILLs the daemon when the test process dies, even by SIGKILL."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class CephStartError(RuntimeError):
    """The cluster did not come up; the message carries the tail of every daemon's log."""


def missingBinaries() -> list[str]:
    """The Ceph programs this machine lacks (install them with ``.ci/install-ceph.sh``)."""
    return [name for name in BINARIES if shutil.which(name) is None]


def cephVersion() -> str:
    """``ceph-mon --version``'s answer, e.g. ``ceph version 16.2.15 (...) pacific (stable)``."""
    done = subprocess.run(["ceph-mon", "--version"], capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.strip()


@dataclass
class CephCluster:
    """A mon, an OSD and a radosgw under ``workdir``; ``start()`` returns once S3 answers, ``stop()`` kills all."""

    workdir: Path
    monPort: int = field(default_factory=freePort)
    httpPort: int = field(default_factory=freePort)
    httpsPort: int = field(default_factory=freePort)
    fsid: str = field(default_factory=lambda: str(uuid.uuid4()))
    daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)
    startSeconds: float | None = field(default=None, init=False)  # how long start() took
    stepSeconds: dict[str, float] = field(default_factory=dict, init=False)  # how long each set-up step took
    _deadline: float = field(default=0.0, init=False, repr=False)  # monotonic time by which start() must be done

    @property
    def conf(self) -> Path:
        return self.workdir / "ceph.conf"

    @property
    def logDir(self) -> Path:
        return self.workdir / "log"

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(
            name="ceph",
            url=f"http://127.0.0.1:{self.httpPort}",
            httpsUrl=f"https://127.0.0.1:{self.httpsPort}",
            caBundle=str(self.workdir / "tls" / "ca.pem"),
            accessKey=ACCESS_KEY,
            secretKey=SECRET_KEY,
        )

    # -- start-up ---------------------------------------------------------------------------------------------

    def start(self) -> CephCluster:
        began = time.monotonic()
        self._deadline = began + READY_TIMEOUT
        try:
            self._writeConfig()
            monmap, monAddress = str(self.workdir / "monmap"), f"[v2:127.0.0.1:{self.monPort}]"
            self._run("monmap", "monmaptool", "--create", "--fsid", self.fsid, "--addv", "a", monAddress, monmap)
            self._run("mon mkfs", "ceph-mon", *self._conf, "--mkfs", "-i", "a", "--monmap", monmap)
            self._spawn("mon.a", "ceph-mon", *self._conf, "-f", "-i", "a")
            osdUuid = str(uuid.uuid4())
            osdId = self._run("osd new", "ceph", *self._conf, "osd", "new", osdUuid).strip()
            (self.workdir / "osd" / f"ceph-{osdId}").mkdir()
            self._run("osd mkfs", "ceph-osd", *self._conf, "-i", osdId, "--mkfs", "--osd-uuid", osdUuid)
            self._spawn(f"osd.{osdId}", "ceph-osd", *self._conf, "-f", "-i", osdId)
            self._waitForOsd()
            user = ("user", "create", "--uid", "testing", "--display-name", "cedar-s3 tests")
            keys = ("--access-key", ACCESS_KEY, "--secret", SECRET_KEY)  # test-only keys: fine on a command line
            self._run("s3 user", "radosgw-admin", *self._conf, "-n", RGW_NAME, *user, *keys)
            self._spawn(RGW_NAME, "radosgw", *self._conf, "-f", "-n", RGW_NAME)
            self._waitForS3()
        except BaseException:
            self.stop()
            raise
        self.startSeconds = time.monotonic() - began
        return self

    @property
    def _conf(self) -> tuple[str, str]:
        return ("--conf", str(self.conf))

    def _writeConfig(self) -> None:
        for name in ("mon/ceph-a", "osd", "run", "log", "rgw", "crash"):
            (self.workdir / name).mkdir(parents=True, exist_ok=True)
        tls = makeServerCertificate(self.workdir / "tls")
        (self.workdir / "keyring").touch()
        w = self.workdir
        self.conf.write_text(
            f"""[global]
fsid = {self.fsid}
mon host = v2:127.0.0.1:{self.monPort}
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
# no cephx: nothing listens beyond 127.0.0.1, and there are no keys to hand around
auth cluster required = none
auth service required = none
auth client required = none
# without this radosgw (alone) never gets past "get_initial_auth_request returned -13" when auth is none
ms mon client mode = crc secure
# every path inside the work dir: nothing of the machine's own Ceph is read or written
keyring = {w}/keyring
run dir = {w}/run
admin socket = {w}/run/$name.asok
pid file = {w}/run/$name.pid
log file = {w}/log/$name.log
crash dir = {w}/crash
mon cluster log file = {w}/log/cluster.$channel.log
mon data = {w}/mon/$cluster-$id
osd data = {w}/osd/$cluster-$id
# one OSD: every pool has one copy, few placement groups, no balancing, no manager needed
mon allow pool size one = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon data avail warn = 1
mon data avail crit = 0
# the mon commits each map change at once instead of batching for 1 s: start-up takes ~1 s instead of ~12 s
paxos propose interval = 0.01
paxos min wait = 0.001
# objects live in the OSD's memory (no mkfs of a block device); the cap is what the OSD reports as its size
osd objectstore = memstore
memstore device bytes = {MEMSTORE_BYTES}

[{RGW_NAME}]
rgw data = {w}/rgw
rgw thread pool size = 64
rgw frontends = beast endpoint=127.0.0.1:{self.httpPort} ssl_endpoint=127.0.0.1:{self.httpsPort} \
ssl_certificate={tls.certificate} ssl_private_key={tls.privateKey}
"""
        )

    def _run(self, step: str, *argv: str) -> str:
        """One set-up command to completion (bounded by the start-up deadline); its stdout."""
        began = time.monotonic()
        timeout = max(1.0, min(COMMAND_TIMEOUT, self._deadline - began))
        try:
            done = subprocess.run(
                argv, check=False, capture_output=True, text=True, timeout=timeout, cwd=self.workdir, env=self._env()
            )
        except subprocess.TimeoutExpired as error:
            raise CephStartError(self._report(f"{step}: {argv[0]} took more than {timeout:.0f} s")) from error
        if done.returncode != 0:
            said = "\n".join(done.stderr.strip().splitlines()[-10:])
            raise CephStartError(self._report(f"{step}: {' '.join(argv)} exited {done.returncode}: {said}"))
        self.stepSeconds[step] = time.monotonic() - began
        return done.stdout

    def _spawn(self, name: str, *argv: str) -> None:
        """A daemon in the foreground, in its own process group, its output in ``log/<name>.out``."""
        with (self.logDir / f"{name}.out").open("wb") as output:
            self.daemons[name] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self._env(),
                start_new_session=True,  # its own process group: stop() kills it and anything it started
                preexec_fn=_dieWithParent,  # noqa: PLW1509 - nothing but one prctl, before any thread of ours forks
            )

    def _env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("CEPH_")}
        env["CEPH_CONF"] = str(self.conf)  # belt and braces: every command also gets --conf
        return env

    def _waitForOsd(self) -> None:
        """Until the OSD is up: pools created before it boots leave radosgw-admin waiting 5 s for their PGs."""
        began = time.monotonic()
        while time.monotonic() < self._deadline:
            self._checkAlive()
            state = json.loads(self._run("osd stat", "ceph", *self._conf, "osd", "stat", "--format", "json"))
            if state.get("num_up_osds") == 1:
                self.stepSeconds["osd up"] = time.monotonic() - began
                return
            time.sleep(0.05)
        raise CephStartError(self._report(f"the OSD was not up within {READY_TIMEOUT:.0f} s"))

    def _waitForS3(self) -> None:
        endpoint = self.endpoint
        quick: dict[str, Any] = {"connect_timeout": 2, "read_timeout": 5, "retries": {"max_attempts": 1}}
        clients = [endpoint.client(**quick), endpoint.client(https=True, **quick)]
        lastError = "no answer yet"
        began = time.monotonic()
        while time.monotonic() < self._deadline:
            self._checkAlive()
            try:
                for client in clients:
                    client.list_buckets()
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
                lastError = f"{type(error).__name__}: {error}"
                time.sleep(0.25)
                continue
            self.stepSeconds["first ListBuckets over HTTP and HTTPS"] = time.monotonic() - began
            return
        raise CephStartError(
            self._report(f"radosgw answered no ListBuckets within {READY_TIMEOUT:.0f} s ({lastError})")
        )

    def _checkAlive(self) -> None:
        for name, process in self.daemons.items():
            if process.poll() is not None:
                self._settleLogs()
                raise CephStartError(self._report(f"{name} exited with {process.returncode} during start-up"))

    def _settleLogs(self) -> None:
        """Wait (briefly) until no daemon log grows: a daemon that just died may still be flushing why."""
        deadline = time.monotonic() + LOG_SETTLE_SECONDS
        sizes: dict[Path, int] = {}
        while time.monotonic() < deadline:
            now = {log: log.stat().st_size for log in self.logDir.glob("*")} if self.logDir.is_dir() else {}
            if now == sizes:
                return
            sizes = now
            time.sleep(0.2)

    def _report(self, what: str, lines: int = 15) -> str:
        """``what`` went wrong, then the last lines of each daemon's log and output (not the cluster's own logs)."""
        parts = [f"Ceph cluster in {self.workdir} did not start: {what}"]
        logs = sorted(self.logDir.glob("*")) if self.logDir.is_dir() else []
        for log in (path for path in logs if not path.name.startswith("cluster.")):
            text = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
            if not text:
                continue
            # a daemon may go on logging after the line that says why (under load, past any fixed tail)
            earlier = [line for line in text[:-lines] if _SAYS_WHY.search(line)][-lines:]
            if earlier:
                parts.append(f"--- lines of {log.name} that say what failed:")
                parts.extend(earlier)
            parts.append(f"--- last {min(lines, len(text))} lines of {log.name}:")
            parts.extend(text[-lines:])

        return "\n".join(parts)

    # -- tear-down --------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """SIGKILL each daemon's process group, newest first: the cluster is thrown away, so nothing needs flushing
        (radosgw alone takes 5 s to honour a SIGTERM)."""
        for name in reversed(list(self.daemons)):
            process = self.daemons.pop(name)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)

    def rss(self) -> dict[str, int]:
        """Resident memory of each running daemon in KiB (from /proc)."""
        sizes: dict[str, int] = {}
        for name, process in self.daemons.items():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        sizes[name] = int(line.split()[1])
        return sizes

    def __enter__(self) -> CephCluster:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def startCeph(workdir: Path) -> CephCluster:
    """A started cluster in ``workdir`` (which the caller owns and removes); use it as a context manager."""
    return CephCluster(workdir).start()


@contextlib.contextmanager
def runningCeph() -> Iterator[CephCluster]:
    """A started cluster in a private temp dir; on exit every daemon is stopped and the dir removed."""
    with tempfile.TemporaryDirectory(prefix="cedar-ceph-") as directory, startCeph(Path(directory)) as cluster:
        yield cluster
