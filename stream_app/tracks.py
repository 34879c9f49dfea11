"""The worker's record of one track: sequence bookkeeping around the scorer's state.

A record is what the worker keeps per track in its Faust table (and so in the
table's changelog topic), stored as a small *head* and append-only
*segments* (keys: :mod:`stream_app.table_keys`), so that the bytes written per
track grow linearly with its length:

- the head (key: the track id) is a JSON header (sequence bookkeeping, how
  many segments there are and how many rows of each growing array they hold)
  and the serialised :class:`models.scorer.TrackState` *without* the rows
  that are in segments: its bounded parts (unframed tail, pending frames,
  counters) and the rows added since the last segment, the last
  ``context_chunks`` logits included (each step rewrites them). It is
  rewritten after every batch; its size is bounded.
- a segment holds rows of the growing arrays (``TrackState.GROWING``: chunk
  vectors, slot energy, logits no step rewrites any more) that no earlier
  segment holds. A new one is written once ``segment_chunks`` new chunks have
  collected in the head (``stream.state_segment_chunks``), and never changes.

Reading a record joins head and segments back into exactly the state that was
written (every array bitwise equal). The segment is written before the head
that counts it, to the same partition, so a changelog cut off between the two
still reads as the previous record. When a track ends, the record shrinks to
a marker (a head without state) so that chunks arriving after the end are
recognised, and its segments are deleted (tombstones, which compaction
drops); markers are dropped after a retention period.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Iterator, MutableMapping

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from models.errors import InputError
from stream_app.table_keys import head_key, is_segment, parse_segment, segment_key

if TYPE_CHECKING:  # imported where used: the worker's Faust wiring starts before torch loads
    from models.scorer import TrackState

RECORD_VERSION = 2  # 2: head + append-only segments (1: the whole state in one value)
MAX_SKIPPED = 256  # seqs declared lost that a record remembers (the latest), to tell "late" chunks
_LEN = struct.Struct(">I")

Write = tuple[bytes, "bytes | None"]  # (key, value); None: delete the key (a tombstone)


@dataclass(frozen=True)
class Stored:
    """What of a record the table's segments hold: their count, and rows per growing array."""

    segments: int = 0
    rows: tuple[tuple[str, int], ...] = ()  # (array, rows), for the arrays of TrackState.GROWING

    def row_counts(self) -> dict[str, int]:
        return dict(self.rows)


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
    stored: Stored = Stored()  # what the table's segments hold of this record (as read)

    def writes(self, *, context_chunks: int, segment_chunks: int
               ) -> tuple["TrackRecord", list[Write]]:
        """The table writes that store this record, in order, and the record as stored.

        ``context_chunks``: the scorer's, i.e. how many of the last logits a
        step may still rewrite (they stay in the head). ``segment_chunks``: new
        chunks the head collects before they move to a segment
        (``stream.state_segment_chunks``).
        """
        if self.state is None:  # a marker: the head alone, the segments deleted
            marker = replace(self, stored=Stored())
            return marker, [(head_key(self.track_id), marker._head())] + [
                (segment_key(self.track_id, i), None) for i in range(self.stored.segments)]
        done = self.stored.row_counts()
        have = self.state.rows()
        if have["embeddings"] - done.get("embeddings", 0) < segment_chunks:
            return self, [(head_key(self.track_id), self._head())]
        upto = dict(have, logits=max(done.get("logits", 0), have["logits"] - context_chunks))
        segment = _segment(self.track_id, self.stored.segments, self.state, done, upto)
        stored = replace(self, stored=Stored(self.stored.segments + 1, tuple(upto.items())))
        return stored, [(segment_key(self.track_id, self.stored.segments), segment),
                        (head_key(self.track_id), stored._head())]

    def _head(self) -> bytes:
        head = {"v": RECORD_VERSION, "track_id": self.track_id, "next_seq": self.next_seq,
                "skipped": list(self.skipped[-MAX_SKIPPED:]), "incomplete": self.incomplete,
                "ended": self.ended, "last_seen": self.last_seen, "last_emit": self.last_emit,
                "last_span": self.last_span, "segments": self.stored.segments,
                "rows": self.stored.row_counts()}
        raw = json.dumps(head, separators=(",", ":")).encode()
        state = self.state.drop_rows(self.stored.row_counts()).to_bytes() if self.state else b""
        return _LEN.pack(len(raw)) + raw + state

    @classmethod
    def read(cls, track_id: str, get: Callable[[bytes], bytes | None]) -> "TrackRecord | None":
        """The record of ``track_id`` from a table's ``get``, head and segments joined; None if
        there is none. InputError if it cannot be read (naming the track and why)."""
        data = get(head_key(track_id))
        if data is None:
            return None
        head, rest = _split_head(data)
        if head.get("track_id") != track_id:
            raise InputError(f"track record under key {track_id!r} is of track "
                             f"{head.get('track_id')!r}")
        try:
            stored = Stored(int(head["segments"]), tuple((str(k), int(n))
                                                         for k, n in head["rows"].items()))
            span = head["last_span"]
            record = cls(track_id=track_id, next_seq=int(head["next_seq"]),
                         skipped=tuple(head["skipped"]), incomplete=bool(head["incomplete"]),
                         ended=bool(head["ended"]), last_seen=float(head["last_seen"]),
                         last_emit=float(head["last_emit"]),
                         last_span=tuple(span) if span else None, stored=stored)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"track record of {track_id!r}: malformed header "
                             f"({type(exc).__name__}: {exc})") from None
        if not rest:
            return record
        from models.scorer import TrackState

        state = TrackState.from_bytes(rest).join_rows(_join_segments(track_id, stored, get))
        return replace(record, state=state)

    @staticmethod
    def peek(data: bytes) -> dict:
        """A head's JSON header alone, without the scorer state (InputError if unreadable)."""
        return _split_head(data)[0]

    def closed(self, now: float) -> "TrackRecord":
        """The end-of-track marker: no state, remembers where the track ended."""
        return replace(self, ended=True, state=None, last_seen=now)


class RecordTable:
    """Track records in a ``bytes -> bytes`` mapping: the worker's Faust table, or a dict.

    ``bytes_written`` counts the key and value bytes of every write (what the
    table's changelog receives; a deletion counts its key).
    """

    def __init__(self, table: MutableMapping[bytes, bytes], *, context_chunks: int,
                 segment_chunks: int):
        self.table = table
        self.context_chunks = context_chunks
        self.segment_chunks = segment_chunks
        self.bytes_written = 0

    def load(self, track_id: str) -> TrackRecord | None:
        return TrackRecord.read(track_id, self.table.get)

    def save(self, record: TrackRecord) -> TrackRecord:
        """Store ``record``; returns it as stored (pass that one to the next save)."""
        stored, writes = record.writes(context_chunks=self.context_chunks,
                                       segment_chunks=self.segment_chunks)
        for key, value in writes:
            self.bytes_written += len(key) + (len(value) if value is not None else 0)
            if value is None:
                self.table.pop(key, None)
            else:
                self.table[key] = value
        return stored

    def delete(self, track_id: str) -> None:
        """Delete a track's head and the segments it lists."""
        key = head_key(track_id)
        data = self.table.get(key)
        try:
            segments = TrackRecord.peek(data)["segments"] if data is not None else 0
        except InputError:
            segments = 0  # unreadable: its segments are orphans, which the sweep drops
        for k in [key] + [segment_key(track_id, i) for i in range(segments)]:
            if self.table.pop(k, None) is not None:
                self.bytes_written += len(k)

    def heads(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of every head in the table (segments skipped)."""
        for key, value in list(self.table.items()):
            if not is_segment(key):
                yield key, value

    def orphans(self) -> list[bytes]:
        """Segment keys that no readable head lists (left by a record that was started afresh,
        or by a stop between writes)."""
        counts: dict[str, int] = {}
        out = []
        for key in list(self.table.keys()):
            if not is_segment(key):
                continue
            try:
                tid, index = parse_segment(key)
            except ValueError:
                out.append(key)
                continue
            if tid not in counts:
                data = self.table.get(head_key(tid))
                try:
                    counts[tid] = TrackRecord.peek(data)["segments"] if data is not None else 0
                except InputError:
                    counts[tid] = 0
            if index >= counts[tid]:
                out.append(key)
        return out


def _split_head(data: bytes) -> tuple[dict, bytes]:
    try:
        (n,) = _LEN.unpack_from(data)
        head = json.loads(data[_LEN.size:_LEN.size + n])
        if not isinstance(head, dict):
            raise ValueError("the header is not a JSON object")
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"track record: unreadable ({exc})") from None
    if head.get("v") != RECORD_VERSION:
        raise InputError(f"track record of {head.get('track_id')!r}: version {head.get('v')}, "
                         f"this hookstream reads {RECORD_VERSION}")
    return head, data[_LEN.size + n:]


def _segment(track_id: str, index: int, state: TrackState, start: dict[str, int],
             stop: dict[str, int]) -> bytes:
    """Rows ``start[name]:stop[name]`` of each growing array (safetensors; no pickle)."""
    arrays = {name: np.ascontiguousarray(getattr(state, name)[start.get(name, 0):stop[name]])
              for name in state.GROWING if getattr(state, name) is not None}
    meta = {"v": str(RECORD_VERSION), "track_id": track_id, "index": str(index)}
    meta.update({f"start.{name}": str(start.get(name, 0)) for name in arrays})
    return st_save(arrays, metadata=meta)


def _join_segments(track_id: str, stored: Stored, get: Callable[[bytes], bytes | None]
                   ) -> dict[str, np.ndarray]:
    """Every growing array's rows from the track's segments, in order, checked for continuity."""
    where = f"track record of {track_id!r}"
    parts: dict[str, list[np.ndarray]] = {}
    done: dict[str, int] = {}
    for i in range(stored.segments):
        data = get(segment_key(track_id, i))
        if data is None:
            raise InputError(f"{where}: segment {i} of {stored.segments} is missing")
        try:
            arrays = st_load(data)
            header_len = int.from_bytes(data[:8], "little")
            meta = json.loads(data[8:8 + header_len])["__metadata__"]
        except Exception as exc:
            raise InputError(f"{where}: segment {i} unreadable ({exc})") from None
        if meta.get("v") != str(RECORD_VERSION) or meta.get("track_id") != track_id \
                or meta.get("index") != str(i):
            raise InputError(f"{where}: segment {i} is not this record's (version "
                             f"{meta.get('v')}, track {meta.get('track_id')!r}, index "
                             f"{meta.get('index')})")
        for name, a in arrays.items():
            if int(meta.get(f"start.{name}", -1)) != done.get(name, 0):
                raise InputError(f"{where}: segment {i} starts {name} at row "
                                 f"{meta.get(f'start.{name}')}, the segments before end at "
                                 f"{done.get(name, 0)}")
            parts.setdefault(name, []).append(a)
            done[name] = done.get(name, 0) + len(a)
    for name, n in stored.row_counts().items():
        if done.get(name, 0) != n:
            raise InputError(f"{where}: its segments hold {done.get(name, 0)} rows of {name}, "
                             f"the head says {n}")
    return {name: np.concatenate(p) for name, p in parts.items()}


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
