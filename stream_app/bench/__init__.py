"""``hookstream bench``: offline and streaming throughput, latency and memory in one run.

Phases, in order (each prints a progress line on stderr):

1. **offline**: ``--tracks`` synthetic songs of ``--seconds`` each, written as
   FLAC, decoded and scored in this process by the same
   :class:`~models.detect.Detector` that ``hookstream detect`` uses; decode and
   scoring are timed apart.
2. **profile**: one longer track through the scorer, whole and in 2 s pieces,
   with its stages (mel, CNN, LSTM attention, window) timed by wrapping the
   scorer's own methods on a private instance: where the time goes.
3. **streaming**: the embedded broker and a real ``hookstream worker``
   subprocess (the shipped ``configs/stream.yaml``); the same songs ingested
   at full speed, timed from the first chunk sent to the last final event
   received. The worker's metrics and the CPU time of worker, broker and this
   process say where the wall time went.
4. **latency**: a second worker (``provisional_min_interval_s: 0``, topics of
   its own); ``--concurrency`` songs of ``--realtime-seconds`` ingested
   concurrently at real-time pace. For each chunk, the time from its
   publication (``SentChunk.sent_at``) to the receipt of the first
   provisional event whose ``seq`` includes it; plus the worker's own
   ``hookstream_chunk_to_provisional_seconds`` histogram.
5. **memory**: on that warm worker, after a quarter as many *closed* tracks
   (the same traffic, no state kept), ``--memory-tracks`` tracks opened with
   the first half of a ``--seconds`` song each (no end chunk), sent in paced
   rounds; the worker's RSS then, minus its idle RSS, per open track; and the
   size of the serialised :class:`~stream_app.tracks.TrackRecord` that its
   table (and the changelog topic) stores per track.
6. **changelog**: the bytes the table's changelog receives per track, per
   audio minute, for 1, 5 and 20 minute tracks (:mod:`stream_app.changelog_size`).

Everything runs in one invocation and is shut down before it returns.
"""

from __future__ import annotations

# Exported lazily (PEP 562): ``hookstream worker`` builds the CLI, whose ``bench`` options
# need only ``bench.config``; the rest imports numpy and the worker harness (0.13 s of a
# restarted worker's start, before it joins its group).
_EXPORTS = {
    "BenchConfig": "config", "bucket_quantile": "figures", "histogram_summary": "figures",
    "parse_metrics": "figures", "match_latencies": "latency", "format_report": "report",
    "run_bench": "run", "synth_track": "songs",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
