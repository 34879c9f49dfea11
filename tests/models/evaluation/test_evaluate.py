import argparse
import json

import numpy as np
import pytest
import soundfile as sf

from models import checkpoint, nets
from models.config import DetectConfig, WindowConfig
from models.detect import Detector
from models.errors import ConfigError, InputError
from models.evaluation.evaluate import METHODS, evaluate, write_report
from models.training.manifest import load_manifest, write_manifest
from stream_app.commands import eval as eval_cmd

SR = 22_050
LABELS = ("major", "minor")

# id, seconds, chorus spans, split. first30 = [0, 30]:
#   a: (5, 20) inside                     -> c100, c50, precision 15/30
#   b: half of (20, 40) covered           -> c50, precision 10/30
#   c: (35, 45) after it                  -> nothing, precision 0
SONGS = [("a", 60.0, [[5, 20], [40, 55]], "test"),
         ("b", 45.0, [[20, 40]], "test"),
         ("c", 50.0, [[35, 45]], "val")]
FIRST30 = {"c100": 1 / 3, "c50": 2 / 3, "precision": (15 / 30 + 10 / 30 + 0) / 3}


def _song(seconds, seed):
    """Noise with a louder, tonal stretch: enough structure for every method to run."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    y = 0.05 * rng.standard_normal(n) + 0.2 * np.sin(2 * np.pi * 220 * (1 + (t // 10) % 3) * t)
    y[n // 3: n // 2] *= 3
    return (0.3 * y).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    (root / "audio").mkdir()
    entries = []
    for k, (song_id, seconds, chorus, split) in enumerate(SONGS):
        sf.write(root / "audio" / f"{song_id}.wav", _song(seconds, k), SR)
        entries.append({"audio": f"audio/{song_id}.wav", "id": song_id, "chorus": chorus,
                        "split": split, "labels": ["major"]})
    (root / "audio" / "broken.wav").write_bytes(b"not audio at all")
    entries.append({"audio": "audio/broken.wav", "id": "broken", "chorus": [[1, 2]], "split": "test"})
    entries.append({"audio": "audio/a.wav", "id": "unannotated", "split": "test"})  # no chorus: ignored
    manifest = write_manifest(root / "manifest.jsonl", entries)
    ckpt_path = checkpoint.save(checkpoint.untrained(nets.tiny(n_labels=len(LABELS)), LABELS),
                                root / "tiny.safetensors")
    return root, manifest, ckpt_path


@pytest.fixture(scope="module")
def detector(corpus):
    _, _, ckpt_path = corpus
    return Detector(DetectConfig(device="cpu"), checkpoint.load(ckpt_path))


@pytest.fixture(scope="module")
def result(corpus, detector):
    _, manifest, _ = corpus
    return evaluate(load_manifest(manifest, check_files=False), detector, length_s=30.0,
                    progress=False)


def test_every_method_on_every_annotated_song(result, detector, corpus):
    assert [s.id for s in result.songs] == ["a", "b", "c"]
    assert [f[0] for f in result.failed] == ["broken"]
    assert list(result.summary) == list(METHODS)
    for song in result.songs:
        assert set(song.highlights) == set(METHODS)
        for h in song.highlights.values():
            assert 0 <= h.start_s <= h.end_s <= song.duration_s + 1e-6
            assert h.duration_s == pytest.approx(30.0, abs=1e-3)
        assert song.metrics["first30"]["auc"] is None and song.metrics["middle30"]["auc"] is None
        assert song.metrics["energy"]["auc"] is not None
        assert set(song.curves) == {"energy", "attention", "repetition"}
    a = result.songs[0]
    assert a.highlights["hookstream"] == detector.detect_file(a.audio).highlight  # same code path
    assert (a.highlights["first30"].start_s, a.highlights["first30"].end_s) == (0.0, 30.0)
    assert (a.highlights["middle30"].start_s, a.highlights["middle30"].end_s) == (15.0, 45.0)
    for key, value in FIRST30.items():
        assert result.summary["first30"][key] == pytest.approx(value)


def test_split_filter_and_errors(corpus, detector):
    _, manifest, _ = corpus
    songs = load_manifest(manifest, check_files=False)
    val = evaluate(songs, detector, split="val", progress=False)
    assert [s.id for s in val.songs] == ["c"] and val.split == "val" and not val.failed
    with pytest.raises(InputError, match="no songs with chorus annotations in split 'nope'"):
        evaluate(songs, detector, split="nope", progress=False)
    with pytest.raises(ConfigError, match="window length"):
        evaluate(songs, detector, length_s=20.0, progress=False)


def test_report_files(result, tmp_path):
    paths = write_report(result, tmp_path / "report", "hookstream eval --manifest m.jsonl")
    for key in ("report", "metrics", "songs", "json"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0
    assert paths["metrics"].read_bytes()[:4] == b"\x89PNG" and paths["songs"].read_bytes()[:4] == b"\x89PNG"
    text = paths["report"].read_text()
    assert "hookstream eval --manifest m.jsonl" in text and result.model in text
    assert "| first30 | 0.333 | 0.667 | 0.278 | - |" in text
    assert "songs: 3 evaluated, 1 failed" in text and "`broken`" in text


def _parse(argv):
    parser = argparse.ArgumentParser()
    eval_cmd.register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_cli_json(corpus, tmp_path, capsys):
    root, manifest, ckpt_path = corpus
    config = tmp_path / "detect.yaml"
    config.write_text("device: cpu\nwindow:\n  length_s: 12\n")  # --length overrides it
    args = _parse(["eval", "--manifest", str(manifest), "--checkpoint", str(ckpt_path), "--json",
                   "--split", "test", "--config", str(config), "--report", str(tmp_path / "r")])
    assert args.func is eval_cmd.run and args.length == 30.0
    assert eval_cmd.run(args) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)  # exactly one JSON object on stdout
    assert doc["songs"] == 2 and doc["failed"] == 1 and doc["split"] == "test"
    assert doc["length_s"] == 30.0 and doc["model"].startswith("untrained-")
    assert list(doc["methods"]) == list(METHODS)
    for values in doc["methods"].values():
        assert set(values) == {"c100", "c50", "precision", "auc"}
    assert doc["methods"]["first30"] == {"c100": 0.5, "c50": 1.0, "precision": 0.4167, "auc": None}
    assert "skipped song 'broken'" in err
    assert (tmp_path / "r" / "report.md").is_file() and (tmp_path / "r" / "songs.png").is_file()


def test_cli_table(corpus, tmp_path, capsys):
    _, manifest, ckpt_path = corpus
    config = tmp_path / "detect.yaml"
    config.write_text("device: cpu\n")
    args = _parse(["eval", "--manifest", str(manifest), "--checkpoint", str(ckpt_path),
                   "--split", "val", "--config", str(config)])
    assert eval_cmd.run(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("model untrained-huang-seed0, 1 songs, split val")
    assert lines[1].split() == ["method", "c100", "c50", "precision", "auc"]
    first = next(line for line in lines if line.startswith("first30"))
    assert first.split() == ["first30", "0.000", "0.000", "0.000", "-"]
