"""``hookstream detect``: JSON lines, readable table, plots, and every kind of bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from models import checkpoint, nets
from models.examples import synth_song
from stream_app.cli import main

LABELS = ("major", "minor", "slow", "medium", "fast")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("detect")
    ckpt = checkpoint.save(checkpoint.untrained(nets.tiny(), LABELS), d / "tiny.safetensors")
    song, _ = synth_song(0, bar_s=1.0)  # 52 s
    sf.write(d / "song.flac", song, 22050)
    sf.write(d / "short.wav", song[: 22050 * 10], 22050)
    (d / "notes.wav").write_text("not audio at all\n" * 100)
    (d / "empty.wav").write_bytes(b"")
    sf.write(d / "zero.wav", np.zeros(0, np.float32), 22050)
    nan = song[: 22050 * 5].copy()
    nan[100] = np.inf
    sf.write(d / "nan.wav", nan, 22050, subtype="FLOAT")
    (d / "corrupt.flac").write_bytes((d / "song.flac").read_bytes()[:200])
    return d, ckpt


def test_json_lines_for_good_files(files, capsys):
    d, ckpt = files
    rc = main(["detect", str(d / "song.flac"), str(d / "short.wav"), "--json",
               "--checkpoint", str(ckpt)])
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 0 and len(out) == 2
    song, short = out
    assert {"path", "track_id", "start_s", "end_s", "duration_s", "score", "model"} <= set(song)
    assert song["end_s"] - song["start_s"] == pytest.approx(30.0)
    assert 0 <= song["start_s"] and song["end_s"] <= song["duration_s"]
    assert song["model"].startswith("untrained-") and song["track_id"] == "song"
    assert (short["start_s"], short["end_s"]) == (0.0, 10.0)  # shorter than the window


def test_length_option(files, capsys):
    d, ckpt = files
    main(["detect", str(d / "song.flac"), "--json", "--length", "12.5", "--checkpoint", str(ckpt)])
    row = json.loads(capsys.readouterr().out)
    assert row["end_s"] - row["start_s"] == pytest.approx(12.5)


@pytest.mark.parametrize("name,reason", [
    ("missing.wav", "no such file"),
    ("notes.wav", "corrupt or not an audio file"),
    ("empty.wav", "empty file"),
    ("zero.wav", "zero length"),
    ("nan.wav", "NaN or infinite"),
    ("corrupt.flac", "not a readable audio file"),
])
def test_bad_input_reported_in_place_others_still_run(files, capsys, name, reason):
    d, ckpt = files
    rc = main(["detect", str(d / name), str(d / "short.wav"), "--json", "--checkpoint", str(ckpt)])
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert rc == 1
    assert rows[0] == {"path": str(d / name), "error": rows[0]["error"]}
    assert reason in rows[0]["error"] and str(d / name) in rows[0]["error"]
    assert "start_s" in rows[1]
    assert reason in captured.err and "Traceback" not in captured.err


def test_too_long_input(files, tmp_path, capsys):
    d, ckpt = files
    cfg = tmp_path / "detect.yaml"
    cfg.write_text("scorer:\n  max_duration_s: 20\n")
    rc = main(["detect", str(d / "song.flac"), "--json", "--checkpoint", str(ckpt),
               "--config", str(cfg)])
    assert rc == 1 and "more than the maximum of 20 s" in capsys.readouterr().out


def test_table_and_plot(files, tmp_path, capsys):
    d, ckpt = files
    rc = main(["detect", str(d / "song.flac"), str(d / "notes.wav"), "--checkpoint", str(ckpt),
               "--plot", str(tmp_path / "plots")])
    out = capsys.readouterr().out
    assert rc == 1
    assert "song.flac" in out and "error:" in out and "start" in out.splitlines()[0]
    png = tmp_path / "plots" / "song.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_console_script_entry_point(files):
    d, ckpt = files
    proc = subprocess.run([sys.executable, "-m", "stream_app", "detect", str(d / "notes.wav"),
                           "--json", "--checkpoint", str(ckpt)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["error"]
    assert "Traceback" not in proc.stderr


def test_bad_checkpoint_is_a_clear_error(files, tmp_path, capsys):
    d, _ = files
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"junk")
    assert main(["detect", str(d / "short.wav"), "--checkpoint", str(bad)]) == 1  # not a usage error
    assert "not a readable safetensors checkpoint" in capsys.readouterr().err


def test_top_k_highlights_in_json(files, capsys):
    d, ckpt = files
    rc = main(["detect", str(d / "song.flac"), "--json", "--top", "3", "--checkpoint", str(ckpt),
               "--length", "10"])
    row = json.loads(capsys.readouterr().out)
    spans = row["highlights"]
    assert rc == 0 and 1 <= len(spans) <= 3
    assert (spans[0]["start_s"], spans[0]["end_s"]) == (row["start_s"], row["end_s"])
    ordered = sorted((s["start_s"], s["end_s"]) for s in spans)
    assert all(a[1] <= b[0] + 1e-9 for a, b in zip(ordered, ordered[1:]))
    assert [s["score"] for s in spans] == sorted((s["score"] for s in spans), reverse=True)
    assert main(["detect", str(d / "song.flac"), "--top", "0", "--checkpoint", str(ckpt)]) == 2
