"""s3rver (npm ``s3rver``) as a second, independent S3 implementation on 127.0.0.1.

Two node processes share one private data directory: one serves plain HTTP, the other HTTPS with a throwaway
self-signed certificate (s3rver serves one protocol per process). s3rver keeps everything on disk, so a bucket
made through one is there through the other.

- The binary: ``$CEDAR_S3_S3RVER``, else what ``.ci/install-s3rver.sh`` installed under
  ``/var/cache/cedar-s3-ci/s3rver``.
- node runs with ``--openssl-legacy-provider`` (through ``NODE_OPTIONS``): s3rver's ListObjectsV2 continuation
  tokens are DES-encrypted, which OpenSSL 3 refuses otherwise (node 20.20.2 here: every truncated listing page
  then answers 500 InternalError).
- Credentials: s3rver 3.7.1 has one hard-coded account, S3RVER/S3RVER, and no option for others; the preload
  ``s3rver-keys.cjs`` adds ``testing``/``testing`` to it, the keys the suite exports as ``AWS_*``. s3rver checks
  only that the access key exists: it does not verify SigV4 signatures, so any secret is accepted.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import ipaddress
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import botocore.exceptions

from endpoints.base import Endpoint
from nightkit import freePort

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
BUILTIN_KEYS = ("S3RVER", "S3RVER")  # s3rver's own account, always there
DEFAULT_BINARY = Path("/var/cache/cedar-s3-ci/s3rver/node_modules/.bin/s3rver")
KEYS_PRELOAD = Path(__file__).with_name("s3rver-keys.cjs")
START_TIMEOUT = 30.0
CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin"
_PR_SET_PDEATHSIG = 1


def findS3rver() -> tuple[Path | None, str]:
    """The s3rver binary to run, or None and the reason it cannot be had."""
    configured = os.environ.get("CEDAR_S3_S3RVER")
    binary = Path(configured) if configured else DEFAULT_BINARY
    where = f"$CEDAR_S3_S3RVER={configured}" if configured else str(DEFAULT_BINARY)
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        return None, f"s3rver is not installed at {where} (run .ci/install-s3rver.sh, or set $CEDAR_S3_S3RVER)"
    if shutil.which("node", path=os.environ.get("PATH", CLEAN_PATH)) is None:
        return None, "node is not on PATH (s3rver is a node program)"
    return binary, ""


def selfSignedCertificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 that is its own CA: (certificate, key) as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cedar-s3 test s3rver")])
    now = datetime.datetime.now(datetime.UTC)
    publicKey = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(publicKey)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(publicKey), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(publicKey), critical=False)
        .sign(key, hashes.SHA256())
    )
    certPath, keyPath = directory / "s3rver-cert.pem", directory / "s3rver-key.pem"
    certPath.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyPath.touch(mode=0o600)
    keyPath.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certPath, keyPath


def _dieWithParent() -> None:
    """In the child before exec: SIGTERM when the test process dies, so no s3rver outlives a killed pytest."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class S3rverServer:
    """One s3rver data directory served over HTTP and (``https=True``) HTTPS on 127.0.0.1."""

    binary: Path
    https: bool = True
    legacyOpenssl: bool = True  # False only to show what s3rver does without it
    keys: tuple[tuple[str, str], ...] = ((ACCESS_KEY, SECRET_KEY),)
    root: Path | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    endpoint: Endpoint | None = None

    def __enter__(self) -> Endpoint:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def dataDir(self) -> Path:
        assert self.root is not None, "not started"
        return self.root / "data"

    def start(self) -> Endpoint:
        self.root = Path(tempfile.mkdtemp(prefix="cedar-s3-s3rver-"))
        self.dataDir.mkdir()
        port = freePort()
        self._spawn(port, "http.log")
        httpsUrl = caBundle = None
        if self.https:
            certPath, keyPath = selfSignedCertificate(self.root)
            tlsPort = freePort()
            self._spawn(tlsPort, "https.log", "--cert", str(certPath), "--key", str(keyPath))
            httpsUrl, caBundle = f"https://127.0.0.1:{tlsPort}", str(certPath)
        accessKey, secretKey = self.keys[0] if self.keys else BUILTIN_KEYS
        self.endpoint = Endpoint("s3rver", f"http://127.0.0.1:{port}", httpsUrl, caBundle, accessKey, secretKey)
        self._waitUntilServing(https=False)
        if httpsUrl:
            self._waitUntilServing(https=True)
        return self.endpoint

    def _spawn(self, port: int, logName: str, *extra: str) -> None:
        assert self.root is not None
        options = [f'--require "{KEYS_PRELOAD}"']
        if self.legacyOpenssl:
            options.insert(0, "--openssl-legacy-provider")
        env = {
            "PATH": os.environ.get("PATH", CLEAN_PATH),
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            "NODE_OPTIONS": " ".join(options),
            "CEDAR_S3_S3RVER_KEYS": ",".join(f"{access}:{secret}" for access, secret in self.keys),
        }
        argv = [str(self.binary), "-d", str(self.dataDir), "-a", "127.0.0.1", "-p", str(port), "--silent", *extra]
        with (self.root / logName).open("wb") as log:
            self.processes.append(
                subprocess.Popen(
                    argv,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_dieWithParent,  # noqa: PLW1509 - prctl only, no locks taken
                )
            )

    def _waitUntilServing(self, *, https: bool) -> None:
        assert self.endpoint is not None
        client = self.endpoint.client(https=https, connect_timeout=1, read_timeout=5, retries={"max_attempts": 1})
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                client.list_buckets()
                return
            except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError) as error:
                if any(process.poll() is not None for process in self.processes):
                    raise RuntimeError(f"s3rver exited during start-up: {self.logs()}") from error
                if time.monotonic() > deadline:
                    raise RuntimeError(f"s3rver did not answer ListBuckets within {START_TIMEOUT:.0f} s") from error
                time.sleep(0.1)

    def logs(self) -> str:
        """What the s3rver processes printed (they run with --silent: start-up failures only)."""
        if self.root is None:
            return ""
        return " | ".join(log.read_text(errors="replace").strip() for log in sorted(self.root.glob("*.log")))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.processes.clear()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
