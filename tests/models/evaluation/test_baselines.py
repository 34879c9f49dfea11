
import numpy as np
import pytest

from models import mel
from models.evaluation import baselines
from models.config import MelConfig
from models.errors import InputError
from models.window import Highlight

SR = 22_050


def chord(pitch_classes, seconds, *, amp=0.2):
    """Sine partials (fundamental, octave above and below) of pitch classes above C4."""
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    for pc in pitch_classes:
        f = 261.63 * 2 ** (pc / 12)
        for mult, weight in ((1, 1.0), (2, 0.5), (0.5, 0.5)):
            y += weight * np.sin(2 * np.pi * f * mult * t)
    fade = np.minimum(1.0, np.minimum(t / 0.02, (seconds - t) / 0.05))
    return (amp * y * fade / len(pitch_classes)).astype(np.float32)


def section(seed, *, chords=8, seconds=2.5):
    """A 20 s section: a progression of random triads, fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    return np.concatenate([chord(rng.choice(12, 3, replace=False), seconds) for _ in range(chords)])


@pytest.fixture(scope="module")
def ababcb():
    """A B A B C B, 20 s each: B (three times) repeats most."""
    a, b, c = section(1), section(2), section(3)
    return np.concatenate([a, b, a, b, c, b])


B_SPANS = [(20.0, 40.0), (60.0, 80.0), (100.0, 120.0)]


@pytest.mark.parametrize(("duration", "first", "middle"), [
    (240.0, (0.0, 30.0), (105.0, 135.0)),
    (31.0, (0.0, 30.0), (0.5, 30.5)),
    (30.0, (0.0, 30.0), (0.0, 30.0)),
    (12.5, (0.0, 12.5), (0.0, 12.5)),
    (0.0, (0.0, 0.0), (0.0, 0.0)),
])
def test_first_and_middle_windows(duration, first, middle):
    f = baselines.first_window(duration, 30.0)
    m = baselines.middle_window(duration, 30.0)
    assert (f.start_s, f.end_s) == first and (m.start_s, m.end_s) == middle
    with pytest.raises(InputError, match="length"):
        baselines.first_window(10.0, 0.0)


def test_repetition_window_lands_on_the_most_repeated_section(ababcb):
    times, curve = baselines.repetition_curve(ababcb, SR, hop_s=0.5)
    assert len(times) == len(curve) == 240 and times[0] == 0.25
    assert curve.max() == 1.0 and curve.min() >= 0.0
    per_section = curve.reshape(6, -1).mean(axis=1)  # A B A B C B
    assert per_section[[1, 3, 5]].min() > per_section[[0, 2, 4]].max()
    h = baselines.repetition_highlight(ababcb, SR, length_s=30.0)
    assert h.duration_s == pytest.approx(30.0)
    assert any(h.start_s <= s and e <= h.end_s for s, e in B_SPANS), h


def test_repetition_on_silence_and_short_signals():
    times, curve = baselines.repetition_curve(np.zeros(SR * 30, np.float32), SR)
    assert len(curve) == 60 and not curve.any()
    times, curve = baselines.repetition_curve(np.zeros(SR * 4, np.float32), SR)  # < min_lag
    assert len(curve) == 8 and not curve.any()
    assert baselines.repetition_highlight(np.zeros(SR * 4, np.float32), SR) == Highlight(0.0, 4.0, 0.0)
    with pytest.raises(InputError, match="hop_s"):
        baselines.repetition_curve(np.zeros(SR, np.float32), SR, hop_s=0)


def test_repetition_curve_covers_a_four_minute_song(ababcb):
    # Speed is the bench's business (docs/performance.md), not a timed unit test's.
    song = np.concatenate([ababcb, ababcb])  # 240 s
    times, values = baselines.repetition_curve(song, SR)
    assert len(times) == len(values) == 480  # one value per 0.5 s block
    assert values.max() == pytest.approx(1.0) and values.min() >= 0.0


def test_curve_window_clamps_to_the_end():
    curve = np.r_[np.zeros(50), np.ones(10)]  # 60 values of 1 s; the best 30 s end at 60
    h = baselines.curve_window(curve, step_s=1.0, duration_s=59.5, length_s=30.0)
    assert (h.start_s, h.end_s) == (29.5, 59.5)


def test_energy_baseline_picks_the_loud_section():
    rng = np.random.default_rng(0)
    gains = np.r_[np.full(60 * SR, 0.01), np.full(30 * SR, 0.5), np.full(60 * SR, 0.01)]
    samples = (rng.standard_normal(len(gains)) * gains).astype(np.float32)
    cfg = MelConfig()
    energy = mel.frame_energy(mel.mel_frames(samples, cfg))
    slot = 13
    n = len(energy) // slot
    slot_energy = energy[: n * slot].reshape(n, slot).mean(axis=1)
    h = baselines.energy_highlight(slot_energy, slot_s=slot * cfg.frame_seconds,
                                   duration_s=len(samples) / SR, length_s=30.0)
    assert abs(h.start_s - 60.0) < 0.5 and h.duration_s == pytest.approx(30.0)
