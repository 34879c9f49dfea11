"""Golden mel against librosa; incremental framing equals whole-signal framing."""

import librosa
import numpy as np
import pytest

from models import mel
from models.config import MelConfig

CFG = MelConfig()


@pytest.fixture(scope="module")
def signal():
    rng = np.random.default_rng(0)
    t = np.arange(int(22050 * 4.3)) / 22050
    tone = 0.4 * np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 0.5 * t))
    return (tone + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def test_mel_matches_librosa(signal):
    ours = mel.mel_power(signal, CFG)
    ref = librosa.feature.melspectrogram(
        y=signal, sr=22050, n_fft=2048, hop_length=512, n_mels=128, center=False,
        window="hamming", power=2.0).T
    assert ours.shape == ref.shape
    assert np.max(np.abs(ours - ref) / np.abs(ref)) <= 1e-5


@pytest.mark.parametrize("seed", range(5))
def test_incremental_equals_whole_for_random_cuts(signal, seed):
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.integers(0, len(signal), size=rng.integers(1, 30)))
    tail = np.zeros(0, np.float32)
    pieces = []
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(signal)]):
        frames, tail = mel.push(tail, signal[a:b], CFG)
        pieces.append(frames)
    streamed = np.concatenate(pieces)
    whole = mel.mel_frames(signal, CFG)
    ref = np.log(librosa.feature.melspectrogram(
        y=signal, sr=22050, n_fft=2048, hop_length=512, n_mels=128, center=False,
        window="hamming").T + CFG.log_offset)
    np.testing.assert_array_equal(streamed, whole)
    assert np.max(np.abs(np.exp(streamed) - np.exp(ref)) / np.exp(ref)) <= 1e-5
    assert len(tail) < CFG.n_fft


def test_frame_count_and_tail():
    assert mel.n_frames(2047, CFG) == 0
    assert mel.n_frames(2048, CFG) == 1
    assert mel.n_frames(2048 + 511, CFG) == 1
    assert mel.n_frames(2048 + 512, CFG) == 2
    frames, tail = mel.push(np.zeros(0, np.float32), np.zeros(1000, np.float32), CFG)
    assert frames.shape == (0, 128) and len(tail) == 1000


def test_pure_tone_lands_in_expected_band():
    t = np.arange(22050) / 22050
    frames = mel.mel_frames(np.sin(2 * np.pi * 1000 * t).astype(np.float32), CFG)
    centres = librosa.mel_frequencies(n_mels=128 + 2, fmax=11025)[1:-1]
    assert abs(centres[frames.mean(axis=0).argmax()] - 1000) < 60


@pytest.fixture(scope="module")
def music():
    """A synthetic song's first 20 s (pure tones, quiet bands: hard for a float32 FFT) and noise."""
    from models.examples import synth_song

    noise = 0.1 * np.random.default_rng(1).standard_normal(22050 * 5)
    return np.concatenate([synth_song(2)[0][: 22050 * 20], noise]).astype(np.float32)


def test_features_match_librosa_on_music_and_noise(music):
    logmel, chroma = mel.features(music, CFG)
    ref = librosa.feature.melspectrogram(
        y=music.astype(np.float64), sr=22050, n_fft=2048, hop_length=512, n_mels=128,
        center=False, window="hamming").T
    got = np.exp(logmel.astype(np.float64))
    want = ref + CFG.log_offset
    assert np.max(np.abs(got - want) / want) <= 1e-5  # relative error of mel + offset
    ref_chroma = librosa.feature.chroma_stft(
        S=np.abs(librosa.stft(music.astype(np.float64), n_fft=2048, hop_length=512,
                              window="hamming", center=False)) ** 2,
        sr=22050, norm=np.inf, tuning=0.0).T
    assert np.max(np.abs(chroma - ref_chroma)) <= 1e-5  # chroma peaks at 1


@pytest.mark.parametrize("seed", range(3))
def test_push_features_pieces_equal_whole_bitwise(music, seed):
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.integers(0, len(music), size=40))
    tail = np.zeros(0, np.float32)
    frames, chromas = [], []
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(music)]):
        f, c, tail = mel.push_features(tail, music[a:b], CFG)
        frames.append(f)
        chromas.append(c)
    whole_f, whole_c = mel.features(music, CFG)
    np.testing.assert_array_equal(np.concatenate(frames), whole_f)
    np.testing.assert_array_equal(np.concatenate(chromas), whole_c)
