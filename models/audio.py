"""Audio in: decode any file soundfile or librosa can read to mono float32 at 22,050 Hz
(:func:`decode`), or as it is, at its own rate and channels (:func:`decode_native`).

Every rejection raises :class:`~models.errors.InputError` naming the file and
the reason: missing, unreadable, not audio, empty, non-finite or too long.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from models.errors import InputError
from models.resample import resample

SAMPLE_RATE = 22_050
MAX_DURATION_S = 20 * 60.0


def decode(
    path: str | os.PathLike,
    *,
    sr: int = SAMPLE_RATE,
    max_duration_s: float = MAX_DURATION_S,
) -> np.ndarray:
    """Decode ``path`` to a mono float32 signal at ``sr`` Hz.

    Parameters
    ----------
    path : file to read (wav, flac, ogg, mp3, or anything librosa/audioread reads)
    sr : target sample rate in Hz; other rates are resampled by :func:`models.resample.resample`,
        the implementation the streaming worker uses chunk by chunk
    max_duration_s : longest accepted audio in seconds (checked before resampling)

    Returns
    -------
    np.ndarray, shape (n_samples,), dtype float32, values nominally in [-1, 1]
    """
    frames, native_sr = decode_native(path, max_duration_s=max_duration_s)
    signal = frames[:, 0] if frames.shape[1] == 1 else frames.mean(axis=1, dtype=np.float32)
    if native_sr != sr:  # the worker's streaming resampler, fed the whole signal at once
        signal = resample(np.ascontiguousarray(signal, dtype=np.float32), native_sr, sr)
    return np.ascontiguousarray(signal, dtype=np.float32)


def decode_native(
    path: str | os.PathLike,
    *,
    max_duration_s: float = MAX_DURATION_S,
) -> tuple[np.ndarray, int]:
    """Decode ``path`` at its own rate and channels, with :func:`decode`'s checks.

    Returns
    -------
    (frames, sample_rate): frames of shape (n_frames, channels), float32; rate in Hz
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    signal, native_sr = _read(path)
    if signal.size == 0:
        raise InputError(f"{path}: contains no audio samples (zero length)")
    duration = signal.shape[-1] / native_sr
    if duration > max_duration_s:
        raise InputError(
            f"{path}: audio is {duration:.1f} s long, more than the maximum of {max_duration_s:.0f} s"
        )
    if not np.all(np.isfinite(signal)):
        raise InputError(f"{path}: audio contains NaN or infinite samples")
    frames = np.atleast_2d(signal).T  # (n, channels)
    return np.ascontiguousarray(frames, dtype=np.float32), native_sr


def _read(path: Path) -> tuple[np.ndarray, int]:
    """Read ``path`` at its native rate, channels first: (channels, n) or (n,)."""
    try:
        data, native_sr = sf.read(str(path), dtype="float32", always_2d=True)
        return data.T, int(native_sr)
    except sf.LibsndfileError as first:
        reason = str(first)
    except RuntimeError as first:  # older soundfile raises RuntimeError
        reason = str(first)
    # soundfile could not open it: mp3 on old libsndfile, or formats audioread handles.
    try:
        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data, native_sr = librosa.load(str(path), sr=None, mono=False, dtype=np.float32)
        return np.atleast_1d(data), int(native_sr)
    except Exception as exc:  # audioread raises many unrelated types
        raise InputError(
            f"{path}: not a readable audio file ({reason or type(exc).__name__})"
        ) from None


def all_finite(x: np.ndarray) -> bool:
    """No NaN or infinity in ``x``: its min and max are finite (NaN propagates through both);
    two passes with no temporary, unlike ``np.isfinite(x).all()``."""
    return x.size == 0 or bool(np.isfinite(x.min()) and np.isfinite(x.max()))


def validate_samples(samples: np.ndarray, *, name: str) -> np.ndarray:
    """Check a block of samples that arrives without a file (a chunk event).

    Returns it as contiguous float32; raises InputError naming ``name``.
    """
    samples = np.asarray(samples)
    if samples.dtype.kind != "f":
        raise InputError(f"{name}: samples must be floating point, got {samples.dtype}")
    if samples.ndim != 1:
        raise InputError(f"{name}: samples must be mono (1-D), got shape {samples.shape}")
    if not all_finite(samples):
        raise InputError(f"{name}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(samples, dtype=np.float32)
