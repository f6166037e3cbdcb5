"""``cback3-s3 restore``: a day (or some of its files) into a directory, every byte checked."""

from __future__ import annotations

import argparse

from cedar_s3.cli import common
from cedar_s3.cli.common import PROG, CommandFailedError

NAME = "restore"
SUMMARY = "restore a day (or some of its files) into a directory"
DESCRIPTION = (
    "Download a day, decrypt where needed, check every file against the manifest (size and SHA-256; its "
    "signature too where the day is signed and a trusted signer is known), and write it under DIR with its path "
    "relative to the staging directory. Existing files are never overwritten without --overwrite; nothing is ever "
    "written outside DIR; a file that fails its check leaves nothing behind."
)
EXAMPLES = [
    f"{PROG} restore 2026-05-01 --to /var/restore",
    f"{PROG} restore latest --to /var/restore --include 'host1/*'",
    f"{PROG} restore 2026-05-01 --list",
    f"{PROG} restore 2026-05-01 --to /tmp/r --passphrase-file /root/backup.pass",
    f"{PROG} --bucket my-bucket restore 2026-05-01 --to /tmp/r --gpg-home /root/restore-gnupg",
]


def addArguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "date", type=common.dayArgument, metavar="DATE", help="YYYY-MM-DD, or 'latest' for the newest complete day"
    )
    parser.add_argument("--to", metavar="DIR", help="directory to restore into (created if missing)")
    parser.add_argument(
        "--include",
        action="append",
        metavar="PATTERN",
        help="restore only paths matching this shell pattern, such as 'host1/*' (repeatable)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace files that already exist under DIR")
    parser.add_argument("--list", action="store_true", help="only list the files that would be restored")
    common.addDecryption(parser)
    common.addSignatures(parser)
    common.addJobs(parser)


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.to is None and not args.list:
        parser.error("restore needs --to DIR (or --list to only show the files)")


def run(args: argparse.Namespace) -> int:
    from cedar_s3.manifests import readManifest
    from cedar_s3.progress import makeProgress
    from cedar_s3.restore import checkRestorable, restoreDay, selectRecords
    from cedar_s3.safedir import SafeDir

    current = common.settings(args)
    with common.store(current) as store, common.signaturePolicy(args, current) as signatures:
        listing = common.resolveDay(store, args.date)
        url = store.location.url(listing.prefix)
        manifest = readManifest(store, listing.prefix, signatures)
        if manifest is None:
            raise ValueError(
                f"{url} has no manifest (stored by upstream's extension, or never finished), so nothing can be "
                "checked; restore it by hand with 'aws s3 cp --recursive' as the restore runbook shows."
            )
        if listing.hasMarker:
            common.logger.warning("%s is marked incomplete; restoring what its manifest proves, file by file.", url)
        for rejected in manifest.rejected:
            common.logger.error("Not restored: %s", rejected)
        records = selectRecords(manifest.objects, args.include or [])
        if not records and manifest.rejected and not args.include:
            more = f" (and {len(manifest.rejected) - 1} more)" if len(manifest.rejected) > 1 else ""
            raise CommandFailedError(
                f"Nothing restored: every entry of the manifest was refused: {manifest.rejected[0]}{more}"
            )
        if not records:
            raise ValueError(
                f"No file of {listing.day} matches --include {' '.join(args.include or [])}; "
                f"'{PROG} restore {listing.day} --list' shows its files."
            )
        if args.list:
            for record in records:
                print(f"{record.relative}\t{record.plaintextSize}\t{record.encryption}")
            return common.EXIT_OK
        keys = common.keys(args, current)
        total = sum(record.size for record in records)
        try:
            with SafeDir(args.to, overwrite=args.overwrite) as target:
                checkRestorable(store, listing.prefix, records, target, keys)
                common.logger.info(
                    "Restoring %d file(s) of %s from %s into %s.", len(records), listing.day, url, target.root
                )
                style = common.progressStyle(args)
                with makeProgress(f"restore {listing.day}", total, len(records), style=style) as bar:
                    report = restoreDay(
                        store,
                        listing.prefix,
                        records,
                        target,
                        keys,
                        bar,
                        jobs=common.jobs(args, store),
                        storageClasses={entry.key: entry.storageClass for entry in listing.objects},
                    )
        finally:
            keys.close()
    for problem in report.failed:
        common.logger.error("Not restored: %s", problem)
    common.logger.info("Restored %d file(s), %s, into %s.", len(report.restored), common.size(report.bytes), args.to)
    failed = len(report.failed) + len(manifest.rejected)
    if failed:
        raise CommandFailedError(
            f"{failed} of {len(records) + len(manifest.rejected)} file(s) could not be restored (named above; no "
            f"partial file was left); the other {len(report.restored)} are in {args.to}. Run '{PROG} verify "
            f"{listing.day} --download' to see whether the bucket copy is damaged."
        )
    return common.EXIT_OK
