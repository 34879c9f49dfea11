"""Decoding: every format, resampling, downmix, and each kind of bad input."""

import numpy as np
import pytest
import soundfile as sf

from models.audio import decode, validate_samples
from models.errors import InputError


def tone(sr, seconds=1.0, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    x = 0.5 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return np.stack([x, 0.5 * x], axis=1) if channels == 2 else x


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", None),
                                         ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_formats_decode_to_mono_22050(tmp_path, fmt, subtype):
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, tone(22050), 22050, format=fmt, subtype=subtype)
    y = decode(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 22050) < 2000  # mp3/ogg encoders pad a little
    assert 0.3 < np.abs(y).max() < 0.7


def test_resamples_and_downmixes(tmp_path):
    path = tmp_path / "stereo44k.wav"
    sf.write(path, tone(44100, 2.0, channels=2), 44100, subtype="FLOAT")
    y = decode(path)
    assert len(y) == 44100  # 2 s at 22,050 Hz
    assert np.abs(y).max() == pytest.approx(0.375, abs=0.02)  # mean of 0.5 and 0.25 amplitude


@pytest.mark.parametrize("make,reason", [
    (lambda p: None, "no such file"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_text("this is not audio\n" * 50), "not a readable audio file"),
    (lambda p: p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00garbage"),
     "not a readable audio file"),
])
def test_bad_files_named_with_reason(tmp_path, make, reason):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(InputError, match=reason) as err:
        decode(path)
    assert str(path) in str(err.value)


def test_zero_length_audio(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), 22050)
    with pytest.raises(InputError, match="zero length"):
        decode(path)


def test_nonfinite_samples(tmp_path):
    path = tmp_path / "nan.wav"
    x = tone(22050)
    x[100] = np.nan
    sf.write(path, x, 22050, subtype="FLOAT")
    with pytest.raises(InputError, match="NaN or infinite"):
        decode(path)


def test_too_long(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, tone(22050, 3.0), 22050)
    with pytest.raises(InputError, match="more than the maximum of 2 s"):
        decode(path, max_duration_s=2.0)


def test_validate_samples():
    assert validate_samples(np.zeros(4, np.float64), name="c").dtype == np.float32
    with pytest.raises(InputError, match="chunk 3: samples must be mono"):
        validate_samples(np.zeros((2, 2), np.float32), name="chunk 3")
    with pytest.raises(InputError, match="floating point"):
        validate_samples(np.zeros(4, np.int16), name="c")
