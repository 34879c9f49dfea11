"""Property-based fuzzing (Hypothesis) of the chunk decoder and the processor.

Properties: no exception escapes; every rejected event yields exactly one dead
letter with a reason and its original coordinates; accepted events change the
good tracks exactly as in-order delivery of those tracks alone does.

Examples per test: ``HOOKSTREAM_FUZZ_EXAMPLES`` (default 60 for the decoder, a
quarter of that for the processor; e.g. ``HOOKSTREAM_FUZZ_EXAMPLES=2000`` for a
long run).
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from fuzzing import mutated_event
from models.config import DetectConfig
from models.detect import Detector
from stream_app.events import EventError, decode_chunk, encode_chunk
from stream_app.metrics import Metrics
from stream_app.processor import Incoming, Processor
from stream_app.settings import StreamSettings
from stream_app.tracks import RecordTable

SR = 22050
EXAMPLES = int(os.environ.get("HOOKSTREAM_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("HOOKSTREAM_FUZZ_EXAMPLES"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
GOOD = ("good-track-0", "good-track-1")


@FUZZ
@given(key=st.one_of(st.none(), st.binary(max_size=40)), value=st.binary(max_size=300))
def test_decoder_on_arbitrary_bytes_raises_only_event_errors(key, value):
    try:
        decode_chunk(key, value)
    except EventError:
        pass


@FUZZ
@given(rng=st.randoms(use_true_random=False), tid=st.text(min_size=1, max_size=20))
def test_decoder_on_mutated_events_raises_only_event_errors(rng, tid):
    key, value = mutated_event(rng, tid)
    try:
        chunk = decode_chunk(key, value)
    except EventError as exc:
        assert exc.reason and str(exc)
    else:  # accepted: every field is in range
        assert 0 <= chunk.seq <= 2**53 - 1 and chunk.sample_rate == SR and 1 <= chunk.channels <= 2
        assert bytes(key) == chunk.track_id.encode() and np.isfinite(chunk.samples()).all()


@pytest.fixture(scope="module")
def fuzz_detector(ckpt):
    return Detector(DetectConfig(device="cpu"), ckpt)


@pytest.fixture(scope="module")
def ckpt():
    from models import checkpoint, nets

    return checkpoint.untrained(nets.tiny(), ("a", "b", "c", "d", "e"), seed=0)


def good_events(tid: str, seed: int) -> list[bytes]:
    x = np.random.default_rng(seed).uniform(-0.5, 0.5, 3 * SR // 2).astype(np.float32)
    return [encode_chunk(tid, k, x[k * SR // 2:(k + 1) * SR // 2], sample_rate=SR, end=k == 2)
            for k in range(3)]


def run(detector, batches: list[list[tuple[bytes | None, bytes]]]):
    """Feed batches to a fresh Processor with a dict table; returns (finals, dead letters, metrics)."""
    registry = CollectorRegistry()
    proc = Processor(detector, StreamSettings(provisional_min_interval_s=0.0), Metrics(registry),
                     clock=lambda: 1e6, monotonic=lambda: 0.0)
    table = RecordTable({}, context_chunks=detector.scorer.cfg.context_chunks, segment_chunks=1)
    finals, dead, offset = {}, [], 0
    for batch in batches:
        msgs = []
        for key, value in batch:
            msgs.append(Incoming(key, value, "audio-chunks", 1, offset, 0.0))
            offset += 1
        records = {}
        for m in msgs:
            try:
                tid = m.key.decode() if m.key is not None else None
            except UnicodeDecodeError:
                continue
            if tid is not None:
                records[tid] = table.load(tid)
        out = proc.process(msgs, records)
        for tid, record in out.records.items():
            if record is None:
                table.delete(tid)
            else:
                table.save(record)
        finals.update({e["track_id"]: e for e in out.highlights if e["kind"] == "final"})
        dead += out.dead_letters
    return finals, dead, registry, offset


@pytest.fixture(scope="module")
def in_order(fuzz_detector):
    """The good tracks delivered alone, in order, one chunk per batch."""
    events = {tid: good_events(tid, i) for i, tid in enumerate(GOOD)}
    finals, dead, _, _ = run(fuzz_detector, [[(tid.encode(), v)] for tid in GOOD for v in events[tid]])
    assert dead == [] and set(finals) == set(GOOD)
    return events, finals


@settings(parent=FUZZ, max_examples=max(5, EXAMPLES // 4))
@given(rng=st.randoms(use_true_random=False), n_bad=st.integers(1, 12), cuts=st.lists(st.integers(0, 40), max_size=4))
def test_processor_isolates_every_bad_event(fuzz_detector, in_order, rng, n_bad, cuts):
    events, want = in_order
    good = [(tid.encode(), v) for tid in GOOD for v in events[tid]]
    bad = [mutated_event(rng, f"fz-{i}") for i in range(n_bad)]
    bad = [(k, v) for k, v in bad if k is None or k.decode("utf-8", "replace") not in GOOD]
    stream = list(good)
    for b in bad:  # good events keep their order among themselves
        stream.insert(rng.randrange(len(stream) + 1), b)
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    batches = [stream[a:b] for a, b in zip(bounds, bounds[1:])]
    finals, dead, registry, n = run(fuzz_detector, batches)

    for tid in GOOD:
        got, ref = finals[tid], want[tid]
        assert {k: got[k] for k in ("start_s", "end_s", "seq", "incomplete", "audio_s")} == \
               {k: ref[k] for k in ("start_s", "end_s", "seq", "incomplete", "audio_s")}
        assert got["score"] == pytest.approx(ref["score"], abs=1e-6)
    offsets = [d["offset"] for d in dead if d["reason"] != "gap"]
    assert len(offsets) == len(set(offsets)), "an event with two dead letters"
    assert all(d["topic"] == "audio-chunks" and d["partition"] == 1 and d["reason"] for d in dead)
    accepted = registry.get_sample_value("hookstream_chunks_total")
    duplicates = registry.get_sample_value("hookstream_rejected_inputs_total", {"reason": "duplicate"}) or 0
    assert accepted + duplicates + len(offsets) == n, "an event neither accepted nor rejected once"
    rejected = sum(s.value for m in registry.collect() if m.name == "hookstream_rejected_inputs"
                   for s in m.samples if s.name.endswith("_total") and s.labels["reason"] != "duplicate")
    assert rejected == len(dead)
