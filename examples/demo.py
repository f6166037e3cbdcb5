"""A full nightly backup into an embedded local S3 endpoint, with nothing to configure.

Starts moto's S3 server on 127.0.0.1, creates sample data and a cback3.conf using ``cedar_s3.amazons3``,
runs the real ``cback3 --full collect stage amazons3``, and prints what landed in the bucket.

    python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python examples/demo.py
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from nightkit import MotoServer, Night, getBytes, listKeys, s3Client


def main() -> int:
    beside = Path(sys.executable).parent / "cback3"  # this venv's: the one that imports this checkout
    cback3 = str(beside) if beside.exists() else shutil.which("cback3") or str(beside)
    if not Path(cback3).exists():
        print("cback3 is not installed: .venv/bin/pip install -e '.[test]'", file=sys.stderr)
        return 2
    user = pwd.getpwuid(os.geteuid()).pw_name
    server = MotoServer().start()
    root = Path(tempfile.mkdtemp(prefix="cedar-s3-demo-"))
    try:
        client = s3Client(server.url)
        client.create_bucket(Bucket="cedar-demo")
        night = Night(root, "cedar-demo/nightly", server.url, backupUser=user, backupGroup=user)
        data = night.root / "data"
        (data / "etc").mkdir(parents=True)
        (data / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
        (data / "home with spaces").mkdir()
        (data / "home with spaces" / "notes.txt").write_text("remember the milk\n" * 100)
        (data / "blob.bin").write_bytes(os.urandom(256 * 1024))
        config = night.writeConfig()
        env = os.environ | {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo"}
        command = [cback3, "--config", str(config), "--full", "--stack", "--logfile", str(root / "cback3.log")]
        print("$", " ".join([*command, "collect", "stage", "amazons3"]))
        result = subprocess.run([*command, "collect", "stage", "amazons3"], env=env, check=False)
        print(f"cback3 exited {result.returncode}; its log is below.\n")
        print((root / "cback3.log").read_text())
        if result.returncode != 0:
            return result.returncode
        print("Objects in s3://cedar-demo/:")
        for key, size in sorted(listKeys(client, "cedar-demo").items()):
            print(f"  {size:>10}  {key}")
        manifest = json.loads(getBytes(client, "cedar-demo", "nightly/" + night.key("cback.amazons3.manifest.json")))
        print(f"\nManifest: {len(manifest['objects'])} object(s), written by {manifest['tool']} on {manifest['host']}.")
        print(f"Store indicator written: {night.indicator().exists()} ({night.indicator()})")
        return 0
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
