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


def rearrange(midi: str | os.PathLike, out: str | os.PathLike, programs: Mapping[str, int]) -> Path:
    """Write ``midi`` with the given programs per named track to ``out``.

    Parameters
    ----------
    midi : a MIDI file with tracks named as in :data:`TRACKS`
    out : output MIDI file
    programs : ``{track name: GM program}``; tracks not named keep their programs

    Returns
    -------
    Path of ``out``
    """
    import mido

    try:
        song = mido.MidiFile(str(midi))
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{midi}: not a readable MIDI file ({exc})") from None
    wanted = {k.upper(): int(v) for k, v in programs.items()}
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
