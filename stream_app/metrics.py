"""Every Prometheus metric of the worker, declared in one place.

Built from a registry passed in, so tests use a fresh ``CollectorRegistry``.
Names follow Prometheus conventions: ``hookstream_`` prefix, base units
(seconds), ``_total`` on counters.

Every labelled counter has a sample (0) for each of its known label values
from the start, so ``rate()`` and ``increase()`` see a worker's first events
and alerts need not lean on ``_created``. The registry also carries the
standard ``process_*`` and ``python_info`` collectors.
"""

from __future__ import annotations

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, Info,
                               PlatformCollector, ProcessCollector)

from stream_app.events import HIGHLIGHT_KINDS, REASONS

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

# reason label values of hookstream_rejected_inputs_total: the decode-time reasons of
# stream_app/events.py (chunk events only) and the processor's sequence and scoring ones.
REJECT_REASONS = tuple(r for r in REASONS if r != "bad_highlight") + (
    "duplicate", "gap", "gap_too_large", "late", "after_end", "too_long", "sample_rate_changed",
    "internal_error")
# how label values of hookstream_tracks_finished_total (stream_app/processor.py).
FINISH_HOWS = ("ended", "idle_timeout")


class Metrics:
    def __init__(self, registry: CollectorRegistry, *, process: bool = True):
        self.registry = registry
        if process:  # process_cpu_seconds_total, process_resident_memory_bytes, ...; python_info
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
        self.chunks = Counter("hookstream_chunks_total",
                              "Audio chunk events accepted and scored", registry=registry)
        self.audio_seconds = Counter("hookstream_audio_seconds_total",
                                     "Seconds of audio accepted and scored", registry=registry)
        self.highlights = Counter("hookstream_highlight_events_total",
                                  "Highlight events sent, by kind", ["kind"], registry=registry)
        self.rejected = Counter("hookstream_rejected_inputs_total",
                                "Chunk events rejected or repaired, by reason", ["reason"],
                                registry=registry)
        self.tracks_finished = Counter("hookstream_tracks_finished_total",
                                       "Tracks finalized, by how they ended", ["how"],
                                       registry=registry)
        for counter, values in ((self.highlights, HIGHLIGHT_KINDS), (self.rejected, REJECT_REASONS),
                                (self.tracks_finished, FINISH_HOWS)):
            for value in values:
                counter.labels(value)
        self.active_tracks = Gauge("hookstream_active_tracks",
                                   "Tracks with scorer state on this worker", registry=registry)
        self.table_records = Gauge("hookstream_table_records",
                                   "Track records in this worker's table, by state (open, or an "
                                   "end marker kept stream.finished_retention_s)", ["state"],
                                   registry=registry)
        self.batch_tracks = Histogram("hookstream_scorer_batch_tracks",
                                      "Tracks scored together in one scorer call",
                                      buckets=BATCH_BUCKETS, registry=registry)
        self.batch_chunks = Histogram("hookstream_scorer_batch_chunk_events",
                                      "Chunk events in one scorer call",
                                      buckets=BATCH_BUCKETS, registry=registry)
        self.batch_seconds = Histogram("hookstream_scorer_batch_seconds",
                                       "Wall time of one scorer call (mel, CNN, attention)",
                                       buckets=LATENCY_BUCKETS, registry=registry)
        self.provisional_latency = Histogram(
            "hookstream_chunk_to_provisional_seconds",
            "From a chunk event's receipt by the worker to the provisional highlight it led to",
            buckets=LATENCY_BUCKETS, registry=registry)
        self.model = Info("hookstream_model", "The checkpoint in use", registry=registry)
        self.build = Info("hookstream_build", "The hookstream version and the model it runs",
                          registry=registry)

    def set_build(self, *, version: str, model: str) -> None:
        """``hookstream_build_info{version, model} 1``."""
        self.build.info({"version": version, "model": model})
