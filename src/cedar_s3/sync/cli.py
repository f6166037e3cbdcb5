"""``cback3-s3-sync``'s ``main()``: upstream's ``cli()`` flow, exit codes and log set-up, around ``SyncRun``.

Exit codes as upstream's: 0 success, 1 Python too old, 2 bad arguments, 3 logging could not be set up,
5 interrupted, 6 any other error. Logging is ``CedarBackup3.cli.setupLogging`` itself, as upstream's tool calls
it: the log file (default ``/var/log/cback3.log``) is created with ``--mode`` and ``--owner`` only when it does
not exist yet, errors go to the screen unless ``--quiet``, ``--verbose`` adds the INFO lines.

Nothing is imported before the Python version is checked, so an old interpreter gets exit code 1 and a message,
not a traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cedar_s3.sync.options import SyncOptions
    from cedar_s3.sync.summary import Summary

__all__ = ["main"]

logger = logging.getLogger("CedarBackup3.log.tools.s3sync")

MINIMUM_PYTHON = (3, 11)
EXIT_OK, EXIT_PYTHON, EXIT_USAGE, EXIT_LOGGING, EXIT_INTERRUPTED, EXIT_ERROR = 0, 1, 2, 3, 5, 6


def main(arguments: list[str] | None = None) -> int:
    """Run ``cback3-s3-sync`` with ``arguments`` (default ``sys.argv[1:]``); returns the exit code."""
    if sys.version_info < MINIMUM_PYTHON:
        sys.stderr.write("Python 3 version %d.%d or greater required.\n" % MINIMUM_PYTHON)  # noqa: UP031
        return EXIT_PYTHON
    from cedar_s3.sync.manual import manual, usageLine, versionText
    from cedar_s3.sync.options import UsageError, parseArguments

    given = sys.argv[1:] if arguments is None else arguments
    try:
        options = parseArguments(given)
    except UsageError as error:
        sys.stderr.write(f"{usageLine()}\n *** Error: {error}\n")
        return EXIT_USAGE
    if options.help:
        sys.stdout.write(manual())
        return EXIT_OK
    if options.version:
        from CedarBackup3.release import VERSION

        sys.stdout.write(versionText(VERSION))
        return EXIT_OK
    if options.diagnostics:
        from CedarBackup3.util import Diagnostics

        sys.stdout.write("\nDiagnostics:\n\n")
        Diagnostics().printDiagnostics(fd=sys.stdout, prefix="   ")
        sys.stdout.write("\n")
        return EXIT_OK
    return _logged(options, given)


def _logged(options: SyncOptions, given: list[str]) -> int:
    import shlex

    from CedarBackup3.cli import setupLogging
    from CedarBackup3.util import Diagnostics

    if options.stacktrace:
        logfile = setupLogging(options)
    else:
        try:
            logfile = setupLogging(options)
        except Exception as error:
            sys.stderr.write(f"Error setting up logging: {error}\n")
            return EXIT_LOGGING
    if options.json:  # standard output carries the JSON document only; the screen's log lines go to stderr
        for handler in logging.getLogger("CedarBackup3.log").handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setStream(sys.stderr)
    logger.info("Cedar Backup Amazon S3 sync run started (cedar-s3 cback3-s3-sync).")
    logger.info("Options were [%s]", shlex.join(given))
    logger.info("Logfile is [%s]", logfile)
    Diagnostics().logDiagnostics(method=logger.info)
    status = _run(options)
    logger.info("Cedar Backup Amazon S3 sync run completed with status %d.", status)
    return status


def _run(options: SyncOptions) -> int:
    from cedar_s3.sync.options import sourcePath
    from cedar_s3.sync.summary import Summary

    location = options.location
    summary = Summary(
        source=sourcePath(options),
        destination=location.url(location.rootPrefix),
        bucket=location.bucket,
        mode=options.modeName,
        dryRun=options.dryRun,
    )
    try:
        _execute(options, summary)
    except KeyboardInterrupt:
        if options.stacktrace:
            raise
        logger.error("Sync interrupted.")
        return EXIT_INTERRUPTED
    except Exception as error:
        if options.stacktrace:
            raise
        logger.error("Error executing sync: %s", error)
        summary.errors.append(str(error))
    _report(options, summary)
    return summary.exitCode


def _execute(options: SyncOptions, summary: Summary) -> None:
    from cedar_s3.config import AmazonS3Config
    from cedar_s3.s3.session import buildStore
    from cedar_s3.sync.options import sourcePath
    from cedar_s3.sync.run import SyncRun
    from cedar_s3.sync.source import SourceTree

    location = options.location
    settings = AmazonS3Config(
        s3Bucket=location.bucket + (f"/{location.prefix}" if location.prefix else ""),
        endpointUrl=options.endpointUrl,
        region=options.region,
        profile=options.profile,
        checksumCalculation=options.checksumCalculation,
        maxConcurrency=options.jobs,
    )
    style = "terminal" if sys.stderr.isatty() and not options.quiet else "log"
    with SourceTree.open(sourcePath(options), location) as source, buildStore(settings, None) as store:
        SyncRun(options, store, source, summary, style).run()


def _report(options: SyncOptions, summary: Summary) -> None:
    text = summary.text()
    for line in text.splitlines():
        logger.info("%s", line)
    if options.json:
        sys.stdout.write(summary.toJson() + "\n")
    elif not options.quiet and (options.dryRun or sys.stdout.isatty()):
        sys.stdout.write(text)
