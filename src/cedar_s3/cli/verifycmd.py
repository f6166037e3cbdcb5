"""``cback3-s3 verify``: prove stored days against their manifests."""

from __future__ import annotations

import argparse

from cedar_s3.cli import common
from cedar_s3.cli.common import PROG, CommandFailedError

NAME = "verify"
EXIT_UNVERIFIABLE = 3
EXIT_CODES = (
    "exit codes: 0 every day OK, 1 a day failed (BAD) or the command failed, 2 usage error, 3 no day failed but "
    "some could not be proven (UNVERIFIABLE: stored by upstream's extension, no manifest)"
)
SUMMARY = "prove stored days against their manifests"
DESCRIPTION = (
    "Compare each object of a day with its manifest. Without --download: the listing's sizes and checksums "
    "(cheap). With --download: stream every object, decrypt it in memory where encrypted, and check the "
    "plaintext SHA-256 (nothing is written to disk). A signed manifest's signature is checked against the trusted "
    "signer. Every bad object is named. Without DATE or --all, the newest day is verified. A day stored by "
    "upstream's extension has no manifest: what can be checked is (every object listed and readable; with "
    "--download read whole, decrypted where encrypted, its size as listed), and its verdict is UNVERIFIABLE, "
    "neither OK nor BAD."
)
EXAMPLES = [
    f"{PROG} verify 2026-05-01",
    f"{PROG} verify --all",
    f"{PROG} verify latest --download --passphrase-file /root/backup.pass",
]


def addArguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "date", nargs="?", type=common.dayArgument, metavar="DATE", help="YYYY-MM-DD, or 'latest' for the newest day"
    )
    which.add_argument("--all", action="store_true", help="verify every stored day")
    parser.add_argument("--download", action="store_true", help="download and hash (and decrypt) every object")
    common.addDecryption(parser)
    common.addSignatures(parser)
    common.addJobs(parser)


def run(args: argparse.Namespace) -> int:
    from cedar_s3.catalog import findDays, listDays
    from cedar_s3.dayverify import checkDay

    current = common.settings(args)
    keys = common.keys(args, current)
    failed = problems = checked = unverifiable = 0
    try:
        with common.store(current) as store, common.signaturePolicy(args, current) as signatures:
            if args.date is not None:
                listings = [common.resolveDay(store, args.date)]
            else:
                days = findDays(store)
                if not days:
                    raise ValueError(f"No days stored under {store.location.url(store.location.rootPrefix)}.")
                listings = listDays(store, days if args.all else days[:1])
            for listing in listings:
                result = checkDay(
                    store,
                    listing,
                    download=args.download,
                    keys=keys,
                    jobs=common.jobs(args, store),
                    progressStyle=common.progressStyle(args),
                    signatures=signatures,
                )
                checked += 1
                if result.ok:
                    print(f"{listing.day}  OK   {result.objects} object(s)")
                    continue
                if not result.problems:
                    unverifiable += 1
                    print(f"{listing.day}  UNVERIFIABLE  {result.unverifiable}")
                    continue
                failed += 1
                problems += len(result.problems)
                print(f"{listing.day}  BAD  {len(result.problems)} problem(s) in {result.objects} object(s)")
                for problem in result.problems:
                    print(f"  {problem}")
    finally:
        keys.close()
    if failed:
        raise CommandFailedError(
            f"{failed} of {checked} day(s) failed verification with {problems} problem(s), each named above; fix "
            "what they name, store a damaged day again while it is still staged, or rely on an older good day."
        )
    if unverifiable:
        common.logger.warning(
            "%d of %d day(s) cannot be proven: stored by upstream's extension, they have no manifest to check "
            "against. '%s adopt DATE' reads such a day once and records its digests.",
            unverifiable,
            checked,
            PROG,
        )
        return EXIT_UNVERIFIABLE
    return common.EXIT_OK
