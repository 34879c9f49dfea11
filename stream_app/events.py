"""Wire formats of the three event types; plain functions, no Kafka or Faust here.

``audio-chunks`` (binary), ``highlights`` (JSON) and ``audio-chunks.dlq``
(JSON). The byte layouts, field tables, reason codes and examples are in
``docs/events.md``; this module is the reference implementation.

Audio chunk value::

    +----------------------+---------------------------+----------------------+
    | header length N      | header: N bytes of UTF-8  | payload: PCM frames, |
    | 4 bytes, big-endian  | JSON (an object)          | interleaved, LE      |
    +----------------------+---------------------------+----------------------+

Every rejection of an incoming event raises :class:`EventError` whose
``reason`` (a short snake_case code from :data:`REASONS`) becomes the
Prometheus label and the dead-letter ``reason``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from models.audio import all_finite
from models.errors import InputError

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 1_000_000  # real Kafka's default message.max.bytes is 1,048,588
MAX_HEADER_BYTES = 65_536
MAX_TRACK_ID_CHARS = 256
# Largest chunk seq: the largest integer a JSON reader that uses doubles keeps exactly.
MAX_SEQ = 2**53 - 1
# Largest original value copied into a dead letter: base64 grows it by 4/3,
# which keeps the dead letter itself under MAX_MESSAGE_BYTES.
DLQ_MAX_VALUE_BYTES = 700_000
DLQ_MAX_DETAIL_CHARS = 2_000

ENCODINGS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
HIGHLIGHT_KINDS = ("provisional", "final")
_HEADER_LEN = struct.Struct(">I")

REASONS = {
    "oversize": "the message is larger than MAX_MESSAGE_BYTES",
    "undecodable": "the bytes are not a header-length + JSON header + payload message",
    "unknown_schema": "the header's schema version is not one this code reads",
    "bad_header": "a header field is missing, of the wrong type or out of range",
    "unsupported_encoding": "encoding is not s16le or f32le",
    "unsupported_sample_rate": "sample_rate is outside the accepted bounds",
    "unsupported_channels": "channels is more than the allowed maximum",
    "payload_length": "the payload is not a whole number of frames, or empty on a non-end chunk",
    "nonfinite_audio": "an f32le payload holds NaN or infinity",
    "missing_key": "the message has no key (the key must be the track id)",
    "key_mismatch": "the message key differs from the header's track_id",
    "bad_highlight": "a highlight event is not valid JSON or misses a field",
}


class EventError(InputError):
    """An event that cannot be accepted; ``reason`` is a code from :data:`REASONS`.

    The worker sends the event to the dead-letter topic with this reason and
    counts it; fix the producer that sent it.
    """

    def __init__(self, reason: str, message: str):
        assert reason in REASONS, reason
        super().__init__(message)
        self.reason = reason


def reason_of(exc: BaseException) -> str:
    """The dead-letter reason for any exception: its code, ``bad_input`` or ``internal_error``."""
    if isinstance(exc, EventError):
        return exc.reason
    if isinstance(exc, InputError):
        return "bad_input"
    return "internal_error"


# --- audio chunks --------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class AudioChunk:
    """One decoded chunk event. ``payload`` holds interleaved little-endian PCM frames."""

    track_id: str
    seq: int
    sample_rate: int
    channels: int
    encoding: str
    end: bool
    payload: bytes = field(repr=False)
    sent_at: float | None = None
    meta: dict | None = None

    @property
    def frames(self) -> int:
        return len(self.payload) // (ENCODINGS[self.encoding].itemsize * self.channels)

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate

    def samples(self) -> np.ndarray:
        """Float32 samples, shape (frames, channels); s16le scaled by 1/32768."""
        raw = np.frombuffer(self.payload, dtype=ENCODINGS[self.encoding])
        if self.encoding == "s16le":
            out = raw.astype(np.float32) * np.float32(1.0 / 32768.0)
        else:
            out = raw.astype(np.float32)  # a writable native-endian copy
        return out.reshape(-1, self.channels)

    def samples_mono(self) -> np.ndarray:
        """Float32 mono samples, shape (frames,): the mean of the channels.

        For a mono f32le chunk this is bit-exact with the samples encoded.
        """
        s = self.samples()  # a fresh array: a mono one is returned as it is, not copied again
        return s.reshape(-1) if self.channels == 1 else s.mean(axis=1, dtype=np.float32)


def encode_chunk(
    track_id: str,
    seq: int,
    samples: np.ndarray,
    *,
    sample_rate: int,
    encoding: str = "f32le",
    end: bool = False,
    sent_at: float | None = None,
    meta: dict | None = None,
) -> bytes:
    """Encode one audio chunk event value.

    Parameters
    ----------
    track_id : the track id (also the message key, utf-8)
    seq : chunk number within the track, 0, 1, 2, ...
    samples : float array, shape (frames,) mono or (frames, channels), nominally in [-1, 1]
    sample_rate : Hz
    encoding : "f32le" (exact) or "s16le" (clipped to [-1, 1), rounded to 1/32768)
    end : True on the last chunk of the track (may hold audio or be empty)
    sent_at : producer clock, unix seconds
    meta : optional JSON-serialisable dict carried along

    Raises
    ------
    EventError if a field is invalid or the message would exceed MAX_MESSAGE_BYTES.
    """
    samples = np.asarray(samples)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or samples.shape[1] < 1:
        raise EventError("bad_header", f"track {track_id!r} chunk {seq}: samples must be (frames,) or "
                         f"(frames, channels), got shape {samples.shape}")
    if encoding not in ENCODINGS:
        raise EventError("unsupported_encoding", f"track {track_id!r}: unknown encoding {encoding!r}")
    if encoding == "f32le":
        if not np.all(np.isfinite(samples)):
            raise EventError("nonfinite_audio", f"track {track_id!r} chunk {seq}: NaN or infinite samples")
        payload = np.ascontiguousarray(samples, dtype="<f4").tobytes()
    else:
        scaled = np.nan_to_num(np.asarray(samples, dtype=np.float64)) * 32768.0
        payload = np.clip(np.rint(scaled), -32768, 32767).astype("<i2").tobytes()
    header: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "track_id": track_id,
        "seq": seq,
        "sample_rate": sample_rate,
        "channels": int(samples.shape[1]),
        "encoding": encoding,
        "end": bool(end),
    }
    if sent_at is not None:
        header["sent_at"] = float(sent_at)
    if meta is not None:
        header["meta"] = meta
    _check_header(header, where=f"track {track_id!r} chunk {seq}")
    if samples.shape[0] == 0 and not end:
        raise EventError("payload_length", f"track {track_id!r} chunk {seq}: empty chunk that is not the end")
    head = json.dumps(header, separators=(",", ":"), sort_keys=True, allow_nan=False).encode("utf-8")
    if len(head) > MAX_HEADER_BYTES:
        raise EventError("oversize", f"track {track_id!r} chunk {seq}: header of {len(head)} bytes "
                         f"exceeds {MAX_HEADER_BYTES}")
    size = _HEADER_LEN.size + len(head) + len(payload)
    if size > MAX_MESSAGE_BYTES:
        raise EventError("oversize", f"track {track_id!r} chunk {seq}: message of {size:,} bytes exceeds "
                         f"the {MAX_MESSAGE_BYTES:,}-byte limit; send shorter chunks")
    return _HEADER_LEN.pack(len(head)) + head + payload


def decode_chunk(
    key: bytes | None,
    value: bytes,
    *,
    min_rate: int = 8000,
    max_rate: int = 192000,
    max_channels: int = 8,
) -> AudioChunk:
    """Decode and validate one audio chunk event.

    ``key`` must be the utf-8 track id and equal the header's ``track_id``;
    ``sample_rate`` within ``[min_rate, max_rate]`` Hz, ``channels`` at most
    ``max_channels``.

    Raises
    ------
    EventError with ``reason`` one of: oversize, undecodable, unknown_schema,
    bad_header, unsupported_encoding, unsupported_sample_rate,
    unsupported_channels, payload_length, nonfinite_audio, missing_key,
    key_mismatch.
    """
    if value is None:
        raise EventError("undecodable", "chunk event has no value (tombstone)")
    value = bytes(value)
    if len(value) > MAX_MESSAGE_BYTES:
        raise EventError("oversize", f"chunk event of {len(value):,} bytes exceeds {MAX_MESSAGE_BYTES:,}")
    if len(value) < _HEADER_LEN.size:
        raise EventError("undecodable", f"chunk event of {len(value)} bytes is shorter than the header length")
    (n,) = _HEADER_LEN.unpack_from(value)
    if n > MAX_HEADER_BYTES or _HEADER_LEN.size + n > len(value):
        raise EventError("undecodable", f"chunk event header length {n} does not fit the {len(value)}-byte message")
    try:
        header = json.loads(value[_HEADER_LEN.size:_HEADER_LEN.size + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise EventError("undecodable", f"chunk event header is not UTF-8 JSON ({exc})") from None
    except RecursionError:  # e.g. [[[[...]]]]: 64 KiB of nesting is past Python's stack limit
        raise EventError("undecodable", "chunk event header is JSON nested too deeply") from None
    if not isinstance(header, dict):
        raise EventError("undecodable", f"chunk event header is a JSON {type(header).__name__}, not an object")
    where = _where(header, key)
    schema = header.get("schema")
    if schema != SCHEMA_VERSION or isinstance(schema, bool):
        raise EventError("unknown_schema", f"{where}: schema {schema!r}, this code reads {SCHEMA_VERSION}")
    _check_header(header, where=where)
    if key is None:
        raise EventError("missing_key", f"{where}: message has no key; the key must be the track id")
    if bytes(key) != header["track_id"].encode("utf-8"):
        raise EventError("key_mismatch", f"{where}: key {bytes(key)[:80]!r} differs from track_id "
                         f"{header['track_id']!r}")
    if not min_rate <= header["sample_rate"] <= max_rate:
        raise EventError("unsupported_sample_rate", f"{where}: sample_rate {header['sample_rate']} Hz "
                         f"is outside the accepted {min_rate}-{max_rate} Hz")
    if header["channels"] > max_channels:
        raise EventError("unsupported_channels", f"{where}: {header['channels']} channels, at most "
                         f"{max_channels} accepted (1-{max_channels})")
    payload = value[_HEADER_LEN.size + n:]
    frame = ENCODINGS[header["encoding"]].itemsize * header["channels"]
    if len(payload) % frame:
        raise EventError("payload_length", f"{where}: payload of {len(payload)} bytes is not a whole number "
                         f"of {frame}-byte frames")
    if not payload and not header["end"]:
        raise EventError("payload_length", f"{where}: empty payload on a chunk that is not the end")
    if header["encoding"] == "f32le" and not all_finite(np.frombuffer(payload, dtype="<f4")):
        raise EventError("nonfinite_audio", f"{where}: audio contains NaN or infinite samples")
    return AudioChunk(
        track_id=header["track_id"],
        seq=header["seq"],
        sample_rate=header["sample_rate"],
        channels=header["channels"],
        encoding=header["encoding"],
        end=header["end"],
        payload=payload,
        sent_at=header.get("sent_at"),
        meta=header.get("meta"),
    )


def _where(header: dict, key: bytes | None) -> str:
    tid = header.get("track_id")
    if not isinstance(tid, str):
        tid = bytes(key).decode("utf-8", "replace") if key is not None else "?"
    return f"track {tid[:80]!r} chunk {header.get('seq', '?')!r}"


def _short(v: Any, n: int = 40) -> str:
    text = repr(v) if not (isinstance(v, int) and v.bit_length() > 128) else f"an integer of {v.bit_length()} bits"
    return text if len(text) <= n else text[:n] + "..."


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_header(h: dict, *, where: str) -> None:
    """Field presence, types and ranges (not the allowed rates/channels: those are policy)."""
    def bad(msg: str) -> EventError:
        return EventError("bad_header", f"{where}: {msg}")

    for name in ("track_id", "seq", "sample_rate", "channels", "encoding", "end"):
        if name not in h:
            raise bad(f"header field {name!r} is missing")
    tid = h["track_id"]
    if not isinstance(tid, str) or not tid or len(tid) > MAX_TRACK_ID_CHARS:
        raise bad(f"track_id must be a non-empty string of at most {MAX_TRACK_ID_CHARS} characters")
    if not _is_int(h["seq"]) or not 0 <= h["seq"] <= MAX_SEQ:
        raise bad(f"seq must be an integer from 0 to 2**53-1, got {_short(h['seq'])}")
    if not _is_int(h["sample_rate"]) or h["sample_rate"] <= 0:
        raise bad(f"sample_rate must be a positive integer, got {h['sample_rate']!r}")
    if not _is_int(h["channels"]) or h["channels"] <= 0:
        raise bad(f"channels must be a positive integer, got {h['channels']!r}")
    if not isinstance(h["encoding"], str):
        raise bad(f"encoding must be a string, got {h['encoding']!r}")
    if h["encoding"] not in ENCODINGS:
        raise EventError("unsupported_encoding", f"{where}: encoding {h['encoding']!r} is not one of "
                         f"{', '.join(ENCODINGS)}")
    if not isinstance(h["end"], bool):
        raise bad(f"end must be true or false, got {h['end']!r}")
    sent_at = h.get("sent_at")
    if sent_at is not None and (isinstance(sent_at, bool) or not isinstance(sent_at, (int, float))
                                or not math.isfinite(sent_at)):
        raise bad(f"sent_at must be a finite number of unix seconds, got {sent_at!r}")
    if h.get("meta") is not None and not isinstance(h["meta"], dict):
        raise bad(f"meta must be an object, got {type(h['meta']).__name__}")


# --- highlights ------------------------------------------------------------------

_HIGHLIGHT_REQUIRED = {
    "schema": int, "event_id": str, "track_id": str, "kind": str, "seq": int,
    "start_s": float, "end_s": float, "score": float, "audio_s": float,
    "model": str, "emitted_at": str,
}


def highlight_event_id(track_id: str, kind: str, seq: int, start_s: float, end_s: float) -> str:
    """Deterministic id: sha1 of (track_id, kind, seq, start_ms, end_ms); not of the time sent.

    A re-sent event (worker restart, at-least-once redelivery) keeps its id, so
    consumers can drop duplicates by id.
    """
    text = "\x1f".join([track_id, kind, str(int(seq)), str(round(start_s * 1000)), str(round(end_s * 1000))])
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def utc_now_iso() -> str:
    """Now, ISO-8601 UTC with milliseconds and a ``Z``: ``2025-01-31T12:00:00.123Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_highlight_event(
    track_id: str,
    *,
    kind: str,
    start_s: float,
    end_s: float,
    score: float,
    audio_s: float,
    model: str,
    seq: int,
    labels: dict[str, float] | None = None,
    incomplete: bool | None = None,
    emitted_at: str | None = None,
    highlights: list[dict] | None = None,
) -> dict:
    """Build and validate a highlight event (a JSON-ready dict).

    Parameters
    ----------
    track_id : the track
    kind : "provisional" (may change as audio arrives) or "final"
    start_s, end_s : highlight bounds in seconds from the start of the track
    score : the model's score of the highlight
    audio_s : seconds of audio seen when the event was made
    model : model name/version that produced it
    seq : the last chunk seq included
    labels : optional label -> probability
    incomplete : True on a final event made without an end chunk (idle timeout)
    emitted_at : ISO-8601 UTC; default now
    highlights : on final events, up to ``stream.top_k`` non-overlapping
        ``{"start_s", "end_s", "score"}`` spans, best first; the first is the
        event's own span
    """
    event: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "event_id": highlight_event_id(track_id, kind, seq, start_s, end_s),
        "track_id": track_id,
        "kind": kind,
        "seq": seq,
        "start_s": float(start_s),
        "end_s": float(end_s),
        "score": float(score),
        "audio_s": float(audio_s),
        "model": model,
        "emitted_at": emitted_at or utc_now_iso(),
    }
    if incomplete is not None:
        event["incomplete"] = bool(incomplete)
    if labels is not None:
        event["labels"] = {str(k): float(v) for k, v in labels.items()}
    if highlights is not None:
        event["highlights"] = [{"start_s": float(h["start_s"]), "end_s": float(h["end_s"]),
                                "score": float(h["score"])} for h in highlights]
    _check_highlight(event)
    return event


def encode_highlight(event: dict) -> bytes:
    """Compact UTF-8 JSON of a validated highlight event."""
    _check_highlight(event)
    return json.dumps(event, separators=(",", ":"), allow_nan=False).encode("utf-8")


def decode_highlight(value: bytes) -> dict:
    """Parse and validate a highlight event; EventError(reason="bad_highlight") if invalid."""
    try:
        event = json.loads(bytes(value).decode("utf-8"))
    except (TypeError, UnicodeDecodeError, ValueError) as exc:
        raise EventError("bad_highlight", f"highlight event is not UTF-8 JSON ({exc})") from None
    if not isinstance(event, dict):
        raise EventError("bad_highlight", "highlight event is not a JSON object")
    _check_highlight(event)
    return event


def _check_highlight(e: dict) -> None:
    where = f"highlight event for track {str(e.get('track_id'))[:80]!r}"
    for name, typ in _HIGHLIGHT_REQUIRED.items():
        v = e.get(name)
        ok = (_is_int(v) if typ is int else
              (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)) if typ is float else
              isinstance(v, str) and bool(v))
        if not ok:
            raise EventError("bad_highlight", f"{where}: field {name!r} missing or not a valid {typ.__name__}: {v!r}")
    if e["schema"] != SCHEMA_VERSION:
        raise EventError("bad_highlight", f"{where}: schema {e['schema']}, this code reads {SCHEMA_VERSION}")
    if e["kind"] not in HIGHLIGHT_KINDS:
        raise EventError("bad_highlight", f"{where}: kind {e['kind']!r} is not one of {HIGHLIGHT_KINDS}")
    if not 0 <= e["start_s"] <= e["end_s"]:
        raise EventError("bad_highlight", f"{where}: need 0 <= start_s <= end_s, got {e['start_s']}, {e['end_s']}")
    if "incomplete" in e and not isinstance(e["incomplete"], bool):
        raise EventError("bad_highlight", f"{where}: incomplete must be true or false")
    labels = e.get("labels")
    if labels is not None and not (
        isinstance(labels, dict)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in labels.values())
    ):
        raise EventError("bad_highlight", f"{where}: labels must map label names to finite numbers")
    spans = e.get("highlights")
    if spans is not None and not (
        isinstance(spans, list) and spans
        and all(isinstance(h, dict) and all(
            isinstance(h.get(k), (int, float)) and not isinstance(h.get(k), bool)
            and math.isfinite(h[k]) for k in ("start_s", "end_s", "score"))
            and 0 <= h["start_s"] <= h["end_s"] for h in spans)
    ):
        raise EventError("bad_highlight", f"{where}: highlights must be a non-empty list of "
                                          "{start_s, end_s, score} with 0 <= start_s <= end_s")


# --- dead letters ------------------------------------------------------------------

def make_dead_letter(
    *,
    reason: str,
    detail: str,
    key: bytes | None,
    value: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    failed_at: str | None = None,
    value_bytes: int | None = None,
) -> dict:
    """Build a dead-letter record for a rejected event (a JSON-ready dict).

    The key is kept as text when it is valid UTF-8 (``key_encoding`` "utf-8"),
    else base64 (``key_encoding`` "base64"); a missing key is null. The value is
    copied base64-encoded (``value_b64``) when at most DLQ_MAX_VALUE_BYTES long;
    ``value_bytes`` always gives its length (pass ``value_bytes`` when the
    value itself is left out, as for a ``gap`` notice).
    """
    record: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "reason": reason,
        "detail": detail if len(detail) <= DLQ_MAX_DETAIL_CHARS else detail[:DLQ_MAX_DETAIL_CHARS] + "...",
        "topic": topic,
        "partition": int(partition),
        "offset": int(offset),
        "failed_at": failed_at or utc_now_iso(),
    }
    if key is None:
        record["key"], record["key_encoding"] = None, None
    else:
        try:
            record["key"], record["key_encoding"] = bytes(key).decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            record["key"], record["key_encoding"] = base64.b64encode(bytes(key)).decode("ascii"), "base64"
    size = len(value) if value is not None else int(value_bytes or 0)
    record["value_bytes"] = size
    if value is not None and size <= DLQ_MAX_VALUE_BYTES:
        record["value_b64"] = base64.b64encode(bytes(value)).decode("ascii")
    return record


def encode_dead_letter(record: dict) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode("utf-8")


def decode_dead_letter(value: bytes) -> dict:
    return json.loads(bytes(value).decode("utf-8"))


def dead_letter_value(record: dict) -> bytes | None:
    """The original value of a dead letter, or None if it was too large to keep."""
    b64 = record.get("value_b64")
    return None if b64 is None else base64.b64decode(b64)


def dead_letter_key(record: dict) -> bytes | None:
    """The original key bytes of a dead letter."""
    if record.get("key") is None:
        return None
    if record.get("key_encoding") == "base64":
        return base64.b64decode(record["key"])
    return record["key"].encode("utf-8")
