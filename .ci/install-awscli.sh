#!/usr/bin/env bash
# Idempotent: the AWS CLI v1 (PyPI `awscli`) in its own venv, for the tests that run upstream's real
# CedarBackup3.extend.amazons3 (it shells out to `su <backup_user> -c "aws s3 ..."`). The venv is built from
# /usr/bin/python3 under /var/cache, so the unprivileged backup user can read and run it (a venv built from an
# interpreter under /root cannot be). A `.complete` marker makes a half-built venv be rebuilt, never used.
# Prints the path of the `aws` binary on its last line.
set -euo pipefail

VERSION="${CEDAR_S3_AWSCLI_VERSION:-1.46.3}"  # >= 1.29 honours endpoint_url in ~/.aws/config and AWS_ENDPOINT_URL
CACHE="${CEDAR_S3_CI_CACHE:-/var/cache/cedar-s3-ci}"
VENV="$CACHE/awscli-venv"
BASE=/usr/bin/python3
[ -x "$BASE" ] || BASE="$(command -v python3)"

if ! "$BASE" -c "import ensurepip, venv" 2>/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
    else
        echo "$BASE has no venv/ensurepip and this is not root: install python3-venv first" >&2
        exit 1
    fi
fi
if [ -f "$VENV/.complete" ] && [ "$(cat "$VENV/.complete")" = "$VERSION" ] && [ -x "$VENV/bin/aws" ]; then
    echo "AWS CLI $VERSION already in $VENV"
else
    echo "installing awscli==$VERSION into $VENV (from $BASE)"
    rm -rf "$VENV"
    mkdir -p "$CACHE"
    chmod 755 "$CACHE"
    timeout 300 "$BASE" -m venv "$VENV"
    timeout 600 "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "awscli==$VERSION"
    chmod -R a+rX "$VENV"
    echo "$VERSION" > "$VENV/.complete"
fi
timeout 60 "$VENV/bin/aws" --version
echo "$VENV/bin/aws"
