"""The ``<amazons3>`` configuration section: parse, validate and emit it.

Upstream's five elements keep their names, forms and errors, so an old ``cback3.conf`` never needs touching.
Every newer setting is an optional element of the same section, keyword-only in ``AmazonS3Config``, and
"off" (or boto3's own default) when absent. One declarative table (``SETTINGS``) drives validation,
parsing and emitting, so a setting is described once.
"""

from __future__ import annotations

from functools import total_ordering
from typing import Any
from xml.parsers import expat

from CedarBackup3.config import ByteQuantity, readByteQuantity
from CedarBackup3.xmlutil import addContainerNode, createInputDom, readChildren

from cedar_s3.configvalues import (
    Setting,
    absolutePath,
    byteQuantity,
    checkBucket,
    checkFingerprint,
    choice,
    declare,
    fingerprint,
    flag,
    httpUrl,
    integer,
    kmsKeyId,
    stringList,
    tagPair,
    textValue,
    writeOptionalBoolean,
)
from cedar_s3.s3.thaw import ARCHIVED_STORAGE_CLASSES

__all__ = [
    "SECTION",
    "SETTINGS",
    "AmazonS3Config",
    "LocalConfig",
    "Setting",
    "checkBucket",
    "checkFingerprint",
    "checkXmlSafety",
]

SECTION = "amazons3"
MAX_XML_DEPTH = 64
MAX_XML_BYTES = 16 * 1024 * 1024
MIB = 1024 * 1024

STORAGE_CLASSES = (
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "GLACIER",
    "DEEP_ARCHIVE",
    "REDUCED_REDUNDANCY",
)
MAX_TAGS = 10  # S3's limit per object
SSE_MODES = ("AES256", "aws:kms")
LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
ADDRESSING_STYLES = ("auto", "path", "virtual")
RETRY_MODES = ("standard", "adaptive", "legacy")
CHECKSUM_WHEN = ("when_supported", "when_required")
GPG_CIPHERS = ("AES256", "AES192", "AES", "TWOFISH", "CAMELLIA256", "CAMELLIA192", "CAMELLIA128")
GPG_COMPRESSIONS = ("none", "zip", "zlib", "bzip2")
S2K_RANGE = (1024, 65011712)  # what OpenPGP's one-octet S2K count can encode

# ---------------------------------------------------------------------------------------------------------------
# AmazonS3Config
# ---------------------------------------------------------------------------------------------------------------


@total_ordering
class AmazonS3Config:
    """The ``<amazons3>`` settings, validated as they are set (upstream's contract), compared like upstream.

    The first five constructor arguments are upstream's, in upstream's order; everything newer is keyword-only
    and defaults to "off", so upstream code constructing this class keeps working unchanged.
    """

    # upstream's five, same semantics
    warnMidnite = declare("warnMidnite", "warn_midnite", flag(False), "flag", upstream=True)
    s3Bucket = declare("s3Bucket", "s3_bucket", textValue, "string", upstream=True)
    encryptCommand = declare("encryptCommand", "encrypt", textValue, "string", upstream=True)
    fullBackupSizeLimit = declare("fullBackupSizeLimit", "full_size_limit", byteQuantity(), "bytes", upstream=True)
    incrementalBackupSizeLimit = declare(
        "incrementalBackupSizeLimit", "incr_size_limit", byteQuantity(), "bytes", upstream=True
    )
    # native GnuPG encryption
    gpgPassphraseFile = declare("gpgPassphraseFile", "gpg_passphrase_file", absolutePath, "optional-string")
    gpgRecipients = declare("gpgRecipients", "gpg_recipient", stringList(fingerprint), "list")
    gpgHome = declare("gpgHome", "gpg_home", absolutePath, "optional-string")
    gpgCipher = declare("gpgCipher", "gpg_cipher", choice(GPG_CIPHERS, caseless=True), "optional-string")
    gpgCompression = declare(
        "gpgCompression", "gpg_compression", choice(GPG_COMPRESSIONS, caseless=True), "optional-string"
    )
    gpgS2kCount = declare("gpgS2kCount", "gpg_s2k_count", integer(*S2K_RANGE), "optional-integer")
    # where S3 is, and how to talk to it
    endpointUrl = declare("endpointUrl", "endpoint_url", httpUrl, "optional-string")
    region = declare("region", "region", textValue, "optional-string")
    addressingStyle = declare("addressingStyle", "addressing_style", choice(ADDRESSING_STYLES), "optional-string")
    profile = declare("profile", "profile", textValue, "optional-string")
    verifyTls = declare("verifyTls", "verify_tls", flag(True), "flag", writer=writeOptionalBoolean(True))
    caBundle = declare("caBundle", "ca_bundle", absolutePath, "optional-string")
    retryMode = declare("retryMode", "retry_mode", choice(RETRY_MODES), "optional-string")
    maxAttempts = declare("maxAttempts", "max_attempts", integer(1, 20), "optional-integer")
    checksumCalculation = declare(
        "checksumCalculation", "checksum_calculation", choice(CHECKSUM_WHEN), "optional-string"
    )
    checksumValidation = declare("checksumValidation", "checksum_validation", choice(CHECKSUM_WHEN), "optional-string")
    # what each stored object gets
    storageClass = declare("storageClass", "storage_class", choice(STORAGE_CLASSES), "optional-string")
    serverSideEncryption = declare("serverSideEncryption", "sse", choice(SSE_MODES), "optional-string")
    sseKmsKeyId = declare("sseKmsKeyId", "sse_kms_key_id", kmsKeyId, "optional-string")
    objectLockMode = declare("objectLockMode", "object_lock_mode", choice(LOCK_MODES), "optional-string")
    objectLockDays = declare("objectLockDays", "object_lock_days", integer(1, 36500), "optional-integer")
    tags = declare("tags", "tag", stringList(tagPair), "list")
    # transfer tuning
    maxConcurrency = declare("maxConcurrency", "max_concurrency", integer(1, 64), "optional-integer")
    multipartThreshold = declare("multipartThreshold", "multipart_threshold", byteQuantity(5 * MIB), "optional-bytes")
    multipartChunkSize = declare("multipartChunkSize", "multipart_chunksize", byteQuantity(5 * MIB), "optional-bytes")
    maxBandwidth = declare("maxBandwidth", "max_bandwidth", byteQuantity(1), "optional-bytes")
    verifyDownload = declare(
        "verifyDownload", "verify_download", flag(False), "flag", writer=writeOptionalBoolean(False)
    )
    # manifest signing
    gpgSignKey = declare("gpgSignKey", "gpg_sign_key", fingerprint, "optional-string")
    gpgSignHome = declare("gpgSignHome", "gpg_sign_home", absolutePath, "optional-string")
    gpgSignPassphraseFile = declare(
        "gpgSignPassphraseFile", "gpg_sign_passphrase_file", absolutePath, "optional-string"
    )
    # child processes and leftovers
    childTimeout = declare("childTimeout", "child_timeout", integer(10, 7 * 86400), "optional-integer")
    childMinThroughput = declare("childMinThroughput", "child_min_throughput", byteQuantity(1024), "optional-bytes")
    sweepAfterMinutes = declare("sweepAfterMinutes", "sweep_after_minutes", integer(0, 525600), "optional-integer")

    def __init__(
        self,
        warnMidnite: bool | None = None,
        s3Bucket: str | None = None,
        encryptCommand: str | None = None,
        fullBackupSizeLimit: ByteQuantity | int | str | None = None,
        incrementalBackupSizeLimit: ByteQuantity | int | str | None = None,
        **newerSettings: Any,
    ) -> None:
        values = [warnMidnite, s3Bucket, encryptCommand, fullBackupSizeLimit, incrementalBackupSizeLimit]
        for setting, value in zip(UPSTREAM_SETTINGS, values, strict=True):
            setattr(self, setting.attribute, value)
        unknown = set(newerSettings) - {setting.attribute for setting in NEWER_SETTINGS}
        if unknown:
            raise TypeError(f"AmazonS3Config got unknown settings: {', '.join(sorted(unknown))}")
        for setting in NEWER_SETTINGS:
            setattr(self, setting.attribute, newerSettings.get(setting.attribute))

    def __repr__(self) -> str:
        upstream = ", ".join(str(getattr(self, setting.attribute)) for setting in UPSTREAM_SETTINGS)
        newer = "".join(
            f", {setting.attribute}={getattr(self, setting.attribute)!r}"
            for setting in NEWER_SETTINGS
            if getattr(self, setting.attribute) != setting.validate(setting.element, None)
        )
        return f"AmazonS3Config({upstream}{newer})"

    __str__ = __repr__

    def _sortKey(self) -> tuple[Any, ...]:
        """Upstream's ``__cmp__`` order: None sorts as the empty value of its kind; newer settings follow."""
        key: list[Any] = []
        for setting in SETTINGS:
            value = getattr(self, setting.attribute)
            if isinstance(value, ByteQuantity) or (value is None and setting.read is readByteQuantity):
                key.append(value.bytes if value is not None else 0.0)
            elif isinstance(value, list):
                key.append(sorted(value))
            elif isinstance(value, bool):
                key.append(value)
            elif isinstance(value, int):
                key.append((1, value))
            else:
                key.append(str(value or ""))
        return tuple(key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AmazonS3Config):
            return False
        return self._sortKey() == other._sortKey()

    def __lt__(self, other: object) -> bool:
        if other is None:
            return False
        if not isinstance(other, AmazonS3Config):
            return NotImplemented
        return self._sortKey() < other._sortKey()

    __hash__ = None  # type: ignore[assignment]  # mutable, like upstream

    @property
    def gpgEnabled(self) -> bool:
        """Whether native GnuPG encryption (symmetric or public-key) is configured."""
        return self.gpgPassphraseFile is not None or bool(self.gpgRecipients)

    def validate(self) -> None:
        """Cross-setting rules that a single setter cannot check; each message names the elements involved."""
        if self.s3Bucket is None:
            raise ValueError("AmazonS3 s3Bucket must be set (<s3_bucket> in <amazons3>).")
        checkBucket("s3_bucket", self.s3Bucket)
        self._validateEncryption()
        self._validateSigning()
        self._validateServerSide()
        self._validateTags()
        self._validateTransfer()

    def _validateEncryption(self) -> None:
        """One encryption mode at a time, and each GnuPG option only where its mode uses it."""
        command = self.encryptCommand
        if command is not None and ("${input}" not in command or "${output}" not in command):
            raise ValueError(f"<encrypt> must contain both ${{input}} and ${{output}}: {command!r}.")
        if command is not None and self.gpgEnabled:
            raise ValueError("<encrypt> and native GnuPG (<gpg_passphrase_file>/<gpg_recipient>) exclude each other.")
        if self.gpgPassphraseFile is not None and self.gpgRecipients:
            raise ValueError("<gpg_passphrase_file> and <gpg_recipient> exclude each other: choose one mode.")
        gpgExtras: dict[str, object] = {
            "gpg_home": self.gpgHome,
            "gpg_cipher": self.gpgCipher,
            "gpg_compression": self.gpgCompression,
            "gpg_s2k_count": self.gpgS2kCount,
        }
        stray = [name for name, value in gpgExtras.items() if value is not None]
        if stray and not self.gpgEnabled:
            raise ValueError(f"<{stray[0]}> needs <gpg_passphrase_file> or <gpg_recipient>.")
        if self.gpgHome is not None and self.gpgPassphraseFile is not None:
            raise ValueError(
                "<gpg_home> holds recipients' public keys; symmetric mode (<gpg_passphrase_file>) needs none."
            )
        if self.gpgS2kCount is not None and self.gpgPassphraseFile is None:
            raise ValueError("<gpg_s2k_count> applies to symmetric encryption (<gpg_passphrase_file>) only.")

    def _validateSigning(self) -> None:
        signing = {"gpg_sign_home": self.gpgSignHome, "gpg_sign_passphrase_file": self.gpgSignPassphraseFile}
        straySigning = [name for name, value in signing.items() if value is not None]
        if straySigning and self.gpgSignKey is None:
            raise ValueError(f"<{straySigning[0]}> needs <gpg_sign_key>.")

    def _validateServerSide(self) -> None:
        """Server-side options that only work together, and the verify each one leaves possible."""
        if self.sseKmsKeyId is not None and self.serverSideEncryption != "aws:kms":
            raise ValueError("<sse_kms_key_id> needs <sse>aws:kms</sse>.")
        if (self.objectLockMode is None) != (self.objectLockDays is None):
            raise ValueError("<object_lock_mode> and <object_lock_days> must be set together.")
        if self.verifyDownload and self.storageClass in ARCHIVED_STORAGE_CLASSES:
            raise ValueError(
                f"<verify_download>Y cannot work with <storage_class>{self.storageClass}: archived objects cannot be "
                "read back without a restore (hours, and billed). The nightly verify already proves them by "
                "listing and HEAD checksums; remove <verify_download>, or choose GLACIER_IR (instant retrieval)."
            )
        kmsWithoutChecksums = self.serverSideEncryption == "aws:kms" and self.checksumCalculation == "when_required"
        if kmsWithoutChecksums and not self.verifyDownload:
            raise ValueError(
                "<sse>aws:kms with <checksum_calculation>when_required leaves nothing to verify uploads by: an "
                "SSE-KMS object's ETag is not its MD5 and no SHA-256 checksum is sent. Set <verify_download>Y, "
                "or drop <checksum_calculation> if the endpoint accepts flexible checksums."
            )

    def _validateTags(self) -> None:
        tagKeys = [tag.partition("=")[0] for tag in self.tags]
        if len(tagKeys) > MAX_TAGS:
            raise ValueError(f"<tag> is given {len(tagKeys)} times; S3 allows at most {MAX_TAGS} tags per object.")
        repeated = sorted({key for key in tagKeys if tagKeys.count(key) > 1})
        if repeated:
            raise ValueError(f"<tag> sets the key {repeated[0]!r} more than once; S3 allows each tag key once.")

    def _validateTransfer(self) -> None:
        if self.caBundle is not None and not self.verifyTls:
            raise ValueError("<ca_bundle> makes no sense with <verify_tls>N</verify_tls>.")
        threshold, chunk = self.multipartThreshold, self.multipartChunkSize
        if chunk is not None and chunk.bytes > 5 * 1024 * MIB:
            raise ValueError("<multipart_chunksize> must be at most 5 GiB (S3's largest part).")
        if threshold is not None and threshold.bytes > 5 * 1024 * MIB:
            raise ValueError("<multipart_threshold> must be at most 5 GiB (S3's largest single PUT).")


SETTINGS: tuple[Setting[Any], ...] = tuple(
    value for value in vars(AmazonS3Config).values() if isinstance(value, Setting)
)
UPSTREAM_SETTINGS = tuple(setting for setting in SETTINGS if setting.upstream)
NEWER_SETTINGS = tuple(setting for setting in SETTINGS if not setting.upstream)
_ELEMENTS = {setting.element: setting for setting in SETTINGS}


# ---------------------------------------------------------------------------------------------------------------
# LocalConfig
# ---------------------------------------------------------------------------------------------------------------


class _UnsafeXmlError(ValueError):
    pass


def checkXmlSafety(xmlData: str | bytes) -> None:
    """Refuse XML that could hang or exhaust the parser before minidom sees it.

    Cedar Backup configuration never needs entity declarations or deep nesting; a file that has them is either
    broken or hostile, and either way deserves a ``ValueError`` rather than a ``RecursionError`` or a hang.
    """
    if len(xmlData) > MAX_XML_BYTES:
        raise ValueError(f"Configuration XML is larger than {MAX_XML_BYTES} bytes; refusing to parse it.")
    parser = expat.ParserCreate()
    depth = 0

    def start(_name: str, _attrs: object) -> None:
        nonlocal depth
        depth += 1
        if depth > MAX_XML_DEPTH:
            raise _UnsafeXmlError(f"Configuration XML is nested deeper than {MAX_XML_DEPTH} levels; refusing it.")

    def end(_name: str) -> None:
        nonlocal depth
        depth -= 1

    def entity(*_args: object) -> None:
        raise _UnsafeXmlError("Configuration XML declares entities (<!ENTITY>); refusing to parse it.")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.EntityDeclHandler = entity
    parser.ExternalEntityRefHandler = lambda *_args: 0
    try:
        parser.Parse(xmlData, True)
    except _UnsafeXmlError as error:
        raise ValueError(str(error)) from None
    except expat.ExpatError as error:
        raise ValueError(f"Unable to parse XML document: {error}") from None


class LocalConfig:
    """This extension's configuration document: upstream's constructor, ``validate`` and ``addConfig``."""

    def __init__(self, xmlData: str | bytes | None = None, xmlPath: str | None = None, validate: bool = True) -> None:
        self._amazons3: AmazonS3Config | None = None
        if xmlData is not None and xmlPath is not None:
            raise ValueError("Use either xmlData or xmlPath, but not both.")
        if xmlPath is not None:
            with open(xmlPath, "rb") as handle:  # bytes: the parser honours the file's own encoding declaration
                xmlData = handle.read(MAX_XML_BYTES + 1)
        if xmlData is not None:
            self._parseXmlData(xmlData)
            if validate:
                self.validate()

    def __repr__(self) -> str:
        return f"LocalConfig({self.amazons3})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LocalConfig):
            return False
        return self.amazons3 == other.amazons3

    def __lt__(self, other: object) -> bool:
        if other is None:
            return False
        if not isinstance(other, LocalConfig):
            return NotImplemented
        if self.amazons3 == other.amazons3:
            return False
        if self.amazons3 is None:
            return True
        return other.amazons3 is not None and self.amazons3 < other.amazons3

    def __le__(self, other: object) -> bool:
        return self == other or self < other

    def __gt__(self, other: object) -> bool:
        return other is None or (isinstance(other, LocalConfig) and not self <= other)

    def __ge__(self, other: object) -> bool:
        return self == other or self > other

    __hash__ = None  # type: ignore[assignment]

    @property
    def amazons3(self) -> AmazonS3Config | None:
        """AmazonS3 configuration in terms of an ``AmazonS3Config`` object."""
        return self._amazons3

    @amazons3.setter
    def amazons3(self, value: AmazonS3Config | None) -> None:
        if value is not None and not isinstance(value, AmazonS3Config):
            raise ValueError("Value must be a ``AmazonS3Config`` object.")
        self._amazons3 = value

    def validate(self) -> None:
        """Upstream's checks (section present, bucket set) plus the cross-setting rules of newer settings."""
        if self.amazons3 is None:
            raise ValueError("AmazonS3 section is required.")
        self.amazons3.validate()

    def addConfig(self, xmlDom: Any, parentNode: Any) -> None:
        """Add an ``<amazons3>`` section as the next child of ``parentNode`` (upstream's elements always)."""
        if self.amazons3 is None:
            return
        section = addContainerNode(xmlDom, parentNode, SECTION)
        for setting in SETTINGS:
            setting.write(xmlDom, section, setting.element, getattr(self.amazons3, setting.attribute))

    def _parseXmlData(self, xmlData: str | bytes) -> None:
        checkXmlSafety(xmlData)
        _, parentNode = createInputDom(xmlData)
        self._amazons3 = LocalConfig._parseAmazonS3(parentNode)

    @staticmethod
    def _parseAmazonS3(parent: Any) -> AmazonS3Config | None:
        """Read ``<amazons3>``; ambiguity (a repeated section or element) and unknown elements are errors."""
        sections = readChildren(parent, SECTION)
        if not sections:
            return None
        if len(sections) > 1:
            raise ValueError(f"Configuration has {len(sections)} <{SECTION}> sections; exactly one is allowed.")
        section = sections[0]
        values: dict[str, Any] = {}
        seen: set[str] = set()
        for child in section.childNodes:
            if child.nodeType != child.ELEMENT_NODE:
                continue
            setting = _ELEMENTS.get(child.tagName)
            if setting is None:
                known = ", ".join(sorted(_ELEMENTS))
                raise ValueError(f"Unknown element <{child.tagName}> in <{SECTION}>; known elements: {known}.")
            if child.tagName in seen and not setting.repeated:
                raise ValueError(f"<{child.tagName}> appears more than once in <{SECTION}>; it may appear once.")
            seen.add(child.tagName)
        for setting in SETTINGS:
            if setting.element not in seen:
                continue
            try:
                values[setting.attribute] = setting.read(section, setting.element)
            except ValueError as error:
                raise ValueError(f"<{SECTION}>/<{setting.element}>: {error}") from None
        upstream = [values.pop(setting.attribute, None) for setting in UPSTREAM_SETTINGS]
        try:
            return AmazonS3Config(*upstream, **values)
        except ValueError as error:
            raise ValueError(f"Invalid <{SECTION}> configuration: {error}") from None
