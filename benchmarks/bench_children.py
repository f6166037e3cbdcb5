"""The three measured jobs of bench_store.py, each run in a fresh child process.

A fresh process per measurement keeps one job's imports, caches and peak RSS out of the next job's figures.
Each job prints one ``BENCH-RESULT {json}`` line on stdout, which the orchestrator parses.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from CedarBackup3.cli import Options
from CedarBackup3.config import Config

RESULT_PREFIX = "BENCH-RESULT "


def emit(result: dict[str, Any]) -> None:
    """Hand the result to the parent on one tagged line, so stray prints cannot confuse it."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def max_rss_mib(who: int) -> float:
    """Peak RSS of this process or of its largest waited-for descendant (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(who).ru_maxrss / 1024


def payload_files(day_dir: Path) -> list[Path]:
    """Files that count as backed-up data: everything except the empty cback.* indicators."""
    found = [Path(root, name) for root, _, names in os.walk(day_dir) for name in names]
    return sorted(p for p in found if not p.name.startswith("cback."))


def tree_bytes(path: Path) -> int:
    """Apparent size of the files under path that take space there; files may vanish while we walk, fine.

    Links are left out: ours hands gpg each small staged file as a hard link (a second name for the staged
    file's data, nothing written) or, across file systems, a symlink.
    """
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                info = Path(root, name).lstat()
                if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
                    total += info.st_size
    return total


def run_ours(config_path: str) -> None:
    """Side A: one cedar_s3 executeAction call, timed from the import of our module (cback3 pays it too)."""
    config = Config(xmlPath=config_path, validate=False)
    options = Options(argumentList=["--full", "amazons3"])
    start = time.perf_counter()
    try:
        from cedar_s3.amazons3 import executeAction  # timed; may not exist yet

        executeAction(config_path, options, config)
    except ImportError as exc:
        emit({"error": f"ImportError: {exc}", "import_error": True})
        return
    except Exception as exc:  # any failure becomes a reported row
        traceback.print_exc()
        emit({"error": f"{type(exc).__name__}: {exc}"})
        return
    wall = time.perf_counter() - start
    rss = max(max_rss_mib(resource.RUSAGE_SELF), max_rss_mib(resource.RUSAGE_CHILDREN))
    emit({"wall": wall, "rss_mib": rss})


class Upstream:
    """Side B: the commands CedarBackup3.extend.amazons3 runs, in its order, through su when root."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.aws = f"{spec['aws']} --endpoint-url {spec['endpoint']}"

    def sh(self, command: str, capture: bool = False) -> str:
        """Run one command line as upstream's executeCommand(su, [user, '-c', cmd]) does."""
        user = self.spec["su_user"]
        argv = ["su", user, "-c", command] if user else ["sh", "-c", command]
        done = subprocess.run(
            argv,
            env=self.spec["env"],
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise OSError(f"[{done.returncode}] {command}: {done.stderr.strip()[-500:]}")
        return done.stdout or ""

    def chown(self, path: Path) -> None:
        """Upstream hands the encrypted dir and its subdirs to the backup user (changeOwnership)."""
        if self.spec["su_user"]:
            shutil.chown(path, self.spec["su_user"], self.spec["su_group"])

    def encrypt(self, stage: Path, target: Path) -> None:
        """_encryptStagingDir: one encrypt-command process per file; empty files are only touched."""
        for root, _, names in sorted(os.walk(stage)):
            for name in sorted(names):
                clear = Path(root, name)
                encrypted = target / clear.relative_to(stage)
                if not encrypted.parent.is_dir():  # upstream only does this for non-empty files
                    encrypted.parent.mkdir(parents=True)
                    self.chown(encrypted.parent)
                if clear.stat().st_size == 0:
                    encrypted.touch()
                    continue
                command = self.spec["encrypt"].replace("${input}", str(clear))
                self.sh(command.replace("${output}", str(encrypted)))

    def verify(self, listing: str, source: Path, prefix: str) -> None:
        """_verifyUpload: every local file must be listed remotely with the same size."""
        remote = {e["Key"].replace(prefix, ""): int(e["Size"]) for e in json.loads(listing) or []}
        for path in payload_files(source):
            key = "/" + str(path.relative_to(source))
            if remote.get(key) != path.stat().st_size:
                raise OSError(f"upload check failed for {key}: remote size {remote.get(key)}")

    def run(self) -> None:
        """Clear, [encrypt], upload, verify, remove the encrypted copy: upstream's _writeToAmazonS3."""
        spec, day = self.spec, self.spec["day"]
        url = f"s3://{spec['bucket']}/{day}"
        source, enc_dir, enc_bytes, walk_seconds = Path(spec["day_dir"]), None, 0, 0.0
        start = time.perf_counter()
        self.sh(f"{self.aws} s3 rm --recursive {url}/")
        if spec["encrypt"]:
            enc_dir = Path(tempfile.mkdtemp(dir=spec["work_dir"]))
            self.chown(enc_dir)
            self.encrypt(source, enc_dir)
            source = enc_dir
        self.sh(f'{self.aws} s3 cp --recursive --exclude "*cback.*" {source}/ {url}/')
        query = "Contents[].{Key: Key, Size: Size}"
        bucket = spec["bucket"]
        listing = self.sh(f"{self.aws} s3api list-objects --bucket {bucket} --prefix {day} --query '{query}'", True)
        self.verify(listing, source, day)
        if enc_dir:
            walk_start = time.perf_counter()
            enc_bytes = tree_bytes(enc_dir)
            walk_seconds = time.perf_counter() - walk_start
            shutil.rmtree(enc_dir)
        wall = time.perf_counter() - start - walk_seconds
        tmp_mib = enc_bytes / 2**20 if enc_dir else None
        emit({"wall": wall, "rss_mib": max_rss_mib(resource.RUSAGE_CHILDREN), "tmp_mib": tmp_mib})


def run_limit(spec: dict[str, Any]) -> None:
    """The floor: the same plain bytes through 10 concurrent bare put_object calls, no checksums."""
    start = time.perf_counter()  # the import counts, as it does for side A
    import boto3
    from botocore.config import Config as BotoConfig

    client = boto3.client(
        "s3",
        endpoint_url=spec["endpoint"],
        config=BotoConfig(request_checksum_calculation="when_required", max_pool_connections=10),
    )
    day_dir = Path(spec["day_dir"])

    def put(path: Path) -> int:
        with path.open("rb") as body:
            key = f"{spec['day']}/{path.relative_to(day_dir)}"
            client.put_object(Bucket=spec["bucket"], Key=key, Body=body)
        return path.stat().st_size

    with ThreadPoolExecutor(max_workers=10) as pool:
        sent = sum(pool.map(put, payload_files(day_dir)))
    wall = time.perf_counter() - start
    emit({"wall": wall, "rss_mib": max_rss_mib(resource.RUSAGE_SELF), "bytes": sent})


def run_child(mode: str, arg: str) -> int:
    """Entry point for ``bench_store.py --run-<mode> ARG``."""
    if mode == "ours":
        run_ours(arg)
        return 0
    spec = json.loads(Path(arg).read_text())
    try:
        Upstream(spec).run() if mode == "upstream" else run_limit(spec)
    except Exception as exc:  # report it, do not crash the benchmark
        traceback.print_exc()
        emit({"error": f"{type(exc).__name__}: {exc}"})
    return 0


if __name__ == "__main__":
    sys.exit(run_child(sys.argv[1], sys.argv[2]))
