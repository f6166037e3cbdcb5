"""What every ``cback3-s3`` command shares: its options, the settings and store they lead to, decryption keys,
signature checking, and the way a failure becomes one line on stderr."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cedar_s3.bucketformat import DayKind, parseDay
from cedar_s3.catalog import DayListing, findDays, listDay
from cedar_s3.children import Deadlines
from cedar_s3.cliconfig import DEFAULT_CONFIG, Settings, loadSettings

if TYPE_CHECKING:
    from cedar_s3.gpg.decrypt import DecryptKeys
    from cedar_s3.manifests import SignaturePolicy
    from cedar_s3.s3.store import S3Store

PROG = "cback3-s3"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
DEFAULT_JOBS = 4
EXIT_CODES = "exit codes: 0 success, 1 failure (the last stderr line says what to do), 2 usage error"

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.cli")


class CommandFailedError(Exception):
    """The command ran but did not fully succeed; the message is the one-line summary for stderr."""


# -- options -----------------------------------------------------------------------------------------------------


def dayArgument(text: str) -> datetime.date | None:
    if text == "latest":
        return None
    try:
        return parseDay(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def addCommon(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Options every command takes; accepted before or after the command name."""
    default: Any = None if top else argparse.SUPPRESS  # a command's copy must not reset the top's value
    off: Any = False if top else argparse.SUPPRESS
    where = parser.add_argument_group("where the backups are")
    where.add_argument(
        "--config", metavar="PATH", default=default, help=f"cback3.conf to read (default {DEFAULT_CONFIG})"
    )
    where.add_argument("--bucket", metavar="BUCKET[/PREFIX]", default=default, help="override <s3_bucket>")
    where.add_argument("--endpoint-url", metavar="URL", default=default, help="override <endpoint_url>")
    where.add_argument("--region", metavar="NAME", default=default, help="override <region>")
    where.add_argument("--profile", metavar="NAME", default=default, help="override <profile> (AWS profile)")
    output = parser.add_argument_group("output")
    loudness = output.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true", default=off, help="only errors and results")
    loudness.add_argument("-v", "--verbose", action="store_true", default=off, help="debug detail")


def addDecryption(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decryption (encrypted days only)")
    group.add_argument(
        "--passphrase-file",
        metavar="FILE",
        help="file whose first line is the passphrase of symmetric days (default: <gpg_passphrase_file> if readable)",
    )
    group.add_argument("--gpg-home", metavar="DIR", help="GnuPG home holding the secret key of public-key days")
    group.add_argument("--key-passphrase-file", metavar="FILE", help="file holding that secret key's passphrase")


def addSignatures(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("manifest signatures")
    group.add_argument(
        "--trusted-signer",
        metavar="FINGERPRINT",
        help="the only key whose manifest signatures are accepted (default: <gpg_sign_key>)",
    )
    group.add_argument(
        "--signer-key",
        metavar="FILE",
        help="that key's exported public key (default: exported from <gpg_sign_home>, else --gpg-home)",
    )
    group.add_argument(
        "--require-signature", action="store_true", help="refuse a day whose manifest is not signed by that key"
    )


def addJobs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--jobs",
        type=positive,
        metavar="N",
        help=f"objects handled at once (default: {DEFAULT_JOBS}, or <max_concurrency> if lower)",
    )


# -- what the options lead to -------------------------------------------------------------------------------------


def settings(args: argparse.Namespace) -> Settings:
    return loadSettings(
        args.config, bucket=args.bucket, endpointUrl=args.endpoint_url, region=args.region, profile=args.profile
    )


def store(current: Settings) -> S3Store:
    from cedar_s3.s3.session import buildStore

    return buildStore(current.amazons3, current.backupUser)


def deadlines(current: Settings) -> Deadlines:
    config = current.amazons3
    default = Deadlines()
    allowance = float(config.childTimeout) if config.childTimeout else default.allowance
    floor = config.childMinThroughput.bytes if config.childMinThroughput else default.minThroughput
    return Deadlines(allowance, floor)


def keys(args: argparse.Namespace, current: Settings) -> DecryptKeys:
    """What to decrypt with: the flags, else the config's ``<gpg_passphrase_file>`` where this user can read it."""
    from cedar_s3.gpg.decrypt import DecryptKeys

    passphraseFile = args.passphrase_file
    configured = current.amazons3.gpgPassphraseFile
    if passphraseFile is None and configured and os.access(configured, os.R_OK):
        logger.debug("Using <gpg_passphrase_file> %s from the configuration.", configured)
        passphraseFile = configured
    return DecryptKeys(
        passphraseFile=passphraseFile,
        gnupgHome=args.gpg_home,
        keyPassphraseFile=args.key_passphrase_file,
        deadlines=deadlines(current),
    )


@contextlib.contextmanager
def signaturePolicy(args: argparse.Namespace, current: Settings) -> Iterator[SignaturePolicy]:
    """The signature checks asked for: the trusted signer from the flag or ``<gpg_sign_key>``, its public key
    from ``--signer-key``, ``<gpg_sign_home>`` (when readable here) or ``--gpg-home``."""
    from cedar_s3.manifests import SignaturePolicy

    trusted = args.trusted_signer or current.amazons3.gpgSignKey
    if trusted is None:
        yield SignaturePolicy(required=args.require_signature)
        return
    from cedar_s3.config import checkFingerprint
    from cedar_s3.gpg.sign import SignatureChecker

    trusted = checkFingerprint("--trusted-signer", trusted)
    home = current.amazons3.gpgSignHome
    keyHome = home if home and os.access(home, os.R_OK | os.X_OK) else args.gpg_home
    checker = SignatureChecker(trusted, keyFile=args.signer_key, keyHome=keyHome, deadlines=deadlines(current))
    try:
        yield SignaturePolicy(checker=checker, required=args.require_signature)
    finally:
        checker.close()


def progressStyle(args: argparse.Namespace) -> str:
    if args.quiet:
        return "quiet"
    return "terminal" if sys.stderr.isatty() else "log"


def jobs(args: argparse.Namespace, current: S3Store) -> int:
    return int(args.jobs) if args.jobs else min(DEFAULT_JOBS, current.concurrency)


def resolveDay(current: S3Store, day: datetime.date | None) -> DayListing:
    """The day asked for, or (None: ``latest``) the newest complete day."""
    if day is not None:
        listing = listDay(current, day)
        if not listing.objects and not listing.hasManifest:
            raise ValueError(
                f"Nothing is stored for {day} under {current.location.url(listing.prefix)}; "
                f"run '{PROG} list' to see the stored days."
            )
        return listing
    for candidate in findDays(current):
        listing = listDay(current, candidate)
        if listing.kind == DayKind.COMPLETE:
            return listing
    raise ValueError(f"No complete day is stored under {current.location.url(current.location.rootPrefix)}.")


def size(count: int) -> str:
    from CedarBackup3.util import displayBytes

    return str(displayBytes(count))
