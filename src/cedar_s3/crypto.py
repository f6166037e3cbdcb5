"""Encryption before upload: native GnuPG through python-gnupg, or upstream's ``<encrypt>`` command.

Native GnuPG never touches the administrator's GnuPG home: for public-key mode the keyring file is copied into
a private, throw-away home (so root never leaves root-owned files in the backup user's ``~/.gnupg``), and for
symmetric mode no keyring is needed at all. Passphrases go to gpg on a pipe (python-gnupg's
``--passphrase-fd 0``), never on a command line, and never into a log or an exception. Every temporary file
lives in a 0700 directory and is removed on every way out, including the gpg-agent that gpg may start.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol

from cedar_s3.digest import HashingReader, digestFile
from cedar_s3.multifile import MultifileSession

__all__ = [
    "CommandEncryptor",
    "Encryptor",
    "GnuPGEncryptor",
    "PlainDigest",
    "checkPassphraseFile",
    "readPassphrase",
]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.crypto")

# Many gpg processes share one private home at once; none of them writes to it, so they need no locks, no
# random_seed file and no trustdb check (measured: 200 small files, 8 at a time, 7.0 s -> 0.6 s).
CONCURRENT_READ_ONLY = ("--lock-never", "--no-random-seed-file", "--no-auto-check-trustdb")
SELF_CHECK_TEXT = b"cedar-s3 self-check: this proves the encryption settings work\n"
GPG_BUFFER = 1024 * 1024
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SOCKET_PATH_MAX = 107  # bytes of a Unix socket path (sun_path without its NUL)
# Symmetric mode's default: OpenPGP's largest count, which is also what gpg-agent's own calibration settles on
# on current hardware. Passing it explicitly spares the agent that calibration (measured: 1.2 s at the first
# encryption of every night) and gives the same strength on every machine.
S2K_DEFAULT = 65011712
S2K_SMALLEST = 1025  # gpg takes --s2k-count 1024 (or less) to mean "the default": see _s2kCount


@dataclass(frozen=True)
class PlainDigest:
    """What the encryptor read: plaintext size and SHA-256, proven on the bytes actually encrypted."""

    size: int
    sha256: str


class Encryptor(Protocol):
    """Turns one plaintext file into one ciphertext file."""

    mode: str  # recorded in the manifest and object metadata

    @property
    def canBatch(self) -> bool:
        """Whether ``batchSession`` may be used for many small files."""

    def selfCheck(self, workDir: str) -> None: ...

    def encrypt(self, source: str, target: str) -> PlainDigest: ...

    def batchSession(self, directory: str) -> MultifileSession: ...

    def close(self) -> None: ...


def gpgBinary() -> str:
    """The gpg to run; a missing one is named with how to install it, before any temp file exists."""
    for name in ("gpg", "gpg2"):
        found = shutil.which(name)
        if found:
            return found
    raise OSError(errno.ENOENT, "GnuPG (gpg) is not installed or not on PATH; install it (apt-get install gnupg).")


def killAgent(home: str, binary: str | None = None) -> None:
    """gpg starts one gpg-agent per home and leaves it running; a nightly job must not leak one per night.

    The ``gpgconf`` beside the ``gpg`` that was used comes first, so the agent of that very installation is
    the one asked to stop. Where ``/run/user/UID`` exists, gpg keeps the sockets of a home in a directory of
    its own there, which outlives the home unless removed too.
    """
    beside = os.path.join(os.path.dirname(binary), "gpgconf") if binary else ""
    gpgconf = beside if beside and os.access(beside, os.X_OK) else shutil.which("gpgconf")
    if gpgconf:
        for action in (["--kill", "all"], ["--remove-socketdir"]):
            subprocess.run([gpgconf, "--homedir", home, *action], check=False, capture_output=True, timeout=30)


def newPrivateHome() -> str:
    """A 0700 throw-away GnuPG home in the temp dir, short enough for gpg-agent's sockets.

    gpg-agent puts its sockets in the home (unless ``/run/user/UID`` exists), and a Unix socket path holds at
    most 107 bytes: under a long ``TMPDIR`` the agent cannot start and every gpg call fails with "No agent
    running". ``/tmp`` is the fallback then.
    """
    parent = tempfile.gettempdir()
    if len(parent) + len("/cedar-s3-gnupg-12345678") > SOCKET_PATH_MAX - len("/S.gpg-agent.browser"):
        logger.debug("Temp dir [%s] is too long for gpg-agent's sockets; using /tmp for the GnuPG home.", parent)
        parent = "/tmp"  # noqa: S108 - only the parent of a fresh 0700 mkdtemp
    home = tempfile.mkdtemp(prefix="cedar-s3-gnupg-", dir=parent)
    os.chmod(home, 0o700)
    return home


def _failure(result: Any, what: str) -> str:
    """A one-line reason from gpg's status output, without anything secret (gpg never echoes passphrases)."""
    lines = [line for line in (result.stderr or "").splitlines() if line.startswith("gpg:")]
    status = getattr(result, "status", None) or "failed"
    detail = "; ".join(line.removeprefix("gpg: ") for line in lines[-3:]) or status
    return f"{what}: {detail} (gpg exit {result.returncode})"


def checkPassphraseFile(path: str, setting: str = "<gpg_passphrase_file>") -> None:
    """The passphrase file must be a readable regular file; readable by others is worth a loud warning."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ValueError(f"{setting} {path} does not exist.") from None
    except PermissionError:
        raise ValueError(f"{setting} {path} cannot be read by this user.") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{setting} {path} is not a regular file.")
    if info.st_mode & 0o077:
        mode = info.st_mode & 0o777
        logger.warning("%s %s is readable or writable by others (mode %o); chmod 600 it.", setting, path, mode)
    if not os.access(path, os.R_OK):
        raise ValueError(f"{setting} {path} cannot be read by this user.")


def readPassphrase(path: str, setting: str = "<gpg_passphrase_file>") -> str:
    """The first line of the file, as ``gpg --passphrase-file`` would read it."""
    checkPassphraseFile(path, setting)
    with open(path, "rb") as handle:
        raw = handle.read(64 * 1024)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{setting} {path} is not UTF-8 text.") from None
    passphrase = text.split("\n", 1)[0].rstrip("\r")
    if not passphrase:
        raise ValueError(f"{setting} {path} is empty; its first line is the passphrase.")
    return passphrase


def checkGnuPGHome(home: str, setting: str = "<gpg_home>") -> str:
    """The keyring file of an existing, private GnuPG home (refusing one others could write keys into)."""
    if not os.path.isdir(home):
        raise ValueError(
            f"{setting} {home} does not exist or is not a directory (without {setting}, the backup user's "
            "~/.gnupg is used); import the recipients' public keys there."
        )
    info = os.stat(home)
    if info.st_mode & 0o022:
        mode = info.st_mode & 0o777
        raise ValueError(f"{setting} {home} is writable by group or others (mode {mode:o}); chmod 700 it.")
    if not os.access(home, os.R_OK | os.X_OK):
        raise ValueError(f"{setting} {home} cannot be read by this user.")
    for name in ("pubring.kbx", "pubring.gpg"):
        keyring = os.path.join(home, name)
        if os.path.isfile(keyring):
            if not os.access(keyring, os.R_OK):
                raise ValueError(f"{setting} keyring {keyring} cannot be read by this user.")
            if os.stat(keyring).st_mode & 0o022:  # whoever can write it can slip in a key of their own
                mode = os.stat(keyring).st_mode & 0o777
                raise ValueError(f"{setting} keyring {keyring} is writable by group or others (mode {mode:o}).")
            return keyring
    raise ValueError(f"{setting} {home} holds no public keyring (pubring.kbx or pubring.gpg).")


def _s2kCount(count: int) -> int:
    """The count to hand gpg: it reads 1024 or less as "use the calibrated default", i.e. the *slowest* setting.

    OpenPGP encodes the count in one octet, so gpg rounds up to the next encodable value anyway; 1025 becomes
    1088, the smallest count gpg will really use.
    """
    return max(count, S2K_SMALLEST)


def _createPrivateFile(path: str) -> None:
    """Create ``path`` empty and 0600 for gpg to write into (it keeps the mode; left alone it makes 0644).

    ``O_EXCL | O_NOFOLLOW`` also refuses a symlink planted at that name in the backup user's work area.
    """
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))


class _PrivateGnuPG:
    """A python-gnupg instance on a throw-away 0700 home, torn down with its agent."""

    def __init__(self) -> None:
        import gnupg  # deferred: importing the extension must stay cheap

        try:
            self.binary = gpgBinary()  # before the home exists, so a missing gpg leaves nothing behind
        except OSError as error:
            setting = "<gpg_passphrase_file>/<gpg_recipient>"
            raise OSError(error.errno, f"{error.strerror} Native GnuPG encryption ({setting}) needs it.") from None
        self.home = newPrivateHome()
        try:
            self.gpg = gnupg.GPG(gpgbinary=self.binary, gnupghome=self.home)
        except (OSError, ValueError) as error:
            shutil.rmtree(self.home, ignore_errors=True)
            raise OSError(f"GnuPG ({self.binary}) could not be started: {error}") from None
        self.gpg.encoding = "utf-8"
        self.gpg.buffer_size = GPG_BUFFER

    def close(self) -> None:
        killAgent(self.home, self.binary)
        shutil.rmtree(self.home, ignore_errors=True)


class GnuPGEncryptor:
    """Native GnuPG: symmetric with a passphrase file, or public-key to one or more recipients."""

    def __init__(
        self,
        *,
        passphraseFile: str | None,
        recipients: list[str],
        gnupgHome: str | None,
        cipher: str | None,
        compression: str | None,
        s2kCount: int | None,
    ) -> None:
        self.mode = "gpg-symmetric" if passphraseFile else "gpg-public-key"
        self._passphrase = readPassphrase(passphraseFile) if passphraseFile else None
        self._recipients = recipients
        self._cipher = cipher or "AES256"
        options = ["--compress-algo", compression or "none", "--no-symkey-cache", *CONCURRENT_READ_ONLY]
        if self._passphrase is None:
            options += ["--trust-model", "always", "--cipher-algo", self._cipher]
        if self._passphrase is not None:
            count = _s2kCount(s2kCount if s2kCount is not None else S2K_DEFAULT)
            options += ["--s2k-mode", "3", "--s2k-digest-algo", "SHA512", "--s2k-count", str(count)]
        self._options = options
        keyring = checkGnuPGHome(gnupgHome or "") if self._passphrase is None else None
        self._private = _PrivateGnuPG()
        try:
            if keyring is not None:
                self._loadRecipients(keyring, gnupgHome or "")
        except BaseException:
            self._private.close()
            raise

    def _loadRecipients(self, keyring: str, home: str) -> None:
        """Copy the keyring into the private home and check each recipient can be encrypted to, now."""
        shutil.copyfile(keyring, os.path.join(self._private.home, os.path.basename(keyring)))
        keys = self._private.gpg.list_keys()
        now = time.time()
        for fingerprint in self._recipients:
            key = next((key for key in keys if fingerprint in (key["fingerprint"], *key.get("subkeys_fpr", []))), None)
            if key is None:
                key = next((key for key in keys if fingerprint in {sub[2] for sub in key.get("subkeys", [])}), None)
            if key is None:
                raise ValueError(f"<gpg_recipient> {fingerprint} is not in the keyring of <gpg_home> {home}.")
            if key.get("trust") == "r":
                raise ValueError(f"<gpg_recipient> {fingerprint} is revoked.")
            expires = key.get("expires")
            if key.get("trust") == "e" or (expires and float(expires) < now):
                raise ValueError(f"<gpg_recipient> {fingerprint} has expired.")
            if "E" not in key.get("cap", "E"):
                raise ValueError(f"<gpg_recipient> {fingerprint} has no usable encryption key ({key.get('cap')}).")

    @property
    def canBatch(self) -> bool:
        """Public-key mode encrypts many small files in one gpg run; symmetric mode's cost is the passphrase
        stretching each file needs anyway, which one shared run would not save."""
        return self._passphrase is None

    def batchSession(self, directory: str) -> MultifileSession:
        """One gpg run for many small files, handed them one at a time (see ``cedar_s3.multifile``)."""
        argv = [self._private.binary, "--homedir", self._private.home, "--batch", "--yes", "--no-tty"]
        argv += [*self._options, *(arg for recipient in self._recipients for arg in ("--recipient", recipient))]
        return MultifileSession(argv, directory)

    def _encryptStream(self, stream: IO[bytes] | HashingReader, target: str) -> Any:
        if self._passphrase is not None:
            return self._private.gpg.encrypt_file(
                stream,
                recipients=None,
                symmetric=self._cipher,
                passphrase=self._passphrase,
                armor=False,
                output=target,
                extra_args=self._options,
            )
        return self._private.gpg.encrypt_file(
            stream, recipients=self._recipients, armor=False, output=target, extra_args=self._options
        )

    def encrypt(self, source: str, target: str) -> PlainDigest:
        _createPrivateFile(target)
        with open(source, "rb") as raw:
            reader = HashingReader(raw)
            result = self._encryptStream(reader, target)
        if not result.ok or result.returncode != 0 or not os.path.isfile(target) or os.path.getsize(target) == 0:
            if "No space left" in (result.stderr or ""):
                raise OSError(errno.ENOSPC, f"No space left in the working dir while encrypting {source}")
            raise OSError(_failure(result, f"Error encrypting [{source}] with GnuPG"))
        return PlainDigest(reader.size, reader.sha256)

    def selfCheck(self, workDir: str) -> None:
        """Encrypt a few bytes (and for symmetric mode decrypt them back) so bad settings fail in a second."""
        setting = "<gpg_passphrase_file>" if self._passphrase is not None else "<gpg_recipient>"
        with _selfCheckSample(workDir) as (source, target):
            try:
                self.encrypt(source, target)
            except OSError as error:  # name the setting to fix, not a scratch file
                message = f"{setting} self-check could not encrypt: {error.strerror or error}"
                raise (OSError(error.errno, message) if error.errno else OSError(message)) from None
            if self._passphrase is not None:
                result = self._private.gpg.decrypt_file(target, passphrase=self._passphrase)
                if not result.ok or result.data != SELF_CHECK_TEXT:
                    raise ValueError(_failure(result, f"{setting} self-check could not decrypt"))

    def close(self) -> None:
        self._private.close()


@contextlib.contextmanager
def _selfCheckSample(workDir: str) -> Iterator[tuple[str, str]]:
    """A private sample plaintext and a ciphertext path in the work area, both gone when the check ends."""
    source = os.path.join(workDir, "self-check.txt")
    target = os.path.join(workDir, "self-check.enc")
    _createPrivateFile(source)
    with open(source, "wb") as handle:
        handle.write(SELF_CHECK_TEXT)
    try:
        yield source, target
    finally:
        for path in (source, target):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


# -------------------------------------------------------------------------------------------------------------
# The legacy <encrypt> command
# -------------------------------------------------------------------------------------------------------------

_QUOTED_PLACEHOLDER = re.compile(r"""(["'])(\$\{(?:input|output)\})\1""")


def _substitute(template: str, source: str, target: str) -> str:
    """Upstream's ``${input}``/``${output}`` substitution, with the paths shell-quoted.

    Upstream pasted paths in raw, so a staged file named ``a b;$(touch x).tar`` broke the command or ran part of
    its name. Placeholders the administrator already wrapped in quotes are unwrapped first, so both
    ``${input}`` and ``"${input}"`` work.
    """
    template = _QUOTED_PLACEHOLDER.sub(r"\2", template)
    return template.replace("${input}", shlex.quote(source)).replace("${output}", shlex.quote(target))


def _asUser(user: str | None) -> Callable[[str], tuple[list[str], dict[str, str]]]:
    """How to run a shell command as the backup user: through ``su`` when root, directly otherwise.

    ``su`` without ``-`` keeps the caller's environment, so the child gets a clean one (PATH included).
    """

    def build(command: str) -> tuple[list[str], dict[str, str]]:
        env = {"PATH": CLEAN_PATH, "LANG": os.environ.get("LANG", "C.UTF-8")}
        if os.geteuid() == 0 and user and user != "root":
            entry = pwd.getpwnam(user)
            env |= {"HOME": entry.pw_dir, "USER": user, "LOGNAME": user}
            return ["su", user, "-s", "/bin/sh", "-c", command], env
        env["HOME"] = os.environ.get("HOME", "/")
        return ["/bin/sh", "-c", command], env

    return build


class CommandEncryptor:
    """Upstream's ``<encrypt>`` command, one run per file, as the backup user."""

    mode = "command"
    canBatch = False  # the command takes one ${input} and one ${output}

    def batchSession(self, directory: str) -> MultifileSession:
        raise NotImplementedError("the <encrypt> command encrypts one file per run")

    def __init__(self, template: str, backupUser: str | None) -> None:
        self._template = template
        self._user = backupUser
        self._build = _asUser(backupUser)

    def encrypt(self, source: str, target: str) -> PlainDigest:
        before = os.stat(source)
        plain = digestFile(source, None, wantMd5=False, wantComposite=False)
        command = "umask 077; " + _substitute(self._template, source, target)
        argv, env = self._build(command)
        completed = subprocess.run(argv, env=env, capture_output=True, check=False, stdin=subprocess.DEVNULL)
        if completed.returncode != 0:
            tail = completed.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
            logger.error("<encrypt> command failed for [%s]: %s", source, " | ".join(tail))
            raise OSError(f"Error [{completed.returncode}] encrypting [{source}] with the <encrypt> command.")
        if not os.path.isfile(target):
            raise OSError(f"The <encrypt> command exited 0 but wrote no ${{output}} for [{source}].")
        after = os.stat(source)
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
            raise ValueError(f"Staged file changed while being encrypted: {source}")
        return PlainDigest(plain.size, plain.sha256)

    def selfCheck(self, workDir: str) -> None:
        """Run the command once on a few bytes, so a broken command fails the night before any upload."""
        with _selfCheckSample(workDir) as (source, target):
            try:
                self._giveToBackupUser(source)
                self.encrypt(source, target)
            except OSError as error:
                raise ValueError(f"<encrypt> command self-check failed: {error}") from None

    def _giveToBackupUser(self, path: str) -> None:
        """The command runs as the backup user and must read the file, which stays 0600 like every temp file."""
        if os.geteuid() == 0 and self._user and self._user != "root":
            entry = pwd.getpwnam(self._user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def close(self) -> None:
        """Nothing to release: each run is its own process."""
