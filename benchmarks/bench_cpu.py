#!/usr/bin/env python3
"""Client CPU seconds per 1,000 small PUTs, route by route, against one moto server on 127.0.0.1 (issue 16).

Every route uploads the same staged day of small files (default 2,000 of 1-16 KiB random bytes) in a fresh
child process. A route's CPU is what the kernel accounted to that process and everything it waited for
(``os.wait4``, or ``RUSAGE_CHILDREN`` around side A), user plus system, all threads included: on a loaded
machine CPU seconds stay put where wall seconds do not. Start-up (interpreter, imports, clients) is measured
separately and taken off, so "net" is the per-object cost alone. The CRT routes run in their own venv with
``boto3[crt]`` at the main venv's boto3 version; the main venv stays without awscrt. See README.md beside it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import getpass
import grp
import hashlib
import io
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULT_PREFIX = "BENCH-CPU "
REGION = "us-east-1"
DUMMY = "bench"  # moto accepts any credentials
THREADS = 8  # cedar-s3's default <max_concurrency>
CHILD_TIMEOUT = 1800
HERE = Path(__file__).resolve().parent
REPO = HERE.parent


@dataclass(frozen=True)
class Route:
    """One way of sending the day: which interpreter runs it and how its start-up is taken off."""

    name: str
    runner: str  # "main": the dev venv; "crt": the awscrt venv; "ours": bench_store's side A; "aws": the CLI
    label: str


ROUTES = [
    Route("ours", "ours", "A: cedar_s3 executeAction, a whole night (plain)"),
    Route("core", "main", "A-core: S3Store.putObject via ObjectWriter.sendBytes, 8 threads"),
    Route("boto3-none", "main", "boto3 put_object, 8 threads, no checksum"),
    Route("boto3-md5", "main", "boto3 put_object, 8 threads, Content-MD5 (ours off AWS)"),
    Route("boto3-sha256", "main", "boto3 put_object, 8 threads, x-amz-checksum-sha256 (ours on AWS)"),
    Route("boto3-crc32", "main", "boto3 put_object, 8 threads, botocore default CRC32"),
    Route("crt-crc32", "crt", "s3transfer CRTTransferManager, default CRC32 trailer"),
    Route("crt-sha256", "crt", "s3transfer CRTTransferManager, precomputed SHA-256 header"),
    Route("crt-raw-md5", "crt", "awscrt S3Client.make_request direct, Content-MD5, no botocore"),
    Route("upstream", "aws", "upstream: aws s3 cp --recursive (AWS CLI v1)"),
]
BY_NAME = {route.name: route for route in ROUTES}


# -- children: each prints one RESULT_PREFIX line; stdlib-only at module level (the CRT venv has no CedarBackup3) --


def cpu_now() -> float:
    """User plus system CPU seconds of this process so far, every thread (native CRT threads too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def emit(result: dict[str, Any]) -> None:
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def staged_files(day_dir: Path, day: str) -> list[tuple[Path, str]]:
    """(path, key) for every payload file of the day, keys as upstream and ours lay them out."""
    found = [Path(root, name) for root, _, names in os.walk(day_dir) for name in names]
    paths = sorted(p for p in found if not p.name.startswith("cback."))
    return [(p, f"{day}/{p.relative_to(day_dir).as_posix()}") for p in paths]


class Phase:
    """Marks the end of start-up inside a child, so the upload phase's CPU and wall can be told apart."""

    def __init__(self) -> None:
        self.cpu0, self.wall0 = cpu_now(), time.perf_counter()
        self.cpu1, self.wall1 = self.cpu0, self.wall0

    def ready(self) -> None:
        self.cpu1, self.wall1 = cpu_now(), time.perf_counter()

    def result(self, objects: int, **extra: Any) -> dict[str, Any]:
        return {
            "setup_cpu": self.cpu1 - self.cpu0,
            "upload_cpu": cpu_now() - self.cpu1,
            "upload_wall": time.perf_counter() - self.wall1,
            "objects": objects,
            **extra,
        }


def run_pool(files: list[tuple[Path, str]], send: Callable[[tuple[Path, str]], int], threads: int) -> int:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return sum(pool.map(send, files))


def child_boto3(spec: dict[str, Any], checksum: str) -> dict[str, Any]:
    """Bare put_object from bytes read in the worker, with the checksum named (``crc32``: botocore's default)."""
    phase = Phase()
    import boto3
    from botocore.config import Config

    calculation: Any = "when_supported" if checksum == "crc32" else "when_required"
    config = Config(
        request_checksum_calculation=calculation,
        max_pool_connections=spec["threads"] * 2 + 4,
        retries={"mode": "standard", "total_max_attempts": 5},
    )
    client = boto3.client("s3", endpoint_url=spec["endpoint"], region_name=REGION, config=config)
    bucket, files = spec["bucket"], staged_files(Path(spec["day_dir"]), spec["day"])
    phase.ready()

    def send(item: tuple[Path, str]) -> int:
        data = item[0].read_bytes()
        extra: dict[str, Any] = {}
        if checksum == "md5":
            extra["ContentMD5"] = b64(hashlib.md5(data, usedforsecurity=False).digest())
        elif checksum == "sha256":
            extra |= {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": b64(hashlib.sha256(data).digest())}
        client.put_object(Bucket=bucket, Key=item[1], Body=data, **extra)
        return len(data)

    sent = run_pool(files, send, spec["threads"])
    return phase.result(len(files), bytes=sent, versions=versions())


def child_core(spec: dict[str, Any]) -> dict[str, Any]:
    """Our small-file PUT path without the night around it: buildStore, then ObjectWriter.sendBytes per file."""
    phase = Phase()
    import socket

    from cedar_s3.bucketformat import Encryption, commonMetadata
    from cedar_s3.config import LocalConfig
    from cedar_s3.s3.session import buildStore
    from cedar_s3.stagedtree import StagedFile
    from cedar_s3.upload.reuse import storedAsFingerprint
    from cedar_s3.upload.send import ObjectWriter, Plaintext

    settings = LocalConfig(xmlPath=spec["config"]).amazons3
    assert settings is not None
    files = staged_files(Path(spec["day_dir"]), spec["day"])
    with buildStore(settings, None) as store:
        common = commonMetadata(socket.gethostname(), spec["day"])
        writer = ObjectWriter(store, spec["day"] + "/", common, storedAsFingerprint(settings))
        phase.ready()

        def send(item: tuple[Path, str]) -> int:
            path, key = item
            with path.open("rb") as handle:
                info = os.fstat(handle.fileno())
                data = handle.read()
            relative = key[len(spec["day"]) + 1 :]
            staged = StagedFile(0, relative, info.st_size, info.st_mtime_ns, info.st_dev, info.st_ino, str(path))
            plain = Plaintext(len(data), hashlib.sha256(data).hexdigest())
            writer.sendBytes(staged, data, plain, Encryption.NONE)
            return len(data)

        sent = run_pool(files, send, store.concurrency)
    return phase.result(len(files), bytes=sent, versions=versions())


def child_ours_startup(spec: dict[str, Any]) -> dict[str, Any]:
    """What side A's child pays before its first object: bench_store's imports, the config, our module, the store."""
    phase = Phase()
    sys.path.insert(0, str(HERE))
    from CedarBackup3.cli import Options
    from CedarBackup3.config import Config

    import bench_store  # noqa: F401 - side A's child is bench_store.py, so it pays these imports too

    Config(xmlPath=spec["config"], validate=False)
    Options(argumentList=["--full", "amazons3"])
    from cedar_s3.amazons3 import executeAction  # noqa: F401 - the import side A times
    from cedar_s3.config import LocalConfig
    from cedar_s3.s3.session import buildStore

    settings = LocalConfig(xmlPath=spec["config"]).amazons3
    assert settings is not None
    with buildStore(settings, None):
        phase.ready()
    return phase.result(0)


def crt_provider(static: bool) -> Any:
    """Credentials for the CRT: boto3's chain through s3transfer's delegate (as boto3 and the CLI v2 wire it) or
    a static CRT provider."""
    from awscrt.auth import AwsCredentialsProvider  # type: ignore[import-not-found]

    if static:
        return AwsCredentialsProvider.new_static(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
    import botocore.session
    from s3transfer.crt import BotocoreCRTCredentialsWrapper

    credentials = botocore.session.Session().get_credentials()
    return BotocoreCRTCredentialsWrapper(credentials).to_crt_credentials_provider()


def child_crt(spec: dict[str, Any], checksum: str) -> dict[str, Any]:
    """s3transfer's CRT manager, fed file names (the CRT reads them natively), pointed at the endpoint by hand:
    boto3's own create_transfer_manager builds its serializer with endpoint_url=None and TLS on, so it can only
    reach AWS."""
    phase = Phase()
    import botocore.session
    from s3transfer.crt import BotocoreCRTRequestSerializer, CRTTransferManager, create_s3_crt_client

    endpoint = urllib.parse.urlsplit(spec["endpoint"])
    crt = create_s3_crt_client(REGION, crt_provider(False), use_ssl=endpoint.scheme == "https")
    serializer = BotocoreCRTRequestSerializer(
        botocore.session.Session(), {"region_name": REGION, "endpoint_url": spec["endpoint"]}
    )
    bucket, files = spec["bucket"], staged_files(Path(spec["day_dir"]), spec["day"])
    sent = 0
    with CRTTransferManager(crt, serializer) as manager:
        phase.ready()
        futures = []
        for path, key in files:
            extra: dict[str, str] = {}
            if checksum == "sha256":  # what ours would have to pass: the digest it already made
                data = path.read_bytes()
                extra["ChecksumSHA256"] = b64(hashlib.sha256(data).digest())
            futures.append(manager.upload(str(path), bucket, key, extra_args=extra))
        for future in futures:
            future.result()
        sent = sum(path.stat().st_size for path, _ in files)
    return phase.result(len(files), bytes=sent, versions=versions())


def child_crt_raw(spec: dict[str, Any]) -> dict[str, Any]:
    """awscrt's S3 client without botocore: our own PUT (Host, Content-Length, Content-MD5), signed by the CRT."""
    phase = Phase()
    import awscrt.s3  # type: ignore[import-not-found]
    from awscrt.http import HttpHeaders, HttpRequest  # type: ignore[import-not-found]
    from s3transfer.crt import create_s3_crt_client

    endpoint = urllib.parse.urlsplit(spec["endpoint"])
    crt = create_s3_crt_client(REGION, crt_provider(True), use_ssl=endpoint.scheme == "https")
    bucket, files = spec["bucket"], staged_files(Path(spec["day_dir"]), spec["day"])
    slots = threading.BoundedSemaphore(128)  # as CRTTransferManager caps requests in flight
    requests: list[Any] = []
    phase.ready()
    sent = 0
    for path, key in files:
        data = path.read_bytes()
        headers = HttpHeaders(
            [
                ("Host", endpoint.netloc),
                ("Content-Length", str(len(data))),
                ("Content-MD5", b64(hashlib.md5(data, usedforsecurity=False).digest())),
            ]
        )
        target = f"/{bucket}/{urllib.parse.quote(key, safe='/~')}"
        request = HttpRequest("PUT", target, headers, io.BytesIO(data))
        slots.acquire()
        requests.append(
            crt.make_request(
                type=awscrt.s3.S3RequestType.PUT_OBJECT, request=request, on_done=lambda **_: slots.release()
            )
        )
        sent += len(data)
    for request in requests:
        request.finished_future.result()
    return phase.result(len(files), bytes=sent, versions=versions())


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("boto3", "botocore", "s3transfer", "awscrt"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def run_child(route: str, spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    try:
        if route.startswith("boto3-"):
            result = child_boto3(spec, route.removeprefix("boto3-"))
        elif route in ("crt-crc32", "crt-sha256"):
            result = child_crt(spec, route.removeprefix("crt-"))
        elif route == "crt-raw-md5":
            result = child_crt_raw(spec)
        elif route == "core":
            result = child_core(spec)
        elif route == "ours-startup":
            result = child_ours_startup(spec)
        else:
            raise ValueError(f"unknown route {route}")
    except Exception as exc:  # any failure becomes that row's note
        import traceback

        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
    emit(result)
    return 0


# -- the orchestrator ----------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objects", type=int, default=2000, help="small files in the day (default 2000)")
    p.add_argument("--quick", action="store_true", help="300 files, 1 round")
    p.add_argument("--rounds", type=int, default=3, help="rounds; each runs every route once (default 3)")
    p.add_argument("--routes", default=",".join(r.name for r in ROUTES), help="comma-separated subset")
    p.add_argument("--moto", choices=("stock", "cached"), default="stock", help="as bench_store.py's --moto")
    p.add_argument("--crt-venv", help="venv with boto3[crt] (created once; default beside the AWS CLI venv)")
    p.add_argument("--awscli-venv", help="where the AWS CLI venv lives (bench_store.py's, created once)")
    p.add_argument("--tmpdir", help="parent of the scratch dir (default: system temp)")
    p.add_argument("--json", metavar="PATH", help="also write every sample as JSON")
    p.add_argument("--run-child", nargs=2, metavar=("ROUTE", "SPEC"), help=argparse.SUPPRESS)
    return p.parse_args()


def cache_dir() -> Path:
    return Path("/var/cache/cedar-s3-bench") if os.geteuid() == 0 else Path.home() / ".cache/cedar-s3-bench"


def ensure_crt_venv(override: str | None) -> str:
    """A venv with boto3[crt] pinned to this interpreter's boto3, so only awscrt differs from the dev venv."""
    from importlib.metadata import version

    venv = Path(override) if override else cache_dir() / "crt-venv"
    python, marker = venv / "bin/python", venv / ".complete"
    wanted = version("boto3")
    if not marker.exists() or marker.read_text().strip() != wanted:
        shutil.rmtree(venv, ignore_errors=True)
        print(f"creating the CRT venv at {venv} with boto3[crt]=={wanted} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, f"boto3[crt]=={wanted}"], check=True, capture_output=True, timeout=900)
        marker.write_text(wanted + "\n")
    return str(python)


def make_day(stage_root: Path, day: str, count: int) -> Path:
    """bench_store.py's small dataset, with its seed and layout, for any number of files."""
    from bench_store import stage_day

    rng, peers = random.Random(20240601), ["peer1", "peer2"]
    day_dir = stage_day(stage_root, day, peers)
    for i in range(count):
        path = day_dir / peers[i % 2] / f"etc/d{i // 2 % 8}/d{i // 16 % 5}/file-{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(1024, 16 * 1024)))
    return day_dir


def proc_cpu(pid: int | None) -> float:
    """CPU seconds of a running process from /proc/PID/stat (utime + stime), 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def find_moto_pid() -> int | None:
    """The moto server bench_store.moto_server started: our child whose command line names moto."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
            if int(stat[1]) == os.getpid() and b"moto" in cmdline:
                return int(entry.name)
    return None


@dataclass
class Context:
    tmp: Path
    endpoint: str
    day: str
    day_dir: Path
    expected: dict[str, tuple[int, str]]  # key -> (size, MD5 hex)
    bench: Any  # bench_store.Bench, for its config_xml and child_env
    dataset: Any  # bench_store.Dataset
    crt_python: str
    aws: str
    moto_pid: int | None
    empty_dir: Path


def run_timed(argv: list[str], env: dict[str, str], log: Path) -> tuple[str, dict[str, Any], int]:
    """Run one child to its end: stdout, its usage (user, sys, wall seconds, peak RSS MiB) and exit code. CPU comes
    from os.wait4, so the child's own waited-for children count too."""
    start = time.perf_counter()
    with log.open("w") as err:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        timer = threading.Timer(CHILD_TIMEOUT, proc.kill)
        timer.start()
        try:
            assert proc.stdout is not None
            with proc.stdout:
                out = proc.stdout.read()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            timer.cancel()
    wall = time.perf_counter() - start
    used: dict[str, Any] = {"user": usage.ru_utime, "sys": usage.ru_stime, "wall": wall}
    used["rss_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    return out, used, proc.returncode


def parse_result(out: str, log: Path) -> dict[str, Any]:
    lines = [line for line in out.splitlines() if line.startswith(RESULT_PREFIX)]
    if lines:
        result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    else:
        result = {"error": "no result line"}
    if result.get("error"):
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        result["error"] += "".join(f"\n      | {line}" for line in tail)
    return result


def write_config(ctx: Context, bucket: str, tag: str) -> tuple[Path, Path]:
    """bench_store.py's side-A cback3.conf (plain), in a fresh working dir."""
    from bench_store import config_xml

    work, config = ctx.tmp / f"work-{tag}", ctx.tmp / f"cback3-{tag}.conf"
    work.mkdir()
    config.write_text(config_xml(ctx.bench, ctx.dataset, "plain", bucket, work))
    return work, config


def ours_env(ctx: Context, work: Path) -> dict[str, str]:
    from bench_store import child_env

    env = child_env(ctx.bench, {"GNUPGHOME": str(ctx.tmp / "gnupg"), "TMPDIR": str(work)})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), str(HERE), env.get("PYTHONPATH")]))
    return env


def measure(ctx: Context, route: str, tag: str) -> dict[str, Any]:
    """One run of a route (or a start-up probe) against its own fresh bucket, checked object by object."""
    from bench_store import child_env, run_measured, s3_client

    bucket = f"c-{tag}"
    s3_client(ctx.bench).create_bucket(Bucket=bucket)
    spec: dict[str, Any] = {"bucket": bucket, "endpoint": ctx.endpoint, "day": ctx.day, "day_dir": str(ctx.day_dir)}
    spec["threads"] = THREADS
    log = ctx.tmp / f"log-{tag}.txt"
    work: Path | None = None
    result: dict[str, Any]
    moto0 = proc_cpu(ctx.moto_pid)
    if route == "ours":
        work, config = write_config(ctx, bucket, tag)
        (ctx.day_dir / "cback.amazons3").unlink(missing_ok=True)  # else the night would be skipped
        before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        result = run_measured("ours", config, ours_env(ctx, work), log)  # bench_store.py --run-ours, waited for
        after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter() - start
        result.update(user=after.ru_utime - before.ru_utime, sys=after.ru_stime - before.ru_stime, wall=wall)
        (ctx.day_dir / "cback.amazons3").unlink(missing_ok=True)
    elif route in ("upstream", "upstream-startup"):
        source = ctx.day_dir if route == "upstream" else ctx.empty_dir
        argv = [ctx.aws, "--endpoint-url", ctx.endpoint, "s3", "cp", "--recursive", "--exclude", "*cback.*"]
        argv += [f"{source}/", f"s3://{bucket}/{ctx.day}/"]
        _, result, code = run_timed(argv, child_env(ctx.bench), log)
        if code != 0:
            result["error"] = f"aws exited {code}: " + log.read_text(errors="replace").strip()[-300:]
    else:
        python = ctx.crt_python if BY_NAME.get(route, Route(route, "main", "")).runner == "crt" else sys.executable
        env = child_env(ctx.bench)
        if route in ("core", "ours-startup"):
            work, config = write_config(ctx, bucket, tag)
            spec["config"] = str(config)
            env = ours_env(ctx, work)
        spec_path = ctx.tmp / f"spec-{tag}.json"
        spec_path.write_text(json.dumps(spec))
        argv = [python, str(Path(__file__).resolve()), "--run-child", route, str(spec_path)]
        out, used, _ = run_timed(argv, env, log)
        result = parse_result(out, log) | used
    result["moto_cpu"] = proc_cpu(ctx.moto_pid) - moto0
    if work is not None:
        shutil.rmtree(work, ignore_errors=True)
    problem = check_and_drop(ctx, bucket, route not in ("ours-startup", "upstream-startup"))
    if problem and not result.get("error"):
        result["error"] = problem
    return result


def check_and_drop(ctx: Context, bucket: str, expect: bool) -> str | None:
    """Every staged file arrived under its key with its size and, moto's ETag being the stored bytes' MD5, its
    bytes; then the bucket goes, so moto's memory stays flat. Extra objects (our manifest, marker) are fine."""
    from bench_store import s3_client

    client, found = s3_client(ctx.bench), {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        found.update({o["Key"]: (o["Size"], o["ETag"].strip('"')) for o in page.get("Contents", [])})
    keys = list(found)
    for i in range(0, len(keys), 1000):
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]})
    client.delete_bucket(Bucket=bucket)
    if not expect:
        return None
    for key, (size, md5) in ctx.expected.items():
        if key not in found:
            return f"remote check failed: {key} missing"
        if found[key] != (size, md5):
            return f"remote check failed: {key} is {found[key]}, staged {(size, md5)}"
    return None


Samples = dict[str, list[dict[str, Any]]]


def median(runs: list[dict[str, Any]], value: Callable[[dict[str, Any]], float]) -> float | None:
    good = [value(r) for r in runs if not r.get("error")]
    return statistics.median(good) if good else None


def summarize(samples: Samples, routes: list[str], objects: int) -> list[dict[str, Any]]:
    """Medians per route: whole-process CPU, start-up CPU, and the net per 1,000 objects it leaves."""
    total: Callable[[dict[str, Any]], float] = lambda r: r["user"] + r["sys"]  # noqa: E731
    startups = {name: median(samples.get(f"{name}-startup", []), total) for name in ("ours", "upstream")}
    rows: list[dict[str, Any]] = []
    for name in routes:
        runs = samples[name]
        cpu = median(runs, total)
        # A and upstream: a separate child that stops where the uploads would start; else the child marked it
        own = median(runs, lambda r: r["user"] + r["sys"] - r["upload_cpu"]) if name not in startups else None
        startup = startups.get(name, own)
        net = cpu - startup if cpu is not None and startup is not None else None
        rows.append({
            "route": name, "label": BY_NAME[name].label, "runs": len([r for r in runs if not r.get("error")]),
            "cpu_s": cpu, "startup_s": startup, "net_per_1k": net * 1000 / objects if net is not None else None,
            "user_s": median(runs, lambda r: r["user"]), "sys_s": median(runs, lambda r: r["sys"]),
            "wall_s": median(runs, lambda r: r["wall"]), "rss_mib": median(runs, lambda r: r["rss_mib"]),
            "moto_per_1k": (m * 1000 / objects) if (m := median(runs, lambda r: r["moto_cpu"])) is not None else None,
            "errors": sorted({r["error"] for r in runs if r.get("error")}),
        })  # fmt: skip
    base: dict[str, dict[str, Any]] = {row["route"]: row for row in rows}
    for row in rows:
        for ref, key in (("upstream", "vs_upstream"), ("ours", "vs_ours")):
            other = base.get(ref, {}).get("net_per_1k")
            row[key] = row["net_per_1k"] / other if row["net_per_1k"] and other else None
        up_total = base.get("upstream", {}).get("cpu_s")
        row["total_vs_upstream"] = row["cpu_s"] / up_total if row["cpu_s"] and up_total else None
    return rows


def print_table(rows: list[dict[str, Any]], startups: dict[str, float | None]) -> None:
    cols = [("route", "route", "{}"), ("runs", "ok", "{}"), ("cpu_s", "CPU s", "{:.2f}"),
            ("user_s", "user s", "{:.2f}"), ("sys_s", "sys s", "{:.2f}"), ("startup_s", "start-up s", "{:.2f}"),
            ("net_per_1k", "net CPU s/1k", "{:.2f}"), ("vs_upstream", "net/upstream", "{:.2f}"),
            ("vs_ours", "net/A", "{:.2f}"), ("total_vs_upstream", "CPU/upstream", "{:.2f}"),
            ("wall_s", "wall s", "{:.2f}"), ("rss_mib", "RSS MiB", "{:.0f}"),
            ("moto_per_1k", "moto CPU s/1k", "{:.2f}")]  # fmt: skip
    cells = [[h for _, h, _ in cols]]
    cells += [["n/a" if r[k] is None else f.format(r[k]) for k, _, f in cols] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cols))]
    for n, line in enumerate(cells):
        pairs = enumerate(zip(line, widths, strict=True))
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print()
    for row in rows:
        print(f"{row['route']:<13} {row['label']}")
    shown = ", ".join(f"{k} {'n/a' if v is None else f'{v:.2f} s'}" for k, v in startups.items())
    print(f"separate start-up children (median CPU): {shown}")
    for row in rows:
        for error in row["errors"]:
            print(f"note: {row['route']}: {error}")


@contextlib.contextmanager
def scratch(parent: str | None) -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="cedar-s3-cpu-", dir=parent))
    tmp.chmod(0o755)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    args = parse_args()
    if args.run_child:
        return run_child(*args.run_child)
    sys.path.insert(0, str(HERE))
    from bench_store import Bench, Dataset, ensure_awscli, ensure_bench_user, moto_server

    if args.quick:
        args.objects, args.rounds = 300, 1
    routes = args.routes.split(",")
    if not set(routes) <= set(BY_NAME):
        raise SystemExit(f"unknown route; known: {', '.join(BY_NAME)}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanups on kill too
    os.umask(0o022)
    aws = ensure_awscli(args.awscli_venv) if "upstream" in routes else ""
    aws_version = ""
    if aws:
        aws_version = subprocess.run([aws, "--version"], capture_output=True, text=True, check=True, timeout=60).stdout
    crt_python = ensure_crt_venv(args.crt_venv) if any(BY_NAME[r].runner == "crt" for r in routes) else ""
    owner = (ensure_bench_user(), ensure_bench_user()) if os.geteuid() == 0 else (
        getpass.getuser(), grp.getgrgid(os.getegid()).gr_name)  # fmt: skip
    day = datetime.date.today().strftime("%Y/%m/%d")
    probes = [p for p, wanted in (("ours-startup", "ours" in routes), ("upstream-startup", "upstream" in routes))
              if wanted]  # fmt: skip
    with scratch(args.tmpdir) as tmp:
        (tmp / "gnupg").mkdir(mode=0o700)
        (tmp / "empty").mkdir()
        day_dir = make_day(tmp / "stage", day, args.objects)
        expected = {}
        for path, key in staged_files(day_dir, day):
            data = path.read_bytes()
            expected[key] = (len(data), hashlib.md5(data, usedforsecurity=False).hexdigest())
        mib = sum(size for size, _ in expected.values()) / 2**20
        with moto_server(tmp / "moto.log", args.moto) as endpoint:
            bench = Bench(tmp, endpoint, day, aws, "gpg", "", None, owner, argparse.Namespace(
                s2k_count=None, max_concurrency=None, work_parent=None))  # fmt: skip
            dataset = Dataset("small", tmp / "stage", day_dir, mib)
            ctx = Context(tmp, endpoint, day, day_dir, expected, bench, dataset, crt_python, aws, find_moto_pid(),
                          tmp / "empty")  # fmt: skip
            print(f"{len(expected)} files ({mib:.1f} MiB) under {day_dir}; S3 at {endpoint} ({args.moto} moto, "
                  f"pid {ctx.moto_pid}); {os.cpu_count()} CPUs; {aws_version.strip()}", flush=True)  # fmt: skip
            samples: Samples = {}
            for r in range(1, args.rounds + 1):
                order = probes + (routes if r % 2 else routes[::-1])  # alternate, so no route always goes first
                for route in order:
                    result = measure(ctx, route, f"{r}-{route}")
                    samples.setdefault(route, []).append(result)
                    cpu = result.get("user", 0) + result.get("sys", 0)
                    state = result.get("error", "ok").splitlines()[0]
                    print(f"  round {r} {route:<16} CPU {cpu:6.2f} s  wall {result.get('wall', 0):6.2f} s  {state}",
                          flush=True)  # fmt: skip
    rows = summarize(samples, routes, args.objects)
    startups = {p: median(samples.get(p, []), lambda r: r["user"] + r["sys"]) for p in probes}
    print(f"\n{args.objects} files, {args.rounds} round(s), medians; net = (CPU - start-up) per 1,000 objects")
    print_table(rows, startups)
    if args.json:
        meta = {k: v for k, v in vars(args).items() if k != "run_child"}
        meta |= {"cpus": os.cpu_count(), "aws": aws_version.strip(), "date": day}
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows, "samples": samples}, indent=1))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("interrupted")
