import json

import pytest

from models.errors import InputError
from models.training.manifest import Song, label_vocabulary, load_manifest, write_manifest


def _write(path, lines):
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
    return path


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "audio").mkdir()
    for name in ("a.flac", "b.flac"):
        (tmp_path / "audio" / name).write_bytes(b"x")
    return tmp_path


def test_happy_path_resolves_relative_paths_and_keeps_extra(folder, tmp_path, monkeypatch):
    manifest = _write(folder / "m.jsonl", [
        {"audio": "audio/a.flac", "id": "a", "labels": ["major", "slow"],
         "chorus": [[30, 40.5], [10, 20]], "split": "train", "artist": "X", "bpm": 90},
        "",
        {"audio": str(folder / "audio" / "b.flac")},
    ])
    monkeypatch.chdir(tmp_path.parent)  # paths resolve against the manifest, not the cwd
    a, b = load_manifest(manifest, label_names=["major", "minor", "slow"])
    assert a == Song(audio=folder / "audio" / "a.flac", labels=("major", "slow"),
                     chorus=((10.0, 20.0), (30.0, 40.5)), id="a", split="train")
    assert a.audio.is_absolute() and a.extra == {"artist": "X", "bpm": 90}
    assert b.id == str(folder / "audio" / "b.flac") and b.labels == () and b.chorus == ()
    assert b.split is None
    assert label_vocabulary([a, b]) == ("major", "slow")


def test_overlapping_chorus_is_merged(folder):
    manifest = _write(folder / "m.jsonl", [{"audio": "audio/a.flac", "chorus": [[5, 15], [0, 10], [20, 30]]}])
    assert load_manifest(manifest)[0].chorus == ((0.0, 15.0), (20.0, 30.0))


def test_write_then_load_round_trip(folder):
    path = write_manifest(folder / "sub" / "m.jsonl",
                          [{"audio": "../audio/a.flac", "id": "a", "labels": ["x"], "name": "歌"}])
    (song,) = load_manifest(path)
    assert song.audio == folder / "audio" / "a.flac" and song.extra == {"name": "歌"}
    assert "歌" in path.read_text(encoding="utf-8")
    with pytest.raises(InputError, match="no 'audio'"):
        write_manifest(folder / "bad.jsonl", [{"id": "a"}])


@pytest.mark.parametrize(("line", "reason"), [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ({"id": "a"}, "missing 'audio'"),
    ({"audio": 3}, "'audio' must be a non-empty string"),
    ({"audio": "audio/missing.flac"}, "does not exist"),
    ({"audio": "audio/a.flac", "labels": "major"}, "'labels' must be a list of strings"),
    ({"audio": "audio/a.flac", "labels": ["major", 1]}, "'labels' must be a list of strings"),
    ({"audio": "audio/a.flac", "labels": ["jazz"]}, r"unknown label\(s\) \['jazz'\]"),
    ({"audio": "audio/a.flac", "chorus": [[1, 2, 3]]}, "not a pair of finite numbers"),
    ({"audio": "audio/a.flac", "chorus": [["1", 2]]}, "not a pair of finite numbers"),
    ({"audio": "audio/a.flac", "chorus": [[-1, 2]]}, "starts before 0 s"),
    ({"audio": "audio/a.flac", "chorus": [[5, 5]]}, "does not end after it starts"),
    ({"audio": "audio/a.flac", "chorus": [[6, 5]]}, "does not end after it starts"),
    ({"audio": "audio/a.flac", "chorus": {"a": 1}}, "'chorus' must be a list"),
    ({"audio": "audio/a.flac", "id": ""}, "'id' must be a non-empty string"),
    ({"audio": "audio/a.flac", "split": 1}, "'split' must be a string or null"),
])
def test_each_invalid_line_is_reported_with_path_and_line_number(folder, line, reason):
    manifest = _write(folder / "m.jsonl", [{"audio": "audio/b.flac", "id": "ok"}, line])
    with pytest.raises(InputError, match=reason) as info:
        load_manifest(manifest, label_names=["major"])
    assert str(manifest) in str(info.value) and "line 2:" in str(info.value)


def test_duplicate_ids(folder):
    manifest = _write(folder / "m.jsonl", [{"audio": "audio/a.flac", "id": "1"}, {"audio": "audio/b.flac", "id": 1}])
    with pytest.raises(InputError, match=r"line 2: duplicate id '1' \(first on line 1\)"):
        load_manifest(manifest)


def test_all_errors_are_collected_in_one_error(folder):
    lines = ["{bad"] + [{"audio": f"audio/missing{i}.flac"} for i in range(30)]
    manifest = _write(folder / "m.jsonl", lines)
    with pytest.raises(InputError) as info:
        load_manifest(manifest)
    message = str(info.value)
    assert "31 problem(s)" in message and "line 1: invalid JSON" in message
    assert "line 2:" in message and "... and 11 more" in message


def test_check_files_false_skips_existence(folder):
    manifest = _write(folder / "m.jsonl", [{"audio": "audio/missing.flac"}])
    assert load_manifest(manifest, check_files=False)[0].audio == folder / "audio" / "missing.flac"


def test_missing_and_empty_manifest(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_manifest(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match="contains no songs"):
        load_manifest(_write(tmp_path / "empty.jsonl", [""]))
