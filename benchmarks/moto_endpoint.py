#!/usr/bin/env python3
"""Run moto's S3 server with one of its per-request costs removed; bench_store.py's ``--moto cached``.

For every request, moto's server checks the host against the list of its own service modules, which it builds
by listing its package directory and testing each entry with ``isdir`` (``moto.backends.list_of_moto_modules``;
seen in a profile of 2,000 PUTs: 173 calls per request, about a quarter of the server's CPU). That list cannot
change while the server runs, so this computes it once. On a 2-core machine the endpoint's CPU competes with
the client's; running both ways shows how much each ratio depends on the endpoint's own cost.

Usage is ``python -m moto.server``'s: ``moto_endpoint.py -H 127.0.0.1 -p PORT``.
"""

from __future__ import annotations

import sys

import moto.backends
from moto.server import main

if __name__ == "__main__":
    modules = tuple(moto.backends.list_of_moto_modules())
    moto.backends.list_of_moto_modules = lambda: modules  # read through the module on every request
    sys.exit(main(sys.argv[1:]))
