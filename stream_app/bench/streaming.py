"""Streaming phase: songs at full speed through the broker and one worker."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from stream_app.bench.config import BenchConfig
from stream_app.bench.figures import delta, sig
from stream_app.bench.worker import WorkerHandle, run_tracks, topic_totals


def streaming_phase(worker: WorkerHandle, songs: list[Path], cfg: BenchConfig, broker_proc, *,
                    say: Callable[[str], None]) -> dict:
    """All songs at full speed; first chunk sent -> last final event received."""
    import psutil

    me = psutil.Process()
    before, cpu0 = worker.metrics(), _cpu(worker, broker_proc, me)
    ids = [f"stream-{i + 1:02d}" for i in range(len(songs))]
    log0 = topic_totals(worker.settings, worker.changelog)
    results, events, sent, acked = run_tracks(worker, songs, ids, cfg, realtime=False)
    t_last = max(t for t, e in events if e["kind"] == "final")
    cpu1, after = _cpu(worker, broker_proc, me), worker.metrics()
    log1 = topic_totals(worker.settings, worker.changelog)
    t_first = min(s.sent_at for s in sent)
    wall = t_last - t_first
    audio = sum(r.audio_s for r in results)
    d = delta(after, before)
    batches = d.get(("hookstream_scorer_batch_seconds_count", ()), 0.0)
    scorer_s = d.get(("hookstream_scorer_batch_seconds_sum", ()), 0.0)
    cpu = {k: sig(cpu1[k] - cpu0[k]) for k in cpu0}
    out = {"tracks": len(songs), "audio_s": sig(audio), "chunks": len(sent), "wall_s": sig(wall),
           "audio_s_per_s": sig(audio / wall),
           "ingest_s": sig(acked - t_first), "ingest_audio_s_per_s": sig(audio / (acked - t_first)),
           "chunk_bytes": sum(s.nbytes for s in sent),
           "changelog_records": log1[0] - log0[0], "changelog_bytes": log1[1] - log0[1],
           "scorer_s": sig(scorer_s), "scorer_share_of_wall": sig(scorer_s / wall),
           "scorer_batches": int(batches),
           "mean_batch_tracks": sig(d.get(("hookstream_scorer_batch_tracks_sum", ()), 0) / batches)
           if batches else None,
           "mean_batch_chunks": sig(d.get(("hookstream_scorer_batch_chunk_events_sum", ()), 0)
                                   / batches) if batches else None,
           "cpu_s": cpu, "cpu_audio_s_per_cpu_s": sig(audio / sum(cpu.values()))}
    say(f"streaming: {audio:.0f} s of audio in {wall:.1f} s: {out['audio_s_per_s']:.0f}x real "
        f"time; scorer busy {scorer_s:.1f} s in {int(batches)} batches; CPU s {cpu}")
    return out


def _cpu(worker: WorkerHandle, broker_proc, me) -> dict[str, float]:
    b, m = broker_proc.cpu_times(), me.cpu_times()
    return {"worker": worker.cpu_s(), "broker": b.user + b.system, "bench": m.user + m.system}
