"""Sphinx configuration for the cedar-s3 documentation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sphinx.util import logging

project = "cedar-s3"
author = "cedar-s3 developers"
copyright = "2026, cedar-s3 developers"
extensions: list[str] = []
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []

logger = logging.getLogger(__name__)

# Every element of <amazons3> has a ".. _cfg-<element>:" label in configuration.rst. The check below compares
# those labels with the SETTINGS table in cedar_s3/config.py, so a new setting without documentation (or
# documentation of a setting that does not exist) fails the docs build, which CI runs with -W.
_LABEL = re.compile(r"^\.\. _cfg-([a-z0-9_]+):\s*$", re.MULTILINE)


def _checkConfigurationReference(app: Any) -> None:
    try:
        from cedar_s3.config import SETTINGS
    except ImportError:
        logger.info("cedar_s3 is not importable; skipping the configuration reference completeness check.")
        return
    page = Path(app.srcdir) / "configuration.rst"
    documented = set(_LABEL.findall(page.read_text(encoding="utf-8")))
    elements = {setting.element for setting in SETTINGS}
    for element in sorted(elements - documented):
        logger.warning("configuration.rst does not document <%s> (no '.. _cfg-%s:' label).", element, element)
    for element in sorted(documented - elements):
        logger.warning("configuration.rst documents <%s>, which cedar_s3.config.SETTINGS does not have.", element)


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", _checkConfigurationReference)
    return {"parallel_read_safe": True}
