"""Soak: many short tracks through one worker; memory, threads and descriptors stay flat.

``HOOKSTREAM_SOAK_TRACKS`` tracks (default 300; 1000 for the figures in
docs/performance.md), one or two chunks each, sent in waves of 100. After the first
wave and at the end: the worker's RSS, threads and open file descriptors; the table
holds only end markers, which expire ``stream.finished_retention_s`` after their track.
"""

import os
import time
import uuid

import numpy as np
import psutil
import pytest

from stream_app.events import encode_chunk
from streaming import SR, Worker, send, worker_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

TRACKS = int(os.environ.get("HOOKSTREAM_SOAK_TRACKS", "300"))
WAVE = 100
RETENTION_S = 20.0


def gauge(m, name, **labels) -> float:
    return m.get((name, frozenset(labels.items())), 0.0)


def wait_finished(w: Worker, n: int, timeout_s: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        m = w.metrics()
        if gauge(m, "hookstream_tracks_finished_total", how="ended") >= n:
            break
        assert time.monotonic() < deadline, (n, w.log_tail())
        time.sleep(0.2)
    # The table gauges are recounted every GAUGE_INTERVAL_S (1 s): a reading taken as the last
    # track ends may predate it (open 0 and no markers yet); read after a full recount.
    time.sleep(1.5)
    m = w.metrics()
    settle = time.monotonic() + 5.0
    while gauge(m, "hookstream_table_records", state="open") > 0 and time.monotonic() < settle:
        time.sleep(0.2)
        m = w.metrics()
    return m


def sample(proc: psutil.Process) -> dict:
    return {"rss_mb": proc.memory_info().rss / 2**20, "threads": proc.num_threads(),
            "fds": proc.num_fds()}


def test_many_short_tracks_keep_the_worker_flat(broker, tiny_ckpt, tmp_path):
    settings, config, app_id = worker_config(broker, tmp_path, finished_retention_s=RETENTION_S)
    w = Worker(settings, config, tiny_ckpt, app_id, tmp_path)
    w.start()
    w.wait_ready()
    proc = psutil.Process(w.proc.pid)
    tag = uuid.uuid4().hex[:6]
    rng = np.random.default_rng(0)
    samples = []
    try:
        for start in range(0, TRACKS, WAVE):
            msgs = []
            for i in range(start, min(start + WAVE, TRACKS)):
                tid = f"soak-{tag}-{i}"
                n = 1 + i % 2
                for k in range(n):
                    x = rng.uniform(-0.5, 0.5, SR // 2).astype(np.float32)
                    msgs.append((tid.encode(), encode_chunk(tid, k, x, sample_rate=SR, end=k == n - 1)))
            send(settings, msgs)
            m = wait_finished(w, min(start + WAVE, TRACKS))
            samples.append(sample(proc) | {"tracks": min(start + WAVE, TRACKS),
                                          "ended": gauge(m, "hookstream_table_records", state="ended"),
                                          "open": gauge(m, "hookstream_table_records", state="open")})
        last_done = time.monotonic()
        # Markers expire RETENTION_S after their track ended (the sweep runs every second).
        deadline = last_done + RETENTION_S + 30
        while gauge(w.metrics(), "hookstream_table_records", state="ended") > 0:
            assert time.monotonic() < deadline, w.log_tail()
            time.sleep(0.5)
        expired_after = time.monotonic() - last_done
        end = sample(proc)
    finally:
        w.stop()
    first, final = samples[0], samples[-1]
    print(f"\nsoak, {TRACKS} tracks: after {first['tracks']}: RSS {first['rss_mb']:.1f} MB, "
          f"{first['threads']} threads, {first['fds']} fds; after {final['tracks']}: "
          f"RSS {final['rss_mb']:.1f} MB, {final['threads']} threads, {final['fds']} fds; "
          f"markers gone {expired_after:.1f} s after the last track (retention {RETENTION_S:.0f} s); "
          f"after expiry: RSS {end['rss_mb']:.1f} MB")
    assert all(s["open"] == 0 for s in samples)  # only end markers between waves
    assert final["ended"] > 0  # not dropped before their time
    assert final["rss_mb"] - first["rss_mb"] < 25, samples
    assert final["threads"] <= first["threads"] + 2 and final["fds"] <= first["fds"] + 5, samples
