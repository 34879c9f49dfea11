"""Fixtures shared by the streaming tests: malformed chunk events, one per rejection reason."""

import json
import struct

import numpy as np
import pytest

SR = 22050


def raw_chunk(track_id: str, payload: bytes = b"", **header) -> bytes:
    """A chunk event value built by hand, bypassing ``encode_chunk``'s checks."""
    h = dict(schema=1, track_id=track_id, seq=0, sample_rate=SR, channels=1, encoding="f32le",
             end=False)
    h.update(header)
    head = json.dumps(h).encode()
    return struct.pack(">I", len(head)) + head + payload


@pytest.fixture(scope="session")
def bad_chunks():
    """``[(reason, key, value)]``: one chunk event for every decode-time rejection reason.

    Each uses its own track id (``bad-<reason>``), so a test can tell them apart.
    """
    ok = np.zeros(SR // 10, "<f4").tobytes()
    nan = np.full(16, np.nan, "<f4").tobytes()

    def tid(reason):
        return f"bad-{reason}"

    cases = [
        ("undecodable", b"\x00\x00\x00\x09{not json", None),
        ("unknown_schema", None, dict(schema=2)),
        ("bad_header", None, dict(seq=-1)),
        ("unsupported_encoding", None, dict(encoding="mp3")),
        ("unsupported_sample_rate", None, dict(sample_rate=16000)),
        ("unsupported_channels", None, dict(channels=3)),
        ("nonfinite_audio", nan, {}),
        ("payload_length", b"\x00" * 5, {}),
        ("missing_key", None, {}),
        ("key_mismatch", None, {}),
        # 1.2 MB: Kafka's default limit is about 1 MB; Tansu does not enforce one.
        ("oversize", np.zeros(300_000, "<f4").tobytes(), {}),
    ]
    out = []
    for reason, payload, header in cases:
        if header is None:  # a ready-made value
            value = payload
        else:
            value = raw_chunk(tid(reason), ok if payload is None else payload, **header)
        key = {"missing_key": None, "key_mismatch": b"someone-else"}.get(reason, tid(reason).encode())
        out.append((reason, key, value))
    return out
