"""Scale check: a staged day of many small files (listing pagination, manifest size, memory, linearity).

Stores days of N = 5,000, 10,000 and 20,000 tiny files into a local S3 endpoint (moto server on 127.0.0.1)
through ``executeAction``, then re-runs the same day (everything skipped), and prints per N: wall seconds for
the first run and the re-run, seconds spent verifying, manifest bytes, and the peak RSS of the process, so
that "linear" can be read off the table (seconds per 1,000 files should stay flat).

    python benchmarks/scale.py [--sizes 5000,10000,20000]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from nightkit import MotoServer, Night, dateSuffix, s3Client

os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"})


class VerifyTimer(logging.Handler):
    """Picks the verification time out of the extension's own debug log line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seconds = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Verified "):
            self.seconds = float(message.rsplit(" in ", 1)[1].split(" ")[0])


def stageFiles(night: Night, count: int) -> None:
    day = night.dayDir()
    for index in range(count):
        path = day / f"host{index % 4}" / f"d{index // 500:03d}" / f"f{index:06d}.tar.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(index.to_bytes(4, "big") * 64)
    for peer in range(4):
        (day / f"host{peer}" / "cback.collect").touch()
    (day / "cback.stage").touch()


def measure(server: MotoServer, count: int) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="cedar-s3-scale-"))
    try:
        client = s3Client(server.url)
        bucket = f"scale-{count}"
        client.create_bucket(Bucket=bucket)
        night = Night(root, bucket, server.url)
        night.settings["max_concurrency"] = 16
        stageFiles(night, count)
        timer = VerifyTimer()
        logger = logging.getLogger("CedarBackup3.log.extend.amazons3")
        logger.setLevel(logging.DEBUG)
        logger.addHandler(timer)
        started = time.perf_counter()
        night.run()
        first = time.perf_counter() - started
        verifyFirst = timer.seconds
        started = time.perf_counter()
        night.run()
        rerun = time.perf_counter() - started
        logger.removeHandler(timer)
        manifest = client.head_object(Bucket=bucket, Key=f"{dateSuffix()}/cback.amazons3.manifest.json")
        return {
            "files": count,
            "first_s": first,
            "rerun_s": rerun,
            "verify_s": verifyFirst,
            "manifest_kib": manifest["ContentLength"] / 1024,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="5000,10000,20000")
    sizes = [int(size) for size in parser.parse_args().sizes.split(",")]
    server = MotoServer().start()
    try:
        print(
            f"{'files':>7} {'first s':>8} {'s/1k':>6} {'re-run s':>9} {'s/1k':>6} {'verify s':>9} "
            f"{'manifest KiB':>13} {'peak RSS MiB':>13}"
        )
        for count in sizes:
            row = measure(server, count)
            server.reset()
            print(
                f"{count:>7} {row['first_s']:>8.1f} {1000 * row['first_s'] / count:>6.2f} {row['rerun_s']:>9.1f} "
                f"{1000 * row['rerun_s'] / count:>6.2f} {row['verify_s']:>9.2f} {row['manifest_kib']:>13.0f} "
                f"{row['peak_rss_mib']:>13.0f}",
                flush=True,
            )
    finally:
        server.stop()
    print("(2-core shared machine; moto server in a child process; peak RSS is cumulative over the rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
