"""Helpers of the streaming integration tests: a worker subprocess, producing, reading back.

Imported by the test modules (pytest puts this directory on ``sys.path``).
"""

import http.client
import json
import os
import signal
import struct
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import soundfile as sf
import yaml
from prometheus_client.parser import text_string_to_metric_families

from models.config import CONFIG_DIR
from models.examples import synth_song
from stream_app.broker import free_port
from stream_app.demo import start_worker, stop_worker, wait_metrics
from stream_app.events import decode_dead_letter
from stream_app.settings import load_settings
from stream_app.subscribe import iter_highlights

SR = 22050
REPO = Path(__file__).resolve().parents[2]


def raw_chunk(track_id: str, payload: bytes = b"", **header) -> bytes:
    """A chunk event value built by hand, bypassing ``encode_chunk``'s checks."""
    h = dict(schema=1, track_id=track_id, seq=0, sample_rate=SR, channels=1, encoding="f32le",
             end=False)
    h.update(header)
    head = json.dumps(h).encode()
    return struct.pack(">I", len(head)) + head + payload


def worker_config(broker, work: Path, *, name: str = "stream.yaml", worker: dict | None = None,
                  **stream):
    """``(settings, config path, app id)``: topics and app id of their own, a 3 s idle timeout.

    ``stream`` and ``worker`` override keys of those sections of configs/stream.yaml.
    """
    tag = uuid.uuid4().hex[:8]
    cfg = yaml.safe_load((CONFIG_DIR / "stream.yaml").read_text())
    cfg["topics"] = {"chunks": f"chunks-{tag}", "highlights": f"highlights-{tag}",
                     "dead_letter": f"chunks-{tag}.dlq"}
    cfg["kafka"]["bootstrap"] = broker.bootstrap
    # Segments every 2 chunks: restarts and rebalances recover tracks from head + segments.
    cfg["stream"].update(dict(idle_timeout_s=3, provisional_min_interval_s=0,
                              state_segment_chunks=2), **stream)
    cfg["worker"].update(worker or {})
    config = work / name
    config.write_text(yaml.safe_dump(cfg))
    return load_settings(config), config, f"hookstream-test-{tag}"


# What a probe of a loaded worker may meet instead of an answer: a timeout, a refused
# or reset connection (URLError, ConnectionResetError: all OSError), or a connection
# closed before the status line (http.client.RemoteDisconnected, an HTTPException).
PROBE_ERRORS = (OSError, http.client.HTTPException)


class Worker:
    """The module's worker process (``kill`` then ``start`` replaces it, same app id)."""

    def __init__(self, settings, config: Path, ckpt: Path, app_id: str, work: Path):
        self.settings, self.config, self.ckpt, self.app_id, self.work = settings, config, ckpt, app_id, work
        self.proc = None
        self.starts = 0

    def start(self, config: Path | None = None) -> None:
        self.config = config or self.config
        self.starts += 1
        self.port = free_port()
        self.log = self.work / f"worker-{self.starts}.log"
        self.proc = start_worker(self.settings, metrics_port=self.port, log_path=self.log, extra=[
            "--config", str(self.config), "--checkpoint", str(self.ckpt), "--app-id", self.app_id])
        wait_metrics(self.port, self.proc, self.log)

    def get(self, path: str) -> tuple[int, str]:
        """``(status, body)`` of ``GET path`` on the metrics port."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def wait_ready(self, timeout_s: float = 90.0) -> float:
        """Seconds until ``/readyz`` answers 200 (group joined, table recovered)."""
        started = time.monotonic()
        while self.probe("/readyz") != 200:
            assert self.proc.poll() is None, f"worker exited\n{self.log_tail()}"
            assert time.monotonic() - started < timeout_s, f"not ready\n{self.log_tail()}"
            time.sleep(0.2)
        return time.monotonic() - started

    def probe(self, path: str) -> int:
        """Status of ``GET path``; 0 when it timed out (a loaded machine, the model loading)."""
        try:
            return self.get(path)[0]
        except PROBE_ERRORS:
            return 0

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            stop_worker(self.proc)

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def log_lines(self, needle: str) -> str:
        """The lines of every start's log that contain ``needle`` (e.g. a track id)."""
        return "\n".join(line for log in sorted(self.work.glob("worker-*.log"))
                         for line in log.read_text(errors="replace").splitlines() if needle in line)

    def metrics(self) -> dict:
        """``{(sample name, frozenset(labels)): value}`` from /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, frozenset(s.labels.items()))] = s.value
        out["__families__"] = {f.name for f in text_string_to_metric_families(text)}
        return out


def song(tmp_path: Path, name: str, seed: int, *, bar_s: float = 0.75, fmt: str = "wav") -> Path:
    """A synthetic song of 52 bars (39 s at the default bar_s) written as wav (float) or flac."""
    x, _ = synth_song(seed=seed, bar_s=bar_s)
    path = tmp_path / f"{name}.{fmt}"
    sf.write(str(path), x, SR, **({"subtype": "FLOAT"} if fmt == "wav" else {}))
    return path


def producer(settings):
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=settings.kafka.bootstrap, acks="all", linger_ms=5,
                         max_request_size=2_000_000, enable_idempotence=False)


def send(settings, messages) -> list[tuple[int, int]]:
    """Produce ``(key, value)`` pairs in order to the chunk topic (default partitioner).

    Returns each message's ``(partition, offset)``.
    """
    p = producer(settings)
    try:
        futures = [p.send(settings.topics.chunks, key=k, value=v) for k, v in messages]
        p.flush()
        return [(md.partition, md.offset) for md in (f.get(timeout=30) for f in futures)]
    finally:
        p.close()


def highlights(worker, track_ids, *, timeout_s=60.0, until=None) -> list[dict]:
    """Highlight events of ``track_ids`` until ``until(events)``, by default: each has a final."""
    want = set(track_ids)
    until = until or (lambda got: want <= {e["track_id"] for e in got if e["kind"] == "final"})
    got, deadline = [], time.monotonic() + timeout_s
    for e in iter_highlights(worker.settings, from_beginning=True, track_ids=track_ids,
                             timeout_s=timeout_s):
        got.append(e)
        if until(got) or time.monotonic() > deadline:
            break
    assert until(got), (f"{sorted(want)}: not done in {timeout_s:.0f} s; got "
                        f"{[(e['track_id'], e['kind'], e['seq']) for e in got]}\n{worker.log_tail()}")
    return got


def final_of(events, tid) -> dict:
    finals = [e for e in events if e["track_id"] == tid and e["kind"] == "final"]
    assert len(finals) == 1, finals
    return finals[0]


def dead_letters(worker, expect: int, *, until=None, timeout_s: float = 60.0) -> list[dict]:
    """Dead letters on the module's topic, in partition/offset order, once ``until`` holds."""
    from kafka import KafkaConsumer, TopicPartition

    topic = worker.settings.topics.dead_letter
    c = KafkaConsumer(bootstrap_servers=worker.settings.kafka.bootstrap, group_id=None,
                      enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out, deadline = [], time.monotonic() + timeout_s
        while not (until or (lambda ds: len(ds) >= expect))(out):
            assert time.monotonic() < deadline, (f"dead letters: {len(out)} after {timeout_s:.0f} s",
                                                 worker.log_tail())
            for records in c.poll(200).values():
                out += [decode_dead_letter(r.value) for r in records]
        return sorted(out, key=lambda d: (d["partition"], d["offset"]))
    finally:
        c.close()


def assert_equals_detect(final: dict, want) -> None:
    assert (final["start_s"], final["end_s"]) == (want.highlight.start_s, want.highlight.end_s)
    assert final["score"] == pytest.approx(want.highlight.score, abs=1e-4)
    assert final["audio_s"] == pytest.approx(want.scores.duration_s, abs=1e-3)


def partition_of(track_id: str, partitions: int) -> int:
    """The partition of a key under Kafka's default (murmur2) partitioner."""
    from kafka.partitioner.default import murmur2

    return (murmur2(track_id.encode()) & 0x7FFFFFFF) % partitions


def spread_over_partitions(prefix: str, partitions: int) -> list[str]:
    """One track id per partition under Kafka's default (murmur2) key partitioner."""
    chosen = {}
    i = 0
    while len(chosen) < partitions:
        tid = f"{prefix}-{i}"
        chosen.setdefault(partition_of(tid, partitions), tid)
        i += 1
    return [chosen[p] for p in range(partitions)]


