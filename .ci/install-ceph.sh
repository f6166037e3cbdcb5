#!/usr/bin/env bash
# Install the Ceph daemons the test-suite's `ceph` endpoint needs (Debian 12: Ceph 16.2 Pacific): a monitor, an
# OSD and the RADOS gateway. No manager: a one-OSD cluster serves S3 without one. Idempotent; needs root.
set -euo pipefail

PACKAGES=(ceph-mon ceph-osd radosgw)

missing=()
for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if [ "${#missing[@]}" = 0 ]; then
    echo "ceph packages already installed: ${PACKAGES[*]}"
else
    if [ "$(id -u)" != 0 ]; then
        echo "missing ${missing[*]} and this is not root: run $0 as root" >&2
        exit 1
    fi
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
for binary in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph-authtool ceph; do
    command -v "$binary" >/dev/null || { echo "$binary missing after install" >&2; exit 1; }
done
ceph-mon --version
