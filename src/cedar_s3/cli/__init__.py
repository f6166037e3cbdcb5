"""``cback3-s3``: the operator's command for the days cedar-s3 stores: list, restore, verify, prune.

It reads the same ``cback3.conf`` as the nightly run, so nothing is configured twice. Each command is a module
with its texts, ``addArguments(parser)``, an optional ``check(parser, args)`` and ``run(args)``. Exit codes: 0
success, 1 failure (the last line on stderr says what failed and what to do), 2 usage error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from cedar_s3 import __version__
from cedar_s3.cli import adoptcmd, common, listcmd, prunecmd, restorecmd, verifycmd
from cedar_s3.cli.common import EXIT_CODES, EXIT_FAILURE, PROG, CommandFailedError

__all__ = ["buildParser", "main"]

COMMANDS: tuple[ModuleType, ...] = (listcmd, restorecmd, verifycmd, prunecmd, adoptcmd)


def buildParser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="List, restore, verify, prune and adopt the days Cedar Backup's amazons3 store action (cedar-s3) "
        f"keeps in S3, using the settings in cback3.conf.\n\n{EXIT_CODES}",
        epilog="examples:\n"
        + "".join(f"  {command.EXAMPLES[0]}\n" for command in COMMANDS)
        + f"\n'{PROG} COMMAND --help' explains each command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common.addCommon(parser, top=True)
    subparsers = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.NAME,
            help=command.SUMMARY,
            description=command.DESCRIPTION,
            epilog="examples:\n"
            + "".join(f"  {example}\n" for example in command.EXAMPLES)
            + f"\n{getattr(command, 'EXIT_CODES', EXIT_CODES)}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(command=command)
        common.addCommon(sub, top=False)
        command.addArguments(sub)
    return parser


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time, so log lines print above a live progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def _setupLogging(args: argparse.Namespace) -> None:
    handler = _StderrHandler()
    if sys.stderr.isatty():
        handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {PROG} %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.getLogger("CedarBackup3.log").setLevel(level)


def _oneLine(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: parse, run one command, map failures to exit codes and one line on stderr."""
    parser = buildParser()
    args = parser.parse_args(argv)
    command: ModuleType = args.command
    if hasattr(command, "check"):
        command.check(parser, args)
    _setupLogging(args)
    try:
        return int(command.run(args))
    except CommandFailedError as error:
        print(f"{PROG}: failed: {_oneLine(error)}", file=sys.stderr)
    except (OSError, ValueError) as error:
        print(f"{PROG}: error: {_oneLine(error)}", file=sys.stderr)
    except KeyboardInterrupt:
        print(
            f"{PROG}: interrupted; no partial file was left behind. Run the command again to finish.", file=sys.stderr
        )
    except Exception as error:  # the last resort: one line, never a traceback, for a bug we did not foresee
        logging.getLogger("CedarBackup3.log.extend.amazons3.cli").debug("Unexpected failure", exc_info=True)
        print(
            f"{PROG}: unexpected error ({type(error).__name__}): {_oneLine(error)}; run with -v for details.",
            file=sys.stderr,
        )
    return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
