"""Memory phase: worker RSS per open track and the serialised record size."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from models.errors import HookstreamError
from stream_app.bench.config import ROUND_EVENTS, BenchConfig
from stream_app.bench.figures import sig
from stream_app.bench.worker import WorkerHandle


def memory_phase(worker: WorkerHandle, songs: list[Path], cfg: BenchConfig, detector, *,
                 say: Callable[[str], None]) -> dict:
    """RSS per open track, and the serialised record size, on a warm worker.

    Steps, each with the first half of a song per track, sent round-robin
    (see :func:`_send_tracks`): ``memory_tracks / 4`` tracks sent *with* an
    end chunk (closed once scored: the same kind of traffic, no state kept),
    then idle RSS; then ``memory_tracks`` tracks left open, in
    two groups, RSS after each. ``rss_per_track_kb`` = (RSS with all open -
    idle RSS) / tracks; ``rss_marginal_kb`` = growth over the second group /
    its tracks; ``rss_traffic_kb`` = growth over the closed tracks / their
    count (allocator retention from traffic alone).
    """
    from models.audio import decode
    from stream_app.ingest import check_chunk_seconds
    from stream_app.changelog_size import stored_bytes
    from stream_app.tracks import TrackRecord

    n_frames = check_chunk_seconds(cfg.chunk_seconds)
    decoded = [decode(p) for p in songs]
    half = max(1, math.ceil(len(decoded[0]) / n_frames) // 2)
    m = cfg.memory_tracks
    closed, first = max(1, m // 4), m // 2
    say(f"memory: {closed} closed tracks, then {m} open tracks, "
        f"{half * cfg.chunk_seconds:g} s each")
    time.sleep(1.0)
    before = _steady_rss(worker)
    _send_tracks(worker, decoded, [f"memc-{i + 1:03d}" for i in range(closed)], half, cfg,
                 close=True)
    idle = _steady_rss(worker)
    rss = {}
    for lo, hi in ((0, first), (first, m)):
        if hi > lo:
            _send_tracks(worker, decoded, [f"mem-{i + 1:03d}" for i in range(lo, hi)], half, cfg)
            rss[hi] = _steady_rss(worker)
    opened = rss[m]
    # The record the worker's table holds for such a track: same audio, same scorer.
    scorer = detector.scorer
    state = scorer.step([(scorer.init_state("mem-001"), decoded[0][: half * n_frames])])[0]
    record = TrackRecord("mem-001", next_seq=half, last_seen=time.time(), state=state)
    full = scorer.step([(scorer.init_state("full"), decoded[0][: len(decoded[0]) - n_frames])])[0]
    out = {"tracks": m, "open_audio_s": sig(half * cfg.chunk_seconds),
           "rss_before_mb": sig(before / 2**20), "rss_idle_mb": sig(idle / 2**20),
           "rss_open_mb": sig(opened / 2**20),
           "rss_per_track_kb": sig((opened - idle) / m / 1024),
           "rss_marginal_kb": sig((opened - rss[first]) / (m - first) / 1024) if first else None,
           "rss_traffic_kb": sig((idle - before) / closed / 1024),
           "record_bytes": stored_bytes(record, context_chunks=scorer.cfg.context_chunks),
           "record_bytes_full_track": stored_bytes(TrackRecord("full", state=full),
                                                   context_chunks=scorer.cfg.context_chunks),
           "full_track_s": sig(cfg.seconds - cfg.chunk_seconds)}
    say(f"memory: RSS idle {idle / 2**20:.0f} MB, {opened / 2**20:.0f} MB with {m} open tracks: "
        f"{out['rss_per_track_kb']:.0f} KB per track ({out['rss_marginal_kb']} KB marginal, "
        f"{out['rss_traffic_kb']} KB per closed track); record {out['record_bytes']:,} B")
    return out


def _send_tracks(worker: WorkerHandle, decoded: list[np.ndarray], track_ids: list[str], half: int,
                 cfg: BenchConfig, *, close: bool = False) -> None:
    """Send the first ``half`` chunks of a song per track (the last one ``end`` if ``close``).

    In rounds of about ``ROUND_EVENTS`` chunk events (a few chunks of every
    track), each round sent once the worker has accepted the previous one
    (``hookstream_chunks_total``): many tracks streaming side by side, without
    a backlog. (At full speed Faust
    buffers thousands of 176 KB chunk events, and the allocator keeps that
    memory after they are scored, which would swamp the per-track figure.)
    Returns once every track is open (``hookstream_active_tracks``) or closed
    (``hookstream_tracks_finished_total``).
    """
    from stream_app.ingest import chunk_events, make_producer

    settings = worker.settings
    n_frames = round(cfg.chunk_seconds * 22_050)
    chunks_key = ("hookstream_chunks_total", ())
    done_key = (("hookstream_tracks_finished_total", (("how", "ended"),)) if close
                else ("hookstream_active_tracks", ()))
    per_round = max(1, ROUND_EVENTS // len(track_ids))
    before = worker.metrics()
    streams = []
    for i, tid in enumerate(track_ids):
        song = decoded[i % len(decoded)]
        # closed: the half song as a whole track (its last chunk is the end chunk);
        # open: the first half of the whole song's chunks, so no end chunk
        streams.append(chunk_events(tid, song[: half * n_frames] if close else song,
                                    chunk_seconds=cfg.chunk_seconds))
    producer = make_producer(settings)
    deadline = time.monotonic() + cfg.timeout_s
    try:
        sent = 0
        while sent < half:
            n = min(per_round, half - sent)
            for tid, values in zip(track_ids, streams):
                for _ in range(n):
                    producer.send(settings.topics.chunks, key=tid.encode(), value=next(values))
            producer.flush()
            sent += n
            _wait_metric(worker, chunks_key, before.get(chunks_key, 0.0) + sent * len(track_ids),
                         deadline, what=f"{sent} of {half} chunks per track")
    finally:
        producer.close(timeout=10)
    _wait_metric(worker, done_key, before.get(done_key, 0.0) + len(track_ids), deadline,
                 what=f"{len(track_ids)} tracks {'closed' if close else 'open'}")
    time.sleep(1.0)  # the last batch's table writes and changelog sends settle


def _wait_metric(worker: WorkerHandle, key: tuple, target: float, deadline: float, *, what: str) -> None:
    while True:
        value = worker.metrics().get(key, 0.0)
        if value >= target:
            return
        worker.check_alive()
        if time.monotonic() > deadline:
            raise HookstreamError(f"memory phase: no {what} in time ({key[0]} = {value:g}, "
                                  f"waiting for {target:g}); worker log {worker.log_path}")
        time.sleep(0.05)


def _steady_rss(worker: WorkerHandle, samples: int = 5) -> int:
    values = []
    for _ in range(samples):
        values.append(worker.rss())
        time.sleep(0.2)
    return int(np.median(values))
