"""``cback3-s3 prune``: delete whole days a retention policy no longer keeps."""

from __future__ import annotations

import argparse
import datetime

from cedar_s3.cli import common
from cedar_s3.cli.common import PROG, CommandFailedError

NAME = "prune"
SUMMARY = "delete days older than a retention policy"
DESCRIPTION = (
    "Delete whole days the policy does not keep. The newest day and the newest complete day are always kept; "
    "with both options a day is kept if either keeps it. Days stored by upstream's extension count by their date "
    "like any other. A day with objects under object-lock retention or legal hold is kept whole, with a warning. "
    "A day is marked incomplete before anything of it is deleted and its manifest goes last, so an interrupted "
    "prune never leaves a day that looks complete. On a versioned bucket every version of the day's objects is "
    "deleted."
)
EXAMPLES = [
    f"{PROG} prune --keep-days 90 --dry-run",
    f"{PROG} prune --keep-days 90",
    f"{PROG} prune --keep-last 30 --keep-days 14",
]


def addArguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep-days", type=common.positive, metavar="N", help="keep days younger than N days")
    parser.add_argument("--keep-last", type=common.positive, metavar="N", help="keep the N newest days")
    parser.add_argument("--dry-run", action="store_true", help="print what would be deleted and change nothing")
    common.addJobs(parser)


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.keep_days is None and args.keep_last is None:
        parser.error("prune needs --keep-days N and/or --keep-last N")


def run(args: argparse.Namespace) -> int:
    from cedar_s3.catalog import findDays, listDays
    from cedar_s3.prune import Policy, planPrune, pruneDay

    current = common.settings(args)
    policy = Policy(keepDays=args.keep_days, keepLast=args.keep_last)
    with common.store(current) as store:
        listings = listDays(store, findDays(store))
        plans = planPrune(store, listings, policy, datetime.date.today(), jobs=common.jobs(args, store))
        verb = "would delete" if args.dry_run else "delete"
        doomed = [plan for plan in plans if plan.deletable]
        for plan in plans:
            if not plan.deletable:
                common.logger.warning("Keeping %s whole: %s.", plan.listing.day, plan.lockedReason)
        failures: list[str] = []
        for plan in doomed:
            listing = plan.listing
            print(
                f"{verb} {listing.day}: {len(listing.objects)} object(s), {common.size(listing.bytes)}, "
                f"{listing.kind.value} day"
            )
            if args.dry_run:
                continue
            result = pruneDay(store, plan)
            common.logger.debug("Deleted %d object(s) or version(s) under %s.", result.deleted, listing.prefix)
            for problem in result.problems:
                failures.append(f"{listing.day}: {problem}")
                common.logger.error("Pruning %s failed: %s", listing.day, problem)
    kept = len(listings) - len(doomed)
    common.logger.info("%s", f"{len(doomed)} day(s) {'would be ' if args.dry_run else ''}deleted, {kept} kept.")
    if failures:
        raise CommandFailedError(
            f"{len(failures)} day(s) could not be pruned completely (named above; each is left marked incomplete); "
            "fix the cause and run prune again."
        )
    return common.EXIT_OK
