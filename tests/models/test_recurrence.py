"""The recurrence weight on a chorus model's chorusness: what it measures, and that streaming stays exact."""

import numpy as np
import pytest

from models import recurrence
from models.config import DetectConfig, WindowConfig
from models.detect import Detector
from models.errors import ConfigError, InputError
from tests.models.test_scorer import song, untrained_ckpt


def phrase_chroma(pattern: str, seed: int = 0) -> np.ndarray:
    """One chunk of chroma per letter; equal letters are the same chord, others unrelated."""
    rng = np.random.default_rng(seed)
    chords = {c: rng.random(12) ** 4 for c in sorted(set(pattern))}
    return np.array([chords[c] for c in pattern], np.float32)


def test_future_match_is_high_where_the_passage_comes_back_and_zero_at_its_last_time():
    # a 4-chunk phrase "abcd" heard twice, then material that is never heard again
    x = phrase_chroma("abcd" + "efgh" + "abcd" + "ijkl")
    f = recurrence.future_match(x)
    assert f.shape == (16,)
    assert np.all((0 <= f) & (f <= 1))
    # the phrase at chunk c spans chunks c-1..c+2: at 1 it is "abcd", whose repeat starts at 8
    assert f[1] > 0.99
    assert f[8:].max() < 0.05  # nothing after the second "abcd" comes back
    assert f[1] > f[5] + 0.7  # "efgh" never returns


def test_weigh_multiplies_by_the_future_match_and_alpha_zero_changes_nothing():
    x = phrase_chroma("abcdefghabcdijkl")
    ch = np.linspace(0.2, 0.9, 16)
    assert np.array_equal(recurrence.weigh(ch, x, 0.0), ch)
    np.testing.assert_allclose(recurrence.weigh(ch, x, 2.0), ch * recurrence.future_match(x) ** 2)


def test_bad_chroma_is_an_error_naming_it():
    with pytest.raises(InputError, match="chunk chroma"):
        recurrence.future_match(np.zeros(12))
    with pytest.raises(InputError, match="3 chunk chroma rows for 4"):
        recurrence.weigh(np.ones(4), np.ones((3, 12)), 1.0)
    assert recurrence.future_match(np.zeros((0, 12))).shape == (0,)


def chorus_detector(alpha: float, structure: bool = True) -> Detector:
    return Detector(DetectConfig(device="cpu", window=WindowConfig(length_s=10.0, recurrence=alpha)),
                    untrained_ckpt(structure=structure))


def test_streamed_final_highlight_equals_detect_with_recurrence():
    det = chorus_detector(1.0)
    x = song(47.3, seed=4)
    sc = det.scorer
    state = sc.init_state("t")
    for piece in np.array_split(x, 9):
        state = sc.step([(state, piece)])[0]
        provisional = sc.provisional(state)
        assert len(provisional.chroma) == len(provisional.chorusness)
        det.highlight(provisional)  # the provisional curve goes through the same weight
    final = sc.finalize([state])[0]
    offline = det.detect_samples("t", x)
    assert np.array_equal(final.chroma, offline.scores.chroma)
    assert det.highlight(final) == offline.highlight
    # the chroma is the chunk chroma the model reads: the last n_chroma values of its chunk vectors
    assert final.chroma.shape == (len(final.chorusness), 12)
    weighted, _ = det.slot_curves(final)
    plain, _ = det.slot_curves(final, WindowConfig(length_s=10.0))
    assert not np.allclose(weighted, plain)
    assert np.all(weighted <= plain + 1e-12)


def test_recurrence_needs_a_chorus_model_with_chroma_and_a_sane_value():
    with pytest.raises(ConfigError, match="window.recurrence = 1.0: model .* no chorusness"):
        chorus_detector(1.0, structure=False)
    with pytest.raises(ConfigError, match="window.recurrence"):
        WindowConfig(recurrence=-0.5)
    assert chorus_detector(0.0, structure=False).cfg.window.recurrence == 0.0
