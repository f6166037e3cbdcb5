#!/usr/bin/env bash
# Idempotent: s3rver (npm) as a second, independent S3 implementation for the tests. Installs the pinned version
# with the machine's npm into a cache dir the test fixture looks in (tests/endpoints/s3rver.py), and prints the
# path of its binary on its last line. Needs node and npm (`apt-get install nodejs npm` where they are missing).
set -euo pipefail

VERSION="${CEDAR_S3_S3RVER_VERSION:-3.7.1}"
CACHE="${CEDAR_S3_CI_CACHE:-/var/cache/cedar-s3-ci}"
DIR="$CACHE/s3rver"
BIN="$DIR/node_modules/.bin/s3rver"

installed() {
    [ -x "$BIN" ] && [ "$(node -p "require('$DIR/node_modules/s3rver/package.json').version" 2>/dev/null)" = "$VERSION" ]
}

if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
    else
        echo "npm is missing and this is not root: install nodejs and npm first" >&2
        exit 1
    fi
fi
if installed; then
    echo "s3rver $VERSION already in $DIR"
else
    echo "installing s3rver@$VERSION into $DIR"
    mkdir -p "$DIR"
    timeout 600 npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error "s3rver@$VERSION"
    installed || { echo "s3rver $VERSION did not install into $DIR" >&2; exit 1; }
fi
echo "node $(node --version), s3rver $(node --openssl-legacy-provider "$BIN" --version)"
echo "$BIN"
