"""Track records as a head plus append-only segments: exact joins, clear errors, linear bytes."""

import dataclasses

import numpy as np
import pytest

from models import checkpoint, nets
from models.config import DetectConfig, ScorerConfig
from models.detect import Detector
from models.errors import InputError
from models.scorer import TrackState
from stream_app.changelog_size import changelog_bytes
from stream_app.table_keys import head_key, is_segment, parse_segment, partition_key, segment_key
from stream_app.tracks import RECORD_VERSION, RecordTable, TrackRecord

SR = 22050
LABELS = ("a", "b", "c", "d", "e")
STRUCTURE = dict(n_chroma=12, n_repetition=7, track_norm=True, chorus_logits=True)


@pytest.fixture(scope="module")
def detector():
    return Detector(DetectConfig(device="cpu"), checkpoint.untrained(nets.tiny(), LABELS, seed=0))


@pytest.fixture(scope="module")
def structure_scorer():
    model = dataclasses.replace(nets.tiny(), **STRUCTURE)
    return Detector(DetectConfig(device="cpu"), checkpoint.untrained(model, LABELS, seed=1)).scorer


def signal(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 330 * t) + 0.1 * rng.standard_normal(t.size)).astype(np.float32)


def assert_states_bitwise_equal(got, want) -> None:
    """Every field equal, arrays bitwise (nested dataclasses, e.g. the resampler carry, too)."""
    for f in dataclasses.fields(want):
        a, b = getattr(got, f.name), getattr(want, f.name)
        if dataclasses.is_dataclass(b):
            assert type(a) is type(b), f.name
            assert_states_bitwise_equal(a, b)
        elif isinstance(b, np.ndarray):
            assert isinstance(a, np.ndarray), f.name
            assert (a.dtype, a.shape) == (b.dtype, b.shape), f.name
            assert a.tobytes() == b.tobytes(), f.name
        else:
            assert a == b, f.name


@pytest.mark.parametrize("structure", [False, True])
def test_head_and_segments_join_back_into_the_same_state_at_every_step(detector, structure_scorer,
                                                                      structure):
    """4 minutes in 0.7 s pieces, a segment every 3 chunks and a context of 5: after every
    save, reading the table gives back every array bitwise (frozen logits in segments, the
    rewritable last ones in the head)."""
    scorer = structure_scorer if structure else detector.scorer
    scorer = type(scorer)(scorer.ckpt, ScorerConfig(context_chunks=5))
    table = RecordTable({}, context_chunks=5, segment_chunks=3)
    x = signal(240.0, seed=3)
    n = int(0.7 * SR)
    record = TrackRecord("t", state=scorer.init_state("t"))
    for seq, i in enumerate(range(0, len(x), n)):
        state = scorer.step([(record.state, x[i:i + n])])[0]
        record = table.save(dataclasses.replace(record, state=state, next_seq=seq + 1,
                                                skipped=(seq,) if seq == 7 else record.skipped))
        back = table.load("t")
        assert_states_bitwise_equal(back.state, state)
        assert (back.next_seq, back.skipped, back.stored) == (seq + 1, record.skipped, record.stored)
    assert record.stored.segments == state.n_chunks // 3
    rows = record.stored.row_counts()
    assert rows["logits"] == state.n_chunks // 3 * 3 - 5  # the last 5 stay in the head
    assert rows["embeddings"] == state.n_chunks // 3 * 3
    # The head holds only what no segment holds: fewer than 3 new chunks, and 5 more logits.
    head = table.table[head_key("t")]
    in_head = TrackState.from_bytes(head[4 + int.from_bytes(head[:4], "big"):]).rows()
    assert in_head["embeddings"] < 3 and in_head["logits"] < 3 + 5
    assert in_head["slot_energy"] == in_head["embeddings"] * 10


def test_a_closed_track_leaves_only_its_marker(detector):
    table = RecordTable({}, context_chunks=detector.scorer.cfg.context_chunks, segment_chunks=2)
    state = detector.scorer.step([(detector.scorer.init_state("t"), signal(30.0))])[0]
    record = table.save(TrackRecord("t", next_seq=3, state=state))
    assert record.stored.segments == 1 and len(table.table) == 2
    marker = table.save(record.closed(123.0))
    assert list(table.table) == [head_key("t")] and marker.stored.segments == 0
    assert table.load("t") == marker and len(table.table[head_key("t")]) < 1024
    table.delete("t")
    assert table.table == {}


def test_unreadable_records_are_clear_errors(detector):
    store = {}
    table = RecordTable(store, context_chunks=40, segment_chunks=2)
    state = detector.scorer.step([(detector.scorer.init_state("t"), signal(40.0))])[0]
    table.save(TrackRecord("t", state=state))
    head = store[head_key("t")]
    assert TrackRecord.peek(head)["segments"] == 1
    old = head.replace(b'"v":%d' % RECORD_VERSION, b'"v":1')
    with pytest.raises(InputError, match=r"'t': version 1, this hookstream reads 2"):
        TrackRecord.read("t", {head_key("t"): old}.get)
    with pytest.raises(InputError, match=r"'t': segment 0 of 1 is missing"):
        TrackRecord.read("t", {head_key("t"): head}.get)
    bad = {head_key("t"): head, segment_key("t", 0): store[segment_key("t", 0)][:20]}
    with pytest.raises(InputError, match="segment 0 unreadable"):
        TrackRecord.read("t", bad.get)
    other = RecordTable({}, context_chunks=40, segment_chunks=2)
    other.save(TrackRecord("u", state=dataclasses.replace(state, track_id="u")))
    swapped = {head_key("t"): head, segment_key("t", 0): other.table[segment_key("u", 0)]}
    with pytest.raises(InputError, match="segment 0 is not this record's"):
        TrackRecord.read("t", swapped.get)
    with pytest.raises(InputError, match="under key 't' is of track 'u'"):
        TrackRecord.read("t", {head_key("t"): other.table[head_key("u")]}.get)
    with pytest.raises(InputError, match="unreadable"):
        TrackRecord.read("t", {head_key("t"): b"\x00\x00\x00\x09{nope"}.get)


def test_orphan_segments_are_found(detector):
    """Segments no head lists (a track restarted afresh over an unreadable record)."""
    table = RecordTable({}, context_chunks=40, segment_chunks=2)
    state = detector.scorer.step([(detector.scorer.init_state("t"), signal(40.0))])[0]
    table.save(TrackRecord("t", state=state))
    table.table[segment_key("t", 5)] = b"left over"
    table.table[segment_key("gone", 0)] = b"left over"
    assert sorted(table.orphans()) == sorted([segment_key("t", 5), segment_key("gone", 0)])
    assert [k for k, _ in table.heads()] == [head_key("t")]


@pytest.mark.parametrize("tid", ["t", "song 17", "Ünïcode ♪", "a\x00b", "x" * 256])
def test_segment_keys_are_never_track_ids(tid):
    key = segment_key(tid, 12)
    assert is_segment(key) and not is_segment(head_key(tid))
    assert parse_segment(key) == (tid, 12) and partition_key(key) == head_key(tid)
    with pytest.raises(ValueError):
        parse_segment(head_key(tid))


def test_changelog_bytes_grow_linearly_with_the_track(detector):
    """1, 5 and 20 minute tracks in 2 s chunk events through the Processor: the bytes written
    per audio minute stay within 15% of each other (a whole-record write per batch, as in
    record version 1, gave 1.36, 1.39 and 1.88 MB per minute with this tiny model: 1.38x);
    each track leaves only its marker."""
    got = changelog_bytes(detector, (1, 5, 20))
    per_min = got["bytes_per_audio_min"]
    assert set(per_min) == {"1", "5", "20"}
    assert max(per_min.values()) / min(per_min.values()) < 1.15, per_min
    heads = [t["max_head_bytes"] for t in got["tracks"].values()]
    assert max(heads) / min(heads) < 1.2, heads  # bounded head
    assert got["tracks"]["20"]["segments"] == 399 // 10  # 400 chunks, the last one partial
    assert all(t["keys_left"] == 1 for t in got["tracks"].values())
