"""The packed string lists that hold a day's names: same order and lookups as a sorted list of ``str``."""

from __future__ import annotations

import random

from cedar_s3.packedtext import PackedStrings
from cedar_s3.s3.objects import RemoteObject
from cedar_s3.upload.reuse import RemoteListing

NAMES = ["z", "a/b", "a", "é", "e\u0301", "日本/語", "😀", "a b", "A", "ab", "a\\b", "\u00ff", "\uffff", ""]


def test_sorted_order_and_lookups_are_those_of_str() -> None:
    packed = PackedStrings(NAMES)
    ordered = packed.reordered(packed.sortOrder())
    assert list(ordered) == sorted(NAMES)
    assert ordered.isSorted() and not packed.isSorted()
    for position, name in enumerate(sorted(NAMES)):
        assert ordered.find(name) == position
        assert ordered[position] == name
    assert ordered.find("a/") is None
    assert ordered.find("zz") is None
    assert ordered.find("\udcff") is None  # a lone surrogate (an undecodable file name) is never an S3 key


def test_a_listing_out_of_order_is_put_in_key_order_with_its_sizes_and_etags() -> None:
    shuffler = random.Random(16)
    keys = [f"day/{shuffler.randrange(10**6):06d}-é" for _ in range(500)]
    keys = list(dict.fromkeys(keys))
    objects = [RemoteObject(key, len(key) * 7, f"etag-{key}", "STANDARD") for key in keys]
    shuffler.shuffle(objects)
    listing = RemoteListing(objects)
    assert list(listing.allKeys()) == sorted(keys)
    for key in keys:
        assert listing.get(key) == RemoteObject(key, len(key) * 7, f"etag-{key}", "STANDARD")
    assert listing.get("day/missing") is None
