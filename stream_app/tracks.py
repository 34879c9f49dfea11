"""The worker's record of one track: sequence bookkeeping around the scorer's state.

A record is what the worker keeps per track in its Faust table (and so in the
table's changelog topic): a small JSON header and, while the track is open,
the serialised :class:`models.scorer.TrackState`. When a track ends, the
record shrinks to a marker (no state) so that chunks arriving after the end
are recognised; markers are dropped after a retention period.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field, replace

from models.errors import InputError
from models.scorer import TrackState

RECORD_VERSION = 1
MAX_SKIPPED = 256  # seqs declared lost that a record remembers (the latest), to tell "late" chunks
_LEN = struct.Struct(">I")


@dataclass(frozen=True)
class TrackRecord:
    track_id: str
    next_seq: int = 0  # the seq expected next
    skipped: tuple[int, ...] = ()  # seqs declared lost in gaps (a late arrival is not a duplicate)
    incomplete: bool = False  # a gap was skipped, or the track timed out
    ended: bool = False
    last_seen: float = 0.0  # wall clock of the last accepted chunk
    last_emit: float = 0.0  # wall clock of the last provisional event
    last_span: tuple[float, float] | None = None  # span of the last provisional event
    state: TrackState | None = field(default=None, repr=False)

    def to_bytes(self) -> bytes:
        head = {"v": RECORD_VERSION, "track_id": self.track_id, "next_seq": self.next_seq,
                "skipped": list(self.skipped[-MAX_SKIPPED:]), "incomplete": self.incomplete,
                "ended": self.ended, "last_seen": self.last_seen, "last_emit": self.last_emit,
                "last_span": self.last_span}
        raw = json.dumps(head, separators=(",", ":")).encode()
        return _LEN.pack(len(raw)) + raw + (self.state.to_bytes() if self.state else b"")

    @classmethod
    def from_bytes(cls, data: bytes) -> "TrackRecord":
        try:
            (n,) = _LEN.unpack_from(data)
            head = json.loads(data[_LEN.size:_LEN.size + n])
            rest = data[_LEN.size + n:]
        except (struct.error, ValueError) as exc:
            raise InputError(f"track record: unreadable ({exc})") from None
        if head.get("v") != RECORD_VERSION:
            raise InputError(f"track record of {head.get('track_id')!r}: version {head.get('v')}, "
                             f"this hookstream reads {RECORD_VERSION}")
        span = head.get("last_span")
        return cls(track_id=head["track_id"], next_seq=head["next_seq"],
                   skipped=tuple(head["skipped"]), incomplete=head["incomplete"],
                   ended=head["ended"], last_seen=head["last_seen"], last_emit=head["last_emit"],
                   last_span=tuple(span) if span else None,
                   state=TrackState.from_bytes(rest) if rest else None)

    @staticmethod
    def peek(data: bytes) -> dict:
        """The JSON header alone, without deserialising the scorer state."""
        (n,) = _LEN.unpack_from(data)
        return json.loads(data[_LEN.size:_LEN.size + n])

    def closed(self, now: float) -> "TrackRecord":
        """The end-of-track marker: no state, remembers where the track ended."""
        return replace(self, ended=True, state=None, last_seen=now)


def classify(record: TrackRecord | None, seq: int) -> str:
    """What a chunk with ``seq`` is for this track, before any state changes.

    Returns one of: ``next`` (in order), ``duplicate`` (already applied:
    redelivery), ``late`` (its seq was skipped in a gap and declared lost),
    ``after_end`` (the track already ended), ``gap`` (chunks before it are
    missing; it is applied and the missing ones are declared lost).
    """
    next_seq = record.next_seq if record else 0
    if record and seq in record.skipped:
        return "late"
    if seq < next_seq:
        return "duplicate"
    if record and record.ended:
        return "after_end"
    return "next" if seq == next_seq else "gap"
