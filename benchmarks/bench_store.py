#!/usr/bin/env python3
"""Benchmark cedar_s3's amazons3 store action (A) against the upstream AWS-CLI path (B) and a bare boto3 floor.

Everything talks to a moto S3 server on 127.0.0.1 that this script starts and stops. See README.md beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import getpass
import grp
import json
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_children import RESULT_PREFIX, payload_files, run_child, tree_bytes

REPO = Path(__file__).resolve().parents[1]
BENCH_USER = "cedarbench"
MIB = 2**20
DUMMY = "bench"  # moto accepts any credentials
CREDENTIALS = {"AWS_ACCESS_KEY_ID": DUMMY, "AWS_SECRET_ACCESS_KEY": DUMMY, "AWS_DEFAULT_REGION": "us-east-1"}
CHILD_TIMEOUT = 3600
CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin"
HUGE_MIB = {False: 3072, True: 256}  # the huge dataset's one file: full run, --quick


@dataclass
class Dataset:
    """One staged day on disk: <stage_root>/YYYY/MM/DD/<peer>/..."""

    name: str
    stage_root: Path
    day_dir: Path
    payload_mib: float


@dataclass
class Bench:
    """Everything the measurements share; fixed file names live under the scratch dir `tmp`."""

    tmp: Path
    endpoint: str
    day: str  # YYYY/MM/DD, today: our action with --full only looks at today
    aws: str
    gpg: str
    fingerprint: str
    su_user: str | None  # the backup user upstream su's to; None when not root
    owner: tuple[str, str]
    args: argparse.Namespace

    gpg_home = property(lambda self: self.tmp / "gnupg")  # side A's home, where the key pair was made
    b_gpg_home = property(lambda self: self.tmp / "b-gnupg")  # side B's copy, owned by the backup user
    passphrase = property(lambda self: self.tmp / "passphrase")
    b_passphrase = property(lambda self: self.tmp / "b-passphrase")


def parse_args() -> argparse.Namespace:
    """Command line; the --run-* options are internal child modes."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--datasets", default="small,big,mixed", help="any of small,big,mixed,huge (huge: opt-in)")
    p.add_argument("--variants", default="plain,symmetric,pubkey")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="200 small files, 2 x 8 MiB big files, 256 MiB huge, 1 round")
    p.add_argument("--huge-mib", type=int, help=f"size of the huge dataset's one file (default {HUGE_MIB[False]} MiB, "
                   f"{HUGE_MIB[True]} with --quick)")  # fmt: skip
    p.add_argument("--json", metavar="PATH", help="also write all results as JSON")
    p.add_argument("--s2k-count", type=int, help="<gpg_s2k_count> for A, and --s2k-count in B's equal-settings row")
    p.add_argument("--max-concurrency", type=int, help="<max_concurrency> for A")
    p.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                   help="one more element of A's <amazons3>, e.g. checksum_calculation=when_supported")  # fmt: skip
    p.add_argument("--tmpdir", help="parent of the scratch dir (default: system temp)")
    work_help = "parent of A's working_dir and B's encrypted copy, e.g. a small tmpfs (default: the scratch dir)"
    p.add_argument("--work-parent", metavar="DIR", help=work_help)
    p.add_argument("--awscli-venv", help="where the AWS CLI venv lives (created once)")
    p.add_argument("--moto", choices=("stock", "cached"), default="stock",
                   help="cached: moto without its per-request module scan (see moto_endpoint.py)")  # fmt: skip
    for mode in ("ours", "upstream", "limit"):
        p.add_argument(f"--run-{mode}", metavar="FILE", help=argparse.SUPPRESS)
    return p.parse_args()


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a setup command, failing loudly with its stderr."""
    kwargs.setdefault("timeout", 1800)  # every setup step has a deadline (pip installs included)
    done = subprocess.run(argv, text=True, capture_output=True, check=False, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed [{done.returncode}]: {done.stderr.strip()[-800:]}")
    return done


def ensure_awscli(override: str | None) -> str:
    """AWS CLI in its own venv, since its botocore pins clash with ours; readable by the su user when root."""
    root = os.geteuid() == 0
    default = Path("/var/cache/cedar-s3-bench") if root else Path.home() / ".cache/cedar-s3-bench"
    venv = Path(override) if override else default / "awscli-venv"
    marker, aws = venv / ".complete", venv / "bin/aws"
    if not marker.exists():
        shutil.rmtree(venv, ignore_errors=True)
        base = "/usr/bin/python3" if root and Path("/usr/bin/python3").exists() else sys.executable
        print(f"creating AWS CLI venv at {venv} (once) ...", flush=True)
        start = time.perf_counter()
        run([base, "-m", "venv", str(venv)])
        run([str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "awscli"])
        marker.touch()
        print(f"  AWS CLI installed in {time.perf_counter() - start:.0f} s", flush=True)
    return str(aws)


def ensure_bench_user() -> str:
    """The backup user upstream switches to with su; created once as a system user with a home."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(BENCH_USER).pw_name
    run(["useradd", "--system", "--create-home", "--user-group", "--shell", "/bin/sh", BENCH_USER])
    return BENCH_USER


def setup_gpg(tmp: Path, su_user: str | None) -> tuple[str, str]:
    """Throwaway key pair without passphrase, plus a random passphrase file; returns (gpg, fingerprint)."""
    gpg = shutil.which("gpg") or "/usr/bin/gpg"
    home = tmp / "gnupg"
    home.mkdir(mode=0o700)
    uid = "cedar-s3 bench <bench@cedar-s3.invalid>"
    base = [gpg, "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
    run([*base, "--quick-gen-key", uid, "default", "default", "never"])
    listing = run([gpg, "--homedir", str(home), "--no-autostart", "--with-colons", "--list-keys"]).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    run([gpg, "--homedir", str(home), "--no-autostart", "--batch", "--yes", "--export", "-o", str(tmp / "pub.gpg")])
    b_home = tmp / "b-gnupg"
    b_home.mkdir(mode=0o700)
    run([gpg, "--homedir", str(b_home), "--no-autostart", "--batch", "--import", str(tmp / "pub.gpg")])
    secret = secrets.token_hex(20) + "\n"  # one passphrase; B gets its own copy as upstream's user would
    for path in (tmp / "passphrase", tmp / "b-passphrase"):
        path.touch(mode=0o600)
        path.write_text(secret)
    if su_user:
        for path in [b_home, *b_home.rglob("*"), tmp / "b-passphrase"]:
            shutil.chown(path, su_user, su_user)
    return gpg, fingerprint


def kill_agents(tmp: Path, su_user: str | None) -> None:
    """gpg leaves a gpg-agent per home and user running; stop ours (as each user, so the socket path matches)."""
    for home, user in ((tmp / "gnupg", None), (tmp / "b-gnupg", None), (tmp / "b-gnupg", su_user)):
        if not home.is_dir():
            continue
        command = f"gpgconf --homedir {home} --kill all"
        argv = ["su", user, "-c", command] if user else ["sh", "-c", command]
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(argv, env={"PATH": CLEAN_PATH}, check=False, timeout=30, capture_output=True)


def free_port() -> int:
    """An ephemeral loopback port for moto (a lost race with another bind shows as 'moto did not start')."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def moto_server(log_path: Path, flavour: str) -> Iterator[str]:
    """Start moto's server on 127.0.0.1 and always stop it, also on Ctrl-C or errors."""
    port = free_port()
    with log_path.open("w") as log:
        server = [str(Path(__file__).with_name("moto_endpoint.py"))] if flavour == "cached" else ["-m", "moto.server"]
        argv = [sys.executable, *server, "-H", "127.0.0.1", "-p", str(port)]
        proc = subprocess.Popen(argv, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not start: {log_path.read_text()[-800:]}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stage_day(stage_root: Path, day: str, peers: list[str]) -> Path:
    """The day dir as the stage action leaves it: cback.stage at its root, cback.collect in each peer dir."""
    day_dir = stage_root / day
    for peer in peers:
        (day_dir / peer).mkdir(parents=True, exist_ok=True)
        (day_dir / peer / "cback.collect").touch()
    (day_dir / "cback.stage").touch()
    return day_dir


def write_random(path: Path, mib: int) -> None:
    """An incompressible file of `mib` MiB from os.urandom, written a MiB at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for _ in range(mib):
            out.write(os.urandom(MIB))


def make_huge(tmp: Path, day: str, mib: int) -> Path:
    """huge: one incompressible file of `mib` MiB, after checking the scratch file system can take it and B's copy."""
    # the file, upstream's encrypted copy, and moto's spooled parts plus the assembled object (its TMPDIR: /tmp)
    need = 4 * mib * MIB + 512 * MIB
    free = shutil.disk_usage(tmp).free
    if free < need:
        raise SystemExit(f"huge dataset: {free / MIB:.0f} MiB free under {tmp}, need about {need / MIB:.0f} MiB "
                         "(the file, upstream's copy, moto's); use --tmpdir or --huge-mib")  # fmt: skip
    day_dir = stage_day(tmp / "data/huge", day, ["peer1"])
    write_random(day_dir / "peer1/archive/huge.tar", mib)
    return day_dir


def make_datasets(tmp: Path, day: str, quick: bool, huge_mib: int | None = None) -> dict[str, Dataset]:
    """small: many 1-16 KiB files; big: few 96 MiB incompressible files; mixed: hard links to both;
    huge (only when huge_mib is given): one file of huge_mib MiB."""
    rng, peers = random.Random(20240601), ["peer1", "peer2"]
    small_n, big_n, big_mib = (200, 2, 8) if quick else (2000, 4, 96)
    small_day = stage_day(tmp / "data/small", day, peers)
    for i in range(small_n):
        path = small_day / peers[i % 2] / f"etc/d{i // 2 % 8}/d{i // 16 % 5}/file-{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(1024, 16 * 1024)))
    big_day = stage_day(tmp / "data/big", day, peers)
    for i in range(big_n):
        write_random(big_day / peers[i % 2] / f"archive/big-{i}.tar", big_mib)
    mixed_day = stage_day(tmp / "data/mixed", day, peers)
    for source in (small_day, big_day):
        for path in payload_files(source):
            link = mixed_day / path.relative_to(source)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, link)
    days = {"small": small_day, "big": big_day, "mixed": mixed_day}
    if huge_mib:
        days["huge"] = make_huge(tmp, day, huge_mib)
    return {
        name: Dataset(name, tmp / "data" / name, d, sum(p.stat().st_size for p in payload_files(d)) / MIB)
        for name, d in days.items()
    }


def hand_over(root: Path, user: str) -> None:
    """Give the staged data to the backup user, as the stage action leaves it: ours refuses a hard-linked staged
    file (mixed links big's and small's files) unless the backup user owns it."""
    uid, gid = pwd.getpwnam(user).pw_uid, grp.getgrnam(user).gr_gid
    for path in [root, *root.rglob("*")]:
        os.chown(path, uid, gid, follow_symlinks=False)


def child_env(bench: Bench, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for measured children: dummy credentials, loopback endpoint, no real AWS config or IMDS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and "proxy" not in k.lower()}
    none = str(bench.tmp / "none")
    env.update(CREDENTIALS, AWS_ENDPOINT_URL=bench.endpoint, AWS_EC2_METADATA_DISABLED="true")
    env.update(AWS_CONFIG_FILE=none, AWS_SHARED_CREDENTIALS_FILE=none)
    return {**env, **(extra or {})}


def s3_client(bench: Bench) -> Any:
    """Untimed bucket housekeeping client (boto3 imported here so the measured children start without it)."""
    import boto3

    keys = {"aws_access_key_id": DUMMY, "aws_secret_access_key": DUMMY, "region_name": "us-east-1"}
    return boto3.client("s3", endpoint_url=bench.endpoint, **keys)


def drop_bucket(bench: Bench, name: str) -> dict[str, int]:
    """List then delete a bucket, so moto's memory stays flat; returns key -> size for checking."""
    client, found = s3_client(bench), {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        found.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    keys = list(found)
    for i in range(0, len(keys), 1000):
        client.delete_objects(Bucket=name, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]})
    client.delete_bucket(Bucket=name)
    return found


def check_remote(bench: Bench, ds: Dataset, remote: dict[str, int], plain: bool) -> str | None:
    """Did the side store every payload file: same size when plain, another size (ciphertext) when encrypted?"""
    for path in payload_files(ds.day_dir):
        key = f"{bench.day}/{path.relative_to(ds.day_dir)}"
        if key not in remote:
            return f"remote check failed: {key} missing"
        if (remote[key] == path.stat().st_size) != plain:
            return f"remote check failed: {key} is {remote[key]} bytes, {'not ' if plain else ''}as staged"
    return None


def config_xml(bench: Bench, ds: Dataset, variant: str, bucket: str, work: Path, *,
               extra: dict[str, str] | None = None) -> str:  # fmt: skip
    """A real cback3.conf for side A: options, stage and our <amazons3> section (plus `extra` settings in it)."""
    a = bench.args
    s3 = {"s3_bucket": bucket, "endpoint_url": bench.endpoint, "region": "us-east-1"}
    if variant == "symmetric":
        s3["gpg_passphrase_file"] = str(bench.passphrase)
    if variant == "pubkey":
        s3.update(gpg_recipient=bench.fingerprint, gpg_home=str(bench.gpg_home))
    if variant == "symmetric" and a.s2k_count:  # ours rejects it for public-key encryption
        s3["gpg_s2k_count"] = str(a.s2k_count)
    if a.max_concurrency:
        s3["max_concurrency"] = str(a.max_concurrency)
    s3.update(setting.split("=", 1) for setting in getattr(a, "setting", []))  # bench_store's --setting
    s3.update(extra or {})
    section = "".join(f"    <{k}>{v}</{k}>\n" for k, v in s3.items())
    return f"""<?xml version="1.0"?>
<cb_config>
  <extensions><action><name>amazons3</name><module>cedar_s3.amazons3</module>
    <function>executeAction</function><index>201</index></action></extensions>
  <options><starting_day>sunday</starting_day><working_dir>{work}</working_dir>
    <backup_user>{bench.owner[0]}</backup_user><backup_group>{bench.owner[1]}</backup_group>
    <rcp_command>/usr/bin/scp -B</rcp_command></options>
  <stage><staging_dir>{ds.stage_root}</staging_dir></stage>
  <amazons3>
{section}  </amazons3>
</cb_config>
"""


def run_measured(mode: str, arg: Path, env: dict[str, str], log: Path, watch: Path | None = None, *,
                 script: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """One child process (`script --run-<mode> arg`, default this script); while it runs, a parent thread samples
    the size of `watch` (no GIL cost in the child). The peak sampled is the result's tmp_mib, or the child's own
    tmp_mib figure if that is larger (B measures its encrypted copy at its fullest, just before removing it)."""
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], tree_bytes(watch))  # type: ignore[arg-type]

    sampler = threading.Thread(target=sample, daemon=True)
    argv = [sys.executable, str(script or Path(__file__).resolve()), f"--run-{mode}", str(arg)]
    with log.open("w") as err:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        if watch:
            sampler.start()
        try:
            out, _ = proc.communicate(timeout=CHILD_TIMEOUT)
        finally:
            stop.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if watch:
                sampler.join()
    lines = [line for line in out.splitlines() if line.startswith(RESULT_PREFIX)]
    result = json.loads(lines[-1][len(RESULT_PREFIX) :]) if lines else {"error": f"no result (exit {proc.returncode})"}
    if result.get("error") and not result.get("import_error"):
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]  # the scratch dir goes away at the end
        result["error"] += "".join(f"\n      | {line}" for line in tail)
    if watch:  # kept on failure too (in the JSON samples), e.g. how far B's copy got on a small --work-parent
        result["tmp_mib"] = max(peak[0] / MIB, result.get("tmp_mib") or 0.0)
    return result


def measured(bench: Bench, ds: Dataset, bucket: str, *, mode: str, arg: Path, env: dict[str, str], plain: bool,
             watch: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Run one child against its own fresh bucket, then check what really arrived and drop the bucket."""
    s3_client(bench).create_bucket(Bucket=bucket)
    result = run_measured(mode, arg, env, bench.tmp / f"log-{bucket}.txt", watch)
    remote = drop_bucket(bench, bucket)
    if not result.get("error"):
        result["error"] = check_remote(bench, ds, remote, plain)
    return result


def work_parent(bench: Bench) -> Path:
    """Where A's working_dir and B's encrypted copy go: --work-parent (a small tmpfs, say), else the scratch dir."""
    parent = getattr(bench.args, "work_parent", None)
    return Path(parent) if parent else bench.tmp


def measure_ours(bench: Bench, ds: Dataset, variant: str, tag: str) -> dict[str, Any]:
    """Side A: write cback3.conf, clear the store indicator, run executeAction in a fresh process."""
    work, config = work_parent(bench) / f"work-a-{tag}", bench.tmp / f"cback3-{tag}.conf"
    work.mkdir()
    config.write_text(config_xml(bench, ds, variant, f"a-{tag}", work))
    (ds.day_dir / "cback.amazons3").unlink(missing_ok=True)  # else a second run would be skipped
    env = child_env(bench, {"GNUPGHOME": str(bench.gpg_home), "TMPDIR": str(work)})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    result = measured(bench, ds, f"a-{tag}", mode="ours", arg=config, env=env, plain=variant == "plain", watch=work)
    shutil.rmtree(work, ignore_errors=True)
    (ds.day_dir / "cback.amazons3").unlink(missing_ok=True)
    return result


def encrypt_command(bench: Bench, variant: str, equal: bool) -> str | None:
    """Upstream's documented gpg command (GnuPG 2.2 spelling); `equal` adds our settings for a like-for-like row."""
    if variant == "plain":
        return None
    extra = " --compress-algo none --cipher-algo AES256" if equal else ""
    if variant == "symmetric":
        s2k = f" --s2k-mode 3 --s2k-digest-algo SHA512 --s2k-count {bench.args.s2k_count}"  # as ours passes it
        extra += s2k if equal and bench.args.s2k_count else ""
        head = f"{bench.gpg} -c --batch --yes --pinentry-mode loopback --passphrase-file {bench.b_passphrase}"
    else:
        head = f"{bench.gpg} --homedir {bench.b_gpg_home} -e --batch --yes --trust-model always -r {bench.fingerprint}"
    return head + extra + " -o ${output} ${input}"


def upstream_spec(bench: Bench, ds: Dataset, variant: str, tag: str, work: Path, equal: bool = False) -> Path:
    """Write side B's job (bucket b-<tag>, encrypted copy under `work`) for `--run-upstream`; returns its path."""
    env = {k: v for k, v in child_env(bench).items() if k.startswith("AWS_")}  # su keeps env: hand it a clean one
    env.update(PATH=CLEAN_PATH, LANG="C.UTF-8", GNUPGHOME=str(bench.b_gpg_home))
    if not bench.su_user:
        env["HOME"] = os.environ.get("HOME", "/")
    spec = {
        "bucket": f"b-{tag}", "day": bench.day, "day_dir": str(ds.day_dir), "work_dir": str(work), "env": env,
        "aws": bench.aws, "endpoint": bench.endpoint, "encrypt": encrypt_command(bench, variant, equal),
        "su_user": bench.su_user, "su_group": bench.su_user,
    }  # fmt: skip
    spec_path = bench.tmp / f"spec-b-{tag}.json"
    spec_path.write_text(json.dumps(spec))
    return spec_path


def measure_upstream(bench: Bench, ds: Dataset, variant: str, tag: str, equal: bool = False) -> dict[str, Any]:
    """Side B: upstream's aws/gpg command sequence in a fresh process, su'ing to the backup user when root."""
    work = work_parent(bench) / f"work-b-{tag}"
    work.mkdir()
    if bench.su_user:
        shutil.chown(work, bench.su_user, bench.su_user)
    spec_path = upstream_spec(bench, ds, variant, tag, work, equal)
    plain = variant == "plain"
    # huge: sampled too (one file, a cheap walk), so a run that fails midway, e.g. for lack of space on a small
    # --work-parent, still shows how far its copy got; elsewhere a walk of thousands of files would slow B down
    watch = work if ds.name == "huge" and not plain else None
    result = measured(bench, ds, f"b-{tag}", mode="upstream", arg=spec_path, env=child_env(bench), plain=plain,
                      watch=watch)  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    return result


def measure_limit(bench: Bench, ds: Dataset, tag: str) -> dict[str, Any]:
    """The floor row: bare concurrent put_object of the plain payload."""
    spec_path = bench.tmp / f"spec-l-{tag}.json"
    spec = {"bucket": f"l-{tag}", "day": bench.day, "day_dir": str(ds.day_dir), "endpoint": bench.endpoint}
    spec_path.write_text(json.dumps(spec))
    return measured(bench, ds, f"l-{tag}", mode="limit", arg=spec_path, env=child_env(bench), plain=True)


Samples = dict[str, list[dict[str, Any]]]


def run_rounds(bench: Bench, datasets: list[Dataset], variants: list[str], rounds: int) -> Samples:
    """Rounds alternate A, B (and B with equal settings for big encrypted data), plus one limit run per dataset."""
    samples: Samples = {}
    ours_missing: dict[str, Any] | None = None  # an ImportError will not heal mid-run: report it, stop retrying
    shown: set[str] = set()

    def record(key: str, result: dict[str, Any]) -> None:
        if result.get("error") and result["error"] not in shown:
            shown.add(result["error"])
            print(f"  {key}: {result['error']}", flush=True)
        samples.setdefault(key, []).append(result)

    for r in range(1, rounds + 1):
        for ds in datasets:
            print(f"round {r}/{rounds} {ds.name} ({ds.payload_mib:.0f} MiB payload)", flush=True)
            if ds.name != "huge":  # one multi-GiB put_object is no floor anyone uses (and moto holds it in memory)
                record(f"{ds.name}|limit", measure_limit(bench, ds, f"{r}-{ds.name}"))
            for variant in variants:
                tag = f"{r}-{ds.name}-{variant}"
                a = ours_missing or measure_ours(bench, ds, variant, tag)
                ours_missing = a if a.get("import_error") else None
                record(f"{ds.name}|{variant}|A", a)
                record(f"{ds.name}|{variant}|B", measure_upstream(bench, ds, variant, tag))
                if ds.name == "big" and variant != "plain":
                    record(f"{ds.name}|{variant}|B_eq", measure_upstream(bench, ds, variant, tag + "-eq", equal=True))
    return samples


def median(runs: list[dict[str, Any]], field: str) -> float | None:
    """Median over the successful runs; None when none succeeded (never a made-up number)."""
    values = [run[field] for run in runs if not run.get("error") and run.get(field) is not None]
    return statistics.median(values) if values else None


def summarize(samples: Samples, datasets: list[Dataset], variants: list[str]) -> list[dict[str, Any]]:
    """One row per dataset/variant (plus B equal-settings rows) with medians and ratios."""
    rows = []
    for ds in datasets:
        limit = median(samples.get(f"{ds.name}|limit", []), "wall")
        for variant in variants:
            a_runs = samples[f"{ds.name}|{variant}|A"]
            for side in ("B", "B_eq"):
                b_runs = samples.get(f"{ds.name}|{variant}|{side}")
                if b_runs is None:
                    continue
                a, b = median(a_runs, "wall"), median(b_runs, "wall")
                failed = [(s, x["error"]) for s, runs in (("A", a_runs), ("B", b_runs)) for x in runs if x.get("error")]
                rows.append({
                    "dataset": ds.name, "variant": variant + (" (B equal settings)" if side == "B_eq" else ""),
                    "payload_mib": ds.payload_mib, "a_s": a, "b_s": b, "limit_s": limit,
                    "a_rss_mib": median(a_runs, "rss_mib"), "b_rss_mib": median(b_runs, "rss_mib"),
                    "a_tmp_mib": median(a_runs, "tmp_mib"), "b_tmp_mib": median(b_runs, "tmp_mib"),
                    "b_over_a": b / a if a and b else None, "a_over_limit": a / limit if a and limit else None,
                    "errors": sorted({f"{s}: {e}" for s, e in failed}),
                })  # fmt: skip
    return rows


def print_columns(cols: list[tuple[str, str, str]], rows: list[dict[str, Any]], *, left: set[int]) -> None:
    """Rows as aligned columns ``(key, heading, format)``; None prints as 'n/a'; columns in ``left`` flush left."""
    cells = [[heading for _, heading, _ in cols]]
    cells += [["n/a" if row[key] is None else form.format(row[key]) for key, _, form in cols] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cols))]
    for n, line in enumerate(cells):
        aligned = (c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True)))
        print("  ".join(aligned))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def print_table(rows: list[dict[str, Any]]) -> None:
    """Plain-text table; 'n/a' means that side produced no successful run (see the notes)."""
    cols = [("dataset", "dataset", "{}"), ("variant", "variant", "{}"), ("payload_mib", "MiB", "{:.0f}"),
            ("a_s", "A s", "{:.2f}"), ("b_s", "B s", "{:.2f}"), ("limit_s", "limit s", "{:.2f}"),
            ("b_over_a", "B/A", "{:.2f}"), ("a_over_limit", "A/limit", "{:.2f}"),
            ("a_rss_mib", "A RSS MiB", "{:.0f}"), ("b_rss_mib", "B RSS MiB", "{:.0f}"),
            ("a_tmp_mib", "A tmp MiB", "{:.1f}"), ("b_tmp_mib", "B tmp MiB", "{:.1f}")]  # fmt: skip
    print_columns(cols, rows, left={0, 1})
    notes: dict[str, list[str]] = {}
    for row in rows:
        for error in row["errors"]:
            notes.setdefault(error, []).append(f"{row['dataset']}/{row['variant']}")
    for error, where in notes.items():
        print(f"note: {error}\n      rows: {', '.join(where)}")


def main() -> int:
    """Set up once, measure in alternating rounds, report, and always clean up."""
    args = parse_args()
    for mode in ("ours", "upstream", "limit"):
        if getattr(args, f"run_{mode}"):
            return run_child(mode, getattr(args, f"run_{mode}"))
    if args.quick:
        args.rounds = 1
    names, variants = args.datasets.split(","), args.variants.split(",")
    if not set(names) <= {"small", "big", "mixed", "huge"} or not set(variants) <= {"plain", "symmetric", "pubkey"}:
        raise SystemExit("unknown dataset or variant")
    os.umask(0o022)  # the su user must be able to read the staged data
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanups below on kill too
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))  # and when the terminal goes (the huge file is GiBs)
    root = os.geteuid() == 0
    aws = ensure_awscli(args.awscli_venv)
    aws_version = run([aws, "--version"]).stdout.strip()
    su_user = ensure_bench_user() if root else None
    print(f"{aws_version}; {'su to ' + su_user if su_user else 'not root: su skipped, B runs commands via sh -c'}")
    tmp = Path(tempfile.mkdtemp(prefix="cedar-s3-bench-", dir=args.tmpdir))
    tmp.chmod(0o755)
    try:
        gpg, fingerprint = setup_gpg(tmp, su_user)
        owner = (su_user, su_user) if su_user else (getpass.getuser(), grp.getgrgid(os.getegid()).gr_name)
        day = datetime.date.today().strftime("%Y/%m/%d")
        with moto_server(tmp / "moto.log", args.moto) as endpoint:
            bench = Bench(tmp, endpoint, day, aws, gpg, fingerprint, su_user, owner, args)
            start = time.perf_counter()
            huge_mib = (args.huge_mib or HUGE_MIB[args.quick]) if "huge" in names else None
            all_sets = make_datasets(tmp, day, args.quick, huge_mib)
            if su_user:
                hand_over(tmp / "data", su_user)
            print(f"datasets made in {time.perf_counter() - start:.1f} s under {tmp}; S3 at {endpoint}", flush=True)
            datasets = [all_sets[n] for n in names]
            samples = run_rounds(bench, datasets, variants, args.rounds)
        rows = summarize(samples, datasets, variants)
        print(f"\n{args.rounds} round(s), medians; {os.cpu_count()} CPUs; {args.moto} moto; A = cedar_s3, B = upstream")
        print_table(rows)
        if args.json:
            meta = {k: v for k, v in vars(args).items() if not k.startswith("run_")}
            meta.update(cpus=os.cpu_count(), aws=aws_version, su_user=su_user, date=day)
            Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows, "samples": samples}, indent=1))
        return 0
    finally:
        kill_agents(tmp, su_user)
        shutil.rmtree(tmp, ignore_errors=True)


def run_main(main: Callable[[], int]) -> None:
    """Exit with ``main()``'s status; Ctrl-C ends quietly (the cleanups in main() have run by then)."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("interrupted")


if __name__ == "__main__":
    run_main(main)
