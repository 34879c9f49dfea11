"""Keys of the worker's track-state table: one head record per track, and its segments.

A track's head is stored under its track id (utf-8, the same bytes as its
chunk events' key). Segment ``i`` of the track is stored under the track id,
the byte ``0xFF``, and ``i`` in decimal. ``0xFF`` never occurs in UTF-8, so a
segment key is never a track id, and a key's track id is everything before
its first ``0xFF``. The table partitions every key by that track id
(``faust_patches.key_partition``), so a track's segments are written to,
recovered from, owned with and dropped with its head's changelog partition.
"""

from __future__ import annotations

SEPARATOR = b"\xff"


def head_key(track_id: str) -> bytes:
    return track_id.encode("utf-8")


def segment_key(track_id: str, index: int) -> bytes:
    return track_id.encode("utf-8") + SEPARATOR + str(index).encode()


def partition_key(key: bytes) -> bytes:
    """The bytes a key is partitioned by: its track id (the whole key for a head)."""
    return bytes(key).split(SEPARATOR, 1)[0]


def is_segment(key: bytes) -> bool:
    return SEPARATOR in bytes(key)


def parse_segment(key: bytes) -> tuple[str, int]:
    """(track id, index) of a segment key; ValueError for any other key."""
    tid, sep, index = bytes(key).partition(SEPARATOR)
    if not sep or not index.isdigit():
        raise ValueError(f"not a segment key: {bytes(key)[:80]!r}")
    return tid.decode("utf-8"), int(index)
