"""``cback3-s3``: the operator's command for the days cedar-s3 stores: list, restore, verify, prune.

It reads the same ``cback3.conf`` as the nightly run, so nothing is configured twice. Exit codes: 0 success,
1 failure (the last line on stderr says what failed and what to do), 2 usage error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from cedar_s3 import __version__
from cedar_s3.catalog import DayListing, findDays, listDay, listDays, parseDay
from cedar_s3.cliconfig import DEFAULT_CONFIG, Settings, loadSettings
from cedar_s3.manifest import readManifest

if TYPE_CHECKING:
    from cedar_s3.plaintext import DecryptKeys
    from cedar_s3.s3 import S3Store

__all__ = ["main"]

PROG = "cback3-s3"
EXIT_OK, EXIT_FAILURE = 0, 1  # and 2, argparse's own, for usage errors
DEFAULT_JOBS = 4

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.cli")


class CommandFailedError(Exception):
    """The command ran but did not fully succeed; the message is the one-line summary for stderr."""


# ---------------------------------------------------------------------------------------------------------------
# Shared plumbing: settings, store, decryption keys, output
# ---------------------------------------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    return loadSettings(
        args.config, bucket=args.bucket, endpointUrl=args.endpoint_url, region=args.region, profile=args.profile
    )


def _store(settings: Settings) -> S3Store:
    from cedar_s3.s3 import buildStore

    return buildStore(settings.amazons3, settings.backupUser)


def _keys(args: argparse.Namespace, settings: Settings) -> DecryptKeys:
    """What to decrypt with: the flags, else the config's ``<gpg_passphrase_file>`` where this user can read it."""
    from cedar_s3.plaintext import DecryptKeys

    passphraseFile = args.passphrase_file
    configured = settings.amazons3.gpgPassphraseFile
    if passphraseFile is None and configured and os.access(configured, os.R_OK):
        logger.debug("Using <gpg_passphrase_file> %s from the configuration.", configured)
        passphraseFile = configured
    return DecryptKeys(
        passphraseFile=passphraseFile, gnupgHome=args.gpg_home, keyPassphraseFile=args.key_passphrase_file
    )


def _progressStyle(args: argparse.Namespace) -> str:
    if args.quiet:
        return "quiet"
    return "terminal" if sys.stderr.isatty() else "log"


def _jobs(args: argparse.Namespace, store: S3Store) -> int:
    return int(args.jobs) if args.jobs else min(DEFAULT_JOBS, store.concurrency)


def _resolveDay(store: S3Store, day: datetime.date | None) -> DayListing:
    """The day asked for, or (None: ``latest``) the newest complete day."""
    if day is not None:
        listing = listDay(store, day)
        if not listing.objects and not listing.hasManifest:
            raise ValueError(
                f"Nothing is stored for {day} under {store.location.url(listing.prefix)}; "
                f"run '{PROG} list' to see the stored days."
            )
        return listing
    for candidate in findDays(store):
        listing = listDay(store, candidate)
        if listing.state == "complete":
            return listing
    raise ValueError(f"No complete day is stored under {store.location.url(store.location.rootPrefix)}.")


def _size(count: int) -> str:
    from CedarBackup3.util import displayBytes

    return str(displayBytes(count))


# ---------------------------------------------------------------------------------------------------------------
# list
# ---------------------------------------------------------------------------------------------------------------


def _cmdList(args: argparse.Namespace) -> int:
    from cedar_s3.catalog import summarizeDays

    settings = _settings(args)
    with _store(settings) as store:
        summaries = summarizeDays(store, findDays(store))
        where = store.location
    if args.json:
        document = {
            "bucket": where.bucket,
            "prefix": where.prefix,
            "days": [summary.toJson() for summary in summaries],
        }
        print(json.dumps(document, indent=2))
        return EXIT_OK
    if not summaries:
        print(f"No days stored under {where.url(where.rootPrefix)}")
        return EXIT_OK
    rows = [("DATE", "OBJECTS", "SIZE", "ENCRYPTION", "STATE", "VERIFIED")]
    for summary in summaries:
        verified = f"{summary.verifiedAt} ({summary.verifiedBy})" if summary.verifiedAt else "-"
        encryption = summary.encryption or "?"
        rows.append(
            (summary.day.isoformat(), str(summary.objects), _size(summary.bytes), encryption, summary.state, verified)
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.rjust(width) if column in (1, 2) else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
    for summary in summaries:
        if summary.problem:
            logger.warning("%s: %s", summary.day, summary.problem)
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------------------
# restore
# ---------------------------------------------------------------------------------------------------------------


def _cmdRestore(args: argparse.Namespace) -> int:
    from cedar_s3.progress import makeProgress
    from cedar_s3.restore import checkRestorable, restoreDay, selectRecords
    from cedar_s3.safedir import SafeDir

    settings = _settings(args)
    with _store(settings) as store:
        listing = _resolveDay(store, args.date)
        url = store.location.url(listing.prefix)
        manifest = readManifest(store, listing.prefix)
        if manifest is None:
            raise ValueError(
                f"{url} has no manifest (stored by upstream's extension, or never finished), so nothing can be "
                "checked; restore it by hand with 'aws s3 cp --recursive' as the restore runbook shows."
            )
        if listing.hasMarker:
            logger.warning("%s is marked incomplete; restoring what its manifest proves, file by file.", url)
        records = selectRecords(manifest, args.include or [])
        if not records:
            raise ValueError(
                f"No file of {listing.day} matches --include {' '.join(args.include)}; "
                f"'{PROG} restore {listing.day} --list' shows its files."
            )
        if args.list:
            for record in records:
                print(f"{record.relative}\t{record.plaintextSize}\t{record.encryption}")
            return EXIT_OK
        keys = _keys(args, settings)
        total = sum(record.size for record in records)
        try:
            with SafeDir(args.to, overwrite=args.overwrite) as target:
                checkRestorable(store, listing.prefix, records, target, keys)
                logger.info("Restoring %d file(s) of %s from %s into %s.", len(records), listing.day, url, target.root)
                with makeProgress(f"restore {listing.day}", total, len(records), style=_progressStyle(args)) as bar:
                    report = restoreDay(
                        store,
                        listing.prefix,
                        records,
                        target,
                        keys,
                        bar,
                        jobs=_jobs(args, store),
                        storageClasses={entry.key: entry.storageClass for entry in listing.objects},
                    )
        finally:
            keys.close()
    for problem in report.failed:
        logger.error("Not restored: %s", problem)
    logger.info("Restored %d file(s), %s, into %s.", len(report.restored), _size(report.bytes), args.to)
    if report.failed:
        raise CommandFailedError(
            f"{len(report.failed)} of {len(records)} file(s) could not be restored (named above; no partial file was "
            f"left); the other {len(report.restored)} are in {args.to}. Run '{PROG} verify {listing.day} --download' "
            "to see whether the bucket copy is damaged."
        )
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------------------------------------------


def _cmdVerify(args: argparse.Namespace) -> int:
    from cedar_s3.checkday import checkDay

    settings = _settings(args)
    keys = _keys(args, settings)
    failed = problems = checked = 0
    try:
        with _store(settings) as store:
            if args.date is not None:
                listings = [_resolveDay(store, args.date)]
            else:
                days = findDays(store)
                if not days:
                    raise ValueError(f"No days stored under {store.location.url(store.location.rootPrefix)}.")
                listings = listDays(store, days if args.all else days[:1])
            for listing in listings:
                check = checkDay(
                    store,
                    listing,
                    download=args.download,
                    keys=keys,
                    jobs=_jobs(args, store),
                    progressStyle=_progressStyle(args),
                )
                checked += 1
                if check.ok:
                    print(f"{listing.day}  OK   {check.objects} object(s)")
                    continue
                failed += 1
                problems += len(check.problems)
                print(f"{listing.day}  BAD  {len(check.problems)} problem(s) in {check.objects} object(s)")
                for problem in check.problems:
                    print(f"  {problem}")
    finally:
        keys.close()
    if failed:
        raise CommandFailedError(
            f"{failed} of {checked} day(s) failed verification with {problems} problem(s), each named above; fix "
            "what they name, store a damaged day again while it is still staged, or rely on an older good day."
        )
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------------------
# prune
# ---------------------------------------------------------------------------------------------------------------


def _cmdPrune(args: argparse.Namespace) -> int:
    from cedar_s3.prune import Policy, planPrune, pruneDay

    settings = _settings(args)
    policy = Policy(keepDays=args.keep_days, keepLast=args.keep_last)
    with _store(settings) as store:
        listings = listDays(store, findDays(store))
        plans = planPrune(store, listings, policy, datetime.date.today(), jobs=_jobs(args, store))
        verb = "would delete" if args.dry_run else "delete"
        doomed = [plan for plan in plans if plan.deletable]
        for plan in plans:
            if not plan.deletable:
                logger.warning("Keeping %s whole: %s.", plan.listing.day, plan.lockedReason)
        failures: list[str] = []
        for plan in doomed:
            listing = plan.listing
            print(f"{verb} {listing.day}: {len(listing.objects)} object(s), {_size(listing.bytes)}")
            if args.dry_run:
                continue
            result = pruneDay(store, plan)
            logger.debug("Deleted %d object(s) or version(s) under %s.", result.deleted, listing.prefix)
            for problem in result.problems:
                failures.append(f"{listing.day}: {problem}")
                logger.error("Pruning %s failed: %s", listing.day, problem)
    kept = len(listings) - len(doomed)
    summary = f"{len(doomed)} day(s) {'would be ' if args.dry_run else ''}deleted, {kept} kept."
    logger.info("%s", summary)
    if failures:
        raise CommandFailedError(
            f"{len(failures)} day(s) could not be pruned completely (named above; each is left marked incomplete); "
            "fix the cause and run prune again."
        )
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------------------------


def _dayArgument(text: str) -> datetime.date | None:
    if text == "latest":
        return None
    try:
        return parseDay(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _addCommon(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Options every subcommand takes; accepted before or after the subcommand name."""
    default: Any = None if top else argparse.SUPPRESS  # a subcommand's copy must not reset the top's value
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


def _addDecryption(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decryption (encrypted days only)")
    group.add_argument(
        "--passphrase-file",
        metavar="FILE",
        help="file whose first line is the passphrase of symmetric days (default: <gpg_passphrase_file> if readable)",
    )
    group.add_argument("--gpg-home", metavar="DIR", help="GnuPG home holding the secret key of public-key days")
    group.add_argument("--key-passphrase-file", metavar="FILE", help="file holding that secret key's passphrase")


def _addJobs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--jobs",
        type=_positive,
        metavar="N",
        help=f"objects handled at once (default: {DEFAULT_JOBS}, or <max_concurrency> if lower)",
    )


def _subcommand(
    subparsers: Any, name: str, summary: str, description: str, epilog: str, handler: Callable[..., int]
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    _addCommon(parser, top=False)
    return parser


EXIT_CODES = "exit codes: 0 success, 1 failure (the last stderr line says what to do), 2 usage error"


def buildParser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="List, restore, verify and prune the days Cedar Backup's amazons3 store action (cedar-s3) "
        f"keeps in S3, using the settings in cback3.conf.\n\n{EXIT_CODES}",
        epilog=f"examples:\n  {PROG} list\n  {PROG} restore 2026-05-01 --to /var/restore\n"
        f"  {PROG} verify --all\n  {PROG} prune --keep-days 90 --dry-run\n\n"
        f"'{PROG} COMMAND --help' explains each command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _addCommon(parser, top=True)
    subparsers = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")

    listing = _subcommand(
        subparsers,
        "list",
        "the stored days, newest first",
        "The days stored under the bucket/prefix, newest first: date, objects, size, encryption, state "
        "(complete: a manifest and no incomplete marker) and when the day was last verified.",
        f"examples:\n  {PROG} list\n  {PROG} list --json | jq '.days[] | select(.complete | not)'\n\n{EXIT_CODES}",
        _cmdList,
    )
    listing.add_argument("--json", action="store_true", help="print JSON for scripts")

    restore = _subcommand(
        subparsers,
        "restore",
        "restore a day (or some of its files) into a directory",
        "Download a day, decrypt where needed, check every file against the manifest (size and SHA-256), and "
        "write it under DIR with its path relative to the staging directory. Existing files are never "
        "overwritten without --overwrite; nothing is ever written outside DIR; a file that fails its check "
        "leaves nothing behind.",
        f"examples:\n  {PROG} restore 2026-05-01 --to /var/restore\n"
        f"  {PROG} restore latest --to /var/restore --include 'host1/*'\n"
        f"  {PROG} restore 2026-05-01 --list\n"
        f"  {PROG} restore 2026-05-01 --to /tmp/r --passphrase-file /root/backup.pass\n"
        f"  {PROG} --bucket my-bucket restore 2026-05-01 --to /tmp/r --gpg-home /root/restore-gnupg\n\n"
        f"{EXIT_CODES}",
        _cmdRestore,
    )
    restore.add_argument(
        "date", type=_dayArgument, metavar="DATE", help="YYYY-MM-DD, or 'latest' for the newest complete day"
    )
    restore.add_argument("--to", metavar="DIR", help="directory to restore into (created if missing)")
    restore.add_argument(
        "--include",
        action="append",
        metavar="PATTERN",
        help="restore only paths matching this shell pattern, such as 'host1/*' (repeatable)",
    )
    restore.add_argument("--overwrite", action="store_true", help="replace files that already exist under DIR")
    restore.add_argument("--list", action="store_true", help="only list the files that would be restored")
    _addDecryption(restore)
    _addJobs(restore)

    verify = _subcommand(
        subparsers,
        "verify",
        "prove stored days against their manifests",
        "Compare each object of a day with its manifest. Without --download: the listing's sizes and checksums "
        "(cheap). With --download: stream every object, decrypt it in memory where encrypted, and check the "
        "plaintext SHA-256 (nothing is written to disk). Every bad object is named. Without DATE or --all, "
        "the newest day is verified.",
        f"examples:\n  {PROG} verify 2026-05-01\n  {PROG} verify --all\n"
        f"  {PROG} verify latest --download --passphrase-file /root/backup.pass\n\n{EXIT_CODES}",
        _cmdVerify,
    )
    which = verify.add_mutually_exclusive_group()
    which.add_argument(
        "date", nargs="?", type=_dayArgument, metavar="DATE", help="YYYY-MM-DD, or 'latest' for the newest day"
    )
    which.add_argument("--all", action="store_true", help="verify every stored day")
    verify.add_argument("--download", action="store_true", help="download and hash (and decrypt) every object")
    _addDecryption(verify)
    _addJobs(verify)

    prune = _subcommand(
        subparsers,
        "prune",
        "delete days older than a retention policy",
        "Delete whole days the policy does not keep. The newest day and the newest complete day are always "
        "kept; with both options a day is kept if either keeps it. A day with objects under object-lock "
        "retention or legal hold is kept whole, with a warning. A day is marked incomplete before anything of "
        "it is deleted and its manifest goes last, so an interrupted prune never leaves a day that looks "
        "complete. On a versioned bucket every version of the day's objects is deleted.",
        f"examples:\n  {PROG} prune --keep-days 90 --dry-run\n  {PROG} prune --keep-days 90\n"
        f"  {PROG} prune --keep-last 30 --keep-days 14\n\n{EXIT_CODES}",
        _cmdPrune,
    )
    prune.add_argument("--keep-days", type=_positive, metavar="N", help="keep days younger than N days")
    prune.add_argument("--keep-last", type=_positive, metavar="N", help="keep the N newest days")
    prune.add_argument("--dry-run", action="store_true", help="print what would be deleted and change nothing")
    _addJobs(prune)
    return parser


# ---------------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------------


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time, so log lines print above a live progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def _setupLogging(args: argparse.Namespace) -> None:
    handler = _StderrHandler()
    if sys.stderr.isatty():
        handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {PROG} %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.getLogger("CedarBackup3.log").setLevel(level)


def _oneLine(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: parse, run one command, map failures to exit codes and one line on stderr."""
    parser = buildParser()
    args = parser.parse_args(argv)
    if args.command == "prune" and args.keep_days is None and args.keep_last is None:
        parser.error("prune needs --keep-days N and/or --keep-last N")
    if args.command == "restore" and args.to is None and not args.list:
        parser.error("restore needs --to DIR (or --list to only show the files)")
    _setupLogging(args)
    try:
        return int(args.handler(args))
    except CommandFailedError as error:
        print(f"{PROG}: failed: {_oneLine(error)}", file=sys.stderr)
    except (OSError, ValueError) as error:
        print(f"{PROG}: error: {_oneLine(error)}", file=sys.stderr)
    except KeyboardInterrupt:
        print(
            f"{PROG}: interrupted; no partial file was left behind. Run the command again to finish.", file=sys.stderr
        )
    return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
