"""``cback3-s3-sync``: upstream's ``cback3-amazons3-sync`` (``aws s3 sync`` plus a size check), done in process.

Same arguments, switches, log file handling and exit codes as upstream's tool; underneath, boto3 through
``cedar_s3.s3``, change detection by content, verification by checksum, and deletions only after everything
was sent and verified.

``options``   the command line: upstream's switches and the newer long options, and the manual ``--help`` shows
``source``    the local side: every entry below sourceDir, read without following a link, sorted by what it is
``compare``   one file against its object: the same bytes or not, hashing only when it has to
``plan``      what a run would send, keep and delete, and what protects objects from deletion
``run``       the run itself: compare, send, verify, then (only then) delete; and ``-v``'s verification
``summary``   what a run did (or with ``--dry-run`` would do), as text and as JSON
``cli``       ``main()``: logging as upstream sets it up, exit codes

This module imports nothing.
"""
