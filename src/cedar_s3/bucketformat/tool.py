"""The tool string every bookkeeping object and manifest carries: which program wrote it."""

from cedar_s3 import __version__

TOOL = f"cedar-s3 {__version__}"
