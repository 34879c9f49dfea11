"""Catalogue backfill (``ingest --from-list``) against a real broker: journal, resume, failures, bounds."""

import json
import threading
import uuid

import numpy as np
import pytest
import soundfile as sf

from models.errors import InputError
from stream_app import backfill as bf
from stream_app.cli import main
from stream_app.events import decode_chunk, encode_highlight, make_highlight_event
from stream_app.settings import load_settings

pytestmark = pytest.mark.integration

SR = 22050


@pytest.fixture
def settings(broker):
    tag = uuid.uuid4().hex[:8]
    return load_settings(bootstrap=broker.bootstrap, partitions=2,
                         topics={"chunks": f"chunks-{tag}", "highlights": f"hl-{tag}",
                                 "dead_letter": f"dlq-{tag}"})


def wav(path, seconds, seed=0):
    t = np.arange(int(seconds * SR)) / SR
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * (220 + 40 * seed) * t)).astype(np.float32), SR)
    return path


def chunk_records(settings, timeout_s=2.0):
    """(track id, seq, end) of every chunk on the topic, read until idle."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap, group_id=None,
                      enable_auto_commit=False, consumer_timeout_ms=int(timeout_s * 1000))
    try:
        topic = settings.topics.chunks
        tps = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out = []
        for r in c:
            ch = decode_chunk(r.key, r.value)
            out.append((ch.track_id, ch.seq, ch.end))
        return out
    finally:
        c.close()


@pytest.fixture
def catalogue(tmp_path):
    a = wav(tmp_path / "a.wav", 3.0, 0)
    b = wav(tmp_path / "b.flac", 5.0, 1)
    c = wav(tmp_path / "c.wav", 1.0, 2)
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio\n" * 20)
    lst = tmp_path / "catalogue.tsv"
    lst.write_text(f"# a comment\n{a}\n{b}\tbee\n\n{tmp_path / 'missing.wav'}\n{junk}\n{c}\n")
    return lst, tmp_path


def test_backfill_sends_all_reports_failures_by_path_and_journals(catalogue, settings):
    lst, d = catalogue
    results = []
    starts = []
    summary = bf.backfill(lst, settings=settings, max_in_flight=2,
                          on_result=lambda e, r: results.append((e, r)),
                          on_start=lambda total, done: starts.append((total, done)))
    assert starts == [(5, 0)]
    assert (summary.listed, summary.sent, summary.skipped, summary.failed) == (5, 3, 0, 2)
    assert summary.audio_s == pytest.approx(9.0)
    errors = {e.track_id: r.error for e, r in results if not r.ok}
    assert "missing.wav: no such file" in errors["missing"]
    assert "junk.wav: not a readable audio file" in errors["junk"]
    sent = chunk_records(settings)
    assert sorted({t for t, _, _ in sent}) == ["a", "bee", "c"]
    for tid, n in (("a", 2), ("bee", 3), ("c", 1)):
        mine = sorted((s, e) for t, s, e in sent if t == tid)
        assert mine == [(k, k == n - 1) for k in range(n)]  # every chunk once, the last one the end
    journal = bf.default_journal(lst).read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in journal) == ["a", "bee", "c"]


def test_resume_skips_journalled_and_finished_tracks(catalogue, settings):
    lst, d = catalogue
    bf.backfill(lst, settings=settings)
    before = len(chunk_records(settings))
    with pytest.raises(InputError, match=r"catalogue\.tsv\.journal: a journal of an earlier run exists"):
        bf.backfill(lst, settings=settings)
    # The journal says a, bee, c were sent; the two bad files are tried again and fail again.
    s = bf.backfill(lst, settings=settings, resume=True, topic_idle_s=1.0)
    assert (s.sent, s.skipped, s.failed) == (0, 3, 2)
    assert len(chunk_records(settings)) == before

    # A fresh journal: only the highlights topic says what is done.
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap)
    for tid in ("a", "bee"):
        e = make_highlight_event(tid, kind="final", start_s=0.0, end_s=3.0, score=0.5, audio_s=3.0,
                                 model="m", seq=1)
        producer.send(settings.topics.highlights, key=tid.encode(), value=encode_highlight(e))
    producer.send(settings.topics.highlights, key=b"c", value=encode_highlight(make_highlight_event(
        "c", kind="provisional", start_s=0.0, end_s=1.0, score=0.5, audio_s=1.0, model="m", seq=0)))
    producer.flush()
    producer.close()
    fresh = d / "fresh.journal"
    s = bf.backfill(lst, settings=settings, journal=fresh, resume=True, topic_idle_s=1.0)
    assert (s.sent, s.skipped, s.failed) == (1, 2, 2)  # c had only a provisional event
    assert fresh.read_text().split("\t")[0] == "c"


def test_tracks_in_flight_are_bounded(tmp_path, settings, monkeypatch):
    paths = [wav(tmp_path / f"t{i}.wav", 2.0, i) for i in range(8)]
    lst = tmp_path / "l.txt"
    lst.write_text("".join(f"{p}\n" for p in paths))
    lock, now, peak = threading.Lock(), [0], [0]
    real = bf._ingest_one

    def counted(*a, **kw):
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        try:
            return real(*a, **kw)
        finally:
            with lock:
                now[0] -= 1

    monkeypatch.setattr(bf, "_ingest_one", counted)
    s = bf.backfill(lst, settings=settings, max_in_flight=3)
    assert s.sent == 8 and 1 <= peak[0] <= 3


@pytest.mark.parametrize("text,match", [
    ("a.wav\tid\textra\n", r"l\.txt:1: expected 'PATH' or 'PATH<TAB>TRACK_ID'"),
    ("x/a.wav\ny/a.wav\n", r"l\.txt:2: track id 'a' is also on line 1"),
    ("a.wav\t \n", r"l\.txt:1: expected"),
])
def test_bad_lists_are_rejected_before_anything_is_sent(tmp_path, settings, text, match):
    lst = tmp_path / "l.txt"
    lst.write_text(text)
    with pytest.raises(InputError, match=match):
        bf.backfill(lst, settings=settings)
    assert not bf.default_journal(lst).exists()
    with pytest.raises(InputError, match=r"nope\.txt: cannot read the list"):
        bf.backfill(tmp_path / "nope.txt", settings=settings)


def test_ingest_from_list_command(catalogue, settings, capsys, tmp_path):
    lst, d = catalogue
    config = tmp_path / "stream.yaml"
    config.write_text(json.dumps({"topics": {"chunks": settings.topics.chunks,
                                             "highlights": settings.topics.highlights,
                                             "dead_letter": settings.topics.dead_letter},
                                  "partitions": 2}))
    common = ["ingest", "--from-list", str(lst), "--bootstrap", settings.kafka.bootstrap,
              "--config", str(config)]
    assert main(common) == 1
    out, err = capsys.readouterr()
    assert out.strip() == f"{lst}: 5 tracks listed, 3 sent (9.0 s of audio), 0 skipped as already done, 2 failed"
    assert "missing.wav: no such file" in err and "junk.wav" in err and "Traceback" not in err
    assert "ingest: 100%" in err  # the progress bar
    assert main(common) == 1 and "--resume" in capsys.readouterr().err
    assert main(common + ["--resume", "--no-topic-check"]) == 1
    assert "3 skipped as already done" in capsys.readouterr().out
    assert main(["ingest", "--from-list", str(lst), str(lst)]) == 2
    assert "takes no PATH" in capsys.readouterr().err
    assert main(["ingest"]) == 2 and "--from-list" in capsys.readouterr().err


# --- the whole platform path: list -> worker -> finals -> resume and clips -----------------

@pytest.mark.slow
@pytest.mark.timeout(240)
def test_backfill_through_a_worker_then_resume_and_clip_from_its_finals(broker, tmp_path, capsys):
    """ingest --from-list -> a real worker -> final events; --resume (fresh journal) skips the
    tracks the topic has finals for; subscribe's finals feed clip --from-events."""
    import yaml

    from models import checkpoint, nets
    from models.config import CONFIG_DIR
    from models.examples import synth_song
    from stream_app.broker import free_port
    from stream_app.demo import start_worker, stop_worker, wait_metrics
    from stream_app.subscribe import iter_highlights

    tag = uuid.uuid4().hex[:8]
    cfg = yaml.safe_load((CONFIG_DIR / "stream.yaml").read_text())
    cfg["topics"] = {"chunks": f"chunks-{tag}", "highlights": f"hl-{tag}", "dead_letter": f"dlq-{tag}"}
    cfg["kafka"]["bootstrap"] = broker.bootstrap
    cfg["stream"].update(idle_timeout_s=3, provisional_min_interval_s=0)
    config = tmp_path / "stream.yaml"
    config.write_text(yaml.safe_dump(cfg))
    settings = load_settings(config)
    ckpt = checkpoint.save(checkpoint.untrained(nets.tiny(), ("a", "b", "c", "d", "e")),
                           tmp_path / "tiny.safetensors")
    paths = []
    for i in range(3):
        x, _ = synth_song(i, bar_s=0.5)  # 26 s
        paths.append(tmp_path / f"cat-{i}.flac")
        sf.write(paths[-1], x, SR)
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"{p}\n" for p in paths))

    port = free_port()
    log = tmp_path / "worker.log"
    proc = start_worker(settings, metrics_port=port, log_path=log, extra=[
        "--config", str(config), "--checkpoint", str(ckpt), "--app-id", f"hookstream-bf-{tag}"])
    try:
        wait_metrics(port, proc, log)
        common = ["ingest", "--from-list", str(lst), "--config", str(config)]
        assert main(common) == 0
        assert "3 sent" in capsys.readouterr().out
        want = {p.stem for p in paths}
        finals = []
        for e in iter_highlights(settings, from_beginning=True, final_only=True, timeout_s=60):
            finals.append(e)
            if want <= {f["track_id"] for f in finals}:
                break
        assert want <= {f["track_id"] for f in finals}, log.read_text()[-2000:]
    finally:
        stop_worker(proc)

    # A lost journal: --resume finds every final on the topic and sends nothing.
    assert main(common + ["--resume", "--journal", str(tmp_path / "lost.journal")]) == 0
    assert "0 sent (0.0 s of audio), 3 skipped as already done" in capsys.readouterr().out

    events = tmp_path / "finals.jsonl"  # what `hookstream subscribe --final-only` prints
    events.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in finals))
    rc = main(["clip", *map(str, paths), "--out", str(tmp_path / "clips"),
               "--from-events", str(events), "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 0 and [r["track_id"] for r in rows] == [p.stem for p in paths]
    for r in rows:
        f = next(e for e in finals if e["track_id"] == r["track_id"])
        assert (r["start_s"], r["end_s"]) == (f["start_s"], f["end_s"])
        assert sf.info(r["clip"]).duration == pytest.approx(f["end_s"] - f["start_s"], abs=0.05)
