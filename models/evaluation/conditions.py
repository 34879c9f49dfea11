"""Audio conditions of real uploads, applied to a manifest's songs (``scripts/audio_conditions.py``).

Each condition maps a mono signal and its rate to a new signal and rate; a speed
change also moves the annotations (``CONDITIONS[name] = (transform, factor)``: the
new audio's times are the old ones divided by ``factor``). The signal processing
is scipy's and soxr's; the noise and reverb draw from a generator seeded per song.

===============  ==================================================================
gain-18          18 dB quieter (outside the trainer's +-6 dB gain augmentation)
gain+12-limited  12 dB louder through a tanh limiter: a loud master
noise20          pink noise at 20 dB SNR
lowpass3k        6th-order Butterworth low-pass at 3 kHz: a dull, band-limited upload
reverb           a 1.2 s exponentially decaying noise tail (RT60 1.2 s), peak kept
44k-stereo       44.1 kHz stereo (right channel 2 dB down): the decoder resamples and mixes
speed+6/speed-6  6 % faster / slower, tempo and pitch together (tape speed)
===============  ==================================================================
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.signal as ss
import soundfile as sf
import soxr
from tqdm import tqdm

from models.errors import InputError
from models.training.manifest import load_manifest, write_manifest

# Pink noise (-3 dB per octave): white noise through J. O. Smith's 4-pole IIR approximation.
PINK_B = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
PINK_A = [1, -2.494956002, 2.017265875, -0.522189400]


def _gain(db: float) -> Callable:
    return lambda x, sr, rng: (x * 10 ** (db / 20), sr)


def _limited(db: float) -> Callable:
    return lambda x, sr, rng: (np.tanh(x * 10 ** (db / 20)), sr)


def _noise(x, sr, rng):
    n = ss.lfilter(PINK_B, PINK_A, rng.standard_normal(len(x)))
    n *= np.sqrt(np.mean(x ** 2) / np.mean(n ** 2)) * 10 ** (-20 / 20)
    return x + n, sr


def _lowpass(x, sr, rng):
    return ss.sosfilt(ss.butter(6, 3000, fs=sr, output="sos"), x), sr


def _reverb(x, sr, rng):
    t = np.arange(int(1.2 * sr)) / sr
    ir = rng.standard_normal(len(t)) * np.exp(-t * 6.9 / 1.2)  # -60 dB at 1.2 s
    ir[0] = 1.0
    y = ss.fftconvolve(x, ir)[: len(x)]
    return y * (np.max(np.abs(x)) / max(np.max(np.abs(y)), 1e-9)), sr


def _stereo44k(x, sr, rng):
    z = soxr.resample(x, sr, 44100)
    return np.stack([z, z * 10 ** (-2 / 20)], axis=1), 44100


def _speed(factor: float) -> Callable:
    # fewer samples played at the same rate: faster by ``factor``, pitch up with it
    return lambda x, sr, rng: (soxr.resample(x, sr, int(round(sr / factor))), sr)


CONDITIONS: dict[str, tuple[Callable, float]] = {  # name -> (transform, speed factor)
    "gain-18": (_gain(-18.0), 1.0),
    "gain+12-limited": (_limited(12.0), 1.0),
    "noise20": (_noise, 1.0),
    "lowpass3k": (_lowpass, 1.0),
    "reverb": (_reverb, 1.0),
    "44k-stereo": (_stereo44k, 1.0),
    "speed+6": (_speed(1.06), 1.06),
    "speed-6": (_speed(0.94), 0.94),
}


def write_condition(manifest: Path, split: str, name: str, out: Path) -> Path:
    """``out/manifest.jsonl`` and ``out/audio/`` for the split's annotated songs under
    condition ``name`` (16-bit FLAC; times and ``bpm`` follow a speed change; each line
    gains ``"condition": name``). Reused when ``out/manifest.jsonl`` is already there:
    it is written last, so a half-written copy is redone. ``manifest`` is read and
    checked by :func:`models.training.manifest.load_manifest`."""
    target = out / "manifest.jsonl"
    if target.exists():
        return target
    if name not in CONDITIONS:
        raise InputError(f"audio condition {name!r}: unknown; known: {', '.join(CONDITIONS)}")
    transform, factor = CONDITIONS[name]
    songs = [s for s in load_manifest(manifest) if s.chorus and s.split == split]
    if not songs:
        raise InputError(f"{manifest}: no songs with chorus annotations in split {split!r}")
    (out / "audio").mkdir(parents=True, exist_ok=True)
    rows = []
    for song in tqdm(songs, desc=name, unit="song", file=sys.stderr):
        x, sr = sf.read(song.audio, dtype="float64", always_2d=True)
        rng = np.random.default_rng(int.from_bytes(song.id.encode(), "little") % 2 ** 32)
        y, sr = transform(x.mean(axis=1), sr, rng)
        audio = f"audio/{song.audio.stem}.flac"
        sf.write(out / audio, np.clip(y, -1.0, 1.0).astype(np.float32), sr, subtype="PCM_16")
        row = dict(song.extra, audio=audio, id=song.id, split=song.split, labels=list(song.labels),
                   chorus=[[a / factor, b / factor] for a, b in song.chorus], condition=name)
        if row.get("sections"):
            row["sections"] = [[k, a / factor, b / factor] for k, a, b in row["sections"]]
        if row.get("bpm"):
            row["bpm"] = row["bpm"] * factor
        rows.append(row)
    return write_manifest(target, rows)  # atomic: a half-written copy is redone, not reused
