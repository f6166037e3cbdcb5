"""The <amazons3> section: upstream's API and forms unchanged, every newer setting round-trips, bad input is named."""

from __future__ import annotations

import pytest
from CedarBackup3.config import ByteQuantity
from CedarBackup3.extend import amazons3 as upstream
from CedarBackup3.util import UNIT_BYTES, UNIT_GBYTES, UNIT_MBYTES
from CedarBackup3.xmlutil import createOutputDom, serializeDom

from cedar_s3.amazons3 import STORE_INDICATOR, AmazonS3Config, LocalConfig


def section(body: str) -> str:
    return f'<?xml version="1.0"?><cb_config><amazons3>{body}</amazons3></cb_config>'


UPSTREAM_XML = section(
    "<warn_midnite>Y</warn_midnite><s3_bucket>mybucket/prefix</s3_bucket>"
    "<encrypt>/usr/bin/gpg -c --batch --passphrase-file /home/backup/.pp -o ${output} ${input}</encrypt>"
    "<full_size_limit>1.1 GB</full_size_limit><incr_size_limit>250 MB</incr_size_limit>"
)


def emitted(local: LocalConfig) -> str:
    dom, root = createOutputDom()
    local.addConfig(dom, root)
    return str(serializeDom(dom))


def test_public_names_match_upstream() -> None:
    assert STORE_INDICATOR == upstream.STORE_INDICATOR == "cback.amazons3"
    positional = AmazonS3Config(True, "bucket", "cmd ${input} ${output}", 10, ByteQuantity("2.5", UNIT_MBYTES))
    theirs = upstream.AmazonS3Config(True, "bucket", "cmd ${input} ${output}", 10, ByteQuantity("2.5", UNIT_MBYTES))
    for name in ("warnMidnite", "s3Bucket", "encryptCommand", "fullBackupSizeLimit", "incrementalBackupSizeLimit"):
        assert getattr(positional, name) == getattr(theirs, name), name


@pytest.mark.parametrize(
    "xml",
    [
        UPSTREAM_XML,
        section("<s3_bucket>bk1</s3_bucket><full_size_limit>10240</full_size_limit>"),
        section("<s3_bucket>bk1</s3_bucket><incr_size_limit>2 KB</incr_size_limit><warn_midnite>N</warn_midnite>"),
        section("<s3_bucket>bk1</s3_bucket>"),
    ],
)
def test_parses_exactly_what_upstream_parses(xml: str) -> None:
    ours = LocalConfig(xmlData=xml).amazons3
    theirs = upstream.LocalConfig(xmlData=xml).amazons3
    assert ours is not None and theirs is not None
    for name in ("warnMidnite", "s3Bucket", "encryptCommand", "fullBackupSizeLimit", "incrementalBackupSizeLimit"):
        assert getattr(ours, name) == getattr(theirs, name), name


def test_byte_quantity_forms() -> None:
    config = LocalConfig(xmlData=UPSTREAM_XML).amazons3
    assert config is not None
    assert config.fullBackupSizeLimit == ByteQuantity("1.1", UNIT_GBYTES)
    assert config.incrementalBackupSizeLimit == ByteQuantity("250", UNIT_MBYTES)
    assert AmazonS3Config(s3Bucket="bk1", fullBackupSizeLimit=10240).fullBackupSizeLimit == ByteQuantity(
        "10240", UNIT_BYTES
    )


def test_upstream_config_round_trips_through_our_emitter() -> None:
    local = LocalConfig(xmlData=UPSTREAM_XML)
    again = LocalConfig(xmlData=emitted(local))
    assert again == local
    assert upstream.LocalConfig(xmlData=emitted(local)).amazons3.s3Bucket == "mybucket/prefix"


def test_every_newer_setting_round_trips() -> None:
    xml = section(
        "<s3_bucket>bk1</s3_bucket>"
        "<gpg_recipient>0123456789ABCDEF0123456789ABCDEF01234567</gpg_recipient>"
        "<gpg_recipient>89ABCDEF0123456789ABCDEF0123456789ABCDEF</gpg_recipient>"
        "<gpg_home>/home/backup/.gnupg</gpg_home><gpg_cipher>aes256</gpg_cipher><gpg_compression>zlib</gpg_compression>"
        "<endpoint_url>https://s3.example.net:9000</endpoint_url><region>eu-west-1</region>"
        "<addressing_style>path</addressing_style><profile>backup</profile><verify_tls>Y</verify_tls>"
        "<ca_bundle>/etc/ssl/ca.pem</ca_bundle><retry_mode>adaptive</retry_mode><max_attempts>7</max_attempts>"
        "<checksum_calculation>when_required</checksum_calculation>"
        "<checksum_validation>when_required</checksum_validation>"
        "<storage_class>GLACIER_IR</storage_class><sse>aws:kms</sse>"
        "<sse_kms_key_id>alias/backup</sse_kms_key_id><object_lock_mode>GOVERNANCE</object_lock_mode>"
        "<object_lock_days>30</object_lock_days><tag>project=cedar</tag><tag>tier=backup</tag>"
        "<max_concurrency>4</max_concurrency><multipart_threshold>64 MB</multipart_threshold>"
        "<multipart_chunksize>16 MB</multipart_chunksize><max_bandwidth>10 MB</max_bandwidth>"
        "<verify_download>Y</verify_download>"
    )
    local = LocalConfig(xmlData=xml)
    config = local.amazons3
    assert config is not None
    assert config.gpgCipher == "AES256" and config.gpgCompression == "zlib"
    assert config.tags == ["project=cedar", "tier=backup"] and config.maxAttempts == 7
    assert config.maxBandwidth == ByteQuantity("10", UNIT_MBYTES) and config.verifyDownload is True
    assert LocalConfig(xmlData=emitted(local)) == local


def test_defaults_are_off() -> None:
    config = AmazonS3Config(s3Bucket="bk1")
    assert config.gpgRecipients == [] and config.tags == []
    assert config.verifyTls is True and config.verifyDownload is False
    assert config.storageClass is None and config.endpointUrl is None and not config.gpgEnabled
    assert "<verify_tls>" not in emitted(LocalConfig(xmlData=section("<s3_bucket>bk1</s3_bucket>")))


def test_equality_and_ordering_follow_upstream() -> None:
    first = AmazonS3Config(False, "a-bucket")
    second = AmazonS3Config(False, "b-bucket")
    assert first == AmazonS3Config(False, "a-bucket") and first != second
    assert first < second and second > first > None  # type: ignore[operator]
    assert AmazonS3Config(False, "x", fullBackupSizeLimit=10) < AmazonS3Config(False, "x", fullBackupSizeLimit=20)
    assert AmazonS3Config(True, "a") > AmazonS3Config(False, "z")
    assert AmazonS3Config(s3Bucket="x", storageClass="GLACIER") != AmazonS3Config(s3Bucket="x")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<s3_bucket>   </s3_bucket>", "s3_bucket.*whitespace"),
        ("<s3_bucket>bk1</s3_bucket><encrypt>  \n </encrypt>", "encrypt.*whitespace"),
        ("<s3_bucket>bk1</s3_bucket><encrypt>gpg -c ${input}</encrypt>", r"encrypt.*\$\{output\}"),
        ("<s3_bucket>bk1</s3_bucket><full_size_limit>inf</full_size_limit>", "full_size_limit.*finite"),
        ("<s3_bucket>bk1</s3_bucket><incr_size_limit>nan</incr_size_limit>", "incr_size_limit.*finite"),
        ("<s3_bucket>bk1</s3_bucket><full_size_limit>1e400</full_size_limit>", "full_size_limit.*finite"),
        ("<s3_bucket>bk1</s3_bucket><full_size_limit>5000000000 GB</full_size_limit>", "full_size_limit.*1 EiB"),
        ("<s3_bucket>bk1</s3_bucket><full_size_limit>-1</full_size_limit>", "full_size_limit.*negative"),
        ("<s3_bucket>bk1</s3_bucket><s3_bucket>b2</s3_bucket>", "s3_bucket.*more than once"),
        ("<s3_bucket>bk1</s3_bucket><warn_midnite>Y</warn_midnite><warn_midnite>N</warn_midnite>", "warn_midnite"),
        ("<s3_bucket>bk1</s3_bucket><warn_midnite>maybe</warn_midnite>", "warn_midnite"),
        ("<s3_bucket>s3://b1/x</s3_bucket>", "not a URL"),
        ("<s3_bucket>bk1</s3_bucket><storage_clas>GLACIER</storage_clas>", "Unknown element <storage_clas>"),
        ("<s3_bucket>bk1</s3_bucket><storage_class>COLD</storage_class>", "storage_class.*one of"),
        ("<s3_bucket>bk1</s3_bucket><sse>aws:kms</sse><sse_kms_key_id>nope</sse_kms_key_id>", "sse_kms_key_id"),
        ("<s3_bucket>bk1</s3_bucket><sse_kms_key_id>alias/x</sse_kms_key_id>", "needs <sse>aws:kms"),
        ("<s3_bucket>bk1</s3_bucket><object_lock_mode>COMPLIANCE</object_lock_mode>", "object_lock_days"),
        ("<s3_bucket>bk1</s3_bucket><max_bandwidth>-10</max_bandwidth>", "max_bandwidth.*negative"),
        ("<s3_bucket>bk1</s3_bucket><max_concurrency>0</max_concurrency>", "max_concurrency.*between"),
        ("<s3_bucket>bk1</s3_bucket><max_concurrency>many</max_concurrency>", "max_concurrency"),
        ("<s3_bucket>bk1</s3_bucket><multipart_chunksize>1 MB</multipart_chunksize>", "multipart_chunksize.*least"),
        ("<s3_bucket>bk1</s3_bucket><gpg_recipient>ABCD1234</gpg_recipient>", "gpg_recipient.*fingerprint"),
        ("<s3_bucket>bk1</s3_bucket><gpg_passphrase_file>pp</gpg_passphrase_file>", "gpg_passphrase_file.*absolute"),
        ("<s3_bucket>bk1</s3_bucket><gpg_cipher>AES256</gpg_cipher>", "gpg_cipher.*needs"),
        ("<s3_bucket>bk1</s3_bucket><endpoint_url>ftp://x</endpoint_url>", "endpoint_url"),
        ("<s3_bucket>bk1</s3_bucket><tag>novalue</tag>", "tag.*key=value"),
        (
            "<s3_bucket>bk1</s3_bucket><gpg_passphrase_file>/pp</gpg_passphrase_file>"
            "<encrypt>c ${input} ${output}</encrypt>",
            "exclude each other",
        ),
        ("<warn_midnite>Y</warn_midnite>", "s3Bucket must be set"),
    ],
)
def test_bad_config_is_a_value_error_naming_the_element(body: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LocalConfig(xmlData=section(body))


def test_missing_section_is_an_error() -> None:
    with pytest.raises(ValueError, match="AmazonS3 section is required"):
        LocalConfig(xmlData='<?xml version="1.0"?><cb_config/>')


def test_duplicate_sections_are_refused() -> None:
    one = "<amazons3><s3_bucket>bk1</s3_bucket></amazons3>"
    xml = f"<cb_config>{one}{one}</cb_config>"
    with pytest.raises(ValueError, match="2 <amazons3> sections"):
        LocalConfig(xmlData=xml)


def test_entity_expansion_is_refused() -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE cb_config [<!ENTITY a "aaaaaaaaaa">'
        + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
        + "]><cb_config><amazons3><s3_bucket>&i;</s3_bucket></amazons3></cb_config>"
    )
    with pytest.raises(ValueError, match="entities"):
        LocalConfig(xmlData=bomb)


def test_deep_nesting_is_a_value_error_not_recursion() -> None:
    deep = "<cb_config>" + "<x>" * 200_000 + "</x>" * 200_000 + "</cb_config>"
    with pytest.raises(ValueError, match="nested deeper"):
        LocalConfig(xmlData=deep)


def test_malformed_xml_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="Unable to parse"):
        LocalConfig(xmlData="<cb_config><amazons3>")


def test_setters_validate_like_upstream() -> None:
    config = AmazonS3Config(s3Bucket="bk1")
    with pytest.raises(ValueError, match="non-empty"):
        config.s3Bucket = ""
    with pytest.raises(ValueError):
        config.fullBackupSizeLimit = -5
    with pytest.raises(ValueError, match="must be a ``AmazonS3Config``"):
        LocalConfig().amazons3 = "not a config"  # type: ignore[assignment]
    with pytest.raises(TypeError, match="unknown settings"):
        AmazonS3Config(s3Bucket="bk1", storage_class="GLACIER")


def test_both_data_and_path_is_an_error(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="either xmlData or xmlPath"):
        LocalConfig(xmlData=UPSTREAM_XML, xmlPath="/etc/cback3.conf")
