#!/usr/bin/env python3
"""Benchmark a failed-then-resumed big upload: what the second night sends again, ours (A) against upstream (B).

Each side runs two nights against a moto S3 server on 127.0.0.1, through a counting TCP relay (relay.py). Night
1 is cut off for good once it has sent about --cut-percent of the file; night 2 runs through the relay with the
cut lifted. See README.md beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import getpass
import grp
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_children import run_ours
from bench_store import (
    MIB,
    REPO,
    Bench,
    Dataset,
    child_env,
    config_xml,
    ensure_awscli,
    ensure_bench_user,
    kill_agents,
    moto_server,
    print_columns,
    run,
    run_main,
    run_measured,
    s3_client,
    stage_day,
    upstream_spec,
    write_random,
)
from relay import Relay

THIS = Path(__file__).resolve()
FILE_MIB = {False: 2048, True: 256}  # the one staged file: full run, --quick
RELATIVE = "peer1/archive/huge.tar"
RESUMED = re.compile(r"Resumed the unfinished upload of (\S+): (\d+) of (\d+) part\(s\), (.+?) of (.+?), reused\.")
SIDES = {"ours": "A ours", "upstream": "B upstream"}


def parse_args() -> argparse.Namespace:
    """Command line; --run-ours is the internal child mode (bench_store's, with our log at INFO on stderr)."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help=f"a {FILE_MIB[True]} MiB file instead of {FILE_MIB[False]}")
    p.add_argument("--file-mib", type=int, help="size of the staged file in MiB (overrides the default)")
    p.add_argument("--cut-percent", type=float, default=70.0, help="cut night 1 after this share of the file went")
    p.add_argument("--chunk-mib", type=int, default=8, help="A's <multipart_threshold> and <multipart_chunksize> "
                   "(default 8, the AWS CLI's part size)")  # fmt: skip
    p.add_argument("--max-concurrency", type=int, help="<max_concurrency> for A (default: ours, 8)")
    p.add_argument("--sides", default="ours,upstream")
    p.add_argument("--json", metavar="PATH", help="also write all results as JSON")
    p.add_argument("--tmpdir", help="parent of the scratch dir (default: system temp)")
    p.add_argument("--awscli-venv", help="where the AWS CLI venv lives (bench_store.py's, created once)")
    p.add_argument("--moto", choices=("stock", "cached"), default="stock", help="as bench_store.py's --moto")
    p.add_argument("--keep-logs", metavar="DIR", help="copy moto's request log and each night's log there at the end")
    p.add_argument("--run-ours", metavar="FILE", help=argparse.SUPPRESS)
    p.set_defaults(s2k_count=None)  # read by bench_store.config_xml
    return p.parse_args()


def run_ours_logged(config_path: str) -> int:
    """Side A's child as in bench_store, with Cedar Backup's log at INFO on stderr (for the 'Resumed ...' line)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log = logging.getLogger("CedarBackup3")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    run_ours(config_path)
    return 0


@dataclasses.dataclass
class Context:
    """What both sides' nights share."""

    bench: Bench  # endpoint = the relay: what the measured children talk to
    direct: Any  # boto3 client straight to moto, for untimed, uncounted housekeeping and checks
    relay: Relay
    ds: Dataset
    size: int
    cut_after: int


def open_uploads(ctx: Context, bucket: str) -> list[dict[str, Any]]:
    """Multipart uploads left open in `bucket`, with how many parts and bytes each holds."""
    found = []
    for upload in ctx.direct.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        parts = ctx.direct.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]).get("Parts", [])
        found.append({"key": upload["Key"], "upload_id": upload["UploadId"], "parts": len(parts),
                      "bytes": sum(part["Size"] for part in parts)})  # fmt: skip
    return found


def empty_bucket(ctx: Context, bucket: str) -> None:
    """Abort what is open, delete what is stored, then the bucket, so moto frees its memory and disk."""
    for upload in open_uploads(ctx, bucket):
        ctx.direct.abort_multipart_upload(Bucket=bucket, Key=upload["key"], UploadId=upload["upload_id"])
    for page in ctx.direct.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            ctx.direct.delete_object(Bucket=bucket, Key=item["Key"])
    ctx.direct.delete_bucket(Bucket=bucket)


def one_night(ctx: Context, number: int, script: Path, arg: Path, env: dict[str, str], log: Path) -> dict[str, Any]:
    """Arm the relay (night 1 cut at cut_after, night 2 not), run the side's child, note what went through."""
    ctx.relay.arm(ctx.cut_after if number == 1 else None)
    start = time.perf_counter()
    result = run_measured("ours" if script == THIS else "upstream", arg, env, log, script=script)
    result.update(elapsed=time.perf_counter() - start, sent=ctx.relay.sent, cut=ctx.relay.cut,
                  connections=ctx.relay.connections, refused=ctx.relay.refused)  # fmt: skip
    result["log"] = log.read_text(errors="replace")
    return result


def check_stored(ctx: Context, bucket: str, result: dict[str, Any], plain_size: int) -> None:
    """Night 2 must have stored the file whole (plain: its size); open uploads left are noted, not an error."""
    key = f"{ctx.bench.day}/{RELATIVE}"
    try:
        head = ctx.direct.head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # any failure to find it is this side's failure
        result["error"] = result.get("error") or f"remote check failed: {key}: {exc}"
    else:
        if head["ContentLength"] != plain_size:
            result["error"] = result.get("error") or f"remote check failed: {key} is {head['ContentLength']} bytes"
    result["open_after"] = open_uploads(ctx, bucket)


def measure_ours(ctx: Context, args: argparse.Namespace) -> list[dict[str, Any]]:
    """A: executeAction in a fresh process per night, same cback3.conf and working dir both nights."""
    bench, bucket = ctx.bench, "a-resume"
    work, config = bench.tmp / "work-a", bench.tmp / "cback3-a.conf"
    work.mkdir()
    chunk = f"{args.chunk_mib} MB"  # Cedar Backup's MB is MiB
    extra = {"multipart_threshold": chunk, "multipart_chunksize": chunk}
    config.write_text(config_xml(bench, ctx.ds, "plain", bucket, work, extra=extra))
    env = child_env(bench, {"GNUPGHOME": str(bench.gpg_home), "TMPDIR": str(work)})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    ctx.direct.create_bucket(Bucket=bucket)
    nights = []
    try:
        for number in (1, 2):
            (ctx.ds.day_dir / "cback.amazons3").unlink(missing_ok=True)
            night = one_night(ctx, number, THIS, config, env, bench.tmp / f"log-a-{number}.txt")
            night["open_after"] = open_uploads(ctx, bucket)
            found = RESUMED.search(night["log"])
            if found:
                night["reused"] = {"parts": int(found[2]), "of_parts": int(found[3]), "bytes": found[4],
                                   "of_bytes": found[5]}  # fmt: skip
            nights.append(night)
        check_stored(ctx, bucket, nights[1], ctx.size)
    finally:
        empty_bucket(ctx, bucket)
        shutil.rmtree(work, ignore_errors=True)
        (ctx.ds.day_dir / "cback.amazons3").unlink(missing_ok=True)
    return nights


def measure_upstream(ctx: Context) -> list[dict[str, Any]]:
    """B: upstream's command sequence (aws s3 rm, aws s3 cp, aws s3api list-objects) twice, through su when root."""
    bench = ctx.bench
    work = bench.tmp / "work-b"
    work.mkdir()
    if bench.su_user:
        shutil.chown(work, bench.su_user, bench.su_user)
    spec = upstream_spec(bench, ctx.ds, "plain", "resume", work)
    bucket = json.loads(spec.read_text())["bucket"]
    ctx.direct.create_bucket(Bucket=bucket)
    nights = []
    try:
        for number in (1, 2):
            night = one_night(ctx, number, THIS.with_name("bench_store.py"), spec, child_env(bench),
                              bench.tmp / f"log-b-{number}.txt")  # fmt: skip
            night["open_after"] = open_uploads(ctx, bucket)
            nights.append(night)
        check_stored(ctx, bucket, nights[1], ctx.size)
    finally:
        empty_bucket(ctx, bucket)
        shutil.rmtree(work, ignore_errors=True)
    return nights


def first_line(text: str, width: int = 150) -> str:
    """An error's first line, shortened for a note."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 3] + "..."


def summarize(side: str, nights: list[dict[str, Any]], ctx: Context, cut_percent: float) -> dict[str, Any]:
    """One table row from a side's two nights."""
    one, two = nights
    reused = two.get("reused")
    return {
        "side": SIDES[side], "file_mib": ctx.size / MIB, "cut_percent": cut_percent,
        "night1": "failed" if one.get("error") else "succeeded (not cut!)", "night1_s": one["elapsed"],
        "night1_sent_mib": one["sent"] / MIB, "left_open_mib": sum(u["bytes"] for u in one["open_after"]) / MIB,
        "night2_sent_mib": two["sent"] / MIB if not two.get("error") else None,
        "resent_percent": 100 * two["sent"] / ctx.size if not two.get("error") else None,
        "night2_s": two.get("wall"), "night2_elapsed_s": two["elapsed"],
        "reused": f"{reused['parts']} of {reused['of_parts']} parts, {reused['bytes']} of {reused['of_bytes']}"
        if reused else "-",
        "open_after": len(two.get("open_after", [])),
        "errors": [f"night {n}: {first_line(x['error'])}" for n, x in enumerate(nights, 1) if x.get("error")],
    }  # fmt: skip


def print_table(rows: list[dict[str, Any]]) -> None:
    """Plain-text table; 'n/a' means night 2 did not succeed (see the notes)."""
    cols = [("side", "side", "{}"), ("file_mib", "file MiB", "{:.0f}"), ("cut_percent", "cut at %", "{:.0f}"),
            ("night1", "night 1", "{}"), ("night1_s", "n1 s", "{:.1f}"), ("night1_sent_mib", "n1 sent MiB", "{:.1f}"),
            ("left_open_mib", "n1 left MiB", "{:.1f}"), ("night2_sent_mib", "n2 sent MiB", "{:.1f}"),
            ("resent_percent", "n2 sent % of file", "{:.1f}"), ("night2_s", "n2 s", "{:.2f}"),
            ("reused", "reused (our log)", "{}"), ("open_after", "open after n2", "{}")]  # fmt: skip
    print_columns(cols, rows, left={0, 3, 10})
    by_side = {row["side"]: row for row in rows}
    a, b = by_side.get(SIDES["ours"]), by_side.get(SIDES["upstream"])
    if a and b and a["night2_sent_mib"] and b["night2_sent_mib"] and a["night2_s"] and b["night2_s"]:
        print(f"night 2 re-sent: upstream / ours = {b['night2_sent_mib'] / a['night2_sent_mib']:.2f}x the bytes; "
              f"wall upstream / ours = {b['night2_s'] / a['night2_s']:.2f}x")  # fmt: skip
    for row in rows:
        for error in row["errors"]:
            print(f"note: {row['side']}, {error}")


def main() -> int:
    """Set up once, run each side's two nights, report, and always clean up."""
    args = parse_args()
    if args.run_ours:
        return run_ours_logged(args.run_ours)
    sides = args.sides.split(",")
    if not set(sides) <= set(SIDES):
        raise SystemExit(f"unknown side; known: {', '.join(SIDES)}")
    os.umask(0o022)  # the su user must be able to read the staged data
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanups below on kill too
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    root = os.geteuid() == 0
    aws = ensure_awscli(args.awscli_venv) if "upstream" in sides else ""
    aws_version = run([aws, "--version"]).stdout.strip() if aws else "no AWS CLI (ours only)"
    su_user = ensure_bench_user() if root else None
    print(f"{aws_version}; {'su to ' + su_user if su_user else 'not root: su skipped, B runs commands via sh -c'}")
    mib = args.file_mib or FILE_MIB[args.quick]
    tmp = Path(tempfile.mkdtemp(prefix="cedar-s3-resume-", dir=args.tmpdir))
    tmp.chmod(0o755)
    try:
        need = 3 * mib * MIB + 512 * MIB  # the file; moto's spooled parts and the object they make (/tmp)
        if shutil.disk_usage(tmp).free < need:
            raise SystemExit(f"need about {need / MIB:.0f} MiB free under {tmp}; use --tmpdir or --file-mib")
        (tmp / "gnupg").mkdir(mode=0o700)  # side A's GNUPGHOME: plain data, gpg is never run
        owner = (su_user, su_user) if su_user else (getpass.getuser(), grp.getgrgid(os.getegid()).gr_name)
        day = datetime.date.today().strftime("%Y/%m/%d")
        start = time.perf_counter()
        day_dir = stage_day(tmp / "data/resume", day, ["peer1"])
        write_random(day_dir / RELATIVE, mib)
        ds = Dataset("resume", tmp / "data/resume", day_dir, float(mib))
        with moto_server(tmp / "moto.log", args.moto) as endpoint, Relay(int(endpoint.rsplit(":", 1)[1])) as relay:
            print(f"{mib} MiB file made in {time.perf_counter() - start:.1f} s under {tmp}; S3 at {endpoint}, "
                  f"relay at {relay.url}", flush=True)  # fmt: skip
            bench = Bench(tmp, relay.url, day, aws, "gpg", "", su_user, owner, args)
            direct = s3_client(dataclasses.replace(bench, endpoint=endpoint))
            ctx = Context(bench, direct, relay, ds, mib * MIB, int(mib * MIB * args.cut_percent / 100))
            results: dict[str, list[dict[str, Any]]] = {}
            for side in sides:
                print(f"{SIDES[side]}: night 1 (cut after {ctx.cut_after / MIB:.0f} MiB), night 2 ...", flush=True)
                results[side] = measure_ours(ctx, args) if side == "ours" else measure_upstream(ctx)
        rows = [summarize(side, nights, ctx, args.cut_percent) for side, nights in results.items()]
        chunk = f"A parts {args.chunk_mib} MiB, <max_concurrency> {args.max_concurrency or 'default (8)'}"
        print(f"\n{os.cpu_count()} CPUs; {args.moto} moto; {chunk}; B = aws s3 cp (8 MiB parts, 10 threads)")
        print_table(rows)
        if args.json:
            meta = {k: v for k, v in vars(args).items() if k != "run_ours"}
            meta.update(cpus=os.cpu_count(), aws=aws_version, su_user=su_user, date=day)
            for nights in results.values():
                for night in nights:
                    night["log"] = night["log"][-4000:]
            Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows, "nights": results}, indent=1))
        return 0
    finally:
        if args.keep_logs:
            Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
            for log in tmp.glob("*.txt"):
                shutil.copy(log, args.keep_logs)
            if (tmp / "moto.log").exists():
                shutil.copy(tmp / "moto.log", args.keep_logs)
        kill_agents(tmp, None)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
