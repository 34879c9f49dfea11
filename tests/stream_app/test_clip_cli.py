"""``hookstream clip``: detect-then-cut, cut from events, JSON lines, and every kind of bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from models import checkpoint, nets
from models.examples import synth_song
from stream_app.cli import main
from stream_app.events import make_highlight_event

LABELS = ("major", "minor", "slow", "medium", "fast")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import librosa

    d = tmp_path_factory.mktemp("clip")
    ckpt = checkpoint.save(checkpoint.untrained(nets.tiny(), LABELS), d / "tiny.safetensors")
    song, _ = synth_song(0, bar_s=1.0)  # 52 s at 22,050 Hz
    hi = librosa.resample(song, orig_sr=22050, target_sr=48000)
    sf.write(d / "master.flac", np.stack([hi, 0.5 * hi], 1), 48000, subtype="PCM_24")
    sf.write(d / "mono.wav", song, 22050)
    (d / "notes.wav").write_text("not audio at all\n" * 100)
    return d, ckpt


def run_json(capsys, argv):
    rc = main(argv + ["--json"])
    cap = capsys.readouterr()
    return rc, [json.loads(line) for line in cap.out.splitlines()], cap.err


def test_detect_and_cut_at_the_sources_own_rate(files, tmp_path, capsys):
    d, ckpt = files
    out = tmp_path / "clips"
    rc, rows, _ = run_json(capsys, ["clip", str(d / "master.flac"), str(d / "mono.wav"),
                                    "--out", str(out), "--checkpoint", str(ckpt), "--loudness", "-14"])
    assert rc == 0 and len(rows) == 2
    master, mono = rows
    assert {"path", "clip", "start_s", "end_s", "sample_rate", "channels"} <= set(master)
    assert (master["sample_rate"], master["channels"]) == (48000, 2)
    assert (mono["sample_rate"], mono["channels"]) == (22050, 1)
    assert master["clip"] == str(out / "master.ogg")
    assert master["end_s"] - master["start_s"] == pytest.approx(30.0)
    # The same span as `hookstream detect` on the same file.
    main(["detect", str(d / "master.flac"), "--json", "--checkpoint", str(ckpt)])
    det = json.loads(capsys.readouterr().out)
    assert (det["start_s"], det["end_s"]) == (master["start_s"], master["end_s"])
    info = sf.info(master["clip"])
    assert (info.samplerate, info.channels) == (48000, 2)
    assert info.duration == pytest.approx(30.0, abs=0.05)
    assert master["loudness_lufs"] == pytest.approx(-14.0, abs=0.01) or master["peak_limited"]


def test_options_length_fades_format(files, tmp_path, capsys):
    d, ckpt = files
    rc, [row], _ = run_json(capsys, ["clip", str(d / "mono.wav"), "--out", str(tmp_path),
                                     "--checkpoint", str(ckpt), "--length", "10", "--format", "wav",
                                     "--fade-in", "0", "--fade-out", "0.5"])
    assert rc == 0 and row["end_s"] - row["start_s"] == pytest.approx(10.0)
    x, sr = sf.read(row["clip"])
    song, _ = synth_song(0, bar_s=1.0)
    a = round(row["start_s"] * sr)
    np.testing.assert_allclose(x[: sr * 9], song[a:a + sr * 9], atol=1 / 32768)  # no fade in
    assert abs(x[-1]) < 1e-3  # faded out


def test_never_overwrites_without_flag(files, tmp_path, capsys):
    d, ckpt = files
    args = ["clip", str(d / "mono.wav"), "--out", str(tmp_path), "--checkpoint", str(ckpt)]
    assert run_json(capsys, args)[0] == 0
    before = (tmp_path / "mono.ogg").stat().st_mtime_ns
    rc, [row], err = run_json(capsys, args)
    assert rc == 1 and "already exists" in row["error"] and "--overwrite" in row["error"]
    assert (tmp_path / "mono.ogg").stat().st_mtime_ns == before
    assert run_json(capsys, args + ["--overwrite"])[0] == 0


def events_file(path, events):
    path.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
    return path


def final(tid, start, end, **kw):
    return make_highlight_event(tid, kind=kw.pop("kind", "final"), start_s=start, end_s=end,
                                score=0.5, audio_s=52.0, model="m", seq=25)


def test_from_events_cuts_the_events_spans_and_reports_unknown_tracks(files, tmp_path, capsys):
    d, _ = files
    ev = events_file(tmp_path / "finals.jsonl", [
        final("master", 1.0, 41.0, kind="provisional"),  # skipped: not final
        final("master", 10.0, 22.5),
        final("ghost", 0.0, 30.0),  # no such PATH
    ])
    rc, rows, err = run_json(capsys, ["clip", str(d / "master.flac"), str(d / "mono.wav"),
                                      "--out", str(tmp_path / "o"), "--from-events", str(ev)])
    assert rc == 1
    master, mono, ghost = rows
    assert (master["start_s"], master["end_s"], master["sample_rate"]) == (10.0, 22.5, 48000)
    assert sf.info(master["clip"]).duration == pytest.approx(12.5, abs=0.05)
    assert mono == {"path": str(d / "mono.wav"), "error": mono["error"]}
    assert "no final highlight event for track 'mono'" in mono["error"] and str(ev) in mono["error"]
    assert ghost["track_id"] == "ghost" and "matches none of the PATHs" in ghost["error"]
    assert "ghost" in err and "Traceback" not in err


def test_from_events_existing_clip_is_not_reported_as_an_unknown_track(files, tmp_path, capsys):
    d, _ = files
    ev = events_file(tmp_path / "f.jsonl", [final("mono", 1.0, 4.0)])
    args = ["clip", str(d / "mono.wav"), "--out", str(tmp_path / "o"), "--from-events", str(ev)]
    assert run_json(capsys, args)[0] == 0
    rc, rows, _ = run_json(capsys, args)
    assert rc == 1 and len(rows) == 1 and "already exists" in rows[0]["error"]


def test_bad_events_file_is_a_clear_error(files, tmp_path, capsys):
    d, _ = files
    ev = tmp_path / "bad.jsonl"
    ev.write_text(json.dumps(final("master", 1.0, 5.0)) + "\n{not json\n")
    assert main(["clip", str(d / "master.flac"), "--out", str(tmp_path), "--from-events", str(ev)]) == 1  # bad input, not a usage error (exit 2 is usage only)
    assert f"{ev}:2: not a highlight event" in capsys.readouterr().err
    assert main(["clip", str(d / "master.flac"), "--out", str(tmp_path),
                 "--from-events", str(tmp_path / "none.jsonl")]) == 1
    assert "none.jsonl: cannot read the events file" in capsys.readouterr().err


def test_bad_inputs_are_named_and_the_others_still_run(files, tmp_path, capsys):
    d, ckpt = files
    rc, rows, err = run_json(capsys, ["clip", str(d / "notes.wav"), str(tmp_path / "missing.mp3"),
                                      str(d / "mono.wav"), "--out", str(tmp_path / "o"),
                                      "--checkpoint", str(ckpt)])
    assert rc == 1
    assert "notes.wav: not a readable audio file" in rows[0]["error"]
    assert "missing.mp3: no such file" in rows[1]["error"]
    assert "clip" in rows[2] and "error" not in rows[2]
    assert "Traceback" not in err


def test_non_writable_out_dir(files, tmp_path, capsys):
    d, ckpt = files
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["clip", str(d / "mono.wav"), "--out", str(blocker / "clips"),
                 "--checkpoint", str(ckpt)]) == 1
    assert f"{blocker / 'clips'}: output folder is not writable" in capsys.readouterr().err


def test_events_from_stdin(files, tmp_path):
    d, _ = files
    proc = subprocess.run([sys.executable, "-m", "stream_app", "clip", str(d / "mono.wav"),
                           "--out", str(tmp_path), "--from-events", "-", "--json"],
                          input=json.dumps(final("mono", 2.0, 9.0)) + "\n", capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    assert (row["start_s"], row["end_s"], row["sample_rate"]) == (2.0, 9.0, 22050)


def test_console_script(files, tmp_path):
    d, ckpt = files
    proc = subprocess.run([sys.executable, "-m", "stream_app", "clip", str(d / "mono.wav"),
                           str(d / "notes.wav"), "--out", str(tmp_path), "--checkpoint", str(ckpt)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{tmp_path / 'mono.ogg'}  " in proc.stdout and "notes.wav" in proc.stderr


def test_cli_defaults_match_the_library():
    import models.clip as lib
    from stream_app.commands import clip as cmd

    for name in ("FORMATS", "DEFAULT_FORMAT", "DEFAULT_FADE_IN_S", "DEFAULT_FADE_OUT_S"):
        assert getattr(cmd, name) == getattr(lib, name), name
