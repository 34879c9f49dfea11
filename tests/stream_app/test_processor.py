"""The worker's logic without Faust or a broker: ``Processor`` with a fake clock and a dict table.

The harness keeps the table as the app does (a ``RecordTable`` over a dict:
a head per track id and its segments, deleted on ``None``), so every step
also exercises record serialisation. Audio is cut into 1 s chunks: chunk ``k`` of a track is
``x[k*SR:(k+1)*SR]`` of that track's signal.
"""

import os

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from models import checkpoint, nets
from models.config import DetectConfig, ScorerConfig, WindowConfig
from models.detect import Detector
from models.errors import InputError
from stream_app.events import (MAX_SEQ, REASONS, dead_letter_value, encode_chunk,
                               make_highlight_event)
from stream_app.metrics import Metrics
from stream_app.processor import (FINISHED_RETENTION_S, MAX_GAP_CHUNKS, Incoming, Outcome,
                                  Processor, group_by_track)
from stream_app.settings import StreamSettings
from stream_app.tracks import RECORD_VERSION, RecordTable, TrackRecord, classify
from streaming import raw_chunk

SR = 22050
LABELS = ("a", "b", "c", "d", "e")
T0 = 1_000_000.0

TEST_DEVICE = os.environ.get("HOOKSTREAM_TEST_DEVICE", "cpu")  # tests/conftest.py checks it


@pytest.fixture(scope="module")
def ckpt():
    return checkpoint.untrained(nets.tiny(), LABELS, seed=0)


@pytest.fixture(scope="module")
def detector(ckpt):
    return Detector(DetectConfig(device=TEST_DEVICE), ckpt)


def signal(seconds: float, seed: int = 0, amp: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = amp * (np.sin(2 * np.pi * (220 + 40 * seed) * t) + 0.5 * rng.standard_normal(t.size))
    return x.astype(np.float32)


def piece(x: np.ndarray, seq: int, n: int = SR) -> np.ndarray:
    return x[seq * n:(seq + 1) * n]


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def tick(self, dt: float = 1.0) -> None:
        self.t += dt


class Harness:
    """A Processor with a fake clock, a fresh registry and a dict standing in for the table."""

    def __init__(self, detector, **stream):
        self.registry = CollectorRegistry()
        self.clock = Clock()
        self.proc = Processor(detector, StreamSettings(**stream), Metrics(self.registry),
                              clock=self.clock, monotonic=self.clock)
        self.store: dict[bytes, bytes] = {}
        self.records = RecordTable(self.store, context_chunks=detector.scorer.cfg.context_chunks,
                                   segment_chunks=2)  # a segment every 2 chunks (6 s)
        self.highlights: list[dict] = []
        self.dead: list[dict] = []
        self.sent: list[Incoming] = []

    def msg(self, key: bytes | None, value: bytes) -> Incoming:
        m = Incoming(key, value, "audio-chunks", 2, 100 + len(self.sent), self.clock())
        self.sent.append(m)
        return m

    def chunk(self, tid: str, seq: int, samples: np.ndarray, *, end: bool = False) -> Incoming:
        return self.msg(tid.encode(), encode_chunk(tid, seq, samples, sample_rate=SR, end=end))

    def process(self, *msgs: Incoming):
        records = {}
        for m in msgs:
            tid = m.key.decode() if m.key is not None else None
            if tid is not None and tid not in records:
                records[tid] = self.record(tid)
        return self.apply(self.proc.process(list(msgs), records))

    @property
    def table(self) -> dict[str, bytes]:
        """Every key of the table (heads and segments), as text."""
        return {k.decode("utf-8", "backslashreplace"): v for k, v in self.store.items()}

    def sweep(self):
        return self.apply(self.proc.sweep({k.decode(): self.records.load(k.decode())
                                           for k, _ in self.records.heads()}))

    def apply(self, out):
        for tid, record in out.records.items():
            if record is None:
                self.records.delete(tid)
            else:
                self.records.save(record)
        self.highlights += out.highlights
        self.dead += out.dead_letters
        return out

    def record(self, tid: str) -> TrackRecord | None:
        return self.records.load(tid)

    def events(self, tid: str, kind: str) -> list[dict]:
        return [e for e in self.highlights if e["track_id"] == tid and e["kind"] == kind]

    def metric(self, name: str, **labels) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def assert_final_equals_detect(final: dict, detector: Detector, samples: np.ndarray):
    want = detector.detect_samples(final["track_id"], samples, top_k=3)
    assert (final["start_s"], final["end_s"]) == (want.highlight.start_s, want.highlight.end_s)
    # The final event lists the same top-3 spans as `detect --top 3`, its own span first.
    assert [(h["start_s"], h["end_s"]) for h in final["highlights"]] == \
        [(h.start_s, h.end_s) for h in want.highlights]
    assert final["score"] == pytest.approx(want.highlight.score, abs=1e-4)
    assert final["audio_s"] == round(len(samples) / SR, 3)


# --- sequence handling: a scenario table -------------------------------------------------
#
# Each string is one batch (one ``process`` call); ``3e`` is chunk 3 with end=true.
# ``scored`` are the chunks whose audio makes the final highlight.
#
#   in-order           |0|1|2|3e|                 -> provisionals, one final
#   redelivered        |0 1|1|2 2|3e|             -> 1 and 2 dropped as duplicates
#   gap                |0|2|3e|                   -> 2 dead-lettered "gap" (and scored), final incomplete
#   late               |0|2|1|3e|                 -> 1 arrives after its gap was skipped: "late"
#   after end          |0|1e|2|                   -> 2: "after_end"
#   after end, 1 batch |0 1e 2|                   -> the same inside one batch
#   end redelivered    |0|1e|1e|                  -> a duplicate, not "after_end"
#   gap in one batch   |0 2 3e|                   -> as "gap"
SEQUENCE_CASES = [
    pytest.param(["0", "1", "2", "3e"], [], 0, False, [0, 1, 2, 3], id="in-order"),
    pytest.param(["0 1", "1", "2 2", "3e"], [], 2, False, [0, 1, 2, 3], id="redelivered"),
    pytest.param(["0", "2", "3e"], ["gap"], 0, True, [0, 2, 3], id="gap"),
    pytest.param(["0", "2", "1", "3e"], ["gap", "late"], 0, True, [0, 2, 3], id="late"),
    pytest.param(["0", "1e", "2"], ["after_end"], 0, False, [0, 1], id="after-end"),
    pytest.param(["0 1e 2"], ["after_end"], 0, False, [0, 1], id="after-end-same-batch"),
    pytest.param(["0", "1e", "1e"], [], 1, False, [0, 1], id="end-redelivered"),
    pytest.param(["0 2 3e"], ["gap"], 0, True, [0, 2, 3], id="gap-same-batch"),
]


@pytest.mark.parametrize("batches,reasons,duplicates,incomplete,scored", SEQUENCE_CASES)
def test_sequence_scenarios(detector, batches, reasons, duplicates, incomplete, scored):
    h = Harness(detector, provisional_min_interval_s=0.0)
    x = signal(6.0, seed=1)
    for batch in batches:
        msgs = [h.chunk("t", int(s.rstrip("e")), piece(x, int(s.rstrip("e"))), end=s.endswith("e"))
                for s in batch.split()]
        h.process(*msgs)
        h.clock.tick()

    finals = h.events("t", "final")
    assert len(finals) == 1
    assert finals[0]["incomplete"] is incomplete
    assert_final_equals_detect(finals[0], detector, np.concatenate([piece(x, k) for k in scored]))
    assert [d["reason"] for d in h.dead] == reasons
    assert h.metric("hookstream_rejected_inputs_total", reason="duplicate") == duplicates
    for reason in set(reasons):
        assert h.metric("hookstream_rejected_inputs_total", reason=reason) == reasons.count(reason)
    assert h.metric("hookstream_chunks_total") == len(scored)
    assert h.metric("hookstream_audio_seconds_total") == pytest.approx(len(scored))
    # Each dead letter names the message it came from.
    by_offset = {m.offset: m for m in h.sent}
    for d in h.dead:
        m = by_offset[d["offset"]]
        assert (d["topic"], d["partition"], d["key"]) == (m.topic, m.partition, "t")
        # A gap's chunk was scored: the dead letter is a notice, without the value.
        assert dead_letter_value(d) == (None if d["reason"] == "gap" else m.value)
        assert d["value_bytes"] == len(m.value)
    # The finished track's record is an end marker without scorer state.
    record = h.record("t")
    assert record.ended and record.state is None and record.next_seq == max(scored) + 1
    assert len(h.table["t"]) < 1024


def test_in_order_track_gives_provisionals_then_one_final(detector):
    """|0|1|...|9e|: a provisional for every chunk, the first ones before a 3 s model chunk is complete."""
    h = Harness(detector, provisional_min_interval_s=0.0)
    x = signal(10.0, seed=2)
    for k in range(10):
        out = h.process(h.chunk("song", k, piece(x, k), end=k == 9))
        if k < 9:
            assert h.record("song").state is not None and not h.record("song").ended
        assert len(out.latencies) == len([e for e in out.highlights if e["kind"] == "provisional"])
        h.clock.tick()
    provisional = h.events("song", "provisional")
    # Every chunk moves the span end (the track is shorter than the window). 4 s of audio
    # hold the first complete 130-frame chunk; before it the event covers the audio so far,
    # without attention: at gamma 1 its score is 0.
    assert [e["seq"] for e in provisional] == list(range(0, 9))
    for e in provisional[:3]:
        assert (e["start_s"], e["end_s"]) == (0.0, e["audio_s"]) == (0.0, e["seq"] + 1.0)
        assert e["score"] == 0.0 if detector.cfg.window.gamma == 1.0 else 0.0 <= e["score"] <= 1.0
    assert all(e["end_s"] <= e["audio_s"] and "incomplete" not in e for e in provisional)
    [final] = h.events("song", "final")
    assert final["seq"] == 9 and final["incomplete"] is False and final["labels"].keys() == set(LABELS)
    assert_final_equals_detect(final, detector, x)
    assert h.dead == [] and h.metric("hookstream_tracks_finished_total", how="ended") == 1
    assert h.metric("hookstream_scorer_batch_tracks_count") == 10


def test_interleaved_tracks_in_one_batch_are_scored_together(detector):
    """|a0 b0 c0 a1 b1 c1 ... a4e b4e c4e| in batches of one round each: one scorer call per batch."""
    h = Harness(detector, provisional_min_interval_s=0.0)
    xs = {tid: signal(5.0, seed=i) for i, tid in enumerate("abc")}
    for k in range(5):
        h.process(*[h.chunk(tid, k, piece(x, k), end=k == 4) for tid, x in xs.items()])
    assert h.metric("hookstream_scorer_batch_tracks_count") == 5
    assert h.metric("hookstream_scorer_batch_tracks_sum") == 15
    grouped = group_by_track(Outcome(highlights=h.highlights))
    for tid, x in xs.items():
        assert [e["kind"] for e in grouped[tid]][-1] == "final"
        [final] = h.events(tid, "final")
        assert_final_equals_detect(final, detector, x)


# --- rejected at decode -------------------------------------------------------------------

DECODE_REASONS = ["undecodable", "unknown_schema", "bad_header", "unsupported_encoding",
                  "unsupported_sample_rate", "unsupported_channels", "nonfinite_audio",
                  "payload_length", "missing_key", "key_mismatch", "oversize"]


def test_decode_reasons_cover_the_chunk_reasons(bad_chunks):
    assert [r for r, _, _ in bad_chunks] == DECODE_REASONS
    assert set(DECODE_REASONS) <= set(REASONS)


@pytest.mark.parametrize("reason", DECODE_REASONS)
def test_bad_chunk_is_dead_lettered_with_its_origin(detector, bad_chunks, reason):
    _, key, value = next(c for c in bad_chunks if c[0] == reason)
    h = Harness(detector)
    msg = h.msg(key, value)
    out = h.process(msg)
    assert out.highlights == [] and h.table == {}
    [d] = h.dead
    assert d["reason"] == reason
    assert (d["topic"], d["partition"], d["offset"]) == ("audio-chunks", 2, msg.offset)
    assert d["key"] == (None if key is None else key.decode())
    assert d["value_bytes"] == len(value)
    assert dead_letter_value(d) == (None if reason == "oversize" else value)
    assert h.metric("hookstream_rejected_inputs_total", reason=reason) == 1
    assert h.metric("hookstream_chunks_total") == 0


def test_bad_chunk_in_a_batch_leaves_the_others_alone(detector, bad_chunks):
    h = Harness(detector, provisional_min_interval_s=0.0)
    x = signal(4.0)
    bad = [h.msg(k, v) for _, k, v in bad_chunks]
    good = [h.chunk("good", k, piece(x, k), end=k == 3) for k in range(4)]
    h.process(*bad[:5], *good[:2], *bad[5:], *good[2:])
    assert [d["reason"] for d in h.dead] == DECODE_REASONS
    [final] = h.events("good", "final")
    assert_final_equals_detect(final, detector, x)


# --- one bad event never takes the batch with it (issue 9, bug 1) ----------------------------
#
#   |g0 g1 h0 T(2**63) g2e h1e|  T: seq 2**63 -> "bad_header"; g and h finish, finals = detect
#   |g0 T(1) T(10**9) g1e|      T at 1 expected 0... 10**9: a gap past MAX_GAP_CHUNKS

@pytest.mark.parametrize("seq,reason", [(2**63, "bad_header"), (MAX_SEQ + 1, "bad_header"),
                                        (10**100, "bad_header")])
def test_huge_seq_is_rejected_and_the_batch_goes_on(detector, seq, reason):
    h = Harness(detector, provisional_min_interval_s=0.0)
    xs = {"g": signal(3.0, seed=1), "h": signal(2.0, seed=2)}
    good = {tid: [h.chunk(tid, k, piece(x, k), end=k == len(x) // SR - 1)
                  for k in range(len(x) // SR)] for tid, x in xs.items()}
    bad_value = raw_chunk("t", np.zeros(SR // 10, "<f4").tobytes(), seq=seq)
    bad = h.msg(b"t", bad_value)
    h.process(good["g"][0], good["g"][1], good["h"][0], bad, good["g"][2], good["h"][1])
    [d] = h.dead
    assert d["reason"] == reason and d["offset"] == bad.offset and "2**53-1" in d["detail"]
    assert d["value_bytes"] == len(bad_value) and dead_letter_value(d) == bad_value
    for tid, x in xs.items():
        [final] = h.events(tid, "final")
        assert final["incomplete"] is False
        assert_final_equals_detect(final, detector, x)
    assert "t" not in h.table


def test_largest_seq_is_accepted_as_a_bounded_gap_only(detector):
    """MAX_SEQ itself passes the header check; as the first chunk it is a gap far too large."""
    h = Harness(detector)
    h.process(h.chunk("t", MAX_SEQ, signal(1.0)))
    assert [d["reason"] for d in h.dead] == ["gap_too_large"]
    assert "t" not in h.table  # nothing accepted, no record


@pytest.mark.parametrize("missing,reasons,scored", [
    (MAX_GAP_CHUNKS, ["gap"], [0, MAX_GAP_CHUNKS + 1]),
    (MAX_GAP_CHUNKS + 1, ["gap_too_large"], [0]),
    (10**9, ["gap_too_large"], [0]),
])
def test_gap_is_bounded(detector, missing, reasons, scored):
    """|0 (1+missing)e 1e|: a gap up to MAX_GAP_CHUNKS is declared lost; past it, rejected."""
    h = Harness(detector)
    x = signal(2.0, seed=3)
    far = h.chunk("t", 1 + missing, piece(x, 1), end=True)
    h.process(h.chunk("t", 0, piece(x, 0)), far)
    assert [d["reason"] for d in h.dead] == reasons
    [d] = h.dead
    assert d["offset"] == far.offset and d["value_bytes"] == len(far.value)
    assert dead_letter_value(d) == (None if reasons == ["gap"] else far.value)
    if reasons == ["gap"]:
        [final] = h.events("t", "final")
        assert final["incomplete"] is True and final["seq"] == 1 + missing
        assert len(h.record("t").skipped) == missing
    else:  # the track still waits for chunk 1, which finishes it complete
        assert h.events("t", "final") == [] and h.record("t").next_seq == 1
        h.process(h.chunk("t", 1, piece(x, 1), end=True))
        [final] = h.events("t", "final")
        assert final["incomplete"] is False
        assert_final_equals_detect(final, detector, x)
    assert h.metric("hookstream_rejected_inputs_total", reason=reasons[0]) == 1


def test_an_exception_inside_one_event_is_dead_lettered_alone(detector, monkeypatch):
    """A bug in taking one event (here: classify raising for one track) rejects that event only."""
    import stream_app.processor as processor_module

    real = processor_module.classify

    def classify(record, seq):
        if record is not None and record.track_id == "poison" and seq == 1:
            raise OverflowError("boom")
        return real(record, seq)

    monkeypatch.setattr(processor_module, "classify", classify)
    h = Harness(detector, provisional_min_interval_s=0.0)
    x = signal(3.0, seed=4)
    msgs = [h.chunk("poison", 0, piece(x, 0))]
    h.process(*msgs)
    good = [h.chunk("good", k, piece(x, k), end=k == 2) for k in range(3)]
    poison = h.chunk("poison", 1, piece(x, 1))
    h.process(good[0], poison, good[1], good[2])
    [d] = h.dead
    assert d["reason"] == "internal_error" and d["offset"] == poison.offset
    assert "OverflowError: boom" in d["detail"] and dead_letter_value(d) == poison.value
    assert h.metric("hookstream_rejected_inputs_total", reason="internal_error") == 1
    [final] = h.events("good", "final")
    assert_final_equals_detect(final, detector, x)
    assert h.record("poison").next_seq == 1  # unchanged: chunk 1 can still come again


# --- native rates: resampled in the worker --------------------------------------------

def native(seconds: float, rate: int, channels: int, seed: int = 3) -> np.ndarray:
    """(frames, channels) float32 at ``rate``: a tone sweep with noise, channels differing."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    env = 0.5 + 0.5 * np.sin(2 * np.pi * t / 13.0)
    cols = [0.3 * env * np.sin(2 * np.pi * (220 + 60 * c + 40 * np.sin(t / 3)) * t)
            + 0.05 * rng.standard_normal(len(t)) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


@pytest.mark.parametrize("rate,channels,frames", [(44100, 2, 30011), (48000, 1, 47_777),
                                                  (16000, 1, 7919)])
def test_native_rate_stream_equals_detect_on_the_file(detector, tmp_path, rate, channels, frames):
    """``hookstream detect file`` and the same file streamed at its own rate and layout agree."""
    import soundfile as sf

    x = native(41.0, rate, channels)
    path = tmp_path / f"native-{rate}.wav"
    sf.write(path, x, rate, subtype="FLOAT")
    want = detector.detect_file(path, top_k=3)
    h = Harness(detector, provisional_min_interval_s=0.0)
    starts = list(range(0, len(x), frames))
    for i, s in enumerate(starts):  # one chunk per batch: the state goes through the table each time
        value = encode_chunk(want.track_id, i, x[s:s + frames], sample_rate=rate,
                             end=i == len(starts) - 1)
        h.process(h.msg(want.track_id.encode(), value))
    assert h.dead == []
    [final] = h.events(want.track_id, "final")
    assert (final["start_s"], final["end_s"]) == (want.highlight.start_s, want.highlight.end_s)
    assert [(e["start_s"], e["end_s"]) for e in final["highlights"]] == \
        [(s.start_s, s.end_s) for s in want.highlights]
    assert final["score"] == pytest.approx(want.highlight.score, abs=1e-4)
    assert final["audio_s"] == round(want.scores.duration_s, 3)
    assert h.metric("hookstream_audio_seconds_total") == pytest.approx(len(x) / rate)


def test_a_track_keeps_its_first_rate(detector):
    """|0@44.1k|1@48k|2@44.1k e| -> 1 is a dead letter, 0 and 2 are scored."""
    h = Harness(detector)
    x = native(3.0, 44100, 2)
    h.process(h.msg(b"t", encode_chunk("t", 0, x[:44100], sample_rate=44100)))
    other = h.msg(b"t", encode_chunk("t", 1, native(1.0, 48000, 2), sample_rate=48000))
    h.process(other, h.msg(b"t", encode_chunk("t", 1, x[44100:], sample_rate=44100, end=True)))
    [d] = h.dead
    assert d["reason"] == "sample_rate_changed" and d["offset"] == other.offset
    assert "48000 Hz" in d["detail"] and "44100 Hz" in d["detail"]
    [final] = h.events("t", "final")
    assert final["audio_s"] == 3.0


@pytest.mark.parametrize("header,reason", [(dict(sample_rate=7999), "unsupported_sample_rate"),
                                           (dict(sample_rate=192_001), "unsupported_sample_rate"),
                                           (dict(channels=9), "unsupported_channels")])
def test_out_of_bounds_rate_or_layout_is_dead_lettered(detector, header, reason):
    h = Harness(detector)
    channels = header.get("channels", 1)
    h.process(h.msg(b"t", raw_chunk("t", np.zeros(8 * channels, "<f4").tobytes(), **header)))
    [d] = h.dead
    assert d["reason"] == reason and str(next(iter(header.values()))) in d["detail"]
    assert h.table == {} and h.highlights == []


# --- too long ------------------------------------------------------------------------------

@pytest.mark.parametrize("batches", [
    pytest.param(["0", "1", "2", "3e"], id="one-chunk-per-batch"),  # |0|1|2!|3e:after_end|
    pytest.param(["0 1 2 3e"], id="one-batch"),                       # |0 1 2! 3e:after_end|
])
def test_too_long_track_is_finalized_with_the_audio_so_far(batches):
    """max 5 s, 2 s chunks: chunk 2 would make 6 s; the track ends with chunks 0-1."""
    det = Detector(DetectConfig(device=TEST_DEVICE, scorer=ScorerConfig(max_duration_s=5.0)),
                   checkpoint.untrained(nets.tiny(), LABELS, seed=0))
    h = Harness(det, provisional_min_interval_s=0.0)
    x = signal(7.0, seed=3)
    n = 2 * SR
    for batch in batches:
        h.process(*[h.chunk("long", int(s[0]), piece(x, int(s[0]), n), end=s.endswith("e"))
                    for s in batch.split()])
        h.clock.tick()
    assert [d["reason"] for d in h.dead] == ["too_long", "after_end"]
    [final] = h.events("long", "final")
    assert final["incomplete"] is True
    assert_final_equals_detect(final, det, x[:2 * n])
    assert h.record("long").ended and h.record("long").state is None


# --- idle timeout and end markers -----------------------------------------------------------

def test_idle_sweep_finalizes_incomplete_and_drops_old_markers(detector):
    """
    t:      0   1   2   3 ......... 12.9  13 ...................... 13+retention
    idle:   0   1   2   3                  final(incomplete)         marker removed
    busy:                 0 1 ... (chunk every second)               -
    done:   0e                                                        marker removed
    """
    h = Harness(detector, provisional_min_interval_s=0.0, idle_timeout_s=10.0)
    x = signal(4.0, seed=4)
    h.process(h.chunk("done", 0, piece(x, 0), end=True))
    for k in range(4):
        h.process(h.chunk("idle", k, piece(x, k)))
        h.clock.tick()
    h.clock.tick(9.9 - 1)  # 9.9 s after idle's last chunk
    h.process(h.chunk("busy", 0, piece(x, 0)))
    h.sweep()
    assert h.events("idle", "final") == []
    h.clock.tick(0.1)
    h.sweep()
    [final] = h.events("idle", "final")
    assert final["incomplete"] is True and final["seq"] == 3
    assert_final_equals_detect(final, detector, x)
    assert h.events("busy", "final") == [] and h.record("busy").state is not None
    assert h.record("idle").ended and h.record("idle").state is None
    assert h.metric("hookstream_tracks_finished_total", how="idle_timeout") == 1
    # A chunk of a timed-out track arriving later is after its end.
    h.process(h.chunk("idle", 4, piece(x, 0)))
    assert h.dead[-1]["reason"] == "after_end"
    # End markers are kept FINISHED_RETENTION_S, then removed; open tracks stay.
    h.clock.tick(FINISHED_RETENTION_S)
    h.sweep()
    assert "done" not in h.table and "idle" not in h.table
    assert h.events("busy", "final")[0]["incomplete"] is True  # busy idled out meanwhile
    h.sweep()
    assert "busy" in h.table
    h.clock.tick(FINISHED_RETENTION_S)
    h.sweep()
    assert h.table == {}


def test_idle_time_counts_from_when_the_worker_took_over(detector):
    """A restarted worker recovers a record last seen long ago: it gets the timeout afresh.

    t:  0          100 (worker takes over: active_since)   109.9   110
        chunk 0                                             -       final(incomplete)
    """
    h = Harness(detector, idle_timeout_s=10.0)
    h.process(h.chunk("t", 0, signal(1.0)))
    h.clock.tick(100.0)
    taken_over = h.clock()
    h.clock.tick(9.9)
    assert h.apply(h.proc.sweep({"t": h.record("t")}, active_since=taken_over)).highlights == []
    h.clock.tick(0.1)
    out = h.apply(h.proc.sweep({"t": h.record("t")}, active_since=taken_over))
    assert [(e["kind"], e["incomplete"]) for e in out.highlights] == [("final", True)]


def test_sweep_leaves_recent_tracks(detector):
    h = Harness(detector, idle_timeout_s=10.0)
    h.process(h.chunk("t", 0, signal(1.0)))
    h.clock.tick(5.0)
    out = h.sweep()
    assert out.highlights == [] and out.records == {}


# --- provisional events ---------------------------------------------------------------------

def test_provisional_events_are_rate_limited(detector):
    """1 s chunks, one per second, min interval 5 s: provisionals at t = 0, 5, 10, 15 (the first
    before any 3 s model chunk is complete: the audio so far)."""
    h = Harness(detector, provisional_min_interval_s=5.0)
    x = signal(20.0, seed=5)
    for k in range(20):
        h.process(h.chunk("t", k, piece(x, k), end=k == 19))
        h.clock.tick()
    assert [e["seq"] for e in h.events("t", "provisional")] == [0, 5, 10, 15]
    assert len(h.events("t", "final")) == 1


def test_provisional_events_only_when_the_span_moves(ckpt):
    """An energy-only 3 s window: the loud start holds it until a louder burst at 8-9 s.

    amplitude:  |loud loud quiet quiet ... quiet LOUDER LOUDER quiet ...|   (1 s chunks)
    span:       (0,1) (0,2) (0,3) same  same ... same   moves  ...
    (the first three: the audio so far, before a 3 s model chunk is complete)
    """
    det = Detector(DetectConfig(device=TEST_DEVICE, window=WindowConfig(length_s=3.0, gamma=0.0)), ckpt)
    h = Harness(det, provisional_min_interval_s=0.0)
    amps = [0.3, 0.3] + [0.01] * 6 + [0.9, 0.9] + [0.01] * 4
    x = np.concatenate([signal(1.0, seed=i, amp=a) for i, a in enumerate(amps)])
    for k in range(len(amps)):
        h.process(h.chunk("t", k, piece(x, k)))
        h.clock.tick()
    provisional = h.events("t", "provisional")
    seqs = [e["seq"] for e in provisional]
    assert seqs[:3] == [0, 1, 2]
    assert [(e["start_s"], e["end_s"]) for e in provisional[:3]] == [(0.0, 1.0), (0.0, 2.0), (0.0, 3.0)]
    assert not set(seqs) & set(range(3, 8))  # more quiet audio: same span, no event
    assert set(seqs) & {8, 9, 10}  # the louder burst moves it
    spans = [(e["start_s"], e["end_s"]) for e in provisional]
    assert all(a != b for a, b in zip(spans, spans[1:]))
    assert h.record("t").last_span == spans[-1]


def test_identical_events_have_equal_ids(detector):
    """The same input gives the same event ids (a redelivery can be deduplicated by id)."""
    x = signal(6.0, seed=6)
    runs = []
    for _ in range(2):
        h = Harness(detector, provisional_min_interval_s=0.0)
        for k in range(6):
            h.process(h.chunk("t", k, piece(x, k), end=k == 5))
        runs.append(h.highlights)
    assert [e["event_id"] for e in runs[0]] == [e["event_id"] for e in runs[1]]
    assert len({e["event_id"] for e in runs[0]}) == len(runs[0])  # distinct events, distinct ids
    kw = dict(kind="final", start_s=1.0, end_s=31.0, score=0.5, audio_s=40.0, model="m", seq=9)
    a = make_highlight_event("t", emitted_at="2025-01-01T00:00:00.000Z", **kw)
    b = make_highlight_event("t", emitted_at="2026-01-01T00:00:00.000Z", **{**kw, "score": 0.6})
    c = make_highlight_event("t", **{**kw, "end_s": 31.3})
    assert a["event_id"] == b["event_id"] != c["event_id"]


# --- records --------------------------------------------------------------------------------

def test_track_record_roundtrip(detector):
    h = Harness(detector, provisional_min_interval_s=0.0)
    x = signal(5.0)
    for k in (0, 1, 3, 4):  # 2 skipped
        h.process(h.chunk("t", k, piece(x, k)))
    raw = h.table["t"]
    r = h.record("t")
    assert (r.next_seq, r.skipped, r.incomplete, r.ended) == (5, (2,), True, False)
    assert r.last_span is not None and r.state.n_samples == 4 * SR
    assert TrackRecord.peek(raw)["next_seq"] == 5 and TrackRecord.peek(raw)["v"] == RECORD_VERSION
    marker = h.records.save(r.closed(T0))
    assert h.record("t") == marker and marker.state is None
    with pytest.raises(InputError, match="version 1, this hookstream reads"):
        TrackRecord.peek(raw.replace(b'"v":%d' % RECORD_VERSION, b'"v":1'))
    with pytest.raises(InputError, match="unreadable"):
        TrackRecord.peek(b"\x00\x00")


@pytest.mark.parametrize("record,seq,verdict", [
    (None, 0, "next"), (None, 2, "gap"),
    (TrackRecord("t", next_seq=3), 3, "next"), (TrackRecord("t", next_seq=3), 1, "duplicate"),
    (TrackRecord("t", next_seq=3), 5, "gap"), (TrackRecord("t", next_seq=3, skipped=(1,)), 1, "late"),
    (TrackRecord("t", next_seq=3, ended=True), 3, "after_end"),
    (TrackRecord("t", next_seq=3, ended=True), 2, "duplicate"),
])
def test_classify(record, seq, verdict):
    assert classify(record, seq) == verdict


def test_chorus_model_final_equals_detect():
    """A structure/chorus model (chroma, repetition features, chorusness window) streams exactly."""
    import dataclasses

    model = dataclasses.replace(nets.tiny(), n_chroma=12, n_repetition=7, track_norm=True,
                                chorus_logits=True)
    det = Detector(DetectConfig(device=TEST_DEVICE), checkpoint.untrained(model, LABELS, seed=2))
    h = Harness(det, provisional_min_interval_s=0.0)
    x = signal(40.0, seed=4)
    n = int(0.7 * SR)  # pieces that divide nothing
    pieces = [x[i:i + n] for i in range(0, len(x), n)]
    for seq, p in enumerate(pieces):
        h.process(h.chunk("c", seq, p, end=seq == len(pieces) - 1))
        h.clock.tick()
    finals = h.events("c", "final")
    assert len(finals) == 1 and len(h.events("c", "provisional")) >= 1
    assert_final_equals_detect(finals[0], det, x)
