"""The worker's logic, free of Faust: chunk events in, table updates and events out.

:meth:`Processor.process` takes one batch of raw chunk events and the current
records of the tracks they name, and returns what to write and send. All
scoring goes through one batched :class:`models.scorer.Scorer` call per batch,
and highlights come from the same :class:`models.detect.Detector` that
``hookstream detect`` uses, so a streamed track's final event equals offline
detection on the same audio.

Nothing raises out of here: each event is handled on its own, and each
input problem (or an unforeseen exception while handling one event) is
counted (``rejected`` by reason) and, except for duplicates (normal after an
at-least-once redelivery), recorded as a dead letter with the reason. Bounds:
``seq`` <= ``events.MAX_SEQ`` (checked at decode) and a gap of at most
``MAX_GAP_CHUNKS`` missing chunks (past it: ``gap_too_large``).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

import numpy as np

from models.window import highlights_json
from stream_app import events
from stream_app.metrics import Metrics
from stream_app.settings import StreamSettings
from stream_app.tracks import MAX_SKIPPED, TrackRecord, classify

if TYPE_CHECKING:  # torch is imported by whoever builds the Detector, not by this module
    from models.detect import Detector
    from models.scorer import TrackScores

log = logging.getLogger(__name__)

FINISHED_RETENTION_S = StreamSettings.finished_retention_s  # the default: stream.finished_retention_s
MAX_GAP_CHUNKS = MAX_SKIPPED  # a larger gap is rejected ("gap_too_large"), not declared lost


@dataclass(frozen=True)
class Incoming:
    key: bytes | None
    value: bytes
    topic: str
    partition: int
    offset: int
    received_at: float  # time.monotonic() at receipt


@dataclass
class Outcome:
    records: dict[str, TrackRecord | None] = field(default_factory=dict)  # None: delete
    highlights: list[dict] = field(default_factory=list)
    dead_letters: list[dict] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # received -> provisional made


@dataclass
class _Work:
    record: TrackRecord
    pieces: list[np.ndarray] = field(default_factory=list)
    end: bool = False
    first_received: float = 0.0
    messages: list[Incoming] = field(default_factory=list)
    rate: int = 0  # the track's source rate (Hz): every piece is at it


def _track_rate(item: _Work | None, record: TrackRecord | None) -> int | None:
    """The rate a track's chunks must have: that of its first chunk (None before it)."""
    if item is not None and item.rate:
        return item.rate
    if record is not None and record.state is not None:
        return record.state.sample_rate
    return None


class Processor:
    def __init__(self, detector: Detector, stream: StreamSettings, metrics: Metrics, *,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self.detector = detector
        self.scorer = detector.scorer
        self.stream = stream
        self.metrics = metrics
        self.clock = clock
        self.monotonic = monotonic

    # ------------------------------------------------------------------ batch
    def process(self, batch: list[Incoming], records: dict[str, TrackRecord | None]) -> Outcome:
        """What to write and send for ``batch``; never raises.

        Each event is taken on its own: an exception while taking one (a bug,
        or input no check foresaw) makes that event a dead letter with reason
        ``internal_error`` or ``bad_input``, and the rest of the batch goes on.
        """
        now = self.clock()
        out = Outcome()
        work: dict[str, _Work] = {}
        for msg in batch:
            try:
                self._take(msg, records, work, out, now)
            except Exception as exc:
                log.exception("chunk event %s[%d]@%d failed", msg.topic, msg.partition, msg.offset)
                self._reject(out, msg, events.reason_of(exc),
                             f"{type(exc).__name__}: {exc}"[:events.DLQ_MAX_DETAIL_CHARS])
        if work:
            try:
                self._score(work, out, now)
            except Exception:  # a bug or a poisoned track: isolate it, keep the others
                log.exception("batched scoring failed; retrying track by track")
                for tid, w in work.items():
                    try:
                        self._score({tid: w}, out, now)
                    except Exception as exc:
                        for msg in w.messages:
                            self._reject(out, msg, "internal_error", f"track {tid!r}: scoring "
                                         f"failed ({type(exc).__name__}: {exc}); track closed")
                        out.records[tid] = w.record.closed(now)
        return out

    def _take(self, msg: Incoming, records: dict[str, TrackRecord | None],
              work: dict[str, _Work], out: Outcome, now: float) -> None:
        """Decode and classify one event; add it to ``work`` or reject it.

        ``work`` changes only at the end, once the event is accepted, so an
        exception part-way leaves the batch's state as it was.
        """
        try:
            chunk = events.decode_chunk(msg.key, msg.value,
                                        min_rate=self.stream.min_sample_rate,
                                        max_rate=self.stream.max_sample_rate,
                                        max_channels=self.stream.max_channels)
        except events.EventError as exc:
            self._reject(out, msg, exc.reason, str(exc))
            return
        tid = chunk.track_id
        item = work.get(tid)
        record = item.record if item else records.get(tid)
        verdict = classify(record, chunk.seq)
        if item is not None and item.end and verdict in ("next", "gap"):
            verdict = "after_end"  # the track ended (or hit too_long) earlier in this batch
        if verdict == "duplicate":
            self.metrics.rejected.labels("duplicate").inc()
            return
        if verdict in ("late", "after_end"):
            self._reject(out, msg, verdict, f"track {tid!r} chunk {chunk.seq}: " + (
                "arrived after its gap was skipped" if verdict == "late"
                else "arrived after the track's end"))
            return
        rate = _track_rate(item, record)
        if rate is not None and chunk.sample_rate != rate:
            self._reject(out, msg, "sample_rate_changed",
                         f"track {tid!r} chunk {chunk.seq}: {chunk.sample_rate} Hz, but the "
                         f"track's earlier chunks are at {rate} Hz (a track keeps one rate)")
            return
        rate = chunk.sample_rate
        record = record or TrackRecord(tid)
        if verdict == "gap":
            missing = chunk.seq - record.next_seq
            if missing > MAX_GAP_CHUNKS:
                self._reject(out, msg, "gap_too_large",
                             f"track {tid!r}: chunk {chunk.seq} arrived, expected "
                             f"{record.next_seq}; a gap of {missing} chunks is more than "
                             f"{MAX_GAP_CHUNKS}: the chunk is not scored, the track keeps waiting "
                             f"for chunk {record.next_seq}")
                return
            self._reject(out, msg, "gap", f"track {tid!r}: chunk {chunk.seq} arrived, "
                         f"expected {record.next_seq}; {missing} chunk(s) declared lost, "
                         "this chunk is scored and the track marked incomplete",
                         keep_value=False)
            record = replace(record, skipped=record.skipped + tuple(range(record.next_seq, chunk.seq)),
                             incomplete=True)
        samples = chunk.samples_mono()
        pending = sum(len(p) for p in item.pieces) if item else 0
        have = record.state.received_samples if record.state else 0
        if item is None:
            item = work[tid] = _Work(record, first_received=msg.received_at, rate=rate)
        if have + pending + len(samples) > self.scorer.cfg.max_duration_s * rate:
            self._reject(out, msg, "too_long", f"track {tid!r} chunk {chunk.seq}: the track "
                         f"would exceed {self.scorer.cfg.max_duration_s:.0f} s; it is "
                         "finalized with the audio so far")
            item.record = replace(record, next_seq=chunk.seq + 1, incomplete=True)
            item.end = True
            return
        item.pieces.append(samples)
        item.messages.append(msg)
        item.record = replace(record, next_seq=chunk.seq + 1, last_seen=now)
        item.end = item.end or chunk.end
        self.metrics.chunks.inc()
        self.metrics.audio_seconds.inc(len(samples) / rate)

    def _score(self, work: dict[str, _Work], out: Outcome, now: float) -> None:
        items = []
        for tid, w in work.items():
            state = w.record.state or self.scorer.init_state(tid, sample_rate=w.rate)
            pieces = w.pieces or [np.zeros(0, np.float32)]
            samples = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
            items.append((state, samples))
        started = time.perf_counter()
        due = [not w.end and self._due(w.record, now) for w in work.values()]
        states = self.scorer.step(items, refresh=due)
        ending = [(w, s) for w, s in zip(work.values(), states) if w.end]
        finals = self.scorer.finalize([s for _, s in ending]) if ending else []
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_tracks.observe(len(items))
        self.metrics.batch_chunks.observe(sum(len(w.pieces) for w in work.values()))
        for (w, _), scores in zip(ending, finals):
            self._final(out, w.record, scores, now, how="ended")
        for w, state in zip(work.values(), states):
            if not w.end:
                self._provisional(out, replace(w.record, state=state), w.first_received, now)

    # ---------------------------------------------------------------- outputs
    def _due(self, record: TrackRecord, now: float) -> bool:
        """Whether a provisional event for this track may go out now (only then is it scored)."""
        return now - record.last_emit >= self.stream.provisional_min_interval_s

    def _provisional(self, out: Outcome, record: TrackRecord, received: float, now: float) -> None:
        if not self._due(record, now):  # its logits were not refreshed: nothing to read
            out.records[record.track_id] = record
            return
        scores = self.scorer.provisional(record.state)
        # Before the first 3 s chunk is scored there is no attention yet, and the
        # highlight of a track no longer than the window is all of it: the event
        # says so (score from the energy term only: 0 at gamma 1), so the first
        # chunk is answered at once rather than by the second chunk's event.
        if len(scores.attention) or 0 < scores.duration_s <= self.detector.cfg.window.length_s:
            h = self.detector.highlight(scores)
            span = (h.start_s, h.end_s)
            if span != record.last_span:
                out.highlights.append(self._event("provisional", record, scores, h))
                out.latencies.append(self.monotonic() - received)
                record = replace(record, last_emit=now, last_span=span)
        out.records[record.track_id] = record

    def _final(self, out: Outcome, record: TrackRecord, scores: TrackScores, now: float, *,
               how: str) -> None:
        spans = self.detector.highlights(scores, self.stream.top_k)
        out.highlights.append(self._event("final", record, scores, spans[0],
                                          incomplete=record.incomplete,
                                          highlights=highlights_json(spans)))
        out.records[record.track_id] = record.closed(now)
        self.metrics.tracks_finished.labels(how).inc()

    def _event(self, kind, record, scores, h, incomplete=None, highlights=None) -> dict:
        return events.make_highlight_event(
            record.track_id, kind=kind, start_s=h.start_s, end_s=h.end_s, score=h.score,
            audio_s=round(scores.duration_s, 3),
            model=self.scorer.model_name if kind == "final" else self.scorer.provisional_model_name,
            seq=max(record.next_seq - 1, 0), labels=scores.labels,
            incomplete=incomplete if kind == "final" else None, highlights=highlights)

    def _reject(self, out: Outcome, msg: Incoming, reason: str, detail: str, *,
                keep_value: bool = True) -> None:
        self.metrics.rejected.labels(reason).inc()
        log.warning("rejected chunk event (%s): %s", reason, detail)
        out.dead_letters.append(events.make_dead_letter(
            reason=reason, detail=detail, key=msg.key, value=msg.value if keep_value else None,
            value_bytes=len(msg.value) if msg.value is not None else 0,
            topic=msg.topic, partition=msg.partition, offset=msg.offset))

    # ------------------------------------------------------------------ idle
    def sweep(self, records: dict[str, TrackRecord], *, active_since: float = 0.0) -> Outcome:
        """Finalize tracks idle for ``idle_timeout_s`` (incomplete); drop end markers past
        ``finished_retention_s``.

        Idle time counts from ``active_since`` at the earliest (wall clock): when
        this worker took over the tracks' partitions, so that time during which
        no worker read them does not count.
        """
        now = self.clock()
        out = Outcome()
        idle = [r for r in records.values() if not r.ended
                and now - max(r.last_seen, active_since) >= self.stream.idle_timeout_s]
        for r in records.values():
            if r.ended and now - r.last_seen >= self.stream.finished_retention_s:
                out.records[r.track_id] = None
        if idle:
            with_state = [r for r in idle if r.state is not None]
            finals = self.scorer.finalize([r.state for r in with_state])
            for r, scores in zip(with_state, finals):
                self._final(out, replace(r, incomplete=True), scores, now, how="idle_timeout")
        return out


def group_by_track(outcome: Outcome) -> dict[str, list[dict]]:
    """Highlight events per track, in order (for logging and tests)."""
    grouped: dict[str, list[dict]] = defaultdict(list)
    for e in outcome.highlights:
        grouped[e["track_id"]].append(e)
    return dict(grouped)
