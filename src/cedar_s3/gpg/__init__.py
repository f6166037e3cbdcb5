"""GnuPG behind one door: every gpg process cedar-s3 starts is started in ``gpg.process``.

``process``  the gpg binary, its environment, deadlines, status parsing, and the one way failures are named
``home``     private throw-away homes, the administrator's keyring and passphrase files, sweeping stale homes
``encrypt``  native encryption of one stream (symmetric or public-key) and the self-check
``multifile`` one gpg run that encrypts many small files, handed them one at a time
``decrypt``  reading ciphertext back (restore, verify --download, adopt)
``sign``     detached signatures on manifests, and checking them against a trusted fingerprint

Nothing outside this package imports python-gnupg or runs gpg.
"""
