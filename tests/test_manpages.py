"""The manual pages the Debian package ships are the ones the commands' own help texts render today."""

from __future__ import annotations

from pathlib import Path

from cedar_s3.manpages import cback3s3Page, syncPage

DEBIAN = Path(__file__).resolve().parent.parent / "debian"


def test_the_shipped_manual_pages_match_the_help_texts() -> None:
    """After a change of an option or a help text: ``python -m cedar_s3.manpages debian/``."""
    assert (DEBIAN / "cback3-s3.1").read_text(encoding="utf-8") == cback3s3Page()
    assert (DEBIAN / "cback3-s3-sync.1").read_text(encoding="utf-8") == syncPage()


def test_every_option_of_every_command_is_in_the_page() -> None:
    from cedar_s3.cli import buildParser

    page = cback3s3Page()
    parser = buildParser()
    for action in parser._actions:
        for name in action.option_strings:
            assert name.replace("-", "\\-") in page, name
    for name in ("adopt", "--all-upstream", "--require-signature", "--trusted-signer", "--keep-days"):
        assert name.replace("-", "\\-") in page, name
