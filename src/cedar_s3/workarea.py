"""A private scratch directory for ciphertext in flight.

Upstream wrote an encrypted copy of the whole staging dir before uploading any of it. We encrypt file by
file into this directory and delete each ciphertext as soon as it is uploaded, so the directory never holds
more than the files currently in flight. It is 0700 and removed on every way out; it is owned by the backup
user only in legacy ``<encrypt>`` mode (that command runs as the backup user and must write here), and by the
user running cback3 otherwise, so no other account can swap files that root reads or writes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from types import TracebackType

from CedarBackup3.util import changeOwnership

__all__ = ["WorkArea"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3.workarea")


class WorkArea:
    """``with WorkArea(workingDir, user, group) as area:`` then ``with area.scratch(name) as path: ...``."""

    def __init__(self, workingDir: str, backupUser: str | None, backupGroup: str | None) -> None:
        if not os.path.isdir(workingDir):
            raise OSError(f"<working_dir> {workingDir} does not exist or is not a directory.")
        self._workingDir = workingDir
        self._user = backupUser
        self._group = backupGroup
        self.path = ""

    def __enter__(self) -> WorkArea:
        self.path = tempfile.mkdtemp(prefix="cedar-s3-", dir=self._workingDir)
        os.chmod(self.path, 0o700)
        changeOwnership(self.path, self._user, self._group)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.path:
            shutil.rmtree(self.path, ignore_errors=True)
            if os.path.lexists(self.path):  # never fail a night over cleanup, but never hide ciphertext left behind
                logger.warning("Could not remove the temporary directory [%s]; remove it by hand.", self.path)

    @contextlib.contextmanager
    def scratch(self, name: str) -> Iterator[str]:
        """A path for one temporary file; whatever is written there is gone when the block ends."""
        path = os.path.join(self.path, name)
        try:
            yield path
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    @contextlib.contextmanager
    def scratchDir(self, name: str) -> Iterator[str]:
        """A new 0700 directory for one job's temporary files, removed with them when the block ends."""
        path = os.path.join(self.path, name)
        os.mkdir(path, 0o700)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
