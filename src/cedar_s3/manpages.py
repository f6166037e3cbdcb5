"""The manual pages of ``cback3-s3`` and ``cback3-s3-sync``, made from their own help texts (never a copy).

``python -m cedar_s3.manpages DIR`` writes ``cback3-s3.1`` and ``cback3-s3-sync.1`` into ``DIR``; the Debian
package ships the ones committed in ``debian/``, and a test checks that they are what this renders today.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from cedar_s3 import __version__

__all__ = ["cback3s3Page", "syncPage", "write"]

DATE = "2026-12-02"  # the pages' date: changed with their content, not every day the package is built


def _escape(text: str) -> str:
    """Plain text as roff: backslashes and hyphens escaped, no line may start with a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line[:1] in (".", "'") else line for line in text.splitlines())


def _header(name: str, summary: str) -> list[str]:
    return [
        f'.TH {name.upper()} 1 "{DATE}" "cedar-s3 {__version__}" "User Commands"',
        ".SH NAME",
        f"{_escape(name)} \\- {_escape(summary)}",
    ]


def _options(parser: argparse.ArgumentParser, skip: set[str]) -> list[str]:
    lines: list[str] = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        names = list(action.option_strings) or [str(action.metavar or action.dest)]
        if set(names) & skip:
            continue
        shown = (
            ", ".join(f"\\fB{_escape(name)}\\fR" for name in names)
            if action.option_strings
            else (f"\\fI{_escape(str(names[0]))}\\fR")
        )
        if action.option_strings and action.nargs != 0:
            shown += f" \\fI{_escape(str(action.metavar or action.dest.upper()))}\\fR"
        lines += [".TP", shown, _escape((action.help or "") % {"prog": parser.prog} if action.help else "")]
    return lines


def cback3s3Page() -> str:
    """``cback3-s3(1)``: the top-level options, then each command with its options and examples."""
    from cedar_s3.cli import COMMANDS, buildParser

    parser = buildParser()
    common = {"-h", "--help"}
    lines = _header("cback3-s3", "list, restore, verify, prune and adopt the days cedar-s3 keeps in S3")
    lines += [".SH SYNOPSIS", "\\fBcback3\\-s3\\fR [\\fIoptions\\fR] \\fICOMMAND\\fR [\\fIcommand options\\fR]"]
    lines += [".SH DESCRIPTION", _escape(parser.description or "")]
    lines += [".SH OPTIONS", *_options(parser, skip=set())]
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines.append(".SH COMMANDS")
    for command in COMMANDS:
        sub = subparsers.choices[command.NAME]
        own = {name for action in parser._actions for name in action.option_strings}
        lines += [f".SS {command.NAME}", _escape(command.DESCRIPTION), *_options(sub, skip=own | common)]
        lines += [".PP", "Examples:", ".RS", ".nf", *[_escape(example) for example in command.EXAMPLES], ".fi", ".RE"]
        exitCodes = getattr(command, "EXIT_CODES", None)
        if exitCodes:
            lines += [".PP", _escape(exitCodes)]
    from cedar_s3.cli.common import EXIT_CODES

    lines += [
        ".SH EXIT STATUS",
        _escape(EXIT_CODES),
        ".SH SEE ALSO",
        "\\fBcback3\\fR(1), \\fBcback3\\-s3\\-sync\\fR(1)",
    ]
    return "\n".join(lines) + "\n"


def syncPage() -> str:
    """``cback3-s3-sync(1)``: its manual (what ``--help`` prints), section by section."""
    from cedar_s3.sync.manual import manual

    sections = re.split(r"(?m)^(?=[A-Z][A-Z ]+$)", manual())
    lines = [f'.TH CBACK3-S3-SYNC 1 "{DATE}" "cedar-s3 {__version__}" "User Commands"']
    for section in sections:
        if not section.strip():
            continue
        title, _, body = section.partition("\n")
        lines += [
            f".SH {title.strip()}",
            ".nf",
            _escape("\n".join(line.removeprefix("    ") for line in body.rstrip().splitlines())),
            ".fi",
        ]
    return "\n".join(lines) + "\n"


def write(directory: Path) -> None:
    (directory / "cback3-s3.1").write_text(cback3s3Page(), encoding="utf-8")
    (directory / "cback3-s3-sync.1").write_text(syncPage(), encoding="utf-8")


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
