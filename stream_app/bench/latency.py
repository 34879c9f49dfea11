"""Latency phase: tracks in real time; chunk published -> provisional event received."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from stream_app.bench.config import BenchConfig
from stream_app.bench.figures import delta, histogram_summary, percentiles, sig
from stream_app.bench.worker import WorkerHandle, run_tracks, topic_totals


def latency_phase(worker: WorkerHandle, paths: list[Path], cfg: BenchConfig, *,
                  say: Callable[[str], None]) -> dict:
    """K tracks in real time, concurrently: chunk published -> provisional event received."""
    before = worker.metrics()
    ids = [f"rt-{i + 1:02d}" for i in range(len(paths))]
    say(f"latency: {len(paths)} tracks of {cfg.realtime_seconds:g} s in real time")
    log0 = topic_totals(worker.settings, worker.changelog)
    _, events, sent, _ = run_tracks(worker, paths, ids, cfg, realtime=True)
    log1 = topic_totals(worker.settings, worker.changelog)
    after = worker.metrics()
    m = match_latencies(sent, events)
    hist = histogram_summary(delta(after, before), "hookstream_chunk_to_provisional_seconds")
    out = {"tracks": len(paths), "track_s": sig(cfg.realtime_seconds), "chunks": len(sent),
           "chunk_bytes": sum(s.nbytes for s in sent),
           "provisional_events": sum(1 for _, e in events if e["kind"] == "provisional"),
           **m, "worker_histogram": hist,
           "changelog_records": log1[0] - log0[0], "changelog_bytes": log1[1] - log0[1]}
    say(f"latency: {m['matched']} of {len(sent)} chunks matched; p50 {m['p50_s']} s, "
        f"p95 {m['p95_s']} s, p99 {m['p99_s']} s; worker histogram p50 {hist['p50_s']} s")
    return out


def match_latencies(sent: list, events: list[tuple[float, dict]]) -> dict:
    """Per chunk: first provisional event of its track (in receipt order) with ``seq >= chunk seq``.

    ``direct`` counts chunks whose event has exactly their seq (the chunk
    itself led to the event); the others waited for a later chunk to change
    the span, or for the track's first complete 3 s scorer chunk. For direct
    matches the event's ``emitted_at`` (worker clock, same host) splits the
    latency into ``in`` (published -> event made: broker, worker consumer,
    batching, scoring) and ``out`` (event made -> received: worker producer,
    broker, subscriber).
    """
    by_track: dict[str, list[tuple[float, int, float]]] = {}
    for t, e in events:
        if e["kind"] == "provisional":
            made = _unix(e["emitted_at"])
            by_track.setdefault(e["track_id"], []).append((t, int(e["seq"]), made))
    lat, direct, lat_in, lat_out = [], [], [], []
    for s in sent:
        for t, seq, made in by_track.get(s.track_id, ()):
            if seq >= s.seq:
                lat.append(t - s.sent_at)
                if seq == s.seq:
                    direct.append(t - s.sent_at)
                    lat_in.append(made - s.sent_at)
                    lat_out.append(t - made)
                break
    p, dp = percentiles(lat), percentiles(direct)
    return {"matched": len(lat), "p50_s": p[0], "p95_s": p[1], "p99_s": p[2],
            "max_s": sig(max(lat)) if lat else None,
            "direct": len(direct), "direct_p50_s": dp[0], "direct_p95_s": dp[1],
            "direct_p99_s": dp[2],
            "direct_in_p50_s": percentiles(lat_in)[0], "direct_in_p95_s": percentiles(lat_in)[1],
            "direct_out_p50_s": percentiles(lat_out)[0],
            "direct_out_p95_s": percentiles(lat_out)[1]}


def _unix(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
