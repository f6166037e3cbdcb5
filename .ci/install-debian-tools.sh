#!/usr/bin/env bash
# Host tools for the Debian-root job (tests/test_debian_root.py, tests/debianroot.py): debootstrap, the Debian
# archive keyring it checks the mirror with, and git (the job copies the working tree by `git ls-files`).
# The roots themselves are built by the tests, once, and cached under /var/cache/cedar-s3-ci/.
set -euo pipefail

missing=()
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
[ -s /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
command -v git >/dev/null 2>&1 || missing+=(git)

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing ${missing[*]} and this is not root: install them first" >&2
        exit 1
    fi
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

IFS=', ' read -r -a suites <<<"${CEDAR_S3_DEBIAN_SUITES:-trixie}"
for suite in "${suites[@]}"; do
    if [ ! -e "/usr/share/debootstrap/scripts/$suite" ]; then
        echo "this debootstrap ($(debootstrap --version)) does not know the suite $suite: upgrade it" >&2
        exit 1
    fi
done
echo "debootstrap $(debootstrap --version | awk '{print $2}'), $(dpkg-query -W -f '${Package} ${Version}' debian-archive-keyring 2>/dev/null || echo 'keyring present')"
