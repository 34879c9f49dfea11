"""The song manifest: the catalogue format hookstream trains and evaluates on.

A manifest is a UTF-8 JSON Lines file, one JSON object per song; blank lines
are ignored. A platform writes one for its own catalogue::

    {"audio": "audio/001.flac", "id": "001", "labels": ["major", "medium"],
     "chorus": [[24.05, 45.39], [77.39, 98.72]], "split": "train", "artist": "..."}

Keys
----
audio : str, required
    Path of the audio file, absolute or relative to the folder holding the
    manifest. Any format :func:`models.audio.decode` reads.
id : str, optional
    Unique song id within the manifest (an integer is accepted and turned
    into a string). Defaults to the ``audio`` value as written.
labels : list of str, optional
    Song-level tags (for example key mode, tempo class, genre, mood).
    Defaults to ``[]``. Duplicates are dropped.
chorus : list of [start, end], optional
    Highlight/chorus spans in seconds from the start of the audio, with
    ``0 <= start < end``. Unsorted spans are sorted and overlapping ones
    merged. Defaults to ``[]`` (song not annotated).
split : str or null, optional
    Partition the song belongs to, such as ``"train"``, ``"val"`` or
    ``"test"``. Defaults to null (no split).
any other key
    Kept as is in :attr:`Song.extra` (for example ``name``, ``artist``, ``bpm``).

:func:`load_manifest` checks every line and raises one
:class:`~models.errors.InputError` that lists all problems found, each with
the manifest path and line number.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.errors import InputError

KNOWN_KEYS = ("audio", "id", "labels", "chorus", "split")
MAX_LISTED_ERRORS = 20


@dataclass(frozen=True)
class Song:
    """One manifest entry.

    Attributes
    ----------
    audio : absolute path of the audio file
    labels : song-level tags, in manifest order, without duplicates
    chorus : chorus spans ``(start_s, end_s)`` in seconds, sorted, non-overlapping
    id : unique id within the manifest
    split : partition name (``"train"``, ``"val"``, ``"test"``...) or None
    extra : every other key of the manifest line
    """

    audio: Path
    labels: tuple[str, ...] = ()
    chorus: tuple[tuple[float, float], ...] = ()
    id: str = ""
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def load_manifest(
    path: str | os.PathLike,
    *,
    label_names: Sequence[str] | None = None,
    check_files: bool = True,
) -> list[Song]:
    """Read and validate a manifest.

    Parameters
    ----------
    path : the manifest file (JSON Lines, see the module docstring)
    label_names : allowed labels; None accepts any string
    check_files : also require every ``audio`` file to exist

    Returns
    -------
    list of Song, in file order

    Raises
    ------
    InputError
        The manifest is missing or empty, or any line is invalid; the message
        lists every problem (up to 20) with its line number.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"manifest {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"manifest {path}: cannot be read ({exc})") from None
    base = path.resolve().parent
    allowed = None if label_names is None else frozenset(label_names)
    songs: list[Song] = []
    errors: list[str] = []
    first_line_of: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        problems: list[str] = []
        song = _parse_line(line, base=base, allowed=allowed, check_files=check_files, problems=problems)
        if song is not None:
            if song.id in first_line_of:
                problems.append(f"duplicate id {song.id!r} (first on line {first_line_of[song.id]})")
            else:
                first_line_of[song.id] = number
        errors.extend(f"line {number}: {p}" for p in problems)
        if song is not None and not problems:
            songs.append(song)
    if errors:
        listed = errors[:MAX_LISTED_ERRORS]
        if len(errors) > len(listed):
            listed.append(f"... and {len(errors) - len(listed)} more")
        raise InputError(
            f"manifest {path}: {len(errors)} problem(s):\n" + "\n".join(f"  {e}" for e in listed)
        )
    if not songs:
        raise InputError(f"manifest {path}: contains no songs")
    return songs


def write_manifest(path: str | os.PathLike, songs: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``songs`` as a manifest, atomically (temporary file, then rename).

    Parameters
    ----------
    path : manifest file to create or replace; parent folders are created
    songs : one mapping per song, with at least ``"audio"`` (str or path,
        best relative to the manifest's folder); written in the given order

    Returns
    -------
    Path of the written manifest
    """
    path = Path(path)
    lines = []
    for index, song in enumerate(songs):
        if "audio" not in song:
            raise InputError(f"manifest {path}: song #{index} has no 'audio' key")
        lines.append(json.dumps(dict(song), ensure_ascii=False, default=_json_default))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def label_vocabulary(songs: Iterable[Song]) -> tuple[str, ...]:
    """Sorted unique labels used by ``songs``.

    Returns
    -------
    tuple of str, shape (n_labels,)
    """
    return tuple(sorted({label for song in songs for label in song.labels}))


def _json_default(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _parse_line(
    line: str,
    *,
    base: Path,
    allowed: frozenset[str] | None,
    check_files: bool,
    problems: list[str],
) -> Song | None:
    """Parse one line; append problems to ``problems``; None when unusable."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        problems.append(f"invalid JSON ({exc.msg} at column {exc.colno})")
        return None
    if not isinstance(record, dict):
        problems.append(f"expected a JSON object, got {type(record).__name__}")
        return None
    audio_value = record.get("audio")
    audio = None
    if "audio" not in record:
        problems.append("missing 'audio'")
    elif not isinstance(audio_value, str) or not audio_value.strip():
        problems.append(f"'audio' must be a non-empty string, got {audio_value!r}")
    else:
        audio = (base / audio_value).resolve()
        if check_files and not audio.is_file():
            problems.append(f"audio file {audio} does not exist")
    song_id = _parse_id(record, audio_value, problems)
    labels = _parse_labels(record.get("labels", []), allowed, problems)
    chorus = _parse_chorus(record.get("chorus", []), problems)
    split = record.get("split")
    if split is not None and not isinstance(split, str):
        problems.append(f"'split' must be a string or null, got {split!r}")
    if audio is None or song_id is None:
        return None
    extra = {k: v for k, v in record.items() if k not in KNOWN_KEYS}
    return Song(audio=audio, labels=labels, chorus=chorus, id=song_id, split=split, extra=extra)


def _parse_id(record: dict, audio_value: Any, problems: list[str]) -> str | None:
    if "id" not in record:
        return audio_value if isinstance(audio_value, str) else None
    value = record["id"]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value:
        return value
    problems.append(f"'id' must be a non-empty string, got {value!r}")
    return None


def _parse_labels(value: Any, allowed: frozenset[str] | None, problems: list[str]) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"'labels' must be a list of strings, got {value!r}")
        return ()
    if allowed is not None:
        unknown = sorted(set(value) - allowed)
        if unknown:
            problems.append(f"unknown label(s) {unknown}; allowed: {sorted(allowed)}")
    return tuple(dict.fromkeys(value))


def _parse_chorus(value: Any, problems: list[str]) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, list):
        problems.append(f"'chorus' must be a list of [start, end] pairs, got {value!r}")
        return ()
    spans = []
    for span in value:
        if (
            not isinstance(span, list)
            or len(span) != 2
            or not all(_is_number(v) for v in span)
        ):
            problems.append(f"chorus span {span!r} is not a pair of finite numbers [start, end]")
            continue
        start, end = float(span[0]), float(span[1])
        if start < 0:
            problems.append(f"chorus span {span!r} starts before 0 s")
        elif end <= start:
            problems.append(f"chorus span {span!r} does not end after it starts")
        else:
            spans.append((start, end))
    return _merge(spans)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _merge(spans: list[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """Sort spans by start and merge overlapping ones."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)
