"""Scale check: memory and time of one night against the number of files in the day.

For each N (default 5,000 / 20,000 / 60,000 / 100,000 tiny files) this script, the parent, starts a moto server
on 127.0.0.1 and lays out the staged day. The night itself runs in a fresh child process that does nothing
else: it imports Cedar Backup and cedar-s3, reads ``cback3.conf`` and calls ``executeAction`` as ``cback3``
does; its peak RSS (``ru_maxrss`` of that process, i.e. the kernel's high-water mark) is what the table
reports. A second fresh child runs the same day again (every object already stored, nothing sent).

    python benchmarks/scale.py [--sizes 5000,20000,60000,100000] [--no-rerun]
    python benchmarks/scale.py --sizes 60000 --tracemalloc      # where the memory goes

``--tracemalloc`` is a diagnostic mode: the child traces Python allocations (much slower, so its times are
not comparable) and a thread snapshots the heap each time the traced total reaches a new high; the top
allocation sites of the highest snapshot are printed, with RSS against traced bytes (the difference is memory
Python does not trace: the interpreter, C libraries, thread stacks, allocator slack).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

from nightkit import MotoServer, Night, s3Client  # noqa: E402 - from tests/, put on the path above

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
RESULT_PREFIX = "SCALE-RESULT "
CHILD_TIMEOUT = 3600
MIB = 1024 * 1024


def loadAverage() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


# -- the child: one night, nothing else -----------------------------------------------------------------------


PHASES = ("_uploadStagingDir", "_verifyUpload", "_writeManifest")


def timePhases(module: Any) -> dict[str, float]:
    """Wrap the night's named steps (module globals, looked up at each call) to time them; nothing else changes."""
    spent: dict[str, float] = {}
    for name in PHASES:
        original = getattr(module, name)

        def timed(*args: Any, _original: Any = original, _name: str = name) -> Any:
            started = time.perf_counter()
            try:
                return _original(*args)
            finally:
                spent[_name] = spent.get(_name, 0.0) + time.perf_counter() - started

        setattr(module, name, timed)
    return spent


def rssMib() -> float:
    """This process's resident set now (VmRSS), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakSnapshots:
    """Samples tracemalloc's traced total every ``interval`` s; keeps the snapshot taken at the highest one."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.best = 0
        self.snapshot: tracemalloc.Snapshot | None = None
        self.rssAtBest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakSnapshots:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            current, _ = tracemalloc.get_traced_memory()
            if current > self.best * 1.03:
                self.best = current
                self.snapshot = tracemalloc.take_snapshot()
                self.rssAtBest = rssMib()


def runNight(configPath: str, traceFrames: int) -> None:
    """The measured child: executeAction exactly as cback3 calls it, then one result line on stdout."""
    if traceFrames:
        tracemalloc.start(traceFrames)
    from CedarBackup3.cli import Options
    from CedarBackup3.config import Config

    started = time.perf_counter()
    cpuStart = resource.getrusage(resource.RUSAGE_SELF)
    from cedar_s3.amazons3 import executeAction

    config = Config(xmlPath=configPath, validate=False)
    options = Options(argumentList=["--full", "amazons3"])
    import cedar_s3.amazons3

    spent = timePhases(cedar_s3.amazons3)
    rssBefore = rssMib()
    peaks = PeakSnapshots() if traceFrames else None
    if peaks is not None:
        with peaks:
            executeAction(configPath, options, config)
    else:
        executeAction(configPath, options, config)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result: dict[str, Any] = {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime - cpuStart.ru_utime - cpuStart.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "rss_before_mib": rssBefore,
        "upload_s": spent.get("_uploadStagingDir"),
        "verify_s": spent.get("_verifyUpload"),
        "manifest_s": spent.get("_writeManifest"),
    }
    if peaks is not None and peaks.snapshot is not None:
        _, tracedPeak = tracemalloc.get_traced_memory()
        stats = peaks.snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)]).statistics("lineno")
        result["traced_peak_mib"] = tracedPeak / MIB
        result["traced_at_snapshot_mib"] = peaks.best / MIB
        result["rss_at_snapshot_mib"] = peaks.rssAtBest
        result["top"] = [
            {"where": str(stat.traceback), "kib": stat.size / 1024, "count": stat.count} for stat in stats[:25]
        ]
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# -- the parent: the endpoint, the files, the table ------------------------------------------------------------


def stageFiles(night: Night, count: int) -> None:
    """N tiny files over 4 peers, 500 per directory; cback.stage and cback.collect as stage leaves them."""
    day = night.dayDir()
    for index in range(count):
        path = day / f"host{index % 4}" / f"d{index // 500:03d}" / f"f{index:06d}.tar.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(index.to_bytes(4, "big") * 64)
    for peer in range(4):
        (day / f"host{peer}" / "cback.collect").touch()
    (day / "cback.stage").touch()


def child(night: Night, traceFrames: int, log: Path) -> dict[str, Any]:
    """One night in a fresh process; its stderr goes to ``log``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and "proxy" not in k.lower()}
    env |= CREDENTIALS | {"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    argv = [sys.executable, str(Path(__file__).resolve()), "--run-night", str(night.configPath)]
    argv += ["--trace-frames", str(traceFrames)]
    with log.open("a") as err:
        done = subprocess.run(
            argv, check=False, env=env, stdout=subprocess.PIPE, stderr=err, text=True, timeout=CHILD_TIMEOUT
        )
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"night failed (exit {done.returncode}): " + " | ".join(tail))
    return dict(json.loads(lines[-1][len(RESULT_PREFIX) :]))


def measure(server: MotoServer, count: int, *, rerun: bool, traceFrames: int, concurrency: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="cedar-s3-scale-"))
    try:
        client = s3Client(server.url)
        bucket = f"scale-{count}"
        client.create_bucket(Bucket=bucket)
        night = Night(root, bucket, server.url)
        night.settings["max_concurrency"] = concurrency
        stageFiles(night, count)
        night.writeConfig()
        loadBefore = loadAverage()
        first = child(night, traceFrames, root / "night.log")
        again = None
        if rerun:
            night.indicator().unlink(missing_ok=True)
            again = child(night, traceFrames, root / "night.log")
        manifest = client.head_object(Bucket=bucket, Key=night.key("cback.amazons3.manifest.json"))
        return {
            "files": count,
            "first": first,
            "rerun": again,
            "manifest_kib": manifest["ContentLength"] / 1024,
            "load": f"{loadBefore} -> {loadAverage()}",
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def printRow(row: dict[str, Any]) -> None:
    first, again, count = row["first"], row["rerun"], row["files"]
    rerunS = f"{again['wall_s']:>9.1f} {1000 * again['wall_s'] / count:>6.2f}" if again else f"{'-':>9} {'-':>6}"
    rerunRss = f"{again['peak_rss_mib']:>10.0f}" if again else f"{'-':>10}"
    verify = f"{first['verify_s']:>9.2f}" if first.get("verify_s") is not None else f"{'n/a':>9}"
    print(
        f"{count:>7} {first['wall_s']:>8.1f} {1000 * first['wall_s'] / count:>6.2f} "
        f"{1000 * first['cpu_s'] / count:>7.2f} {rerunS} {verify} {row['manifest_kib']:>9.0f} "
        f"{first['rss_before_mib']:>10.0f} {first['peak_rss_mib']:>9.0f} {rerunRss}   {row['load']}",
        flush=True,
    )
    for name, night in (("first night", first), ("re-run", again)):
        if night is None or "top" not in night:
            continue
        print(
            f"  tracemalloc, {name}: traced peak {night['traced_peak_mib']:.1f} MiB; highest snapshot "
            f"{night['traced_at_snapshot_mib']:.1f} MiB traced at RSS {night['rss_at_snapshot_mib']:.0f} MiB"
        )
        for stat in night["top"][:15]:
            print(f"    {stat['kib']:>9.0f} KiB {stat['count']:>8} blocks  {stat['where']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="5000,20000,60000,100000")
    parser.add_argument("--no-rerun", action="store_true", help="skip the second night of each day")
    parser.add_argument("--tracemalloc", action="store_true", help="diagnostic mode: where the memory goes")
    parser.add_argument("--frames", type=int, default=1, help="traceback depth in --tracemalloc mode")
    parser.add_argument("--concurrency", type=int, default=16, help="<max_concurrency> (default 16)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--run-night", metavar="CONF", help=argparse.SUPPRESS)
    parser.add_argument("--trace-frames", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_night:
        runNight(args.run_night, args.trace_frames)
        return 0
    sizes = [int(size) for size in args.sizes.split(",")]
    frames = args.frames if args.tracemalloc else 0
    print(f"{os.cpu_count()} CPUs; <max_concurrency>{args.concurrency}; load at start {loadAverage()}")
    if frames:
        print("tracemalloc mode: times are not comparable with a normal run")
    server = MotoServer().start()
    rows = []
    try:
        print(
            f"{'files':>7} {'first s':>8} {'s/1k':>6} {'cpu s/1k':>7} {'re-run s':>9} {'s/1k':>6} {'verify s':>9} "
            f"{'mfst KiB':>9} {'start MiB':>10} {'peak MiB':>9} {'re-run MiB':>10}   load (1/5/15 min)"
        )
        for count in sizes:
            row = measure(server, count, rerun=not args.no_rerun, traceFrames=frames, concurrency=args.concurrency)
            server.reset()
            rows.append(row)
            printRow(row)
    finally:
        server.stop()
    print(
        "(peak MiB: ru_maxrss of the child that ran executeAction and nothing else; start MiB: its RSS after the "
        "imports and reading cback3.conf; files made by the parent; moto in its own process)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
