"""S3 behind one door: the only package that imports boto3 or botocore.

``store``     one bucket through one client: objects, listings, heads, deletes, versions, housekeeping
``multipart`` multipart uploads (streamed parts, resumed uploads, ETags from HEAD where Complete omits them)
``download``  object bodies that resume with a ranged GET when they break off mid-stream
``session``   credentials, client settings, clients
``endpoint``  which endpoint, whether it is AWS, and the checksum policy that follows
``errors``    the exceptions everything above raises (no botocore exception leaves this package)
``thaw``      archived objects: readable now, or what to run first
``compat``    what the installed botocore can do

This module imports nothing: ``import cedar_s3.amazons3`` must stay cheap, so callers import the submodule
they need.
"""
