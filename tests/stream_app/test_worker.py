"""The streaming worker end to end: real broker (session fixture), real worker subprocess.

One worker process serves the whole module (a tiny untrained checkpoint, a
3 s idle timeout, no provisional rate limit, topics and app id of its own);
every test uses its own track ids. The restart test replaces that worker with
a new one of the same app id.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from itertools import zip_longest
from pathlib import Path

import numpy as np
import psutil
import pytest
import soundfile as sf
import yaml
from prometheus_client.parser import text_string_to_metric_families

from models import checkpoint, nets
from models.config import CONFIG_DIR, DetectConfig, load_yaml
from models.detect import Detector
from models.examples import synth_song
from stream_app.broker import free_port
from stream_app.demo import start_worker, stop_worker, wait_metrics
from stream_app.events import dead_letter_value, decode_dead_letter, encode_chunk
from stream_app.ingest import chunk_events, ingest_files
from stream_app.settings import load_settings
from stream_app.subscribe import iter_highlights

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SR = 22050
REPO = Path(__file__).resolve().parents[2]
LABELS = ("a", "b", "c", "d", "e")


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

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            stop_worker(self.proc)

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]

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


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    return checkpoint.save(checkpoint.untrained(nets.tiny(), LABELS, seed=0), path)


@pytest.fixture(scope="module")
def detector(tiny_ckpt) -> Detector:
    """What ``hookstream detect --checkpoint TINY`` runs (configs/detect.yaml)."""
    return Detector(load_yaml(DetectConfig, CONFIG_DIR / "detect.yaml"), checkpoint.load(tiny_ckpt))


@pytest.fixture(scope="module")
def worker(broker, tiny_ckpt, tmp_path_factory):
    work = tmp_path_factory.mktemp("worker")
    tag = uuid.uuid4().hex[:8]
    cfg = yaml.safe_load((CONFIG_DIR / "stream.yaml").read_text())
    cfg["topics"] = {"chunks": f"chunks-{tag}", "highlights": f"highlights-{tag}",
                     "dead_letter": f"chunks-{tag}.dlq"}
    cfg["kafka"]["bootstrap"] = broker.bootstrap
    cfg["stream"].update(idle_timeout_s=3, provisional_min_interval_s=0)
    config = work / "stream.yaml"
    config.write_text(yaml.safe_dump(cfg))
    w = Worker(load_settings(config), config, tiny_ckpt, f"hookstream-test-{tag}", work)
    w.start()
    yield w
    w.stop()


# --- helpers ----------------------------------------------------------------------------------

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


def send(settings, messages) -> None:
    """Produce ``(key, value)`` pairs in order to the chunk topic (default partitioner)."""
    p = producer(settings)
    try:
        futures = [p.send(settings.topics.chunks, key=k, value=v) for k, v in messages]
        p.flush()
        for f in futures:
            f.get(timeout=30)
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


# --- tests ------------------------------------------------------------------------------------

def test_ingest_worker_subscribe_final_equals_detect(worker, detector, tmp_path):
    tag = uuid.uuid4().hex[:6]
    paths = [song(tmp_path, f"a-{tag}", 1, fmt="wav"), song(tmp_path, f"b-{tag}", 2, fmt="flac")]
    results = ingest_files(paths, settings=worker.settings, chunk_seconds=2.0)
    assert all(r.ok for r in results) and [r.chunks for r in results] == [20, 20]
    ids = [r.track_id for r in results]
    got = highlights(worker, ids)
    for path, tid in zip(paths, ids):
        final = final_of(got, tid)
        assert final["incomplete"] is False and final["seq"] == 19
        assert final["model"] == "untrained-huang-seed0"
        assert_equals_detect(final, detector.detect_file(path))
        provisional = [e for e in got if e["track_id"] == tid and e["kind"] == "provisional"]
        # Provisionals only if the worker saw the track before its end (batches vary).
        assert all(e["seq"] < 19 and "incomplete" not in e for e in provisional)


def test_interleaved_tracks_across_partitions(worker, detector):
    """|a0 b0 c0 d0 a1 b1 ...|: four tracks, one per partition, chunks round-robin."""
    ids = spread_over_partitions(f"mix-{uuid.uuid4().hex[:6]}", worker.settings.partitions)
    signals = {tid: synth_song(seed=10 + i, bar_s=0.5)[0] for i, tid in enumerate(ids)}
    streams = [[(tid.encode(), v) for v in chunk_events(tid, x, chunk_seconds=2.0)]
               for tid, x in signals.items()]
    send(worker.settings, [m for round_ in zip_longest(*streams) for m in round_ if m])
    got = highlights(worker, ids)
    for tid, x in signals.items():
        final = final_of(got, tid)
        assert final["incomplete"] is False
        assert_equals_detect(final, detector.detect_samples(tid, x))


def test_bad_input_is_dead_lettered_and_worker_keeps_serving(worker, detector, bad_chunks):
    """Every malformed kind, then |0 2 1 6e 7| (gap, late, gap, after_end), then a good track."""
    tag = uuid.uuid4().hex[:6]
    seq_tid, good_tid = f"seq-{tag}", f"good-{tag}"
    x = synth_song(seed=3, bar_s=0.25)[0]  # 13 s: chunks 0-6, 6 the end
    chunks = list(chunk_events(seq_tid, x, chunk_seconds=2.0))
    seq_msgs = [(seq_tid.encode(), chunks[k]) for k in (0, 2, 1, 6)]
    seq_msgs.append((seq_tid.encode(), encode_chunk(seq_tid, 7, np.zeros(SR), sample_rate=SR)))
    good = [(good_tid.encode(), v) for v in chunk_events(good_tid, x, chunk_seconds=2.0)]
    send(worker.settings, [(k, v) for _, k, v in bad_chunks] + seq_msgs + good)

    got = highlights(worker, [seq_tid, good_tid])
    assert_equals_detect(final_of(got, good_tid), detector.detect_samples(good_tid, x))
    seq_final = final_of(got, seq_tid)
    assert seq_final["incomplete"] is True and seq_final["seq"] == 6
    scored = np.concatenate([x[k * 2 * SR:(k + 1) * 2 * SR] for k in (0, 2, 6)])
    assert_equals_detect(seq_final, detector.detect_samples(seq_tid, scored))

    bad_keys = {(r, None if k is None else k.decode()) for r, k, _ in bad_chunks}
    dls = dead_letters(worker, len(bad_chunks) + 4,
                       until=lambda ds: sum(d["key"] == seq_tid for d in ds) == 4
                       and bad_keys <= {(d["reason"], d["key"]) for d in ds})
    for reason, key, value in bad_chunks:
        [d] = [d for d in dls if (d["reason"], d["key"]) == (reason, None if key is None else key.decode())]
        assert d["topic"] == worker.settings.topics.chunks and d["value_bytes"] == len(value)
        assert dead_letter_value(d) == (None if reason == "oversize" else value)
    assert [d["reason"] for d in dls if d["key"] == seq_tid] == ["gap", "late", "gap", "after_end"]


def test_idle_track_gets_an_incomplete_final(worker, detector):
    """|0 1 2 3| and then nothing: after idle_timeout_s (3 s) the track is closed."""
    tid = f"idle-{uuid.uuid4().hex[:6]}"
    x = synth_song(seed=7, bar_s=0.25)[0][:8 * SR]
    send(worker.settings, [(tid.encode(), v) for v in chunk_events(tid, x, chunk_seconds=2.0)][:3]
         + [(tid.encode(), encode_chunk(tid, 3, x[6 * SR:], sample_rate=SR))])
    final = final_of(highlights(worker, [tid], timeout_s=30), tid)
    assert final["incomplete"] is True and final["seq"] == 3
    assert_equals_detect(final, detector.detect_samples(tid, x))


def test_metrics_match_what_was_sent(worker):
    tag = uuid.uuid4().hex[:6]
    tid = f"metrics-{tag}"
    x = synth_song(seed=8, bar_s=0.25)[0]  # 13 s: 7 chunks
    chunks = [(tid.encode(), v) for v in chunk_events(tid, x, chunk_seconds=2.0)]
    bad = [(f"junk1-{tag}".encode(), b"\x00\x00"), (f"junk2-{tag}".encode(), b"nope"),
           (f"other-{tag}".encode(), chunks[0][1])]  # 2 undecodable, 1 key_mismatch
    before = worker.metrics()
    send(worker.settings, chunks[:3] + [chunks[1]] + bad + chunks[3:])  # chunk 1 twice: a duplicate
    got = highlights(worker, [tid])
    n_provisional = sum(e["kind"] == "provisional" for e in got)

    def delta(m, name, **labels):
        key = (name, frozenset(labels.items()))
        return m.get(key, 0.0) - before.get(key, 0.0)

    expected = {("hookstream_chunks_total", ()): 7,
                ("hookstream_rejected_inputs_total", (("reason", "undecodable"),)): 2,
                ("hookstream_rejected_inputs_total", (("reason", "key_mismatch"),)): 1,
                ("hookstream_rejected_inputs_total", (("reason", "duplicate"),)): 1,
                ("hookstream_highlight_events_total", (("kind", "final"),)): 1,
                ("hookstream_highlight_events_total", (("kind", "provisional"),)): n_provisional,
                ("hookstream_chunk_to_provisional_seconds_count", ()): n_provisional}
    deadline = time.monotonic() + 10
    while True:  # counters of the last batch may land a moment after its events
        m = worker.metrics()
        seen = {k: delta(m, k[0], **dict(k[1])) for k in expected}
        if seen == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert seen == expected
    assert delta(m, "hookstream_audio_seconds_total") == pytest.approx(len(x) / SR, abs=1e-3)
    assert delta(m, "hookstream_tracks_finished_total", how="ended") == 1
    assert delta(m, "hookstream_scorer_batch_tracks_count") >= 1
    assert delta(m, "hookstream_scorer_batch_seconds_count") == delta(m, "hookstream_scorer_batch_tracks_count")
    assert m[("hookstream_active_tracks", frozenset())] == 0
    info = [dict(k[1]) for k in m if k != "__families__" and k[0] == "hookstream_model_info"]
    assert info == [{"name": "untrained-huang-seed0", "arch": "huang", "trained": "false", "device": "cpu"}]
    assert {"hookstream_chunks", "hookstream_audio_seconds", "hookstream_highlight_events",
            "hookstream_rejected_inputs", "hookstream_active_tracks", "hookstream_scorer_batch_tracks",
            "hookstream_scorer_batch_seconds", "hookstream_chunk_to_provisional_seconds",
            "hookstream_model_info", "hookstream_build_info", "process_resident_memory_bytes",
            "python_info"} <= m["__families__"]
    build = [dict(k[1]) for k in m if k != "__families__" and k[0] == "hookstream_build_info"]
    assert build == [{"version": "0.1.0", "model": "untrained-huang-seed0"}]


def test_restart_recovers_track_state_from_the_changelog(worker, detector):
    """Half a track, SIGKILL, the other half, a new worker (same app id): final equals detect.

    The other half (1.8 MB, more than one fetch) waits in the topic while no worker
    runs, as a live producer's chunks would during a restart.
    """
    tid = f"restart-{uuid.uuid4().hex[:6]}"
    x = synth_song(seed=9, bar_s=0.75)[0]  # 39 s: 20 chunks
    chunks = [(tid.encode(), v) for v in chunk_events(tid, x, chunk_seconds=2.0)]
    send(worker.settings, chunks[:10])
    highlights(worker, [tid], until=lambda got: any(e["seq"] == 9 for e in got))
    time.sleep(2.0)  # past broker_commit_interval (1 s): the offsets are committed
    worker.kill()
    send(worker.settings, chunks[10:])
    # By the time the new worker has recovered, the track has been silent for longer than
    # the idle timeout by the wall clock, yet its chunks wait in the topic: the worker
    # gives it the timeout afresh from its takeover (6 s here, room for a busy machine).
    cfg = yaml.safe_load(worker.config.read_text())
    cfg["stream"]["idle_timeout_s"] = 6
    config = worker.work / "stream-restart.yaml"
    config.write_text(yaml.safe_dump(cfg))
    worker.start(config)
    got = highlights(worker, [tid])
    final = final_of(got, tid)
    assert final["incomplete"] is False and final["seq"] == 19, (final, worker.log_tail())
    assert_equals_detect(final, detector.detect_samples(tid, x))
    # The new worker scored only the second half: the first came back from the table.
    assert worker.metrics()[("hookstream_chunks_total", frozenset())] == 10


def test_subscribe_cli_prints_n_json_lines(worker):
    tid = f"sub-{uuid.uuid4().hex[:6]}"
    x = synth_song(seed=11, bar_s=0.25)[0]
    send(worker.settings, [(tid.encode(), v) for v in chunk_events(tid, x, chunk_seconds=2.0)])
    got = highlights(worker, [tid])
    n = len(got)
    r = subprocess.run(
        [sys.executable, "-m", "stream_app", "subscribe", "--config", str(worker.config),
         "--bootstrap", worker.settings.kafka.bootstrap, "--from-beginning", "--count", str(n),
         "--track-id", tid, "--timeout", "30"],
        capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == n
    assert [json.loads(line)["event_id"] for line in lines] == [e["event_id"] for e in got]


def test_demo_prints_finals_and_leaves_no_process(tiny_ckpt):
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_app", "demo", "--checkpoint", str(tiny_ckpt), "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
    reader.start()
    children: dict[tuple[int, float], set[str]] = {}
    parent = psutil.Process(proc.pid)
    while proc.poll() is None:
        for c in parent.children(recursive=True):
            try:  # every command line seen: a fresh fork shows its parent's, an exiting process none
                children.setdefault((c.pid, c.create_time()), set()).add(" ".join(c.cmdline()[:4]))
            except psutil.Error:
                pass
        time.sleep(0.1)
    reader.join(10)
    text = "".join(out)
    assert proc.returncode == 0, text
    finals = [line for line in text.splitlines() if line.strip().startswith("final")]
    assert {line.split()[1] for line in finals} == {"example-1", "example-2"}, text
    assert "demo: worker and broker stopped" in text
    kinds = " ".join(" ".join(cmds) for cmds in children.values())
    assert "tansu" in kinds and "stream_app worker" in kinds, children  # both were seen
    left = []
    for (pid, created), cmds in children.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                left.append((pid, cmds))
        except psutil.NoSuchProcess:
            pass
    assert left == []
