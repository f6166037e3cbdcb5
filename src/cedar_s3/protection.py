"""How a night protects what it stores: its encryption (native GnuPG, upstream's ``<encrypt>`` command, or
none), its manifest signer, and the deadlines of the children they start; each proven before any upload."""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cedar_s3.bucketformat import Encryption
from cedar_s3.children import Deadlines
from cedar_s3.config import AmazonS3Config
from cedar_s3.staging import ownerIds

if TYPE_CHECKING:  # these import gnupg, which cback3 should not pay for at start-up
    from cedar_s3.gpg.encrypt import GnuPGEncryptor
    from cedar_s3.gpg.sign import ManifestSigner
    from cedar_s3.legacy import CommandEncryptor

__all__ = ["NightEncryption", "defaultGnuPGHome", "nightDeadlines", "nightEncryption", "nightSigner"]

logger = logging.getLogger("CedarBackup3.log.extend.amazons3")


@dataclass
class NightEncryption:
    """The night's encryption: native GnuPG, upstream's command, or neither."""

    gnupg: GnuPGEncryptor | None = None
    command: CommandEncryptor | None = None

    @property
    def mode(self) -> Encryption:
        if self.gnupg is not None:
            return self.gnupg.mode
        return Encryption.COMMAND if self.command is not None else Encryption.NONE


def nightDeadlines(settings: AmazonS3Config) -> Deadlines:
    default = Deadlines()
    allowance = float(settings.childTimeout) if settings.childTimeout else default.allowance
    floor = settings.childMinThroughput.bytes if settings.childMinThroughput else default.minThroughput
    if settings.maxBandwidth:  # a capped upload is slow on purpose: gpg streaming into it must not be killed
        floor = min(floor, settings.maxBandwidth.bytes / 2)
    return Deadlines(allowance, floor)


@contextlib.contextmanager
def nightEncryption(config: Any, settings: AmazonS3Config, deadlines: Deadlines) -> Iterator[NightEncryption]:
    """The configured encryptor, proven by a self-check, torn down on every exit."""
    if settings.encryptCommand is not None:
        from cedar_s3.legacy import CommandEncryptor
        from cedar_s3.workarea import WorkArea

        with WorkArea(config.options.workingDir, *ownerIds(config)) as area:
            command = CommandEncryptor(settings.encryptCommand, config.options.backupUser, area, deadlines)
            command.selfCheck()
            logger.debug("Encryption is enabled (<encrypt> command); self-check passed.")
            yield NightEncryption(command=command)
        return
    if not settings.gpgEnabled:
        logger.debug("Encryption is disabled; files will be uploaded in cleartext.")
        yield NightEncryption()
        return
    from cedar_s3.gpg.encrypt import GnuPGEncryptor

    gnupg = GnuPGEncryptor(
        passphraseFile=settings.gpgPassphraseFile,
        recipients=settings.gpgRecipients,
        gnupgHome=settings.gpgHome or defaultGnuPGHome(config.options.backupUser),
        cipher=settings.gpgCipher,
        compression=settings.gpgCompression,
        s2kCount=settings.gpgS2kCount,
        deadlines=deadlines,
    )
    try:
        gnupg.selfCheck()
        logger.debug("Encryption is enabled (%s); self-check passed.", gnupg.mode)
        yield NightEncryption(gnupg=gnupg)
    finally:
        gnupg.close()


@contextlib.contextmanager
def nightSigner(settings: AmazonS3Config, deadlines: Deadlines) -> Iterator[ManifestSigner | None]:
    """The manifest signer (``<gpg_sign_key>``), proven by signing a sample before any upload."""
    if settings.gpgSignKey is None:
        yield None
        return
    from cedar_s3.gpg.sign import ManifestSigner

    home = settings.gpgSignHome or os.path.join(os.path.expanduser("~"), ".gnupg")
    signer = ManifestSigner(settings.gpgSignKey, home, settings.gpgSignPassphraseFile, deadlines)
    try:
        signer.selfCheck()
        yield signer
    finally:
        signer.close()


def defaultGnuPGHome(backupUser: str | None) -> str:
    """The backup user's ``~/.gnupg`` when running as root (where upstream's gpg command found keys)."""
    if os.geteuid() == 0 and backupUser:
        return os.path.join(pwd.getpwnam(backupUser).pw_dir, ".gnupg")
    return os.environ.get("GNUPGHOME") or os.path.expanduser("~/.gnupg")
