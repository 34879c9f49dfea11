"""The public Python API (``import hookstream``), and the README example that uses it."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import hookstream
from models import checkpoint, nets
from models.examples import synth_song

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("major", "minor", "slow", "medium", "fast")


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    d = tmp_path_factory.mktemp("api")
    ckpt = checkpoint.save(checkpoint.untrained(nets.tiny(), LABELS), d / "tiny.safetensors")
    return hookstream.load(ckpt, device="cpu")


@pytest.fixture(scope="module")
def song():
    return synth_song(0, bar_s=1.0)[0]  # 52 s, 22,050 Hz mono


def test_detect_file_and_array_agree(detector, song, tmp_path):
    path = tmp_path / "s.wav"
    sf.write(path, song, 22050, subtype="FLOAT")
    a = hookstream.detect(path, detector=detector)
    b = hookstream.detect(song, sample_rate=22050, track_id="s", detector=detector)
    assert a.track_id == b.track_id == "s"
    assert a.highlight == b.highlight and a.highlight.duration_s == pytest.approx(30.0)
    stereo = hookstream.detect(np.stack([song, song], 1), sample_rate=22050, detector=detector)
    assert stereo.highlight == a.highlight and stereo.track_id == "track"


def test_detect_array_at_another_rate(detector, song):
    import soxr

    hi = soxr.resample(song, 22050, 44100).astype(np.float32)
    a = hookstream.detect(hi, sample_rate=44100, detector=detector)
    b = hookstream.detect(song, sample_rate=22050, detector=detector)
    assert a.scores.duration_s == pytest.approx(b.scores.duration_s, abs=1e-3)
    assert abs(a.highlight.start_s - b.highlight.start_s) <= 1.0


def test_stream_provisional_then_final_equals_detect(detector, song):
    stream = hookstream.Stream("t", detector=detector)
    seen = []
    for i in range(0, len(song), 22050 * 2):  # 2 s pieces
        seen.append(stream.push(song[i:i + 22050 * 2]))
    assert seen[0] is None  # less than one 3 s chunk
    assert all(isinstance(h, hookstream.Highlight) for h in seen[2:])
    assert stream.audio_s == pytest.approx(len(song) / 22050)
    final = stream.finish()
    assert final.scores.final and stream.finish() is final
    whole = hookstream.detect(song, sample_rate=22050, detector=detector).highlight
    assert (final.highlight.start_s, final.highlight.end_s) == (whole.start_s, whole.end_s)
    assert final.highlight.score == pytest.approx(whole.score, rel=1e-5)  # float32, batched differently
    with pytest.raises(hookstream.InputError, match="finished"):
        stream.push(song[:100])


def test_stream_at_44100_resamples_as_it_goes(detector, song):
    import soxr

    hi = soxr.resample(song, 22050, 44100).astype(np.float32)
    stream = hookstream.Stream("t", detector=detector, sample_rate=44100)
    for i in range(0, len(hi), 30_000):
        stream.push(hi[i:i + 30_000])
    assert stream.audio_s == len(hi) / 44100
    final = stream.finish()
    whole = hookstream.detect(hi, sample_rate=44100, detector=detector)
    assert final.scores.duration_s == whole.scores.duration_s
    assert (final.highlight.start_s, final.highlight.end_s) == \
        (whole.highlight.start_s, whole.highlight.end_s)
    assert final.highlight.score == pytest.approx(whole.highlight.score, abs=1e-4)


def test_clip(detector, tmp_path):
    src = tmp_path / "m.flac"
    t = np.arange(48000 * 40) / 48000
    sf.write(src, np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * 2, 1), 48000)
    made = hookstream.clip(src, tmp_path / "out" / "m.flac", hookstream.Highlight(5.0, 15.0, 0.0),
                           loudness_lufs=-16)
    assert (made.sample_rate, made.channels, made.start_s, made.end_s) == (48000, 2, 5.0, 15.0)
    assert made.loudness_lufs == pytest.approx(-16.0, abs=0.01)
    detected = hookstream.clip(src, tmp_path / "d.wav", detector=detector)
    assert detected.end_s - detected.start_s == pytest.approx(30.0)
    with pytest.raises(hookstream.InputError, match="already exists"):
        hookstream.clip(src, tmp_path / "d.wav", detector=detector)
    with pytest.raises(hookstream.InputError, match=r"x\.aac: the clip's suffix"):
        hookstream.clip(src, tmp_path / "x.aac", detector=detector)


@pytest.mark.parametrize("bad,match", [
    (dict(source=np.zeros(100, np.int16), sample_rate=22050), "floating point"),
    (dict(source=np.zeros(100, np.float32)), "sample_rate must be a positive integer"),
    (dict(source=np.zeros((2, 2, 2), np.float32), sample_rate=22050), "shape"),
    (dict(source=np.full(100, np.nan, np.float32), sample_rate=22050), "NaN"),
    (dict(source="no/such.wav"), r"no/such\.wav: no such file"),
])
def test_bad_input_names_it(detector, bad, match):
    with pytest.raises(hookstream.InputError, match=match):
        hookstream.detect(detector=detector, **bad)


def test_api_imports_no_streaming_framework():
    code = ("import sys, hookstream; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('kafka', 'faust', 'aiokafka', 'prometheus_client', 'stream_app')]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    """The README's API example, run as written (shipped model, a 104 s example song)."""
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md:python-api", "exec"), {})
    out = capsys.readouterr().out
    assert "example-1" in out and (tmp_path / "clips" / "example-1.ogg").is_file()
