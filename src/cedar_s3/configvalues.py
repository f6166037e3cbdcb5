"""The value kinds of ``<amazons3>`` settings: validators, XML readers and writers, and the ``Setting`` descriptor.

Each validator takes the raw value (None means "not set") and returns the normalised value or raises ValueError
with the element named, so every message says what to fix. ``config`` declares the settings with these.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Generic, TypeVar, overload

from CedarBackup3.config import ByteQuantity, addByteQuantityNode, readByteQuantity
from CedarBackup3.util import UNIT_BYTES
from CedarBackup3.xmlutil import (
    addBooleanNode,
    addIntegerNode,
    addStringNode,
    readBoolean,
    readInteger,
    readString,
    readStringList,
)

from cedar_s3.bucketformat import S3Location

MAX_BYTES = 2**60  # 1 EiB: anything larger is a typo, not a backup size

_FINGERPRINT = re.compile(r"^(?:[0-9A-F]{40}|[0-9A-F]{64})$")
_KMS_KEY = re.compile(
    r"^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # key id
    r"|mrk-[0-9a-f]{32}"  # multi-region key id
    r"|alias/[A-Za-z0-9/_-]{1,250}"  # alias name
    r"|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(?:key/[0-9a-f-]{36}|key/mrk-[0-9a-f]{32}|alias/[A-Za-z0-9/_-]{1,250}))$"
)
_TAG_KEY = re.compile(r"^[\w .:/=+@-]{1,128}$")
_TAG_VALUE = re.compile(r"^[\w .:/=+@-]{0,256}$")

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------------------------
# Value validators: each takes the raw value (None means "not set") and returns the normalised value or raises
# ValueError. ``label`` is the element name, so every message names what to fix.
# ---------------------------------------------------------------------------------------------------------------


def flag(default: bool) -> Callable[[str, Any], bool]:
    def validate(_label: str, value: Any) -> bool:
        return default if value is None else bool(value)

    return validate


def textValue(label: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"<{label}> must be a string, not {type(value).__name__}.")
    if not value.strip():
        raise ValueError(f"<{label}> must be a non-empty string, not empty or whitespace.")
    return value.strip()  # pretty-printed XML puts newlines around long values; they are never meaningful


def checkBucket(label: str, text: str) -> None:
    """Stricter than upstream's setter, so applied in ``validate()``: the bucket format's own rule
    (``S3Location.parse``): a URL, a bad name or a ``.``/``..`` prefix segment fails at start-up."""
    S3Location.parse(text, label if label.startswith("-") else f"<{label}>")


def absolutePath(label: str, value: Any) -> str | None:
    text = textValue(label, value)
    if text is not None and not PurePosixPath(text).is_absolute():
        raise ValueError(f"<{label}> must be an absolute path: {text!r}.")
    return text


def choice(options: Iterable[str], *, caseless: bool = False) -> Callable[[str, Any], str | None]:
    allowed = tuple(options)

    def validate(label: str, value: Any) -> str | None:
        text = textValue(label, value)
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


def integer(low: int, high: int) -> Callable[[str, Any], int | None]:
    def validate(label: str, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"<{label}> must be a whole number, not {value!r}.")
        if not low <= value <= high:
            raise ValueError(f"<{label}> must be between {low} and {high}; got {value}.")
        return value

    return validate


def byteQuantity(low: int = 0) -> Callable[[str, Any], ByteQuantity | None]:
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


def stringList(item: Callable[[str, Any], str | None]) -> Callable[[str, Any], list[str]]:
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


def checkFingerprint(label: str, text: str) -> str:
    """A full key fingerprint, normalised (no spaces, upper case); ``label`` names the setting or option."""
    compact = text.replace(" ", "").upper().removeprefix("0X")
    if not _FINGERPRINT.match(compact):
        shown = label if label.startswith("-") else f"<{label}>"
        raise ValueError(
            f"{shown} must be a full key fingerprint (40 or 64 hex digits), not a short id or name: {text!r}."
        )
    return compact


def fingerprint(label: str, value: Any) -> str | None:
    text = textValue(label, value)
    return None if text is None else checkFingerprint(label, text)


def kmsKeyId(label: str, value: Any) -> str | None:
    text = textValue(label, value)
    if text is not None and not _KMS_KEY.match(text):
        raise ValueError(f"<{label}> is not a KMS key id, key ARN, alias or alias ARN: {text!r}.")
    return text


def tagPair(label: str, value: Any) -> str | None:
    text = textValue(label, value)
    if text is None:
        return None
    key, sep, tagValue = text.partition("=")
    if not sep or not _TAG_KEY.match(key) or not _TAG_VALUE.match(tagValue) or key.startswith("aws:"):
        raise ValueError(f"<{label}> must look like key=value with S3-allowed characters; got {text!r}.")
    return text


def httpUrl(label: str, value: Any) -> str | None:
    text = textValue(label, value)
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


def writeOptionalBoolean(default: bool) -> Writer:
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


def declare(attribute: str, element: str, validate: Callable[[str, Any], T], kind: str, **extra: Any) -> Setting[T]:
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
