import json
import os
import struct

import numpy as np
import pytest
import soundfile as sf

from models.training import pop909
from models.errors import HookstreamError, InputError
from models.training.manifest import load_manifest


def _vlq(value):
    out = [value & 0x7F]
    while value > 0x7F:
        value >>= 7
        out.insert(0, (value & 0x7F) | 0x80)
    return bytes(out)


def tiny_midi(path, *, first_note_s=0.5, length_s=0.5):
    """A one-note piano MIDI file (format 0, 120 BPM, 480 ticks per beat)."""
    ticks = lambda s: int(round(s * 960))  # 960 ticks per second at 120 BPM
    events = (
        _vlq(0) + b"\xff\x51\x03" + (500_000).to_bytes(3, "big")  # tempo 120 BPM
        + _vlq(ticks(first_note_s)) + b"\x90\x3c\x64"  # note on C4
        + _vlq(ticks(length_s)) + b"\x80\x3c\x00"  # note off
        + _vlq(0) + b"\xff\x2f\x00"  # end of track
    )
    path.write_bytes(b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk" + struct.pack(">I", len(events)) + events)
    return path


def record(song_id="011", *, keys=(("Gb:maj", 0.0, 100.0),), bpm=80.0):
    return {"id": song_id, "name": "n", "artist": "a", "bpm": bpm, "duration_s": 1.0,
            "keys": [{"start": s, "end": e, "key": k} for k, s, e in keys]}


def test_key_mode_uses_the_key_covering_most_time():
    keys = record(keys=(("C:maj", 0, 50), ("E:min", 50, 80), ("G:maj", 80, 120), ("E:min", 120, 150))).get("keys")
    assert pop909.main_key(keys) == "E:min"  # 60 s of E:min beats 50 s and 40 s
    assert pop909.key_mode("Gb:maj") == "major" and pop909.key_mode("E:min") == "minor"
    with pytest.raises(InputError, match="'C:dorian'"):
        pop909.key_mode("C:dorian")
    with pytest.raises(InputError, match="song 7: no key"):
        pop909.main_key([], song="7")


@pytest.mark.parametrize(("bpm", "label"), [(42.5, "slow"), (69.9, "slow"), (70, "medium"), (89.5, "medium"),
                                             (90, "fast"), (197, "fast")])
def test_tempo_class(bpm, label):
    assert pop909.tempo_class(bpm) == label


def test_labels_are_in_the_vocabulary():
    assert pop909.song_labels(record(keys=(("E:min", 0, 9),), bpm=60)) == ["minor", "slow"]
    assert set(pop909.song_labels(record())) <= set(pop909.LABELS)
    with pytest.raises(InputError, match="bpm"):
        pop909.tempo_class(0)


def test_split_by_id():
    assert [pop909.split_of(i) for i in ("005", "010", "001", "011", "002", "004", "908")] == [
        "test", "test", "val", "val", "train", "train", "train"]
    with pytest.raises(InputError, match="'abc'"):
        pop909.split_of("abc")


def test_manifest_entry():
    entry = pop909.manifest_entry(record("010", bpm=95), chorus=[[1, 2.5]], audio="audio/010.flac")
    assert entry == {"audio": "audio/010.flac", "labels": ["major", "fast"], "chorus": [[1.0, 2.5]],
                     "id": "010", "split": "test", "name": "n", "artist": "a", "bpm": 95, "key": "Gb:maj"}
    assert "chorus" not in pop909.manifest_entry(record(), chorus=None, audio="x")


def test_missing_tools_give_clear_errors(monkeypatch, tmp_path):
    with pytest.raises(InputError, match="nope.sf2: no such file"):
        pop909.find_soundfont(tmp_path / "nope.sf2")
    monkeypatch.setattr(pop909, "SOUNDFONTS", (tmp_path / "a.sf2", tmp_path / "b.sf2"))
    with pytest.raises(InputError, match=r"neither .*a\.sf2 nor .*b\.sf2.*apt-get install fluidsynth fluid-soundfont-gm"):
        pop909.find_soundfont(None)
    monkeypatch.setattr(pop909.shutil, "which", lambda name: None)
    with pytest.raises(HookstreamError, match="apt-get install fluidsynth fluid-soundfont-gm"):
        pop909.find_fluidsynth()


def test_render_pop909_end_to_end(tmp_path):
    """Real fluidsynth render (the setup script installs it): aligned, cached, manifest written."""
    src = tmp_path / "src"
    (src / "midi").mkdir(parents=True)
    tiny_midi(src / "midi" / "010.mid", first_note_s=0.5)
    tiny_midi(src / "midi" / "011.mid", first_note_s=0.25)
    (src / "songs.jsonl").write_text("\n".join(json.dumps(record(i)) for i in ("010", "011")) + "\n")
    (src / "annotations.jsonl").write_text(json.dumps({"id": "011", "chorus": [[0.25, 0.75]]}) + "\n")
    out = tmp_path / "out"

    manifest = pop909.render_pop909(src, out, soundfont=None, jobs=2, progress=False)

    assert manifest == out / "manifest.jsonl"
    songs = {s.id: s for s in load_manifest(manifest, label_names=pop909.LABELS)}
    assert songs["011"].chorus == ((0.25, 0.75),) and songs["010"].chorus == ()
    assert (songs["010"].split, songs["011"].split) == ("test", "val")
    assert songs["010"].audio == (out / "audio" / "010.flac").resolve()
    for song_id, first_note_s in (("010", 0.5), ("011", 0.25)):
        audio, sr = sf.read(out / "audio" / f"{song_id}.flac")
        assert sr == 22_050 and audio.ndim == 1 and 0.05 < np.abs(audio).max() <= 1.0
        onset_s = np.argmax(np.abs(audio) > 1e-3 * np.abs(audio).max()) / sr
        assert abs(onset_s - first_note_s) < 0.05
    assert not [p for p in (out / "audio").iterdir() if p.suffix != ".flac"]  # no partial files left

    # Cached: a second run leaves fresh files alone and re-renders a stale one.
    flac = out / "audio" / "010.flac"
    os.utime(flac, (1, 1))  # older than its MIDI: stale
    before = (out / "audio" / "011.flac").stat().st_mtime_ns
    pop909.render_pop909(src, out, soundfont=None, jobs=1, progress=False)
    assert (out / "audio" / "011.flac").stat().st_mtime_ns == before
    assert flac.stat().st_mtime > 1


def test_render_errors(tmp_path):
    with pytest.raises(InputError, match="no .mid files"):
        pop909.render_pop909(tmp_path, tmp_path / "out", soundfont=None, jobs=1, progress=False)
    with pytest.raises(InputError, match="jobs: must be at least 1"):
        pop909.render_pop909(tmp_path, tmp_path / "out", soundfont=None, jobs=0, progress=False)
    (tmp_path / "midi").mkdir()
    (tmp_path / "midi" / "001.mid").write_bytes(b"not a midi file")
    (tmp_path / "songs.jsonl").write_text(json.dumps(record("001")) + "\n")
    (tmp_path / "annotations.jsonl").write_text("")
    with pytest.raises(InputError, match="1 of 1 songs failed to render:\n  .*001.mid: fluidsynth"):
        pop909.render_pop909(tmp_path, tmp_path / "out", soundfont=None, jobs=1, progress=False)
    assert list((tmp_path / "out" / "audio").iterdir()) == []


def test_data_command_registers_pop909_with_defaults(tmp_path, capsys):
    import argparse

    from stream_app.commands import data

    parser = argparse.ArgumentParser()
    data.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "pop909"])
    assert args.func is data.run and args.out == "data/pop909" and args.soundfont is None
    assert (data.DEFAULT_POP909 / "songs.jsonl").parent.name == "pop909"
    src = tmp_path / "src"
    (src / "midi").mkdir(parents=True)
    tiny_midi(src / "midi" / "002.mid")
    (src / "songs.jsonl").write_text(json.dumps(record("002", keys=(("E:min", 0, 1),), bpm=60)) + "\n")
    (src / "annotations.jsonl").write_text("")
    args = parser.parse_args(["data", "pop909", "--src", str(src), "--out", str(tmp_path / "o"), "--jobs", "1"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "manifest.jsonl (1 songs)" in printed and "train    1 songs" in printed and "minor 1" in printed


def test_default_pop909_env_then_nearest_shared_folder(tmp_path):
    from stream_app.commands import data

    assert data.default_pop909({data.ENV_POP909: str(tmp_path / "x")}) == tmp_path / "x"
    found = tmp_path / "a" / "shared" / "data" / "pop909"
    found.mkdir(parents=True)
    (found / "songs.jsonl").write_text("")
    worktree = tmp_path / "a" / "wt" / "branch"  # a git worktree two levels further down
    worktree.mkdir(parents=True)
    assert data.default_pop909({}, checkout=worktree) == found
    assert data.default_pop909({}, checkout=tmp_path / "a" / "main") == found
    elsewhere = tmp_path / "b" / "checkout"
    elsewhere.mkdir(parents=True)
    # a shared folder above the temp folder itself (e.g. /tmp/shared) is found first, as it should
    above = next((p / "shared/data/pop909" for p in elsewhere.parents
                  if (p / "shared/data/pop909").is_dir()), None)
    assert data.default_pop909({}, checkout=elsewhere, start=worktree) == (above or found)  # the cwd's
    assert data.default_pop909({}, checkout=elsewhere) == (above or tmp_path / "b" / "shared/data/pop909")
