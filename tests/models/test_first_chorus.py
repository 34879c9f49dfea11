"""The first-chorus weight on a chorus model's chorusness: what it finds, and that streaming stays exact."""

import dataclasses

import numpy as np
import pytest
import torch

from models import first_chorus, nets
from models.config import DetectConfig, WindowConfig
from models.detect import Detector
from models.errors import ConfigError, InputError
from tests.models.test_scorer import song, untrained_ckpt

SLOTS = 10
ON = WindowConfig(length_s=10.0, first_chorus=2.0, first_chorus_threshold=0.6,
                  first_chorus_chunks=2, first_chorus_floor=0.2)
OFF = dataclasses.replace(ON, first_chorus=0.0)


def slot_chroma(pattern: str, seed: int = 0) -> np.ndarray:
    """One chunk of slot chroma per letter: equal letters are the same 10 slots (a phrase of
    chords), other letters unrelated ones: (len(pattern), SLOTS * 12)."""
    rng = np.random.default_rng(seed)
    chunks = {c: rng.random((SLOTS, 12)) ** 4 for c in sorted(set(pattern))}
    return np.array([chunks[c].reshape(-1) for c in pattern], np.float32)


def test_reference_is_the_first_chunk_near_the_largest_smoothed_chorusness():
    ch = np.array([0.1, 0.1, 0.2, 0.7, 0.8, 0.7, 0.2, 0.1, 0.9, 1.0, 0.9, 0.1])
    # 3-chunk means: 0.57 at chunk 3, 0.73 at 4, the largest 0.93 at 9
    assert list(first_chorus.reference(ch, 0.6, 2)) == [3, 4]
    assert list(first_chorus.reference(ch, 0.65, 2)) == [4, 5]
    assert list(first_chorus.reference(ch, 0.9, 3)) == [9, 10, 11]
    assert list(first_chorus.reference(ch, 0.9, 5)) == [9, 10, 11]  # cut at the end
    assert first_chorus.reference(np.zeros(0), 0.6, 4).shape == (0,)
    assert list(first_chorus.reference(np.zeros(5), 0.6, 2)) == [0, 1]  # all equal: the start


def test_match_is_high_on_the_reference_material_and_low_elsewhere():
    # verse "vv", first chorus-like phrase "bb", later material "cc", then both again
    fine = slot_chroma("xvvvvbbbbccccvvbbbbcccccx")
    ref = np.array([6, 7])
    w = first_chorus.match(fine, SLOTS, ref)
    assert w.shape == (25,) and np.all((0 <= w) & (w <= 1))
    assert w[6] == w[7] == 1.0
    assert w[16:18].min() > 0.9  # the chorus heard again
    assert w[10:12].max() < 0.5 and w[21:23].max() < 0.5  # the C material that follows it


def test_match_equals_those_columns_of_the_whole_similarity():
    fine = slot_chroma("abcdabceabcd", seed=3)
    whole = nets.phrase_similarity(torch.from_numpy(fine[None]), torch.tensor([12]), SLOTS)[0]
    ref = np.array([4, 5, 6])
    expect = np.clip(whole[:, ref].numpy().max(1), 0, 1)
    expect[ref] = 1.0
    np.testing.assert_allclose(first_chorus.match(fine, SLOTS, ref), expect, atol=1e-6)


def test_weigh_is_the_documented_product_and_power_zero_changes_nothing():
    fine = slot_chroma("xvvvvbbbbccccvvbbbbcccccx")
    ch = np.linspace(0.1, 0.9, 25) ** 2
    ch[6:8] = 0.95  # the first chorus-like phrase
    assert np.array_equal(first_chorus.weigh(ch, fine, SLOTS, OFF), ch)
    ref = first_chorus.reference(ch, ON.first_chorus_threshold, ON.first_chorus_chunks)
    w = first_chorus.match(fine, SLOTS, ref)
    np.testing.assert_allclose(first_chorus.weigh(ch, fine, SLOTS, ON), ch * (0.2 + 0.8 * w) ** 2)
    # the later, louder C material now scores below the chorus heard again
    out = first_chorus.weigh(ch, fine, SLOTS, ON)
    assert ch[21] > ch[17] and out[21] < out[17]


def test_bad_input_and_settings_are_refused_by_name():
    with pytest.raises(InputError, match="first_chorus: 3 rows of slot chroma for 4"):
        first_chorus.weigh(np.ones(4), np.ones((3, 120)), SLOTS, ON)
    with pytest.raises(InputError, match="first_chorus: None rows"):
        first_chorus.weigh(np.ones(4), None, SLOTS, ON)
    assert first_chorus.weigh(np.zeros(0), None, SLOTS, ON).shape == (0,)
    for key, value in (("first_chorus", -1.0), ("first_chorus_threshold", 0.0),
                       ("first_chorus_chunks", 0), ("first_chorus_chunks", 2.5),
                       ("first_chorus_floor", 1.0), ("first_chorus_provisional", "yes")):
        with pytest.raises(ConfigError, match=f"window.{key} = "):
            WindowConfig(**{key: value})


def detector(window: WindowConfig, structure) -> Detector:
    return Detector(DetectConfig(device="cpu", window=window), untrained_ckpt(structure=structure))


@pytest.mark.parametrize("on_provisional", [False, True])
def test_streamed_final_highlight_equals_detect_with_the_weight(on_provisional):
    det = detector(dataclasses.replace(ON, first_chorus_threshold=0.3,
                                       first_chorus_provisional=on_provisional), "links")
    x = song(47.3, seed=4)
    sc = det.scorer
    state = sc.init_state("t")
    weighed = []
    for piece in np.array_split(x, 9):
        state = sc.step([(state, piece)])[0]
        provisional = sc.provisional(state)
        assert len(provisional.slot_chroma) == len(provisional.chorusness)
        # provisional highlights are weighed only with window.first_chorus_provisional
        weighed.append(not np.allclose(det.slot_curves(provisional)[0],
                                       det.slot_curves(provisional, OFF)[0], rtol=1e-6, atol=0))
    assert any(weighed) if on_provisional else not any(weighed)
    final = sc.finalize([state])[0]
    offline = det.detect_samples("t", x)
    assert np.array_equal(final.slot_chroma, offline.scores.slot_chroma)
    assert det.highlight(final) == offline.highlight
    assert final.slot_chroma.shape == (len(final.chorusness), 120)
    weighted, _ = det.slot_curves(final)
    plain, _ = det.slot_curves(final, OFF)
    assert not np.allclose(weighted, plain)
    assert np.all(weighted <= plain + 1e-12)


def test_models_without_slot_chroma_read_their_curve_as_it_is():
    det = detector(ON, True)  # chunk chroma, no slots
    scores = det.detect_samples("t", song(20.0)).scores
    assert scores.slot_chroma is None
    assert np.array_equal(det.slot_curves(scores)[0], det.slot_curves(scores, OFF)[0])
