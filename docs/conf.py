"""Sphinx configuration for the cedar-s3 documentation."""

project = "cedar-s3"
author = "cedar-s3 developers"
copyright = "2026, cedar-s3 developers"
extensions: list[str] = []
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []
