"""Audio conditions: each copy loads as a manifest, sounds as its condition says, and
keeps its annotations on the music (a speed change moves them)."""

import json

import numpy as np
import pytest
import soundfile as sf

from models.audio import decode
from models.errors import InputError
from models.evaluation.conditions import CONDITIONS, write_condition
from models.training.manifest import load_manifest

SR = 22_050


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Two val songs and one train song: 8 s of a 440 Hz tone with a 2 s click at 4 s."""
    root = tmp_path_factory.mktemp("src")
    (root / "audio").mkdir()
    t = np.arange(8 * SR) / SR
    x = 0.3 * np.sin(2 * np.pi * 440 * t)
    x[4 * SR: 6 * SR] += 0.3 * (np.arange(2 * SR) % 2205 == 0)
    lines = []
    for sid, split in (("s1", "val"), ("s2", "val"), ("s3", "train")):
        sf.write(root / "audio" / f"{sid}.flac", x.astype(np.float32), SR)
        lines.append(json.dumps({"audio": f"audio/{sid}.flac", "id": sid, "split": split,
                                 "chorus": [[4.0, 6.0]], "sections": [["B", 4.0, 6.0]],
                                 "bpm": 100.0}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root / "manifest.jsonl"


def _rms_db(x):
    return 10 * np.log10(np.mean(np.square(x)))


@pytest.mark.parametrize("name", list(CONDITIONS))
def test_every_condition_writes_a_loadable_copy_of_the_split(source, tmp_path, name):
    out = write_condition(source, "val", name, tmp_path / name)
    songs = load_manifest(out)
    assert [s.id for s in songs] == ["s1", "s2"]  # the split's songs only
    y, sr = sf.read(out.parent / songs[0].audio)
    factor = CONDITIONS[name][1]
    assert len(y) / sr == pytest.approx(8.0 / factor, abs=0.01)
    assert len(songs[0].chorus) == 1
    assert list(songs[0].chorus[0]) == pytest.approx([4.0 / factor, 6.0 / factor])
    assert songs[0].extra["condition"] == name
    assert songs[0].extra["bpm"] == pytest.approx(100.0 * factor)
    assert np.all(np.isfinite(y)) and np.abs(y).max() <= 1.0
    mono = decode(out.parent / songs[0].audio, sr=SR)  # what the detector reads
    assert len(mono) == pytest.approx(8.0 / factor * SR, abs=0.01 * SR)


def test_the_conditions_do_what_their_names_say(source, tmp_path):
    clean, _ = sf.read(source.parent / "audio" / "s1.flac")

    def read(name):
        out = write_condition(source, "val", name, tmp_path / name)
        return sf.read(out.parent / "audio" / "s1.flac")

    y, _ = read("gain-18")
    assert _rms_db(y) - _rms_db(clean) == pytest.approx(-18.0, abs=0.1)
    y, _ = read("gain+12-limited")
    assert _rms_db(y) > _rms_db(clean) + 6 and np.abs(y).max() < 1.0
    y, _ = read("noise20")
    assert _rms_db(y - clean) - _rms_db(clean) == pytest.approx(-20.0, abs=0.2)
    y, _ = read("lowpass3k")  # the tone passes, the clicks' highs do not
    spec = np.abs(np.fft.rfft(y[4 * SR: 6 * SR]))
    ref = np.abs(np.fft.rfft(clean[4 * SR: 6 * SR]))
    hz = np.fft.rfftfreq(2 * SR, 1 / SR)
    assert spec[hz > 6000].sum() < 0.01 * ref[hz > 6000].sum()
    y, sr = read("44k-stereo")
    assert sr == 44_100 and y.shape[1] == 2
    y, sr = read("speed+6")  # the tone goes up with the tempo
    peak = np.fft.rfftfreq(len(y), 1 / sr)[np.argmax(np.abs(np.fft.rfft(y)))]
    assert peak == pytest.approx(440 * 1.06, abs=2)


def test_a_copy_is_reused_and_bad_requests_name_the_reason(source, tmp_path):
    out = write_condition(source, "val", "gain-18", tmp_path / "g")
    stamp = out.stat().st_mtime_ns
    assert write_condition(source, "val", "gain-18", tmp_path / "g").stat().st_mtime_ns == stamp
    with pytest.raises(InputError, match="unknown"):
        write_condition(source, "val", "telephone", tmp_path / "t")
    with pytest.raises(InputError, match="no songs with chorus annotations in split 'test'"):
        write_condition(source, "test", "gain-18", tmp_path / "n")
