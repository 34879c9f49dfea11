"""Clips: cut at the source's own rate and channels, equal-power fades, BS.1770 loudness, no clipping."""

import math

import numpy as np
import pytest
import soundfile as sf

from models.clip import (ClipOptions, check_out_dir, cut_clip, fade, integrated_loudness,
                         normalize_loudness, read_span, true_peak_db)
from models.errors import InputError


def tone(seconds, sr, *, channels=1, amp=0.3, freq=997.0):
    t = np.arange(int(seconds * sr)) / sr
    x = amp * np.sin(2 * np.pi * freq * t)
    cols = [x * (1.0 - 0.25 * c) for c in range(channels)]  # channels differ, so order is checked
    return np.stack(cols, 1).astype(np.float32)


@pytest.fixture
def stereo48(tmp_path):
    path = tmp_path / "master.wav"
    ramp = np.linspace(0, 1, 48000 * 20, dtype=np.float32)  # value = position, to check the cut
    sf.write(path, np.stack([ramp, -ramp], 1), 48000, subtype="FLOAT")
    return path


def test_read_span_is_exact_at_native_rate_and_channels(stereo48):
    x, sr = read_span(stereo48, 5.0, 7.5)
    assert sr == 48000 and x.shape == (120_000, 2)
    full = np.linspace(0, 1, 48000 * 20, dtype=np.float32)
    np.testing.assert_array_equal(x[:, 0], full[240_000:360_000])
    np.testing.assert_array_equal(x[:, 1], -full[240_000:360_000])


def test_read_span_past_the_end_is_clipped_and_errors_name_the_file(stereo48, tmp_path):
    x, _ = read_span(stereo48, 19.0, 40.0)
    assert len(x) == 48000
    with pytest.raises(InputError, match="no audio between"):
        read_span(stereo48, 25.0, 30.0)
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio\n" * 50)
    with pytest.raises(InputError, match=r"junk\.wav: not a readable audio file"):
        read_span(junk, 0.0, 1.0)
    with pytest.raises(InputError, match=r"gone\.flac: no such file"):
        read_span(tmp_path / "gone.flac", 0.0, 1.0)


def test_fades_are_equal_power_quarter_sines():
    sr = 1000
    x = fade(np.ones((10 * sr, 2), np.float32), sr, fade_in_s=1.0, fade_out_s=2.0)
    assert x[0, 0] == 0.0 and x[-1, 1] == pytest.approx(0.0, abs=1e-6)
    assert x[500, 0] == pytest.approx(math.sin(math.pi / 4), abs=1e-6)  # -3 dB half way in
    assert x[-1000, 1] == pytest.approx(math.cos(math.pi / 4), abs=2e-3)  # -3 dB half way out
    np.testing.assert_array_equal(x[sr:-2 * sr], 1.0)  # untouched between the fades
    assert np.all(np.diff(x[:sr, 0]) > 0) and np.all(np.diff(x[-2 * sr:, 0]) < 0)


def test_fades_shrink_in_proportion_on_a_short_clip():
    x = fade(np.ones(300, np.float32), 100, fade_in_s=1.0, fade_out_s=2.0)  # 3 s of fade in 3 s
    assert x[0] == 0 and x.max() == pytest.approx(1.0, abs=1e-3) and np.argmax(x) in (99, 100)


def test_loudness_reaches_the_target_and_a_tone_measures_as_bs1770_says():
    sr = 48000
    # BS.1770-4: a 997 Hz sine of 0 dBFS peak in one channel reads -3.01 LUFS.
    x = tone(10, sr, amp=10 ** (-23 / 20), freq=997.0)  # peak -23 dBFS
    assert integrated_loudness(x[:, 0], sr) == pytest.approx(-26.01, abs=0.05)
    y, gain, reached, limited = normalize_loudness(x, sr, target_lufs=-16.0)
    assert not limited and reached == pytest.approx(-16.0)
    assert integrated_loudness(y, sr) == pytest.approx(-16.0, abs=0.01)
    assert gain == pytest.approx(-16.0 - integrated_loudness(x, sr), abs=1e-6)


def test_loud_target_is_held_under_the_true_peak_ceiling():
    sr = 44100
    rng = np.random.default_rng(0)
    spiky = (0.02 * rng.standard_normal((sr * 5, 2))).astype(np.float32)
    spiky[::4410] = 0.9  # sparse peaks: loud target would clip them
    y, _gain, reached, limited = normalize_loudness(spiky, sr, target_lufs=-5.0)
    assert limited and reached < -5.0
    assert true_peak_db(y) <= -1.0 + 1e-6 and np.abs(y).max() < 1.0


def test_silence_and_too_short_clips():
    y, gain, reached, limited = normalize_loudness(np.zeros((48000, 2), np.float32), 48000,
                                                   target_lufs=-14.0)
    assert (gain, reached, limited) == (0.0, None, False) and not y.any()
    with pytest.raises(InputError, match="too short to measure loudness"):
        integrated_loudness(np.ones(100, np.float32), 48000, name="tiny.wav")


@pytest.mark.parametrize("fmt,sr,channels", [("wav", 48000, 2), ("flac", 96000, 2),
                                             ("ogg", 44100, 2), ("mp3", 44100, 1), ("ogg", 22050, 1)])
def test_cut_clip_keeps_rate_and_channels_in_every_format(tmp_path, fmt, sr, channels):
    src = tmp_path / "src.flac"
    sf.write(src, tone(12, sr, channels=channels), sr, subtype="PCM_24")
    out = tmp_path / f"clip.{fmt}"
    clip = cut_clip(src, 2.0, 8.0, out, options=ClipOptions(format=fmt, loudness_lufs=-14.0))
    info = sf.info(str(out))
    assert (info.samplerate, info.channels) == (sr, channels) == (clip.sample_rate, clip.channels)
    assert info.duration == pytest.approx(6.0, abs=0.06)
    assert (clip.start_s, clip.end_s) == (2.0, 8.0)
    assert clip.loudness_lufs == pytest.approx(-14.0, abs=0.01)
    written, _ = sf.read(str(out), always_2d=True)
    tol = {"wav": 0.02, "flac": 0.02}.get(fmt, 0.5)  # lossy codecs shift the level a little
    assert integrated_loudness(written, sr) == pytest.approx(-14.0, abs=tol)
    assert np.abs(written).max() < 1.0
    if fmt in ("wav", "flac"):
        assert info.subtype == "PCM_24"  # a 24-bit source stays 24-bit
        assert abs(written[0]).max() < 1e-4  # starts silent (fade in)


def test_cut_clip_never_overwrites_unless_asked(tmp_path, stereo48):
    out = tmp_path / "c.wav"
    out.write_bytes(b"keep me")
    with pytest.raises(InputError, match=r"c\.wav: clip already exists \(use --overwrite"):
        cut_clip(stereo48, 1.0, 3.0, out, options=ClipOptions(format="wav"))
    assert out.read_bytes() == b"keep me"
    cut_clip(stereo48, 1.0, 3.0, out, options=ClipOptions(format="wav"), overwrite=True)
    assert sf.info(str(out)).frames == 96000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_mp3_at_an_mpeg_incompatible_rate_is_a_clear_error(tmp_path):
    src = tmp_path / "hi.flac"
    sf.write(src, tone(3, 96000), 96000)
    with pytest.raises(InputError, match=r"hi\.flac: 96000 Hz cannot be written as mp3"):
        cut_clip(src, 0.0, 2.0, tmp_path / "hi.mp3", options=ClipOptions(format="mp3"))


def test_out_dir_checks(tmp_path):
    assert check_out_dir(tmp_path / "new" / "dir").is_dir()
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(InputError, match=r"afile: output folder is not a folder"):
        check_out_dir(afile)
    with pytest.raises(InputError, match=r"afile/sub: output folder is not writable"):
        check_out_dir(afile / "sub")


@pytest.mark.parametrize("bad,match", [(dict(fade_in_s=-1.0), "fade_in"), (dict(format="aac"), "format"),
                                       (dict(loudness_lufs=3.0), "loudness"),
                                       (dict(peak_ceiling_db=1.0), "ceiling")])
def test_options_are_validated(bad, match):
    with pytest.raises(InputError, match=match):
        ClipOptions(**bad)
