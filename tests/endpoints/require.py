"""Which endpoints and tools a run insists on: ``$CEDAR_S3_REQUIRE``, a comma list such as ``moto,s3rver,ceph``.

A fixture whose endpoint or tool is missing skips its tests, unless the list names it: then they fail (CI names
everything it installs, so a broken install cannot pass as a skip).
"""

from __future__ import annotations

import os


def required(name: str) -> bool:
    return name in {part.strip() for part in os.environ.get("CEDAR_S3_REQUIRE", "").split(",")}
