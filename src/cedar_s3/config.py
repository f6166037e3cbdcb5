"""The ``<amazons3>`` configuration section: parse, validate and emit it.

Upstream's five elements keep their names, forms and errors, so an old ``cback3.conf`` never needs touching.
Every newer setting is an optional element of the same section, keyword-only in ``AmazonS3Config``, and
"off" (or boto3's own default) when absent. One declarative table (``SETTINGS``) drives validation,
parsing and emitting, so a setting is described once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import total_ordering
from pathlib import PurePosixPath
from typing import Any, Generic, TypeVar, overload
from xml.parsers import expat

from CedarBackup3.config import ByteQuantity, addByteQuantityNode, readByteQuantity
from CedarBackup3.util import UNIT_BYTES
from CedarBackup3.xmlutil import (
    addBooleanNode,
    addContainerNode,
    addIntegerNode,
    addStringNode,
    createInputDom,
    readBoolean,
    readChildren,
    readInteger,
    readString,
    readStringList,
)

__all__ = ["SECTION", "SETTINGS", "AmazonS3Config", "LocalConfig", "Setting", "checkXmlSafety"]

SECTION = "amazons3"
MAX_XML_DEPTH = 64
MAX_XML_BYTES = 16 * 1024 * 1024
MAX_BYTES = 2**60  # 1 EiB: anything larger is a typo, not a backup size
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
ARCHIVED_STORAGE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")  # a GET needs a restore first
MAX_TAGS = 10  # S3's limit per object
SSE_MODES = ("AES256", "aws:kms")
LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
ADDRESSING_STYLES = ("auto", "path", "virtual")
RETRY_MODES = ("standard", "adaptive", "legacy")
CHECKSUM_WHEN = ("when_supported", "when_required")
GPG_CIPHERS = ("AES256", "AES192", "AES", "TWOFISH", "CAMELLIA256", "CAMELLIA192", "CAMELLIA128")
GPG_COMPRESSIONS = ("none", "zip", "zlib", "bzip2")
S2K_RANGE = (1024, 65011712)  # what OpenPGP's one-octet S2K count can encode

_FINGERPRINT = re.compile(r"^(?:[0-9A-F]{40}|[0-9A-F]{64})$")
_KMS_KEY = re.compile(
    r"^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # key id
    r"|mrk-[0-9a-f]{32}"  # multi-region key id
    r"|alias/[A-Za-z0-9/_-]{1,250}"  # alias name
    r"|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(?:key/[0-9a-f-]{36}|key/mrk-[0-9a-f]{32}|alias/[A-Za-z0-9/_-]{1,250}))$"
)
_TAG_KEY = re.compile(r"^[\w .:/=+@-]{1,128}$")
_TAG_VALUE = re.compile(r"^[\w .:/=+@-]{0,256}$")
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------------------------
# Value validators: each takes the raw value (None means "not set") and returns the normalised value or raises
# ValueError. ``label`` is the element name, so every message names what to fix.
# ---------------------------------------------------------------------------------------------------------------


def _flag(default: bool) -> Callable[[str, Any], bool]:
    def validate(_label: str, value: Any) -> bool:
        return default if value is None else bool(value)

    return validate


def _text(label: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"<{label}> must be a string, not {type(value).__name__}.")
    if not value.strip():
        raise ValueError(f"<{label}> must be a non-empty string, not empty or whitespace.")
    return value.strip()  # pretty-printed XML puts newlines around long values; they are never meaningful


def checkBucket(label: str, text: str) -> None:
    """Stricter than upstream's setter, so applied in ``validate()``: a URL or bad name fails at start-up."""
    if "://" in text:
        raise ValueError(f"<{label}> takes a bucket name with an optional prefix (bucket/prefix), not a URL: {text!r}.")
    bucket, _, prefix = text.partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ValueError(f"<{label}> does not start with a valid S3 bucket name: {bucket!r}.")
    if any(ch.isspace() for ch in text) or "//" in prefix.strip("/"):
        raise ValueError(f"<{label}> has an invalid prefix (whitespace or an empty path segment): {text!r}.")


def _absolutePath(label: str, value: Any) -> str | None:
    text = _text(label, value)
    if text is not None and not PurePosixPath(text).is_absolute():
        raise ValueError(f"<{label}> must be an absolute path: {text!r}.")
    return text


def _choice(options: Iterable[str], *, caseless: bool = False) -> Callable[[str, Any], str | None]:
    allowed = tuple(options)

    def validate(label: str, value: Any) -> str | None:
        text = _text(label, value)
        if text is None:
            return None
        if caseless:
            match = next((option for option in allowed if option.lower() == text.lower()), None)
            if match is not None:
                return match
        elif text in allowed:
            return text
        raise ValueError(f"<{label}> must be one of {', '.join(allowed)}; got {text!r}.")

    return validate


def _integer(low: int, high: int) -> Callable[[str, Any], int | None]:
    def validate(label: str, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"<{label}> must be a whole number, not {value!r}.")
        if not low <= value <= high:
            raise ValueError(f"<{label}> must be between {low} and {high}; got {value}.")
        return value

    return validate


def _byteQuantity(low: int = 0) -> Callable[[str, Any], ByteQuantity | None]:
    def validate(label: str, value: Any) -> ByteQuantity | None:
        if value is None:
            return None
        quantity = value if isinstance(value, ByteQuantity) else ByteQuantity(value, UNIT_BYTES)
        size = quantity.bytes
        written = quantity.quantity if quantity.units == UNIT_BYTES else str(quantity)  # str(): "4.00 MB"
        if not math.isfinite(size) or size > MAX_BYTES:
            raise ValueError(f"<{label}> must be a finite size of at most 1 EiB; got {written!r}.")
        if size < low:
            raise ValueError(f"<{label}> must be at least {low} bytes; got {written!r} ({int(size)} bytes).")
        return quantity

    return validate


def _stringList(item: Callable[[str, Any], str | None]) -> Callable[[str, Any], list[str]]:
    def validate(label: str, value: Any) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            raise ValueError(f"<{label}> takes a list of strings, not a single string.")
        items = [item(label, entry) for entry in value]
        if len(set(items)) != len(items):
            raise ValueError(f"<{label}> lists the same value twice.")
        return [entry for entry in items if entry is not None]

    return validate


def _fingerprint(label: str, value: Any) -> str | None:
    text = _text(label, value)
    if text is None:
        return None
    compact = text.replace(" ", "").upper().removeprefix("0X")
    if not _FINGERPRINT.match(compact):
        raise ValueError(
            f"<{label}> must be a full key fingerprint (40 or 64 hex digits), not a short id or name: {text!r}."
        )
    return compact


def _kmsKeyId(label: str, value: Any) -> str | None:
    text = _text(label, value)
    if text is not None and not _KMS_KEY.match(text):
        raise ValueError(f"<{label}> is not a KMS key id, key ARN, alias or alias ARN: {text!r}.")
    return text


def _tag(label: str, value: Any) -> str | None:
    text = _text(label, value)
    if text is None:
        return None
    key, sep, tagValue = text.partition("=")
    if not sep or not _TAG_KEY.match(key) or not _TAG_VALUE.match(tagValue) or key.startswith("aws:"):
        raise ValueError(f"<{label}> must look like key=value with S3-allowed characters; got {text!r}.")
    return text


def _url(label: str, value: Any) -> str | None:
    text = _text(label, value)
    if text is not None and not re.match(r"^https?://[^/\s]+(/.*)?$", text):
        raise ValueError(f"<{label}> must be an http:// or https:// URL; got {text!r}.")
    return text


# ---------------------------------------------------------------------------------------------------------------
# XML readers and writers per kind of value
# ---------------------------------------------------------------------------------------------------------------

Reader = Callable[[Any, str], Any]
Writer = Callable[[Any, Any, str, Any], Any]


def _readBoolean(section: Any, name: str) -> bool | None:
    return readBoolean(section, name)  # type: ignore[no-any-return]


def _writeBoolean(xmlDom: Any, parent: Any, name: str, value: Any) -> None:
    addBooleanNode(xmlDom, parent, name, value)


def _writeOptionalBoolean(default: bool) -> Writer:
    """New flags are written only when they differ from their default, so emitted configs stay minimal."""

    def write(xmlDom: Any, parent: Any, name: str, value: Any) -> None:
        if value != default:
            addBooleanNode(xmlDom, parent, name, value)

    return write


def _writeString(xmlDom: Any, parent: Any, name: str, value: Any) -> None:
    addStringNode(xmlDom, parent, name, value)


def _writeOptionalString(xmlDom: Any, parent: Any, name: str, value: Any) -> None:
    if value is not None:
        addStringNode(xmlDom, parent, name, value)


def _writeOptionalInteger(xmlDom: Any, parent: Any, name: str, value: Any) -> None:
    if value is not None:
        addIntegerNode(xmlDom, parent, name, value)


def _writeBytes(xmlDom: Any, parent: Any, name: str, value: Any) -> None:
    addByteQuantityNode(xmlDom, parent, name, value)


def _writeOptionalBytes(xmlDom: Any, parent: Any, name: str, value: Any) -> None:
    if value is not None:
        addByteQuantityNode(xmlDom, parent, name, value)


def _readList(section: Any, name: str) -> list[str] | None:
    return readStringList(section, name)  # type: ignore[no-any-return]


def _writeList(xmlDom: Any, parent: Any, name: str, value: Any) -> None:
    for entry in value:
        addStringNode(xmlDom, parent, name, entry)


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One element of ``<amazons3>``: its attribute name, validation, and how it reads and writes as XML."""

    attribute: str
    element: str
    validate: Callable[[str, Any], T]
    read: Reader
    write: Writer
    repeated: bool = False
    upstream: bool = False

    def __set_name__(self, owner: type, name: str) -> None:
        if name != self.attribute:
            raise TypeError(f"Setting {self.attribute} bound to attribute {name}")

    @overload
    def __get__(self, instance: None, owner: type) -> Setting[T]: ...
    @overload
    def __get__(self, instance: object, owner: type) -> T: ...
    def __get__(self, instance: object | None, owner: type) -> Setting[T] | T:
        if instance is None:
            return self
        return instance.__dict__[self.attribute]  # type: ignore[no-any-return]

    def __set__(self, instance: object, value: Any) -> None:
        instance.__dict__[self.attribute] = self.validate(self.element, value)


def _setting(attribute: str, element: str, validate: Callable[[str, Any], T], kind: str, **extra: Any) -> Setting[T]:
    readers: dict[str, tuple[Reader, Writer]] = {
        "flag": (_readBoolean, _writeBoolean),
        "string": (readString, _writeString),
        "bytes": (readByteQuantity, _writeBytes),
        "optional-string": (readString, _writeOptionalString),
        "optional-integer": (readInteger, _writeOptionalInteger),
        "optional-bytes": (readByteQuantity, _writeOptionalBytes),
        "list": (_readList, _writeList),
    }
    read, write = readers[kind]
    if kind == "list":
        extra.setdefault("repeated", True)
    return Setting(attribute, element, validate, read, extra.pop("writer", write), **extra)


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
    warnMidnite = _setting("warnMidnite", "warn_midnite", _flag(False), "flag", upstream=True)
    s3Bucket = _setting("s3Bucket", "s3_bucket", _text, "string", upstream=True)
    encryptCommand = _setting("encryptCommand", "encrypt", _text, "string", upstream=True)
    fullBackupSizeLimit = _setting("fullBackupSizeLimit", "full_size_limit", _byteQuantity(), "bytes", upstream=True)
    incrementalBackupSizeLimit = _setting(
        "incrementalBackupSizeLimit", "incr_size_limit", _byteQuantity(), "bytes", upstream=True
    )
    # native GnuPG encryption
    gpgPassphraseFile = _setting("gpgPassphraseFile", "gpg_passphrase_file", _absolutePath, "optional-string")
    gpgRecipients = _setting("gpgRecipients", "gpg_recipient", _stringList(_fingerprint), "list")
    gpgHome = _setting("gpgHome", "gpg_home", _absolutePath, "optional-string")
    gpgCipher = _setting("gpgCipher", "gpg_cipher", _choice(GPG_CIPHERS, caseless=True), "optional-string")
    gpgCompression = _setting(
        "gpgCompression", "gpg_compression", _choice(GPG_COMPRESSIONS, caseless=True), "optional-string"
    )
    gpgS2kCount = _setting("gpgS2kCount", "gpg_s2k_count", _integer(*S2K_RANGE), "optional-integer")
    # where S3 is, and how to talk to it
    endpointUrl = _setting("endpointUrl", "endpoint_url", _url, "optional-string")
    region = _setting("region", "region", _text, "optional-string")
    addressingStyle = _setting("addressingStyle", "addressing_style", _choice(ADDRESSING_STYLES), "optional-string")
    profile = _setting("profile", "profile", _text, "optional-string")
    verifyTls = _setting("verifyTls", "verify_tls", _flag(True), "flag", writer=_writeOptionalBoolean(True))
    caBundle = _setting("caBundle", "ca_bundle", _absolutePath, "optional-string")
    retryMode = _setting("retryMode", "retry_mode", _choice(RETRY_MODES), "optional-string")
    maxAttempts = _setting("maxAttempts", "max_attempts", _integer(1, 20), "optional-integer")
    checksumCalculation = _setting(
        "checksumCalculation", "checksum_calculation", _choice(CHECKSUM_WHEN), "optional-string"
    )
    checksumValidation = _setting(
        "checksumValidation", "checksum_validation", _choice(CHECKSUM_WHEN), "optional-string"
    )
    # what each stored object gets
    storageClass = _setting("storageClass", "storage_class", _choice(STORAGE_CLASSES), "optional-string")
    serverSideEncryption = _setting("serverSideEncryption", "sse", _choice(SSE_MODES), "optional-string")
    sseKmsKeyId = _setting("sseKmsKeyId", "sse_kms_key_id", _kmsKeyId, "optional-string")
    objectLockMode = _setting("objectLockMode", "object_lock_mode", _choice(LOCK_MODES), "optional-string")
    objectLockDays = _setting("objectLockDays", "object_lock_days", _integer(1, 36500), "optional-integer")
    tags = _setting("tags", "tag", _stringList(_tag), "list")
    # transfer tuning
    maxConcurrency = _setting("maxConcurrency", "max_concurrency", _integer(1, 64), "optional-integer")
    multipartThreshold = _setting("multipartThreshold", "multipart_threshold", _byteQuantity(5 * MIB), "optional-bytes")
    multipartChunkSize = _setting("multipartChunkSize", "multipart_chunksize", _byteQuantity(5 * MIB), "optional-bytes")
    maxBandwidth = _setting("maxBandwidth", "max_bandwidth", _byteQuantity(1), "optional-bytes")
    verifyDownload = _setting(
        "verifyDownload", "verify_download", _flag(False), "flag", writer=_writeOptionalBoolean(False)
    )

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
        command = self.encryptCommand
        if command is not None and ("${input}" not in command or "${output}" not in command):
            raise ValueError(f"<encrypt> must contain both ${{input}} and ${{output}}: {command!r}.")
        if self.encryptCommand is not None and self.gpgEnabled:
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
        tagKeys = [tag.partition("=")[0] for tag in self.tags]
        if len(tagKeys) > MAX_TAGS:
            raise ValueError(f"<tag> is given {len(tagKeys)} times; S3 allows at most {MAX_TAGS} tags per object.")
        repeated = sorted({key for key in tagKeys if tagKeys.count(key) > 1})
        if repeated:
            raise ValueError(f"<tag> sets the key {repeated[0]!r} more than once; S3 allows each tag key once.")
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
