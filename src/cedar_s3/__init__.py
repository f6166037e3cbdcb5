"""cedar-s3: a drop-in boto3/GnuPG replacement for Cedar Backup 3's amazons3 store extension.

Importing the package is cheap on purpose: cback3 imports every configured extension at start-up,
so nothing here touches the network, boto3 or gpg.
"""

__version__ = "0.1.0"
