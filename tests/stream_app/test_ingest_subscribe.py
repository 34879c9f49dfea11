"""Ingest files as chunk events and read highlight events, against a real broker."""

import argparse
import json
import threading
import time
import uuid

import numpy as np
import pytest
import soundfile as sf

from models.audio import decode
from models.errors import InputError
from stream_app.events import decode_chunk, encode_highlight, make_highlight_event
from stream_app.ingest import chunk_events, ingest_files
from stream_app.settings import load_settings
from stream_app.subscribe import iter_highlights

pytestmark = pytest.mark.integration

SR = 22050


@pytest.fixture
def settings(broker):
    """Settings pointing at the session broker, with topics of this test's own."""
    tag = uuid.uuid4().hex[:8]
    return load_settings(
        bootstrap=broker.bootstrap,
        partitions=2,
        topics={"chunks": f"chunks-{tag}", "highlights": f"hl-{tag}", "dead_letter": f"dlq-{tag}"},
    )


def write_wav(path, seconds, *, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(t.size)
    sf.write(str(path), x.astype(np.float32), SR, subtype="FLOAT")
    return path


def read_topic(settings, topic, *, expect, timeout_s=10.0):
    """Every record of ``topic`` (manual assignment, from the beginning) once ``expect`` arrived."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records, deadline = [], time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            records += [r for rs in consumer.poll(100).values() for r in rs]
            if len(records) >= expect:
                records += [r for rs in consumer.poll(300).values() for r in rs]  # anything extra
                break
        return records
    finally:
        consumer.close()


# --- ingest ------------------------------------------------------------------------------

def test_ingest_publishes_exact_chunks_and_skips_undecodable(tmp_path, settings):
    song = write_wav(tmp_path / "song.wav", 7.0)
    bad = tmp_path / "x.wav"
    bad.write_text("this is not audio\n")
    sent = []
    results = ingest_files([bad, song], settings=settings, chunk_seconds=2.0, on_sent=sent.append)

    assert [r.ok for r in results] == [False, True]
    assert "x.wav" in results[0].error and results[0].chunks == 0
    assert (results[1].track_id, results[1].chunks, results[1].audio_s) == ("song", 4, 7.0)
    assert [(s.track_id, s.seq, s.end) for s in sent] == [("song", k, k == 3) for k in range(4)]

    records = read_topic(settings, settings.topics.chunks, expect=4)
    assert len(records) == 4 and {r.key for r in records} == {b"song"}
    assert len({r.partition for r in records}) == 1  # one key, one partition: order kept
    chunks = [decode_chunk(r.key, r.value) for r in sorted(records, key=lambda r: r.offset)]
    assert [c.seq for c in chunks] == [0, 1, 2, 3]
    assert [c.end for c in chunks] == [False, False, False, True]
    assert [c.frames for c in chunks] == [2 * SR, 2 * SR, 2 * SR, SR]
    assert all(len(r.value) < 1_000_000 for r in records)
    np.testing.assert_array_equal(np.concatenate([c.samples_mono() for c in chunks]), decode(song))


def test_realtime_sends_files_concurrently_at_audio_pace(tmp_path, settings):
    paths = [write_wav(tmp_path / f"rt{i}.wav", 1.0, seed=i) for i in range(2)]
    sent = []
    t0 = time.time()
    results = ingest_files(paths, settings=settings, track_ids=["a", "b"], chunk_seconds=0.2,
                           realtime=True, on_sent=sent.append)
    wall = time.time() - t0
    assert [(r.track_id, r.chunks) for r in results] == [("a", 5), ("b", 5)]
    assert 0.75 < wall < 1.5  # both at once, 0.8 s each (chunk 4 leaves at t0 + 0.8 s), not 1.6 s
    for tid in "ab":
        times = [s.sent_at for s in sent if s.track_id == tid]
        gaps = np.diff(times)
        assert np.all(gaps > 0.15) and np.all(gaps < 0.3), gaps
    assert len(read_topic(settings, settings.topics.chunks, expect=10)) == 10


def test_ingest_argument_errors(tmp_path, settings):
    song = write_wav(tmp_path / "s.wav", 0.5)
    with pytest.raises(InputError, match="at most 11"):
        ingest_files([song], settings=settings, chunk_seconds=12.0)
    with pytest.raises(InputError, match="both be track"):
        ingest_files([song, song], settings=settings)
    with pytest.raises(InputError, match="positive"):
        list(chunk_events("t", np.zeros(10, np.float32), sr=SR, chunk_seconds=0.0, encoding="f32le"))


def test_chunk_events_exact_multiple_and_s16():
    x = np.linspace(-1, 1, 4 * SR, dtype=np.float32)
    values = list(chunk_events("t", x, sr=SR, chunk_seconds=2.0, encoding="s16le"))
    chunks = [decode_chunk(b"t", v) for v in values]
    assert [(c.seq, c.end, c.frames, c.encoding) for c in chunks] == [(0, False, 2 * SR, "s16le"), (1, True, 2 * SR, "s16le")]
    np.testing.assert_allclose(np.concatenate([c.samples_mono() for c in chunks]), x, atol=1 / 32768)


def test_ingest_command_reports_failures(tmp_path, settings, capsys):
    from stream_app.commands import ingest as cmd

    song = write_wav(tmp_path / "ok.wav", 1.0)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"\0garbage")
    parser = argparse.ArgumentParser()
    cmd.register(parser.add_subparsers())
    config = tmp_path / "stream.yaml"
    config.write_text(json.dumps({"topics": {"chunks": settings.topics.chunks, "highlights": settings.topics.highlights,
                                             "dead_letter": settings.topics.dead_letter}, "partitions": 2}))
    args = parser.parse_args(["ingest", str(song), str(bad), "--bootstrap", settings.kafka.bootstrap,
                              "--config", str(config)])
    assert args.func(args) == 1
    out, err = capsys.readouterr()
    assert out.strip() == f"ok: 1 chunks, 1.00 s of audio ({song})"
    assert len(err.strip().splitlines()) == 1 and "bad.wav" in err and "Traceback" not in err
    args = parser.parse_args(["ingest", str(song), str(bad), "--track-id", "x"])
    with pytest.raises(InputError, match="one track"):
        args.func(args)


# --- subscribe ----------------------------------------------------------------------------

def produce_highlights(settings, events, junk=()):
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap, linger_ms=20)
    for e in events:
        producer.send(settings.topics.highlights, key=e["track_id"].encode(), value=encode_highlight(e))
    for value in junk:
        producer.send(settings.topics.highlights, key=b"a", value=value)
    producer.flush()
    producer.close()


def hl(track, kind, seq, start=10.0):
    return make_highlight_event(track, kind=kind, start_s=start, end_s=start + 30, score=0.5,
                                audio_s=2.0 * (seq + 1), model="test", seq=seq)


def test_iter_highlights_dedupes_and_filters(settings):
    events = [hl("a", "provisional", 0), hl("a", "provisional", 1), hl("b", "final", 3), hl("a", "final", 4)]
    resent = dict(events[1], emitted_at="2030-01-01T00:00:00.000Z")  # same event sent again
    produce_highlights(settings, events + [resent], junk=[b"not json", b'{"track_id": "a"}'])

    got = list(iter_highlights(settings, from_beginning=True, timeout_s=1.0))
    assert sorted(e["event_id"] for e in got) == sorted(e["event_id"] for e in events)
    assert [e["seq"] for e in got if e["track_id"] == "a"] == [0, 1, 4]  # per-track order kept

    finals = list(iter_highlights(settings, from_beginning=True, final_only=True, timeout_s=0.5))
    assert sorted((e["track_id"], e["kind"]) for e in finals) == [("a", "final"), ("b", "final")]
    only_b = list(iter_highlights(settings, from_beginning=True, track_ids=["b"], timeout_s=0.5))
    assert [e["track_id"] for e in only_b] == ["b"]


def test_iter_highlights_latest_skips_old_events(settings):
    produce_highlights(settings, [hl("old", "final", k, start=k) for k in range(5)])  # batched records
    new = hl("new", "final", 0)
    got = []

    def consume():
        got.extend(iter_highlights(settings, timeout_s=2.0))

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.8)
    produce_highlights(settings, [new])
    t.join(10)
    assert [e["event_id"] for e in got] == [new["event_id"]]


def test_subscribe_command_prints_json_lines(settings, capsys, tmp_path):
    from stream_app.commands import subscribe as cmd

    events = [hl("c", "provisional", 0), hl("c", "final", 1)]
    produce_highlights(settings, events + events)
    parser = argparse.ArgumentParser()
    cmd.register(parser.add_subparsers())
    config = tmp_path / "stream.yaml"
    config.write_text(f"topics: {{highlights: {settings.topics.highlights}}}\npartitions: 2\n")
    base = ["subscribe", "--bootstrap", settings.kafka.bootstrap, "--config", str(config), "--from-beginning"]

    args = parser.parse_args(base + ["--timeout", "0.5"])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == events
    assert all(" " not in line for line in lines)  # compact

    args = parser.parse_args(base + ["--count", "1"])
    assert args.func(args) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
