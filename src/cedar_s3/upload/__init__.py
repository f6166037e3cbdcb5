"""The upload of one staged day (ex ``pipeline``): every file read once through its descriptor, encrypted where
configured, sent with the digests S3 proves it by, and recorded.

``day``      ``DayUpload``: the jobs, run ``<max_concurrency>`` at a time, stopping at the first failure
``jobs``     one class per kind of job (plain, streamed through gpg, a gpg batch, the legacy command)
``send``     sending bytes, a descriptor, or a stream as one PUT or in parts (resuming an unfinished upload)
``reuse``    whether an object already holds exactly this file, stored the way we store it now
``records``  the night's records, one fixed-size slot per staged file, on disk rather than in memory
"""
