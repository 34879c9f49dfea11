"""Synthetic songs for the bench: exact lengths, written as FLAC."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stream_app.bench.config import SYNTH_BARS


def synth_track(seed: int, seconds: float, *, sr: int = 22_050) -> np.ndarray:
    """A synthetic song of exactly ``seconds`` (bar length scaled, then trimmed or looped)."""
    from models.examples import synth_song

    samples, _ = synth_song(seed, bar_s=seconds / SYNTH_BARS, sr=sr)
    return np.resize(samples, int(round(seconds * sr))).astype(np.float32)


def write_songs(folder: Path, count: int, seconds: float, *, seed0: int,
                 prefix: str = "song") -> list[Path]:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{prefix}-{i + 1:02d}.flac"
        sf.write(path, synth_track(seed0 + i, seconds), 22_050)
        paths.append(path)
    return paths
