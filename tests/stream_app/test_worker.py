"""The streaming worker end to end: real broker (session fixture), real worker subprocess.

One worker process serves the whole module (a tiny untrained checkpoint, a
3 s idle timeout, no provisional rate limit, topics and app id of its own);
every test uses its own track ids. The restart test replaces that worker with
a new one of the same app id.
"""

import json
import subprocess
import sys
import threading
import time
import uuid
from itertools import zip_longest

import numpy as np
import psutil
import pytest
import yaml

from models.examples import synth_song
from stream_app.events import dead_letter_value, encode_chunk
from stream_app.ingest import chunk_events, ingest_files
from streaming import (REPO, SR, Worker, assert_equals_detect, dead_letters, final_of,
                       highlights, raw_chunk, send, song, spread_over_partitions, worker_config)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def worker(broker, tiny_ckpt, tmp_path_factory):
    work = tmp_path_factory.mktemp("worker")
    settings, config, app_id = worker_config(broker, work)
    w = Worker(settings, config, tiny_ckpt, app_id, work)
    w.start()
    yield w
    w.stop()


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


def test_native_44100_stereo_file_final_equals_detect(worker, detector, tmp_path):
    """``ingest --native-rate``: 44.1 kHz stereo chunks of 1.7 s (74,970 frames); the worker
    resamples them, and the final equals ``hookstream detect`` on the file."""
    import soundfile as sf

    from models.resample import resample

    x = synth_song(seed=4, bar_s=0.5)[0]
    left = resample(x, SR, 44100)
    right = resample(0.5 * np.roll(x, 3000), SR, 44100)
    path = tmp_path / f"native-{uuid.uuid4().hex[:6]}.wav"
    sf.write(str(path), np.stack([left, right], axis=1), 44100, subtype="FLOAT")
    sent = []
    [r] = ingest_files([path], settings=worker.settings, chunk_seconds=1.7, native_rate=True,
                       on_sent=sent.append)
    assert r.ok and r.chunks == -(-len(left) // 74_970)
    assert max(c.nbytes for c in sent) > 74_970 * 2 * 4  # stereo f32 at 44.1 kHz went out
    final = final_of(highlights(worker, [r.track_id]), r.track_id)
    assert final["incomplete"] is False and final["seq"] == r.chunks - 1
    assert_equals_detect(final, detector.detect_file(path))


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
    while True:  # counters of the last batch may land a moment after its events, the table
        m = worker.metrics()  # gauges up to stream_app.app.GAUGE_INTERVAL_S after them
        seen = {k: delta(m, k[0], **dict(k[1])) for k in expected}
        settled = m.get(("hookstream_active_tracks", frozenset())) == 0
        if (seen == expected and settled) or time.monotonic() > deadline:
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


def test_healthz_and_readyz_answer_on_the_metrics_port(worker):
    worker.wait_ready()
    status, text = worker.get("/healthz")
    assert status == 200 and text.startswith("ok"), text
    status, text = worker.get("/readyz")
    assert status == 200 and "4 partition(s) assigned" in text, text


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


def test_one_bad_event_does_not_take_its_batch_with_it(worker, detector):
    """Issue 9 bug 1: |g0 h0 T(seq 2**63) g1 T(0) T(10**8) h1 ...|, all in one produce.

    The seq-2**63 chunk once raised OverflowError out of the batch, and Faust
    acknowledged the batch anyway: the good tracks lost chunks and ended
    incomplete. Now it is one dead letter (bad_header), a gap of 10**8 another
    (gap_too_large), and the good tracks' finals equal detect.
    """
    tag = uuid.uuid4().hex[:6]
    good = {f"g-{tag}": synth_song(seed=12, bar_s=0.25)[0], f"h-{tag}": synth_song(seed=13, bar_s=0.25)[0]}
    bad_tid = f"huge-{tag}"
    huge = raw_chunk(bad_tid, np.zeros(SR // 10, "<f4").tobytes(), seq=2**63)
    far = [encode_chunk(bad_tid, 0, np.zeros(SR, np.float32), sample_rate=SR),
           encode_chunk(bad_tid, 10**8, np.zeros(SR, np.float32), sample_rate=SR)]
    streams = [[(tid.encode(), v) for v in chunk_events(tid, x, chunk_seconds=2.0)]
               for tid, x in good.items()]
    rounds = [[m for m in r if m] for r in zip_longest(*streams)]
    msgs = rounds[0] + [(bad_tid.encode(), huge)] + rounds[1] + [(bad_tid.encode(), v) for v in far]
    send(worker.settings, msgs + [m for r in rounds[2:] for m in r])
    got = highlights(worker, list(good))
    for tid, x in good.items():
        final = final_of(got, tid)
        assert final["incomplete"] is False
        assert_equals_detect(final, detector.detect_samples(tid, x))
    dls = dead_letters(worker, 2, until=lambda ds: sum(d["key"] == bad_tid for d in ds) >= 2)
    mine = [d for d in dls if d["key"] == bad_tid]
    assert [d["reason"] for d in mine] == ["bad_header", "gap_too_large"]
    assert [d["value_bytes"] for d in mine] == [len(huge), len(far[1])]


def test_300_fuzzed_events_among_good_tracks(worker, detector):
    """>= 300 malformed events (tests/stream_app/fuzzing.py, seeded) interleaved with good tracks.

    The worker stays up, the good tracks' finals equal detect, and the dead letters
    of the fuzzed events agree with the ``rejected`` metric and the chunk counter.
    """
    import random

    from fuzzing import mutated_event

    tag = uuid.uuid4().hex[:6]
    rng = random.Random(9)
    good = {f"fzgood-{tag}-{i}": synth_song(seed=30 + i, bar_s=0.25)[0] for i in range(2)}
    fuzz = [mutated_event(rng, f"fz-{tag}-{i}") for i in range(320)]
    stream = [(tid.encode(), v) for tid, x in good.items() for v in chunk_events(tid, x, chunk_seconds=2.0)]
    n_good = len(stream)
    tagged = [("good", m) for m in stream]
    for m in fuzz:
        tagged.insert(rng.randrange(len(tagged) + 1), ("fuzz", m))
    before = worker.metrics()
    offsets = send(worker.settings, [m for _, m in tagged])
    fuzz_at = {o for (what, _), o in zip(tagged, offsets) if what == "fuzz"}
    got = highlights(worker, list(good), timeout_s=120)
    for tid, x in good.items():
        final = final_of(got, tid)
        assert final["incomplete"] is False
        assert_equals_detect(final, detector.detect_samples(tid, x))

    def rejected(m, *, skip=("duplicate",)):
        return sum(v for k, v in m.items() if k != "__families__" and k[0] == "hookstream_rejected_inputs_total"
                   and dict(k[1])["reason"] not in skip)

    def delta(m, key):
        return m.get(key, 0.0) - before.get(key, 0.0)

    chunks = ("hookstream_chunks_total", frozenset())
    dup = ("hookstream_rejected_inputs_total", frozenset({("reason", "duplicate")}))

    def handled(m):  # each fuzzed event: accepted, a duplicate (odd ids two share: "mp3"), or rejected
        return (delta(m, chunks) - n_good + delta(m, dup)
                + rejected(m, skip=("duplicate", "gap")) - rejected(before, skip=("duplicate", "gap")))

    deadline = time.monotonic() + 60
    while handled(m := worker.metrics()) < len(fuzz):
        assert time.monotonic() < deadline, (handled(m), worker.log_tail())
        time.sleep(0.3)
    assert handled(m) == len(fuzz) and worker.proc.poll() is None
    topic = worker.settings.topics.chunks
    n_rejected = rejected(m) - rejected(before)

    def ours(ds):
        return [d for d in ds if d["topic"] == topic and (d["partition"], d["offset"]) in fuzz_at]

    dls = ours(dead_letters(worker, 0, until=lambda ds: len(ours(ds)) >= n_rejected))
    assert len(dls) == n_rejected >= 250
    not_gap = [d for d in dls if d["reason"] != "gap"]
    assert len({(d["partition"], d["offset"]) for d in not_gap}) == len(not_gap)
    accepted, duplicates = delta(m, chunks) - n_good, delta(m, dup)
    assert accepted + duplicates + len(not_gap) == len(fuzz)
    print(f"\n{len(fuzz)} fuzzed events: {len(not_gap)} dead-lettered, {accepted:.0f} accepted, "
          f"{duplicates:.0f} duplicates, {len(dls) - len(not_gap)} gap notices")
