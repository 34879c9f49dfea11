"""POP909 as training/evaluation data: render the MIDI songs to audio, write a manifest.

Input is the development split in ``shared/data/pop909`` (606 songs, see its
README): ``midi/NNN.mid``, ``songs.jsonl`` (metadata for every song) and
``annotations.jsonl`` (chorus spans for 424 songs).

Output, under ``out``:

- ``audio/NNN.flac``: mono 16-bit FLAC at 22,050 Hz, rendered by fluidsynth
  with a General MIDI soundfont. Time 0 of the audio is time 0 of the MIDI
  file, so the annotations' seconds apply unchanged (checked on songs 001,
  002, 004, 010 and 100: the first audible onset lies 2-6 ms after the first
  MIDI note-on). The audio runs about 5 s past the last note (release tail).
- ``manifest.jsonl``: one line per song in the format of
  :mod:`models.training.manifest`, plus ``name``, ``artist``, ``bpm`` and ``key``.

Labels (every song): the key mode (``major``/``minor``) of the key covering
most of the song, and a tempo class from the median MIDI tempo: ``slow``
below :data:`SLOW_BELOW_BPM`, ``fast`` from :data:`FAST_FROM_BPM`, else
``medium``. Chorus spans only for annotated songs.

Split, by song id (deterministic, independent of the file list):
``int(id) % 5 == 0`` is ``test`` (held out), ``int(id) % 5 == 1`` is ``val``,
everything else is ``train``. Ids that are multiples of 3 are not in the
development split at all (reserved upstream).

Rendering is parallel, cached (a song whose FLAC is newer than its MIDI is
skipped) and atomic (temporary name, then rename), so an interrupted run can
simply be restarted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from models.errors import HookstreamError, InputError
from models.training.arrangement import programs_for, rearrange, transpose_for
from models.training.manifest import write_manifest

LABELS = ("major", "minor", "slow", "medium", "fast")
SAMPLE_RATE = 22_050
GAIN = 0.8
# Median MIDI tempo thresholds in BPM. On the 606 development songs (bpm
# 42.5-197, median 74): slow (< 70) 234, medium (70-90) 198, fast (>= 90) 174.
SLOW_BELOW_BPM = 70.0
FAST_FROM_BPM = 90.0
SOUNDFONTS = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
)
INSTALL_HINT = "apt-get install fluidsynth fluid-soundfont-gm"
RENDER_TIMEOUT_S = 600.0


def render_pop909(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    soundfont: str | os.PathLike | None,
    jobs: int,
    sr: int = SAMPLE_RATE,
    progress: bool = True,
    programs: Mapping[str, int] | str | None = None,
    seed: int = 0,
    annotated_only: bool = False,
    splits: Sequence[str] | None = None,
    transpose: int = 0,
) -> Path:
    """Render every ``src/midi/NNN.mid`` to ``out/audio/NNN.flac`` and write ``out/manifest.jsonl``.

    Parameters
    ----------
    src : POP909 folder with ``midi/``, ``songs.jsonl`` and ``annotations.jsonl``
    out : output folder, created if needed
    soundfont : General MIDI ``.sf2`` file; None picks the first of :data:`SOUNDFONTS`
    jobs : number of songs rendered at once (>= 1)
    sr : sample rate of the audio in Hz
    progress : show a tqdm progress bar
    programs : another arrangement (:mod:`models.training.arrangement`): a
        ``{track: GM program}`` mapping, ``"random"`` (drawn per song from
        ``seed`` and the song id), or None for the files' own piano programs
    seed : seed of the random arrangements and transpositions
    transpose : transpose each song by a shift drawn per song (from ``seed``
        and the song id) in [-transpose, transpose] semitones; 0: as written
    annotated_only : render only songs with chorus annotations
    splits : render only songs of these splits (``train``/``val``/``test``); None: all

    Each manifest line records the render (soundfont file name and programs)
    under ``render``. Use one ``out`` folder per variant: the cache checks
    only that a FLAC is newer than its MIDI file.

    Returns
    -------
    Path of the manifest
    """
    src, out = Path(src), Path(out)
    if jobs < 1:
        raise InputError(f"jobs: must be at least 1, got {jobs}")
    if sr <= 0:
        raise InputError(f"sr: must be a positive sample rate in Hz, got {sr}")
    fluidsynth = find_fluidsynth()
    font = find_soundfont(soundfont)
    midi_files = sorted((src / "midi").glob("*.mid"))
    if not midi_files:
        raise InputError(f"{src / 'midi'}: no .mid files (is --src the POP909 folder?)")
    songs = read_jsonl(src / "songs.jsonl")
    annotations = read_jsonl(src / "annotations.jsonl")
    choruses = {r["id"]: r["chorus"] for r in annotations.values()}
    if annotated_only:
        midi_files = [m for m in midi_files if m.stem in choruses]
    if splits is not None:
        unknown = sorted(set(splits) - {"train", "val", "test"})
        if unknown:
            raise InputError(f"splits: unknown split(s) {unknown}; expected train, val, test")
        midi_files = [m for m in midi_files if split_of(m.stem) in set(splits)]
    if not midi_files:
        raise InputError(f"{src / 'midi'}: no song left to render after the filters")
    arrangement = {m.stem: programs_for(m.stem, programs, seed=seed) for m in midi_files}
    shift = {m.stem: transpose_for(m.stem, transpose, seed=seed) for m in midi_files}
    missing = [m.name for m in midi_files if m.stem not in songs]
    if missing:
        raise InputError(f"{src / 'songs.jsonl'}: no metadata for {', '.join(missing[:10])}")

    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    todo = [m for m in midi_files if not _is_fresh(audio_dir / f"{m.stem}.flac", m)]
    failures = []
    with _progress_bar(total=len(midi_files), enabled=progress) as bar:
        bar.update(len(midi_files) - len(todo))
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {
                pool.submit(
                    render_song, midi, audio_dir / f"{midi.stem}.flac",
                    soundfont=font, sr=sr, fluidsynth=fluidsynth,
                    programs=arrangement[midi.stem], transpose=shift[midi.stem],
                ): midi
                for midi in todo
            }
            for future in as_completed(futures):
                try:
                    future.result()
                except HookstreamError as exc:
                    failures.append(str(exc))
                bar.update(1)
    if failures:
        raise InputError(
            f"{len(failures)} of {len(midi_files)} songs failed to render:\n  "
            + "\n  ".join(failures[:20])
        )
    entries = [
        {**manifest_entry(songs[m.stem], chorus=choruses.get(m.stem), audio=f"audio/{m.stem}.flac",
                          sections=annotations.get(m.stem, {}).get("sections")),
         "render": {"soundfont": font.name, "programs": arrangement[m.stem],
                    **({"transpose": shift[m.stem]} if transpose else {})}}
        for m in midi_files
    ]
    return write_manifest(out / "manifest.jsonl", entries)


def render_song(
    midi: str | os.PathLike,
    flac: str | os.PathLike,
    *,
    soundfont: str | os.PathLike,
    sr: int = SAMPLE_RATE,
    fluidsynth: str = "fluidsynth",
    programs: Mapping[str, int] | None = None,
    transpose: int = 0,
) -> Path:
    """Render one MIDI file to a mono 16-bit FLAC file, atomically.

    Parameters
    ----------
    midi : input MIDI file
    flac : output file; written under a temporary name, then renamed
    soundfont : General MIDI ``.sf2`` file
    sr : sample rate in Hz
    fluidsynth : fluidsynth executable
    programs : ``{track name: GM program}`` to render another arrangement
        (:func:`models.training.arrangement.rearrange`); None: the file as it is
    transpose : semitones to move every note (0: as written)

    Returns
    -------
    Path of the FLAC file; its audio starts at time 0 of the MIDI file
    """
    midi, flac = Path(midi), Path(flac)
    partial = flac.with_name(f".{flac.name}.{os.getpid()}.partial")
    with tempfile.TemporaryDirectory(prefix="hookstream-render-") as tmp:
        wav = Path(tmp) / "out.wav"
        source = rearrange(midi, Path(tmp) / "arranged.mid", programs, transpose=transpose) \
            if programs or transpose else midi
        command = [
            fluidsynth, "-ni", "-q", "-g", str(GAIN), "-r", str(sr),
            "-F", str(wav), str(soundfont), str(source),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise InputError(f"{midi}: fluidsynth did not finish in {RENDER_TIMEOUT_S:.0f} s") from None
        if done.returncode != 0 or not wav.is_file() or wav.stat().st_size <= 44:
            detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise InputError(f"{midi}: fluidsynth rendered no audio, not a valid MIDI file? (exit {done.returncode}: {detail[0]})")
        signal, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    if rate != sr or signal.shape[0] == 0:
        raise InputError(f"{midi}: fluidsynth wrote {signal.shape[0]} samples at {rate} Hz, expected {sr} Hz")
    mono = np.clip(signal.mean(axis=1), -1.0, 1.0)
    try:
        sf.write(str(partial), mono, sr, format="FLAC", subtype="PCM_16")
        os.replace(partial, flac)
    finally:
        partial.unlink(missing_ok=True)
    return flac


def manifest_entry(
    record: Mapping[str, Any], *, chorus: Sequence[Sequence[float]] | None, audio: str,
    sections: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Manifest line for one POP909 song.

    Parameters
    ----------
    record : the song's line of ``songs.jsonl``
    chorus : chorus spans ``[start_s, end_s]`` from ``annotations.jsonl``, None if not annotated
    sections : the annotated phrases ``{label, start, end}`` (kept as ``sections``; the
        trainer's section head reads them), None if not annotated
    audio : path of the audio, relative to the manifest's folder

    Returns
    -------
    dict with ``audio``, ``labels``, ``chorus`` (only when given), ``id``,
    ``split``, ``name``, ``artist``, ``bpm``, ``key``
    """
    entry: dict[str, Any] = {"audio": audio, "labels": song_labels(record)}
    if chorus is not None:
        entry["chorus"] = [[float(s), float(e)] for s, e in chorus]
    if sections is not None:
        entry["sections"] = [[str(x["label"]), float(x["start"]), float(x["end"])] for x in sections]
    entry.update(
        id=record["id"],
        split=split_of(record["id"]),
        name=record.get("name"),
        artist=record.get("artist"),
        bpm=record["bpm"],
        key=main_key(record["keys"], song=record["id"]),
    )
    return entry


def song_labels(record: Mapping[str, Any]) -> list[str]:
    """``[key mode, tempo class]`` of a ``songs.jsonl`` record, e.g. ``["minor", "slow"]``."""
    key = main_key(record["keys"], song=record.get("id", "?"))
    return [key_mode(key), tempo_class(record["bpm"])]


def main_key(keys: Sequence[Mapping[str, Any]], *, song: str = "?") -> str:
    """Key covering the most time, e.g. ``"Gb:maj"``.

    Parameters
    ----------
    keys : spans ``{"start": s, "end": s, "key": "Gb:maj"}`` in seconds
    song : song id, for error messages
    """
    if not keys:
        raise InputError(f"POP909 song {song}: no key annotation")
    total: dict[str, float] = {}
    for span in keys:
        total[span["key"]] = total.get(span["key"], 0.0) + max(0.0, span["end"] - span["start"])
    return max(total, key=total.__getitem__)  # ties: the key met first


def key_mode(key: str) -> str:
    """``"major"`` or ``"minor"`` from a key such as ``"Gb:maj"`` or ``"E:min"``."""
    mode = key.rpartition(":")[2]
    if mode == "maj":
        return "major"
    if mode == "min":
        return "minor"
    raise InputError(f"key {key!r}: expected '<tonic>:maj' or '<tonic>:min'")


def tempo_class(bpm: float) -> str:
    """``"slow"`` (< 70 BPM), ``"medium"`` or ``"fast"`` (>= 90 BPM)."""
    if not bpm > 0:
        raise InputError(f"bpm: must be a positive tempo, got {bpm!r}")
    if bpm < SLOW_BELOW_BPM:
        return "slow"
    if bpm >= FAST_FROM_BPM:
        return "fast"
    return "medium"


def split_of(song_id: str) -> str:
    """``"test"`` if ``int(id) % 5 == 0``, ``"val"`` if ``== 1``, else ``"train"``."""
    try:
        number = int(song_id)
    except (TypeError, ValueError):
        raise InputError(f"POP909 song id {song_id!r}: not a number") from None
    return {0: "test", 1: "val"}.get(number % 5, "train")


def find_fluidsynth() -> str:
    """Path of the fluidsynth executable; a clear error telling how to install it."""
    path = shutil.which("fluidsynth")
    if path is None:
        raise HookstreamError(f"fluidsynth: not found on PATH; install it with `{INSTALL_HINT}`")
    return path


def find_soundfont(soundfont: str | os.PathLike | None = None) -> Path:
    """The given soundfont, or the first of :data:`SOUNDFONTS` that exists."""
    if soundfont is not None:
        path = Path(soundfont)
        if not path.is_file():
            raise InputError(f"soundfont {path}: no such file")
        return path
    for path in SOUNDFONTS:
        if path.is_file():
            return path
    raise InputError(
        f"soundfont: neither {SOUNDFONTS[0]} nor {SOUNDFONTS[1]} exists; "
        f"install one with `{INSTALL_HINT}` or pass --soundfont"
    )


def read_jsonl(path: Path) -> dict[str, dict[str, Any]]:
    """Records of a POP909 JSON Lines file keyed by their ``id``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (is --src the POP909 folder?)") from None
    records = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            records[record["id"]] = record
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: line {number}: not a JSON object with an 'id' ({exc})") from None
    return records


def _is_fresh(output: Path, source: Path) -> bool:
    """True when ``output`` exists and is newer than ``source``."""
    try:
        return output.stat().st_mtime >= source.stat().st_mtime
    except FileNotFoundError:
        return False


def _progress_bar(*, total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="render POP909", unit="song", disable=not enabled)
