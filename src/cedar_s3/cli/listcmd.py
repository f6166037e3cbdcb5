"""``cback3-s3 list``: the stored days, newest first, each with its kind."""

from __future__ import annotations

import argparse
import json

from cedar_s3.cli import common
from cedar_s3.cli.common import PROG

NAME = "list"
SUMMARY = "the stored days, newest first"
DESCRIPTION = (
    "The days stored under the bucket/prefix, newest first: date, objects, size, encryption, kind "
    "(complete: a manifest and no incomplete marker; incomplete: a night or prune was interrupted; upstream: stored "
    "by upstream's extension, no manifest) and when the day was last verified."
)
EXAMPLES = [f"{PROG} list", f"{PROG} list --json | jq '.days[] | select(.complete | not)'"]


def addArguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def run(args: argparse.Namespace) -> int:
    from cedar_s3.catalog import findDays, summarizeDays

    current = common.settings(args)
    with common.store(current) as store:
        summaries = summarizeDays(store, findDays(store))
        where = store.location
    if args.json:
        document = {"bucket": where.bucket, "prefix": where.prefix, "days": [day.toJson() for day in summaries]}
        print(json.dumps(document, indent=2))
        return common.EXIT_OK
    if not summaries:
        print(f"No days stored under {where.url(where.rootPrefix)}")
        return common.EXIT_OK
    rows = [("DATE", "OBJECTS", "SIZE", "ENCRYPTION", "KIND", "VERIFIED")]
    for day in summaries:
        verified = f"{day.verifiedAt} ({day.verifiedBy})" if day.verifiedAt else "-"
        rows.append(
            (
                day.day.isoformat(),
                str(day.objects),
                common.size(day.bytes),
                day.encryption or "?",
                day.kind.value,
                verified,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.rjust(width) if column in (1, 2) else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
    for day in summaries:
        if day.problem:
            common.logger.warning("%s: %s", day.day, day.problem)
    return common.EXIT_OK
