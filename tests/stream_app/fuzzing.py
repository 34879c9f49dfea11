"""Malformed chunk events from a random source: for Hypothesis (``st.randoms()``) and seeded runs.

``mutated_event(rng, track_id)`` starts from a valid one-chunk event of ``track_id``
and breaks it in one of many ways (header fields of the wrong type, missing, huge,
negative, NaN/inf; unknown schema; payloads that are not whole frames or hold NaN;
keys that are missing, empty, not UTF-8 or another track's; values over the size
limit; arbitrary or truncated bytes; headers that are not JSON objects). Some
mutations leave the event valid (a harmless ``meta``, say): the properties hold either way.
"""

import json
import random
import struct

import numpy as np

SR = 22050
FIELDS = ("schema", "track_id", "seq", "sample_rate", "channels", "encoding", "end", "sent_at", "meta")
ODD_VALUES = [None, True, False, 0, -1, 1, 2, 3, 2**31, 2**53 - 1, 2**53, 2**63, -2**63, 10**30,
              0.5, -0.0, 1e308, float("nan"), float("inf"), float("-inf"), "", "1", "x" * 300,
              "f32le", "s16le", "mp3", [], [1], {}, {"a": 1}, 22050, 16000, 44100]


def header_bytes(header) -> bytes:
    return json.dumps(header, allow_nan=True).encode()


def event(header: dict, payload: bytes) -> bytes:
    head = header_bytes(header)
    return struct.pack(">I", len(head)) + head + payload


def mutated_event(rng: random.Random, track_id: str) -> tuple[bytes | None, bytes]:
    """``(key, value)``: one valid chunk event of ``track_id``, broken in one random way."""
    frames = rng.choice([1, 7, 100, 2205])
    payload = np.asarray([rng.uniform(-1, 1) for _ in range(min(frames, 8))] * (frames // 8 + 1),
                         "<f4")[:frames].tobytes()
    header = dict(schema=1, track_id=track_id, seq=0, sample_rate=SR, channels=1, encoding="f32le",
                  end=rng.random() < 0.3)
    key: bytes | None = track_id.encode()
    kind = rng.randrange(14)
    if kind == 0:  # a field deleted
        header.pop(rng.choice(FIELDS), None)
    elif kind in (1, 2, 3):  # a field of an odd value or type
        header[rng.choice(FIELDS)] = rng.choice(ODD_VALUES)
    elif kind == 4:  # a seq far away, huge or negative
        header["seq"] = rng.choice([1, 255, 256, 257, 258, 10**6, 10**8, 10**9, 2**53 - 1, 2**53,
                                    2**63, 2**64, -1, -2**63, 10**100])
    elif kind == 5:  # unknown schema
        header["schema"] = rng.choice([0, 2, 99, "1", 1.0, True, None, -1])
    elif kind == 6:  # a payload that is not whole frames, or empty on a non-end chunk
        payload = rng.choice([payload + b"\x00" * rng.randrange(1, 4), b""])
        if not payload:
            header["end"] = False
        elif rng.random() < 0.5:
            header["channels"] = 2
    elif kind == 7:  # NaN / inf audio
        a = np.frombuffer(payload, "<f4").copy()
        a[rng.randrange(len(a))] = rng.choice([np.nan, np.inf, -np.inf])
        payload = a.tobytes()
    elif kind == 8:  # the key
        key = rng.choice([None, b"", b"\xff\xfe\xfd", b"\xc3\x28", b"other-" + key, key + b"\x00"])
    elif kind == 9:  # over the size limit
        payload = bytes(4 * rng.choice([250_001, 300_000]))
    elif kind == 10:  # arbitrary bytes
        return key, rng.randbytes(rng.randrange(0, 64))
    elif kind == 11:  # a valid event, truncated or with its header length corrupted
        value = event(header, payload)
        if rng.random() < 0.5:
            return key, value[:rng.randrange(len(value))]
        return key, struct.pack(">I", rng.choice([0, 1, 2**31, 2**32 - 1, 65_537])) + value[4:]
    elif kind == 12:  # a header that is not a JSON object, not UTF-8, or nested too deeply
        head = rng.choice([b"[1, 2]", b"42", b"null", b"\"x\"", b"\xff\xfe{}", b"{\"a\":",
                           b"[" * 30_000 + b"]" * 30_000, b"{" + b"\"a\":{" * 5000 + b"}" * 5001])
        return key, struct.pack(">I", len(head)) + head + payload
    else:  # several fields at once
        for name in rng.sample(FIELDS, 3):
            header[name] = rng.choice(ODD_VALUES)
    if isinstance(header.get("track_id"), str) and kind != 8:
        key = header["track_id"].encode("utf-8", "surrogatepass")
    return key, event(header, payload)
