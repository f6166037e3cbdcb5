"""``cback3-s3 restore``: a day (or some of its files) into a directory, every byte checked."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cedar_s3.bucketformat import DayKind, StoredObject
from cedar_s3.catalog import DayListing
from cedar_s3.cli import common
from cedar_s3.cli.common import PROG, CommandFailedError
from cedar_s3.gpg.sign import SignatureError
from cedar_s3.upstreamday import UpstreamObject

if TYPE_CHECKING:
    from cedar_s3.cliconfig import Settings
    from cedar_s3.manifests import SignaturePolicy
    from cedar_s3.restore import Restorable, RestoreReport
    from cedar_s3.s3.store import S3Store

NAME = "restore"
SUMMARY = "restore a day (or some of its files) into a directory"
DESCRIPTION = (
    "Download a day, decrypt where needed, check every file against the manifest (size and SHA-256; its "
    "signature too where the day is signed and a trusted signer is known), and write it under DIR with its path "
    "relative to the staging directory. A day stored by upstream's extension (no manifest) is restored too: "
    "encrypted objects are recognised by their own first bytes and decrypted (gpg's integrity check must pass), "
    "and sizes are checked against the listing. Existing files are never overwritten without --overwrite; nothing "
    "is ever written outside DIR; a file that fails its check leaves nothing behind."
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


@dataclass
class DayToRestore:
    """What a day offers to restore: its records (a manifest's, or an upstream day's listing) and refusals."""

    listing: DayListing
    url: str
    records: list[Restorable]
    rejected: list[str]

    @property
    def upstream(self) -> bool:
        return self.listing.kind == DayKind.UPSTREAM


def readDay(store: S3Store, listing: DayListing, signatures: SignaturePolicy) -> DayToRestore:
    """The day's records: from its manifest (checked, signature included), or, for a day upstream stored, from
    its listing; an interrupted day without a manifest has nothing that says what it should hold."""
    from cedar_s3.manifests import readManifest
    from cedar_s3.upstreamday import upstreamObjects

    url = store.location.url(listing.prefix)
    if listing.kind == DayKind.UPSTREAM:
        if signatures.required:
            raise SignatureError(f"{url} was stored by upstream's extension: it has no signed manifest.")
        objects, refused = upstreamObjects(listing)
        return DayToRestore(listing, url, list(objects), refused)
    manifest = readManifest(store, listing.prefix, signatures)
    if manifest is None:
        raise ValueError(
            f"{url} is marked incomplete and has no manifest: a night was interrupted before it was done, so "
            f"nothing says what the day should hold; restore another day ('{PROG} list')."
        )
    if listing.hasMarker:
        common.logger.warning("%s is marked incomplete; restoring what its manifest proves, file by file.", url)
    return DayToRestore(listing, url, list(manifest.objects), manifest.rejected)


def run(args: argparse.Namespace) -> int:
    from cedar_s3.restore import selectRecords

    current = common.settings(args)
    with common.store(current) as store, common.signaturePolicy(args, current) as signatures:
        day = readDay(store, common.resolveDay(store, args.date), signatures)
        for rejected in day.rejected:
            common.logger.error("Not restored: %s", rejected)
        records = selectRecords(day.records, args.include or [])
        _checkChosen(args, day, records)
        if args.list:
            for record in records:
                print(f"{record.relative}\t{_listedSize(record)}\t{record.encryption}")
            return common.EXIT_OK
        report = _restore(args, current, store, day, records)
    return _finish(args, day, len(records), report)


def _listedSize(record: StoredObject | UpstreamObject) -> int:
    return record.plaintextSize if isinstance(record, StoredObject) else record.size


def _checkChosen(args: argparse.Namespace, day: DayToRestore, records: Sequence[object]) -> None:
    if not records and day.rejected and not args.include:
        more = f" (and {len(day.rejected) - 1} more)" if len(day.rejected) > 1 else ""
        raise CommandFailedError(f"Nothing restored: every entry of the day was refused: {day.rejected[0]}{more}")
    if not records:
        raise ValueError(
            f"No file of {day.listing.day} matches --include {' '.join(args.include or [])}; "
            f"'{PROG} restore {day.listing.day} --list' shows its files."
        )


def _restore(
    args: argparse.Namespace, current: Settings, store: S3Store, day: DayToRestore, records: Sequence[Restorable]
) -> RestoreReport:
    from cedar_s3.progress import makeProgress
    from cedar_s3.restore import checkRestorable, restoreDay
    from cedar_s3.safedir import SafeDir

    keys = common.keys(args, current)
    listing = day.listing
    total = sum(record.size for record in records)
    try:
        with SafeDir(args.to, overwrite=args.overwrite) as target:
            checkRestorable(store, listing.prefix, records, target, keys)
            common.logger.info(
                "Restoring %d file(s) of %s from %s into %s.", len(records), listing.day, day.url, target.root
            )
            with makeProgress(f"restore {listing.day}", total, len(records), style=common.progressStyle(args)) as bar:
                return restoreDay(
                    store,
                    listing.prefix,
                    records,
                    target,
                    keys,
                    progress=bar,
                    jobs=common.jobs(args, store),
                    storageClasses={entry.key: entry.storageClass for entry in listing.objects},
                )
    finally:
        keys.close()


def _finish(args: argparse.Namespace, day: DayToRestore, chosen: int, report: RestoreReport) -> int:
    for problem in report.failed:
        common.logger.error("Not restored: %s", problem)
    common.logger.info("Restored %d file(s), %s, into %s.", len(report.restored), common.size(report.bytes), args.to)
    if day.upstream:
        common.logger.warning(
            "%s was stored by upstream's extension: no recorded digest existed for this day, so the files were "
            "checked only against the listed sizes and, where encrypted, gpg's integrity check. '%s adopt %s' "
            "records digests for it from now on.",
            day.listing.day,
            PROG,
            day.listing.day,
        )
    failed = len(report.failed) + len(day.rejected)
    if failed:
        raise CommandFailedError(
            f"{failed} of {chosen + len(day.rejected)} file(s) could not be restored (named above; no partial "
            f"file was left); the other {len(report.restored)} are in {args.to}. Run '{PROG} verify "
            f"{day.listing.day} --download' to see whether the bucket copy is damaged."
        )
    return common.EXIT_OK
