"""Synthetic example songs: verse/chorus structure with known chorus times.

Used by the README's first command, ``hookstream demo`` and the tests, so the
project runs end to end without any audio in the repository. A song is intro,
verse, chorus, verse, chorus, bridge, chorus, outro; the chorus is louder,
higher and denser (more voices, a steady beat), as the B sections of POP909
mostly are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 22_050
_VERSE = ((57, 60, 64), (53, 57, 60), (55, 59, 62), (52, 55, 59))  # Am F G Em (MIDI)
_CHORUS = ((60, 64, 67), (55, 59, 62), (57, 60, 64), (53, 57, 60))  # C G Am F


def synth_song(seed: int = 0, *, bar_s: float = 2.0, sr: int = SR
               ) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """One song: (samples float32 mono, chorus spans in seconds)."""
    rng = np.random.default_rng(seed)
    plan = [("intro", 4), ("verse", 8), ("chorus", 8), ("verse", 8), ("chorus", 8),
            ("bridge", 4), ("chorus", 8), ("outro", 4)]
    shift = int(rng.integers(-3, 4))
    parts, chorus, t0 = [], [], 0.0
    for kind, bars in plan:
        parts.append(_section(kind, bars, bar_s, shift, rng, sr))
        if kind == "chorus":
            chorus.append((round(t0, 3), round(t0 + bars * bar_s, 3)))
        t0 += bars * bar_s
    x = np.concatenate(parts)
    return (0.6 * x / np.abs(x).max()).astype(np.float32), chorus


def _section(kind, bars, bar_s, shift, rng, sr) -> np.ndarray:
    n = int(bar_s * sr)
    t = np.arange(n) / sr
    chords = _CHORUS if kind == "chorus" else _VERSE
    gain = {"chorus": 1.0, "verse": 0.45, "bridge": 0.35, "intro": 0.25, "outro": 0.25}[kind]
    out = []
    for b in range(bars):
        notes = [m + shift + (12 if kind == "chorus" and i == 2 else 0)
                 for i, m in enumerate(chords[b % 4])]
        bar = sum(_voice(m, t) for m in notes)
        if kind == "chorus":  # melody an octave up and a beat: denser texture
            bar += 0.6 * _voice(notes[0] + 24, t) + _beat(t, bar_s, rng)
        elif kind == "verse":
            bar += 0.4 * _voice(notes[1] + 12, t)
        out.append(gain * bar * np.minimum(1.0, 20 * t) * np.minimum(1.0, 20 * (bar_s - t)))
    return np.concatenate(out)


def _voice(midi: int, t: np.ndarray) -> np.ndarray:
    f = 440.0 * 2 ** ((midi - 69) / 12)
    return sum(np.sin(2 * np.pi * f * k * t) / k ** 1.5 for k in (1, 2, 3, 4))


def _beat(t: np.ndarray, bar_s: float, rng) -> np.ndarray:
    phase = (t % (bar_s / 4)) / (bar_s / 4)
    return 0.8 * np.exp(-30 * phase) * rng.standard_normal(len(t))


def write_examples(out_dir: str | Path, count: int = 2) -> list[Path]:
    """Write ``count`` example songs as FLAC files; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = out / f"example-{i + 1}.flac"
        if not path.exists():
            samples, _ = synth_song(seed=i)
            sf.write(path, samples, SR)
        paths.append(path)
    return paths
