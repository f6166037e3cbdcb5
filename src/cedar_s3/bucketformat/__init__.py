"""The bucket format: everything cedar-s3 writes to S3, owned here and nowhere else.

What a night leaves in a bucket must stay readable for years, by later versions and by the operator's command
on another machine. So the key layout, the bookkeeping object names, the manifest, the marker and record
bodies, the per-object metadata and the tool string are defined once, in this package, and pinned by golden
samples under ``tests/golden/``: a format change is a deliberate, visible diff.

Versioning rule: ``FORMAT_VERSION`` is the manifest's ``formatVersion``. Within one version, fields may only be
added, and readers ignore fields they do not know, so an older cedar-s3 still reads a newer manifest of the same
version. A change an older reader would misread bumps the version; readers refuse versions newer than theirs,
naming the version to upgrade to, and keep reading every older one.
"""

from cedar_s3.bucketformat.layout import (
    BOOKKEEPING,
    INCOMPLETE_MARKER,
    MANIFEST_NAME,
    MAX_KEY_BYTES,
    SIGNATURE_NAME,
    VERIFIED_RECORD,
    S3Location,
    checkRelativeKey,
    dateSuffix,
    isBookkeeping,
    isIndicatorName,
    parseDay,
    uploadRecordName,
)
from cedar_s3.bucketformat.manifest import (
    FORMAT,
    FORMAT_VERSION,
    MAX_MANIFEST_BYTES,
    Adoption,
    Manifest,
    ManifestEntries,
    ManifestHeader,
    ManifestWriter,
    StoredObject,
    now,
    parseManifest,
)
from cedar_s3.bucketformat.markers import RECORD_LIMIT, IncompleteMarker, UploadRecord, VerifiedRecord
from cedar_s3.bucketformat.metadata import (
    SOURCE_MTIME_NS,
    commonMetadata,
    hostMetadata,
    objectMetadata,
    recordFromMetadata,
    sourceMtimeNs,
    streamedMetadata,
)
from cedar_s3.bucketformat.modes import DayKind, Encryption
from cedar_s3.bucketformat.tool import TOOL

__all__ = [
    "BOOKKEEPING",
    "FORMAT",
    "FORMAT_VERSION",
    "INCOMPLETE_MARKER",
    "MANIFEST_NAME",
    "MAX_KEY_BYTES",
    "MAX_MANIFEST_BYTES",
    "RECORD_LIMIT",
    "SIGNATURE_NAME",
    "SOURCE_MTIME_NS",
    "TOOL",
    "VERIFIED_RECORD",
    "Adoption",
    "DayKind",
    "Encryption",
    "IncompleteMarker",
    "Manifest",
    "ManifestEntries",
    "ManifestHeader",
    "ManifestWriter",
    "S3Location",
    "StoredObject",
    "UploadRecord",
    "VerifiedRecord",
    "checkRelativeKey",
    "commonMetadata",
    "dateSuffix",
    "hostMetadata",
    "isBookkeeping",
    "isIndicatorName",
    "now",
    "objectMetadata",
    "parseDay",
    "parseManifest",
    "recordFromMetadata",
    "sourceMtimeNs",
    "streamedMetadata",
    "uploadRecordName",
]
