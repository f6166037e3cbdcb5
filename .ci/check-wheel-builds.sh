#!/usr/bin/env bash
# The packaging metadata builds with every setuptools a user may have: Debian 12's setuptools 66.1.1 without
# build isolation (as pybuild and `pip install --no-build-isolation` build), and the newest pip with the newest
# setuptools in an isolated build (what `pip install .` does). Debian 13's setuptools 78.1.1 and Debian 12's own
# 66.1.1 build it inside the Debian roots (tests/test_debian_root.py). Each wheel must carry the license.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/cedar-s3-wheels-XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"  # a copy, so no build/ or egg-info lands in the working tree
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$work/src" --

check() {  # LABEL WHEEL_DIR BUILD_LOG
    python3 - "$@" <<'PY'
import pathlib, sys, zipfile
label, wheels, log = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
(wheel,) = wheels.glob("cedar_s3-*.whl")
with zipfile.ZipFile(wheel) as archive:
    names = archive.namelist()
    info = {n.rsplit("/", 1)[1]: archive.read(n).decode() for n in names if ".dist-info/" in n and n.count("/") == 1}
metadata, generator = info["METADATA"].splitlines(), info["WHEEL"].splitlines()[1]
assert "License: GPL-2.0-or-later" in metadata, f"{label}: no License field"
assert any(n.endswith("/LICENSE") and ".dist-info/" in n for n in names), f"{label}: no LICENSE in the wheel"
assert "cedar_s3/amazons3.py" in names, f"{label}: no cedar_s3/amazons3.py"
warnings = [line for line in log.read_text().splitlines() if "DeprecationWarning: " in line or "BackendWarning: " in line]
deprecated = sorted({line.split("Warning: ", 1)[1] for line in warnings})
print(f"{label}: {wheel.name} ok ({generator})")
for message in deprecated:
    print(f"  deprecation: {message}")
PY
}

timeout 600 python3 -m venv "$work/old"
timeout 600 "$work/old/bin/pip" install -q --disable-pip-version-check "setuptools==66.1.1" wheel
timeout 600 "$work/old/bin/pip" wheel -v --no-deps --no-build-isolation -w "$work/wheels-old" "$work/src" \
    >"$work/old.log" 2>&1 || { cat "$work/old.log"; exit 1; }
check "setuptools 66.1.1, no build isolation" "$work/wheels-old" "$work/old.log"

timeout 600 python3 -m venv "$work/new"
timeout 600 "$work/new/bin/pip" install -q --disable-pip-version-check --upgrade pip
timeout 600 "$work/new/bin/pip" wheel -v --no-deps -w "$work/wheels-new" "$work/src" \
    >"$work/new.log" 2>&1 || { cat "$work/new.log"; exit 1; }
check "$("$work/new/bin/pip" --version | cut -d' ' -f1-2), isolated build" "$work/wheels-new" "$work/new.log"
