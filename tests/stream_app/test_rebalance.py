"""Workers leaving and joining while tracks stream (issue 9 bug 2): exactly one final per track.

Timeline (4 partitions, one track per partition, a 15 s idle timeout: longer than C's start):

    A, B up  | A stopped (SIGTERM) | first halves -> B | C joins, takes ~2 partitions from B |
    second halves -> B and C | finals | an idle timeout more: no second final anywhere

B wrote the records of the tracks it started itself (not loaded from the changelog); Faust's
memory store kept those after their partitions moved to C, and B's idle sweep once closed them
again with an incomplete final.
"""

import time
import uuid

import pytest

from models.examples import synth_song
from stream_app.ingest import chunk_events
from stream_app.subscribe import iter_highlights
from streaming import (Worker, assert_equals_detect, highlights, send, spread_over_partitions,
                       worker_config)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def wait_chunks(w: Worker, n: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while w.metrics()[("hookstream_chunks_total", frozenset())] < n:
        assert time.monotonic() < deadline, f"{n} chunks not scored\n{w.log_tail()}"
        time.sleep(0.2)


def test_leave_and_join_give_exactly_one_final_per_track(broker, tiny_ckpt, detector, tmp_path):
    settings, config, app_id = worker_config(broker, tmp_path, idle_timeout_s=15)
    a, b, c = (Worker(settings, config, tiny_ckpt, app_id, tmp_path / name) for name in "abc")
    for w in (a, b, c):
        w.work.mkdir()
    try:
        a.start()
        b.start()
        b.wait_ready()
        a.stop()
        ids = spread_over_partitions(f"rb-{uuid.uuid4().hex[:6]}", settings.partitions)
        signals = {tid: synth_song(seed=20 + i, bar_s=0.5)[0] for i, tid in enumerate(ids)}  # 26 s
        chunks = {tid: [(tid.encode(), v) for v in chunk_events(tid, x, chunk_seconds=2.0)]
                  for tid, x in signals.items()}
        send(settings, [m for tid in ids for m in chunks[tid][:6]])
        wait_chunks(b, 6 * len(ids))
        c.start()
        c.wait_ready()
        send(settings, [m for tid in ids for m in chunks[tid][6:]])
        highlights(c, ids)
        time.sleep(settings.stream.idle_timeout_s + 5)  # B's sweep would fire in here
        got = list(iter_highlights(settings, from_beginning=True, track_ids=ids, timeout_s=5))
    finally:
        for w in (a, b, c):
            w.stop()
    for tid, x in signals.items():
        finals = [e for e in got if e["track_id"] == tid and e["kind"] == "final"]
        assert len(finals) == 1, (tid, finals, b.log_tail(), c.log_tail())
        assert finals[0]["incomplete"] is False, (finals, [(e["track_id"][-2:], e["kind"], e["seq"]) for e in got], b.log_tail(6000), c.log_tail(6000))
        assert_equals_detect(finals[0], detector.detect_samples(tid, x))
