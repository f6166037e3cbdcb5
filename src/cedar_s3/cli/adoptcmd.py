"""``cback3-s3 adopt``: give days upstream stored a cedar-s3 manifest, so verify and restore can prove them."""

from __future__ import annotations

import argparse
from pathlib import Path

from cedar_s3.cli import common
from cedar_s3.cli.common import PROG, CommandFailedError

NAME = "adopt"
SUMMARY = "record digests for days stored by upstream's extension (no manifest)"
DESCRIPTION = (
    "Read each day stored by upstream's extension once (download every object, decrypt it where it is an OpenPGP "
    "message, hash both sides, check its listed size) and write a cedar-s3 manifest for it, marked as adopted: "
    "when, by which version, from which evidence. No object is touched. Afterwards verify and restore treat the day "
    "like any day cedar-s3 stored. The manifest is signed where <gpg_sign_key> is configured. An interrupted "
    "adoption continues where it stopped (state under --state-dir). Days that are incomplete or already have a "
    "manifest are refused."
)
EXAMPLES = [
    f"{PROG} adopt 2025-12-31 --passphrase-file /root/backup.pass",
    f"{PROG} adopt --all-upstream --dry-run",
    f"{PROG} adopt 2025-12-30 2025-12-31 --gpg-home /root/restore-gnupg",
]


def addArguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("dates", nargs="*", type=common.dayArgument, metavar="DATE", default=[], help="YYYY-MM-DD")
    which.add_argument("--all-upstream", action="store_true", help="every day stored by upstream's extension")
    parser.add_argument("--dry-run", action="store_true", help="read and check everything, write no manifest")
    parser.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where an interrupted adoption keeps what it has read (default ~/.cache/cedar-s3)",
    )
    common.addDecryption(parser)
    common.addJobs(parser)


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.dates and not args.all_upstream:
        parser.error("adopt needs DATE... or --all-upstream")
    if None in args.dates:
        parser.error("adopt takes dates, not 'latest'")


def run(args: argparse.Namespace) -> int:
    from cedar_s3.adopt import AdoptionRefusedError, adoptDay, statePath
    from cedar_s3.bucketformat import DayKind
    from cedar_s3.catalog import findDays, listDay, listDays
    from cedar_s3.protection import nightSigner

    current = common.settings(args)
    keys = common.keys(args, current)
    failures: list[str] = []
    try:
        with common.store(current) as store, nightSigner(current.amazons3, common.deadlines(current)) as signer:
            if args.all_upstream:
                listings = [day for day in listDays(store, findDays(store)) if day.kind == DayKind.UPSTREAM]
                if not listings:
                    print(
                        f"No day stored by upstream's extension under {store.location.url(store.location.rootPrefix)}"
                    )
                    return common.EXIT_OK
            else:
                listings = [listDay(store, day) for day in args.dates]
            for listing in listings:
                try:
                    result = adoptDay(
                        store,
                        listing,
                        keys,
                        jobs=common.jobs(args, store),
                        progressStyle=common.progressStyle(args),
                        dryRun=args.dry_run,
                        stateDir=statePath(args.state_dir),
                        signer=signer,
                    )
                except AdoptionRefusedError as error:
                    failures.append(str(error))
                    print(f"{listing.day}  REFUSED  {error}")
                    continue
                if result.failed:
                    failures += result.failed
                    print(
                        f"{listing.day}  FAILED  {len(result.failed)} of {result.objects} object(s) could not be read"
                    )
                    for problem in result.failed:
                        print(f"  {problem}")
                    continue
                verb = "would adopt" if args.dry_run else "adopted"
                print(
                    f"{listing.day}  {verb}  {result.objects} object(s), {common.size(result.bytes)} of plaintext"
                    + (f" ({result.reused} read before an interruption)" if result.reused else "")
                )
    finally:
        keys.close()
    if failures:
        raise CommandFailedError(
            f"{len(failures)} problem(s), named above; days with problems got no manifest. Fix the cause (a "
            f"passphrase or key, a damaged object) and run '{PROG} adopt' again: what was read is not read twice."
        )
    return common.EXIT_OK
