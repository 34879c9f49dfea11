"""Bytes a worker writes to its table's changelog per track, per minute of audio.

:func:`changelog_bytes` streams synthetic tracks through the worker's own
:class:`~stream_app.processor.Processor` in 2 s chunk events, one event per
batch (the most writes a track can cause), with the default settings
(``configs/stream.yaml``'s ``stream.state_segment_chunks``), and stores every outcome in a
:class:`~stream_app.tracks.RecordTable` over a dict, which counts the key and
value bytes of every write: what the ``track-state`` changelog receives for
the track, from its first chunk to its end marker. No broker is needed.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
from prometheus_client import CollectorRegistry

from models.detect import Detector
from stream_app.events import encode_chunk
from stream_app.metrics import Metrics
from stream_app.processor import Incoming, Processor
from stream_app.settings import StreamSettings
from stream_app.table_keys import is_segment
from stream_app.tracks import RecordTable, TrackRecord

TRACK_MINUTES = (1, 5, 20)
PIECE_S = 2.0


def changelog_bytes(detector: Detector, minutes: Sequence[float] = TRACK_MINUTES, *,
                    piece_s: float = PIECE_S, seed: int = 0) -> dict:
    """Changelog bytes for one track of each length in ``minutes``.

    Returns ``{"bytes_per_audio_min": {"1": ..., ...}, "tracks": {"1": {...}}}``,
    keyed by the length as text; each track lists its ``bytes``, ``writes``
    (batches), the largest head and segment written (``max_head_bytes``,
    ``max_segment_bytes``), the ``segments`` it had before it ended, the
    ``keys_left`` in the table after its end (its marker), and ``seconds``
    taken.
    """
    out: dict = {"piece_s": piece_s, "bytes_per_audio_min": {}, "tracks": {}}
    for m in minutes:
        track = _one_track(detector, float(m), piece_s=piece_s, seed=seed)
        out["tracks"][f"{m:g}"] = track
        out["bytes_per_audio_min"][f"{m:g}"] = round(track["bytes"] / float(m))
    return out


def bench_phase(detector: Detector, *, say: Callable[[str], None]) -> dict:
    """``hookstream bench``'s changelog figures: :func:`changelog_bytes` for 1, 5 and 20 min."""
    say(f"changelog: tracks of {', '.join(f'{m:g}' for m in TRACK_MINUTES)} min in "
        f"{PIECE_S:g} s chunk events through the processor (no broker)")
    out = changelog_bytes(detector)
    say("changelog: " + ", ".join(f"{m} min {v / 1e6:.2f} MB" for m, v in
                                  out["bytes_per_audio_min"].items()) + " per audio minute")
    return out


def report_lines(c: dict) -> list[str]:
    """The bench report's section for :func:`bench_phase`'s result."""
    lines = [f"table changelog per track, {c['piece_s']:g} s chunk events, one per batch "
             "(processor and record table, no broker)"]
    for m, t in c["tracks"].items():
        lines.append(f"  {m:>3} min: {c['bytes_per_audio_min'][m] / 1e6:6.2f} MB per audio minute "
                     f"({t['bytes'] / 1e6:.1f} MB in {t['writes']} writes; head at most "
                     f"{t['max_head_bytes'] / 1024:.0f} KB, {t['segments']} segments)")
    return lines


def stored_bytes(record: TrackRecord, *, context_chunks: int) -> int:
    """Key and value bytes a table holds for ``record`` (its head and segments), with the
    default ``stream.state_segment_chunks``."""
    table = RecordTable({}, context_chunks=context_chunks,
                        segment_chunks=StreamSettings().state_segment_chunks)
    table.save(record)
    return sum(len(k) + len(v) for k, v in table.table.items())


def _one_track(detector: Detector, minutes: float, *, piece_s: float, seed: int) -> dict:
    sr = detector.scorer.mel_cfg.sample_rate
    x = _signal(minutes * 60.0, sr, seed)
    piece = int(piece_s * sr)
    n = -(-len(x) // piece)
    stream = StreamSettings(provisional_min_interval_s=0.0)
    proc = Processor(detector, stream, Metrics(CollectorRegistry()))
    store = _SizeTable()
    table = RecordTable(store, context_chunks=detector.scorer.cfg.context_chunks,
                        segment_chunks=stream.state_segment_chunks)
    tid = f"changelog-{minutes:g}min"
    started = time.perf_counter()
    segments = 0
    for seq in range(n):
        value = encode_chunk(tid, seq, x[seq * piece:(seq + 1) * piece], sample_rate=sr,
                             end=seq == n - 1)
        msg = Incoming(tid.encode(), value, "audio-chunks", 0, seq, time.monotonic())
        outcome = proc.process([msg], {tid: table.load(tid)})
        for t, record in outcome.records.items():
            if record is None:
                table.delete(t)
            else:
                segments = max(segments, table.save(record).stored.segments)
    return {"audio_s": round(len(x) / sr, 3), "bytes": table.bytes_written, "writes": n,
            "max_head_bytes": store.max_head, "max_segment_bytes": store.max_segment,
            "segments": segments, "keys_left": len(store),
            "seconds": round(time.perf_counter() - started, 2)}


class _SizeTable(dict):
    """A dict table remembering the largest head and segment value written."""

    def __init__(self):
        super().__init__()
        self.max_head = self.max_segment = 0

    def __setitem__(self, key: bytes, value: bytes) -> None:
        if is_segment(key):
            self.max_segment = max(self.max_segment, len(value))
        else:
            self.max_head = max(self.max_head, len(value))
        super().__setitem__(key, value)


def _signal(seconds: float, sr: int, seed: int) -> np.ndarray:
    """A tone over noise; record sizes depend on the length only, not on the content."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.2 * np.sin(2 * np.pi * 220 * t) + 0.1 * rng.standard_normal(t.size)).astype(np.float32)
