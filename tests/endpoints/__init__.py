"""Real S3 endpoints on 127.0.0.1 for the test-suite (moto, s3rver, Ceph RGW), behind one small interface."""

from endpoints.base import Endpoint, freePort, isRequired, unavailable

__all__ = ["Endpoint", "freePort", "isRequired", "unavailable"]
