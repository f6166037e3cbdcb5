"""The command line of ``cback3-s3-sync``: upstream's switches with upstream's meaning, plus newer long options.

Parsed with ``getopt`` as upstream parses it (unique prefixes of long options are accepted; for an option given
as both ``-l`` and ``--logfile`` the long form wins, as upstream documents), except that switches may also follow
the two arguments. The object handed to ``CedarBackup3.cli.setupLogging`` has the attributes it reads
(``logfile owner mode quiet verbose debug output stacktrace``), so the log file is set up exactly as upstream's.
"""

from __future__ import annotations

import getopt
import os
from dataclasses import dataclass, field

from cedar_s3.bucketformat import S3Location

__all__ = [
    "CHECKSUM_WHEN",
    "DeleteLimit",
    "SyncOptions",
    "UsageError",
    "bucketLocation",
    "parseArguments",
    "sourcePath",
]

CHECKSUM_WHEN = ("when_supported", "when_required")
MAX_JOBS = 64

SHORT_SWITCHES = "hVbql:o:m:OdsDvuw"
UPSTREAM_LONG = [
    "help",
    "version",
    "verbose",
    "quiet",
    "logfile=",
    "owner=",
    "mode=",
    "output",
    "debug",
    "stack",
    "diagnostics",
    "verifyOnly",
    "uploadOnly",
    "ignoreWarnings",
]
NEWER_LONG = [
    "endpoint-url=",
    "region=",
    "profile=",
    "checksum-calculation=",
    "dry-run",
    "jobs=",
    "json",
    "checksum",
    "max-delete=",
]
FLAGS = {
    "help": ("-h", "--help"),
    "version": ("-V", "--version"),
    "verbose": ("-b", "--verbose"),
    "quiet": ("-q", "--quiet"),
    "output": ("-O", "--output"),
    "debug": ("-d", "--debug"),
    "stacktrace": ("-s", "--stack"),
    "diagnostics": ("-D", "--diagnostics"),
    "verifyOnly": ("-v", "--verifyOnly"),
    "uploadOnly": ("-u", "--uploadOnly"),
    "ignoreWarnings": ("-w", "--ignoreWarnings"),
    "dryRun": ("--dry-run",),
    "json": ("--json",),
    "checksum": ("--checksum",),
}


class UsageError(ValueError):
    """The command line cannot be used (exit code 2)."""


@dataclass(frozen=True)
class DeleteLimit:
    """``--max-delete``: at most ``count`` objects, or at most ``percent`` of the objects under the prefix."""

    count: int | None = None
    percent: float | None = 50.0

    @classmethod
    def parse(cls, text: str) -> DeleteLimit:
        value = text.strip()
        try:
            if value.endswith("%"):
                percent = float(value[:-1])
                if not 0 <= percent <= 100:
                    raise ValueError
                return cls(None, percent)
            count = int(value)
            if count < 0:
                raise ValueError
            return cls(count, None)
        except ValueError:
            raise UsageError(
                f"--max-delete takes a number of objects (200) or a percentage from 0% to 100% (50%), not {text!r}."
            ) from None

    def allows(self, deletions: int, remoteObjects: int) -> bool:
        if self.count is not None:
            return deletions <= self.count
        assert self.percent is not None
        return deletions * 100 <= self.percent * remoteObjects

    def __str__(self) -> str:
        return str(self.count) if self.count is not None else f"{self.percent:g}%"


@dataclass
class SyncOptions:
    """Everything the command line says. The first group are upstream's, named as upstream's ``Options``."""

    help: bool = False
    version: bool = False
    verbose: bool = False
    quiet: bool = False
    logfile: str | None = None
    owner: tuple[str, str] | None = None
    mode: int | None = None
    output: bool = False
    debug: bool = False
    stacktrace: bool = False
    diagnostics: bool = False
    verifyOnly: bool = False
    uploadOnly: bool = False
    ignoreWarnings: bool = False
    sourceDir: str | None = None
    s3BucketUrl: str | None = None
    # newer than upstream
    endpointUrl: str | None = None
    region: str | None = None
    profile: str | None = None
    checksumCalculation: str | None = None
    dryRun: bool = False
    jobs: int | None = None
    json: bool = False
    checksum: bool = False
    maxDelete: DeleteLimit = field(default_factory=DeleteLimit)

    @property
    def informational(self) -> bool:
        """``-h``, ``-V`` or ``-D``: print and exit, no arguments needed."""
        return self.help or self.version or self.diagnostics

    @property
    def modeName(self) -> str:
        if self.verifyOnly:
            return "verify-only"
        return "upload-only" if self.uploadOnly else "sync"

    @property
    def location(self) -> S3Location:
        assert self.s3BucketUrl is not None
        return bucketLocation(self.s3BucketUrl)


def bucketLocation(url: str) -> S3Location:
    """``s3://bucket[/prefix]`` (upstream's form, handed to ``aws s3 sync``) as a bucket and key prefix."""
    if not url.startswith("s3://"):
        raise UsageError(f"s3BucketUrl must look like s3://bucket/prefix, not {url!r}.")
    try:
        return S3Location.parse(url[len("s3://") :], "s3BucketUrl")
    except ValueError as error:
        raise UsageError(str(error)) from None


def _owner(text: str) -> tuple[str, str]:
    user, _, group = text.partition(":")
    if not user or not group:
        raise UsageError(f"--owner takes user:group (both non-empty), not {text!r}.")
    return user, group


def _mode(text: str) -> int:
    try:
        value = int(text, 8)
    except ValueError:
        raise UsageError(f"--mode takes an octal permission mode such as 640, not {text!r}.") from None
    if value < 0:
        raise UsageError("--mode must be an octal integer >= 0, i.e. 644.")
    return value


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"--jobs takes a whole number, not {text!r}.") from None
    if not 1 <= value <= MAX_JOBS:
        raise UsageError(f"--jobs must be from 1 to {MAX_JOBS}, not {value}.")
    return value


def _endpoint(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise UsageError(f"--endpoint-url takes an http:// or https:// URL, not {text!r}.")
    return text


def _checksum(text: str) -> str:
    if text not in CHECKSUM_WHEN:
        raise UsageError(f"--checksum-calculation takes {' or '.join(CHECKSUM_WHEN)}, not {text!r}.")
    return text


def _text(option: str, text: str) -> str:
    if not text.strip():
        raise UsageError(f"{option} takes a non-empty value.")
    return text


def parseArguments(arguments: list[str]) -> SyncOptions:  # noqa: PLR0912 - one branch per getopt switch
    """The options for ``arguments`` (``sys.argv[1:]``); ``UsageError`` says what is wrong."""
    try:
        pairs, remaining = getopt.gnu_getopt(arguments, SHORT_SWITCHES, UPSTREAM_LONG + NEWER_LONG)
    except getopt.GetoptError as error:
        raise UsageError(str(error)) from None
    switches: dict[str, str] = {}
    for name, value in pairs:
        switches[name] = value  # the last of the same switch wins
    options = SyncOptions()
    for attribute, names in FLAGS.items():
        if any(name in switches for name in names):
            setattr(options, attribute, True)
    for short, long in (("-l", "--logfile"), ("-o", "--owner"), ("-m", "--mode")):
        given = switches.get(long, switches.get(short))  # the long form wins, as upstream's
        if given is None:
            continue
        if long == "--logfile":
            options.logfile = _text(long, given)
        elif long == "--owner":
            options.owner = _owner(given)
        else:
            options.mode = _mode(given)
    if "--endpoint-url" in switches:
        options.endpointUrl = _endpoint(switches["--endpoint-url"])
    if "--region" in switches:
        options.region = _text("--region", switches["--region"])
    if "--profile" in switches:
        options.profile = _text("--profile", switches["--profile"])
    if "--checksum-calculation" in switches:
        options.checksumCalculation = _checksum(switches["--checksum-calculation"])
    if "--jobs" in switches:
        options.jobs = _jobs(switches["--jobs"])
    if "--max-delete" in switches:
        options.maxDelete = DeleteLimit.parse(switches["--max-delete"])
    if len(remaining) == 2:
        options.sourceDir, options.s3BucketUrl = remaining
    elif not options.informational:
        raise UsageError("Source directory and S3 bucket URL are both required.")
    if not options.informational:
        if not options.sourceDir:
            raise UsageError("The sourceDir parameter must be a non-empty string.")
        bucketLocation(options.s3BucketUrl or "")
    return options


def sourcePath(options: SyncOptions) -> str:
    """sourceDir as given, without a trailing slash (``/home/me/`` and ``/home/me`` are the same tree)."""
    assert options.sourceDir is not None
    return options.sourceDir.rstrip("/") or os.sep
