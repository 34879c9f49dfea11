"""Other arrangements of a POP909 song: General MIDI programs per track.

POP909 MIDI files have three instrument tracks, ``MELODY``, ``BRIDGE`` and
``PIANO``, all General MIDI program 0 (acoustic grand piano). Rendering them
with other programs (and other soundfonts) gives the same music in other
timbres: training data that teaches musical structure rather than one
renderer's sound, and held-out renders that test it.

An arrangement is a mapping ``{track name: GM program 0-127}`` (track names
upper case). :func:`parse_programs` reads the command-line form,
:func:`programs_for` resolves ``"random"`` per song, and :func:`rearrange`
writes the re-programmed MIDI file (with mido: every ``program_change`` of a
named track is set, and one is added at time 0 when a track has none).
A render can also be transposed: :func:`transpose_for` draws a shift of up to
``max_semitones`` per song, and :func:`rearrange` moves every note by it (the
same song in another key: its structure, the chorus positions and its
major/minor mode are unchanged).
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path

from models.errors import InputError

TRACKS = ("MELODY", "BRIDGE", "PIANO")
# General MIDI programs that play a melodic part well enough to carry it:
# pianos, chromatic percussion, organs, guitars, strings, ensembles, brass,
# reeds, pipes, synth leads and pads. Basses (32-39), sound effects and
# percussive programs (96-127) are left out.
MELODIC_PROGRAMS = tuple(list(range(0, 32)) + list(range(40, 96)))
# The held-out arrangements of docs/evaluation.md: never used in training.
NAMED = {
    "piano": {},
    "band": {"MELODY": 65, "BRIDGE": 26, "PIANO": 4},  # alto sax, jazz guitar, e-piano
    "strings": {"MELODY": 73, "BRIDGE": 48, "PIANO": 19},  # flute, string ensemble, church organ
}


def parse_programs(spec: str | None) -> dict[str, int] | str | None:
    """``"MELODY=73,BRIDGE=48,PIANO=0"`` -> mapping; ``"random"`` and named presets pass through.

    Returns None for None/empty (the file's own programs), ``"random"`` for a
    random arrangement per song, or a ``{TRACK: program}`` mapping.
    """
    if spec is None or spec.strip() == "":
        return None
    spec = spec.strip()
    if spec == "random":
        return "random"
    if spec in NAMED:
        return dict(NAMED[spec])
    out: dict[str, int] = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        name = name.strip().upper()
        if not sep or name not in TRACKS:
            raise InputError(f"--programs {spec!r}: expected 'random', one of {sorted(NAMED)}, or "
                             f"TRACK=PROGRAM pairs with TRACK in {', '.join(TRACKS)}")
        try:
            program = int(value)
        except ValueError:
            program = -1
        if not 0 <= program <= 127:
            raise InputError(f"--programs {spec!r}: {name}={value.strip()!r} is not a General MIDI "
                             "program number 0-127")
        out[name] = program
    return out


def programs_for(song_id: str, programs: Mapping[str, int] | str | None, *, seed: int = 0
                 ) -> dict[str, int] | None:
    """The arrangement of one song: ``programs`` itself, or a random one drawn from
    :data:`MELODIC_PROGRAMS` per track, seeded by ``(seed, song_id)`` (reproducible)."""
    if programs is None:
        return None
    if programs == "random":
        rng = random.Random(f"{seed}:{song_id}")
        return {track: rng.choice(MELODIC_PROGRAMS) for track in TRACKS}
    return dict(programs)


def transpose_for(song_id: str, max_semitones: int, *, seed: int = 0) -> int:
    """A shift in semitones for one song, uniform in ``[-max_semitones, max_semitones]``,
    seeded by ``(seed, song_id)`` (reproducible); 0 when ``max_semitones`` is 0."""
    if not 0 <= max_semitones <= 12:
        raise InputError(f"--transpose {max_semitones}: expected 0-12 semitones")
    if max_semitones == 0:
        return 0
    return random.Random(f"{seed}:transpose:{song_id}").randint(-max_semitones, max_semitones)


DRUM_CHANNEL = 9  # General MIDI percussion: its note numbers are instruments, never transposed


def rearrange(midi: str | os.PathLike, out: str | os.PathLike, programs: Mapping[str, int] | None,
              *, transpose: int = 0) -> Path:
    """Write ``midi`` with the given programs per named track, transposed, to ``out``.

    Parameters
    ----------
    midi : a MIDI file with tracks named as in :data:`TRACKS`
    out : output MIDI file
    programs : ``{track name: GM program}``; tracks not named keep their programs
        (None: every track keeps its programs)
    transpose : semitones added to every note outside the drum channel; a note
        moved past 0-127 moves by octaves back into range

    Returns
    -------
    Path of ``out``
    """
    import mido

    try:
        song = mido.MidiFile(str(midi))
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{midi}: not a readable MIDI file ({exc})") from None
    wanted = {k.upper(): int(v) for k, v in (programs or {}).items()}
    if transpose:
        for track in song.tracks:
            for i, msg in enumerate(track):
                if msg.type in ("note_on", "note_off") and msg.channel != DRUM_CHANNEL:
                    track[i] = msg.copy(note=_in_range(msg.note + transpose))
    for track in song.tracks:
        program = wanted.get(track.name.strip().upper())
        if program is None:
            continue
        channels = sorted({m.channel for m in track if hasattr(m, "channel")})
        changed = False
        for i, msg in enumerate(track):
            if msg.type == "program_change":
                track[i] = msg.copy(program=program)
                changed = True
        if not changed:
            for channel in channels:
                track.insert(0, mido.Message("program_change", channel=channel, program=program,
                                             time=0))
    song.save(str(out))
    return Path(out)


def _in_range(note: int) -> int:
    while note > 127:
        note -= 12
    while note < 0:
        note += 12
    return note
