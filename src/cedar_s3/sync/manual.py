"""What ``cback3-s3-sync --help`` prints: a manual page, in the order and with the switch texts of upstream's."""

from __future__ import annotations

from CedarBackup3.cli import DEFAULT_LOGFILE, DEFAULT_MODE, DEFAULT_OWNERSHIP

from cedar_s3 import __version__

__all__ = ["manual", "usageLine", "versionText"]

PROG = "cback3-s3-sync"


def usageLine() -> str:
    return f"Usage: {PROG} [switches] sourceDir s3BucketUrl  (--help for the manual)"


def versionText(cedarBackupVersion: str) -> str:
    return (
        f"\n {PROG} {__version__}: the cedar-s3 Amazon S3 sync tool.\n"
        f" A drop-in for cback3-amazons3-sync of Cedar Backup {cedarBackupVersion}.\n"
        " This is free software; there is NO warranty.  See the\n"
        " GNU General Public License version 2 or later for copying conditions.\n\n"
        " Use the --help option for usage information.\n\n"
    )


def manual() -> str:
    owner = f"{DEFAULT_OWNERSHIP[0]}:{DEFAULT_OWNERSHIP[1]}"
    return f"""NAME
    {PROG} - synchronize a local directory with an Amazon S3 bucket (cback3-amazons3-sync, in process)

SYNOPSIS
    {PROG} [switches] sourceDir s3BucketUrl

DESCRIPTION
    Stores every regular file below sourceDir in the bucket under s3BucketUrl/<path relative to sourceDir>
    (the layout of upstream's cback3-amazons3-sync), then removes from under s3BucketUrl the objects whose
    file no longer exists. Then every file is verified against the bucket by checksum.

    Unlike upstream's tool there is no AWS CLI: boto3 runs in this process, as the calling user, with the
    credentials and settings of the environment and the AWS config files (no cback3.conf is read). And:

    * A file is sent when its bytes differ from its object's. Each object records its file's SHA-256, size
      and mtime; a file whose size and mtime are the recorded ones is not read, any other is hashed and sent
      only if its SHA-256 differs (--checksum hashes every file). A same-size edit with an old mtime is sent.
      An object without that record (written by aws s3 sync) is compared by MD5 with its ETag when the
      ETag is one; otherwise the file is sent again, once.
    * Verification is by checksum (ETag MD5 or SHA-256 checksum), not by size.
    * Nothing is deleted unless every file was sent and verified without any error, never with -u, and
      never more than --max-delete (default 50% of the objects under s3BucketUrl): an empty or wrong
      sourceDir (an unmounted disk) deletes nothing and fails instead.

ARGUMENTS
    sourceDir            The local source directory on disk (must exist)
    s3BucketUrl          The S3 location to synchronize with, like s3://example.com-backup/subdir

SWITCHES
    -h, --help           Display this usage/help listing
    -V, --version        Display version information
    -b, --verbose        Print verbose output as well as logging to disk
    -q, --quiet          Run quietly (display no output to the screen)
    -l, --logfile        Path to logfile (default: {DEFAULT_LOGFILE})
    -o, --owner          Logfile ownership, user:group (default: {owner})
    -m, --mode           Octal logfile permissions mode (default: {DEFAULT_MODE:o})
    -O, --output         Record some sub-command output to the log (no sub-commands run: accepted)
    -d, --debug          Write debugging information to the log (implies --output)
    -s, --stack          Dump Python stack trace instead of swallowing exceptions
    -D, --diagnostics    Print runtime diagnostics to the screen and exit
    -v, --verifyOnly     Only verify the S3 bucket contents, do not make changes
    -u, --uploadOnly     Only upload new data, do not remove files in the S3 bucket
    -w, --ignoreWarnings Ignore warnings about problematic filename encodings

    The owner and mode are used only when the log file is created; an existing log file keeps its own.
    With -v every file is hashed and compared with its object's checksum; any file that is missing or
    differs is named and the exit status is 6. Nothing is sent or deleted.

NEWER OPTIONS
    --endpoint-url URL   S3 endpoint (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's
                         endpoint_url in the AWS config file, else AWS)
    --region NAME        AWS region (default: AWS_REGION / AWS_DEFAULT_REGION / the profile's)
    --profile NAME       AWS profile of the AWS config and credentials files (default: AWS_PROFILE)
    --checksum-calculation when_supported|when_required
                         when_supported: a SHA-256 checksum with every upload (default on AWS);
                         when_required: Content-MD5 only (default elsewhere; what most S3-compatible
                         stores accept)
    --checksum           Hash every file, even when its size and mtime are the recorded ones
    --dry-run            Compare and report what would be sent and deleted; change nothing
    --jobs N             Files compared and sent at once (default 8)
    --max-delete N|P%    Delete at most N objects, or P percent of those under s3BucketUrl (default
                         50%); a run that would delete more deletes nothing and exits 6.
                         --max-delete 100% allows any deletion
    --json               Print the summary as one JSON document on standard output

NAMES THAT CANNOT BE KEYS
    An S3 key is UTF-8 text of at most 1024 bytes. A file whose name is not valid UTF-8 (or makes a longer
    key) cannot be stored under its name. Like upstream, {PROG} then refuses to run, naming every such
    path (bytes that are not UTF-8 shown as \\xNN), and sends nothing. With -w it stores everything else,
    names the paths it skipped, and deletes no object in a directory that holds such a name (the object
    may be that file's copy under another spelling). Names starting with cback.amazons3. directly in
    sourceDir are reserved for the tool's own bookkeeping and treated the same way.

WHAT IS NOT SENT
    Symbolic links are never followed (aws s3 sync follows them); FIFOs, sockets and devices are not read.
    Each is named in the summary, and the objects under its key are never deleted.

OUTPUT
    On a terminal: a progress bar on standard error and a summary on standard output. Under cron (no
    terminal) nothing is printed unless something fails, like upstream; the log file has it all.

ENVIRONMENT
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE, AWS_REGION,
    AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3, AWS_CONFIG_FILE,
    AWS_SHARED_CREDENTIALS_FILE, AWS_CA_BUNDLE: as for the AWS CLI.

EXIT STATUS
    0 success; 1 Python too old; 2 bad arguments; 3 logging could not be set up; 5 interrupted;
    6 any other error (a file not sent, a verification mismatch, a refused deletion, an S3 error).

EXAMPLES
    {PROG} /home/myuser s3://example.com-backup/myuser
    {PROG} --dry-run /home/myuser s3://example.com-backup/myuser
    {PROG} -v -l /tmp/sync.log /home/myuser s3://example.com-backup/myuser

SEE ALSO
    cback3-amazons3-sync(1), cback3-s3(1), aws(1)
"""
