"""Fault injection: SIGKILL workers at seeded random moments while tracks stream.

Checks: every track gets its final, equal to ``hookstream detect`` on the same audio, none
incomplete, repeated finals (re-sent after a restart) with the same ``event_id``; prints
recovery times (kill -> the restarted worker scores its next chunk; kill -> ready).

The workers run with ``worker.session_timeout_s`` ``HOOKSTREAM_FAULT_SESSION_S`` (default
3 s: the embedded broker's group join takes about half of it, and a killed worker's
partitions move once it expires; 6 s is the shipped value, Kafka's smallest by default).

Size: ``HOOKSTREAM_FAULT_KILLS`` kills (default 3, CI); e.g. ``HOOKSTREAM_FAULT_KILLS=20
python -m pytest -m faults -s`` for the larger run. Every worker restart starts with an empty
local state (the memory store): the table is rebuilt from its changelog each time.
"""

import os
import random
import threading
import time
import uuid

import numpy as np
import pytest

from models.examples import synth_song
from stream_app.ingest import chunk_events
from stream_app.subscribe import iter_highlights
from streaming import Worker, assert_equals_detect, producer, worker_config

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(1800)]

KILLS = int(os.environ.get("HOOKSTREAM_FAULT_KILLS", "3"))
SEED = int(os.environ.get("HOOKSTREAM_FAULT_SEED", "0"))
SESSION = {"session_timeout_s": float(os.environ.get("HOOKSTREAM_FAULT_SESSION_S", "3"))}


class Stream(threading.Thread):
    """Streams tracks two at a time, one chunk per track every ``pace_s``, until ``stop`` is set."""

    def __init__(self, settings, tag: str, *, pace_s: float = 0.4, min_tracks: int = 4):
        super().__init__(daemon=True)
        self.settings, self.tag, self.pace_s, self.min_tracks = settings, tag, pace_s, min_tracks
        self.stop = threading.Event()
        self.signals: dict[str, np.ndarray] = {}
        self.error: BaseException | None = None

    def run(self):
        try:
            p = producer(self.settings)
            wave = 0
            while not self.stop.is_set() or len(self.signals) < self.min_tracks:
                tids = [f"fault-{self.tag}-{wave}-{i}" for i in range(2)]
                streams = []
                for i, tid in enumerate(tids):
                    x = synth_song(seed=100 + 2 * wave + i, bar_s=0.5)[0]  # 26 s: 13 chunks
                    self.signals[tid] = x
                    streams.append([(tid.encode(), v) for v in chunk_events(tid, x, chunk_seconds=2.0)])
                for round_ in zip(*streams):
                    for k, v in round_:
                        p.send(self.settings.topics.chunks, key=k, value=v)
                    p.flush()
                    time.sleep(self.pace_s)
                wave += 1
            p.close()
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            self.error = exc


def chunks_scored(w: Worker) -> float:
    try:
        return w.metrics()[("hookstream_chunks_total", frozenset())]
    except OSError:
        return 0.0


def quantiles(xs):
    q = np.quantile(xs, [0.5, 0.9, 1.0])
    return f"p50 {q[0]:.1f} s, p90 {q[1]:.1f} s, max {q[2]:.1f} s (n={len(xs)})"


def test_sigkill_at_random_moments_loses_nothing(broker, tiny_ckpt, detector, tmp_path):
    rng = random.Random(SEED)
    settings, config, app_id = worker_config(broker, tmp_path, idle_timeout_s=60, worker=SESSION)
    w = Worker(settings, config, tiny_ckpt, app_id, tmp_path)
    w.start()
    w.wait_ready()
    stream = Stream(settings, uuid.uuid4().hex[:6])
    stream.start()
    recovery, ready = [], []
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.5, 4.0))
            w.kill()
            killed = time.monotonic()
            w.start()
            w.wait_ready()
            ready.append(time.monotonic() - killed)
            # the killed worker's member left the group at the restart, not at its session's end
            assert "removed the member" in w.log.read_text(errors="replace"), w.log_tail()
            deadline = time.monotonic() + 120
            while chunks_scored(w) == 0:  # the chunks that waited in the topic
                assert time.monotonic() < deadline, w.log_tail()
                time.sleep(0.05)
            recovery.append(time.monotonic() - killed)
        stream.stop.set()
        stream.join(300)
        assert stream.error is None, stream.error
        ids = list(stream.signals)
        got, deadline = [], time.monotonic() + 180
        for e in iter_highlights(settings, from_beginning=True, track_ids=ids, timeout_s=60):
            got.append(e)
            if set(ids) <= {x["track_id"] for x in got if x["kind"] == "final"}:
                break
            assert time.monotonic() < deadline
    finally:
        stream.stop.set()
        w.stop()
    print(f"\n{KILLS} SIGKILLs, {len(ids)} tracks, session {SESSION['session_timeout_s']:g} s: recovery "
          f"(kill -> next chunk scored) {quantiles(recovery)}; kill -> /readyz 200 {quantiles(ready)}")
    for tid in ids:
        finals = [e for e in got if e["track_id"] == tid and e["kind"] == "final"]
        assert finals, (tid, w.log_tail())
        assert len({e["event_id"] for e in finals}) == 1, finals  # a re-sent final is the same event
        assert finals[0]["incomplete"] is False, (finals[0], w.log_lines(tid))
        assert_equals_detect(finals[0], detector.detect_samples(tid, stream.signals[tid]))


def assigned(w: Worker) -> int:
    """Partitions the worker owns, from its /readyz (0 while not ready)."""
    status, text = w.get("/readyz")
    return int(text.split("ok: ")[1].split()[0]) if status == 200 else 0


def test_two_workers_one_killed_the_survivor_finishes(broker, tiny_ckpt, detector, tmp_path):
    settings, config, app_id = worker_config(broker, tmp_path, idle_timeout_s=60, worker=SESSION)
    a, b = (Worker(settings, config, tiny_ckpt, app_id, tmp_path / n) for n in "ab")
    for w in (a, b):
        w.work.mkdir()
        w.start()
    for w in (a, b):
        w.wait_ready()
    stream = Stream(settings, uuid.uuid4().hex[:6])
    stream.start()
    try:
        time.sleep(3.0)
        deadline = time.monotonic() + 60
        while assigned(b) in (0, settings.partitions):  # wait for the split (a rebalance may run)
            assert time.monotonic() < deadline, b.log_tail()
            time.sleep(0.1)
        a.kill()
        killed = time.monotonic()
        while assigned(b) != settings.partitions:  # B takes A's partitions over (warm: no load)
            assert time.monotonic() - killed < 60, b.log_tail()
            time.sleep(0.05)
        takeover = time.monotonic() - killed
        stream.stop.set()
        stream.join(300)
        assert stream.error is None, stream.error
        ids = list(stream.signals)
        got = []
        for e in iter_highlights(settings, from_beginning=True, track_ids=ids, timeout_s=90):
            got.append(e)
            if set(ids) <= {x["track_id"] for x in got if x["kind"] == "final"}:
                break
        took = time.monotonic() - killed
    finally:
        stream.stop.set()
        for w in (a, b):
            w.stop()
    print(f"\nsession {SESSION['session_timeout_s']:g} s: the survivor owned every partition "
          f"{takeover:.1f} s after the kill and finished {len(ids)} tracks {took:.1f} s after it")
    for tid in ids:
        finals = [e for e in got if e["track_id"] == tid and e["kind"] == "final"]
        assert finals and len({e["event_id"] for e in finals}) == 1, (tid, finals, b.log_tail())
        assert finals[0]["incomplete"] is False, (finals[0], a.log_lines(tid), b.log_lines(tid))
        assert_equals_detect(finals[0], detector.detect_samples(tid, stream.signals[tid]))
