"""No test reaches beyond 127.0.0.1: every HTTP(S) client (boto3, the AWS CLI, urllib) is pointed at a proxy on
a closed port, with loopback exempt, so a client that would go to AWS fails at once instead of leaving the machine.

The few host commands that must fetch packages (debootstrap, apt-get download in tests/debianroot.py) run with
``outsideEnvironment()``: the environment as it was before the guard.
"""

from __future__ import annotations

import os

CLOSED_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, so a stray request fails at once
LOOPBACK = "127.0.0.1,localhost,::1"
GUARD_ENV = {
    "HTTP_PROXY": CLOSED_PROXY,
    "HTTPS_PROXY": CLOSED_PROXY,
    "http_proxy": CLOSED_PROXY,
    "https_proxy": CLOSED_PROXY,
    "NO_PROXY": LOOPBACK,
    "no_proxy": LOOPBACK,
}

_before: dict[str, str | None] = {}


def install() -> None:
    """Put the guard into this process's environment (inherited by every child the tests start)."""
    for name, value in GUARD_ENV.items():
        _before.setdefault(name, os.environ.get(name))
        os.environ[name] = value


def outsideEnvironment() -> dict[str, str]:
    """This process's environment with the guard taken out again (for commands that fetch from a mirror)."""
    env = dict(os.environ)
    for name in GUARD_ENV:
        original = _before.get(name)
        if original is None:
            env.pop(name, None)
        else:
            env[name] = original
    return env
