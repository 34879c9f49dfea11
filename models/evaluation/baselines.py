"""Highlight baselines that need no attention model.

- :func:`first_window`, :func:`middle_window`: fixed positions (the streaming
  services' usual preview, and the middle of the track);
- :func:`energy_highlight`: Ha et al. 2018's "Mel" baseline, the window with
  the highest summed mel energy, read from the scorer's slot energy through
  :func:`models.window.select` with gamma = 0, beta = 1 (no second mel pass);
- :func:`repetition_curve` / :func:`repetition_highlight`: a repetition
  thumbnail in the spirit of Müller's fitness measure and Goto's RefraiD.
  Chroma every ``hop_s`` seconds, a self-similarity matrix smoothed along its
  diagonals (so that only sustained repeated paths score), thresholded, and
  per time the total similarity to every position at least ``min_lag_s``
  away. Summed over a window (:func:`models.window.best_window`) this is the
  summed strength of all diagonal paths through the window's columns: a
  simplified fitness without the path-family optimisation.
"""

from __future__ import annotations

import numpy as np

from models.config import WindowConfig
from models.errors import InputError
from models.window import Highlight, best_window, select

_STFT_N_FFT = 4096
_STFT_HOP = 2048  # 93 ms at 22,050 Hz; chroma is then summed into hop_s blocks


def first_window(duration: float, length: float) -> Highlight:
    """The first ``length`` seconds: ``[0, min(length, duration)]``; score 0."""
    _check_span(duration, length)
    return Highlight(0.0, round(min(length, duration), 3), 0.0)


def middle_window(duration: float, length: float) -> Highlight:
    """``length`` seconds centred on the middle of the track (the whole track if shorter)."""
    _check_span(duration, length)
    if duration <= length:
        return Highlight(0.0, round(duration, 3), 0.0)
    start = (duration - length) / 2.0
    return Highlight(round(start, 3), round(start + length, 3), 0.0)


def energy_highlight(slot_energy: np.ndarray, *, slot_s: float, duration_s: float,
                     length_s: float) -> Highlight:
    """Ha et al. 2018's "Mel" baseline: the window with the highest summed slot energy.

    Parameters
    ----------
    slot_energy : np.ndarray, shape (n_slots,)
        Mean log-mel energy per slot (``TrackScores.slot_energy``).
    slot_s : seconds per slot
    duration_s : track duration in seconds
    length_s : window length in seconds
    """
    cfg = WindowConfig(length_s=length_s, gamma=0.0, beta=1.0)
    energy = np.asarray(slot_energy, np.float64)
    return select(np.zeros(len(energy)), energy, slot_s=slot_s, duration_s=duration_s, cfg=cfg)


def repetition_curve(samples: np.ndarray, sr: int, *, hop_s: float = 0.5,
                     path_s: float = 4.0, min_lag_s: float = 10.0, keep: float = 0.2
                     ) -> tuple[np.ndarray, np.ndarray]:
    """How strongly the music around each time repeats elsewhere in the track.

    Parameters
    ----------
    samples : np.ndarray, shape (n,), float
        Mono signal.
    sr : sample rate in Hz
    hop_s : seconds per curve value (chroma block)
    path_s : length in seconds of the diagonal smoothing of the similarity matrix
    min_lag_s : a repetition must lie at least this far away (skips the trivial
        self-similarity of sustained sounds near the main diagonal)
    keep : share of the off-diagonal similarities kept by the threshold

    Returns
    -------
    times : np.ndarray, shape (n_blocks,), block centres in seconds
    curve : np.ndarray, shape (n_blocks,), in [0, 1] (maximum 1 unless all zero)
    """
    if hop_s <= 0 or path_s <= 0 or min_lag_s < 0 or not 0 < keep <= 1:
        raise InputError(f"repetition_curve: bad parameters hop_s={hop_s}, path_s={path_s}, "
                         f"min_lag_s={min_lag_s}, keep={keep}")
    x = _block_chroma(np.asarray(samples, np.float32), sr, hop_s)  # (n, 12), unit rows
    n = len(x)
    times = (np.arange(n) + 0.5) * hop_s
    min_lag = max(1, int(round(min_lag_s / hop_s)))
    if n <= min_lag:
        return times, np.zeros(n)
    sim = _diagonal_smooth(x @ x.T, max(1, int(round(path_s / hop_s))))
    far = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :]) >= min_lag
    values = sim[np.triu(far)]
    threshold = float(np.quantile(values, 1.0 - keep))
    top = float(values.max())
    if top <= threshold:
        return times, np.zeros(n)
    strength = np.clip((sim - threshold) / (top - threshold), 0.0, 1.0) * far
    curve = strength.sum(axis=1)
    peak = curve.max()
    return times, curve / peak if peak > 0 else curve


def curve_window(curve: np.ndarray, *, step_s: float, duration_s: float,
                 length_s: float) -> Highlight:
    """The ``length_s`` window with the largest sum of ``curve`` (one value per ``step_s``)."""
    curve = np.asarray(curve, np.float64)
    if duration_s <= length_s or len(curve) == 0:
        return Highlight(0.0, round(min(duration_s, length_s), 3),
                         float(curve.mean()) if len(curve) else 0.0)
    width = max(1, int(round(length_s / step_s)))
    i, _ = best_window(curve, width)
    end = min(i * step_s + length_s, duration_s)
    start = max(0.0, end - length_s)
    return Highlight(round(start, 3), round(end, 3), float(curve[i:i + width].mean()))


def repetition_highlight(samples: np.ndarray, sr: int, *, length_s: float = 30.0,
                         hop_s: float = 0.5) -> Highlight:
    """The ``length_s`` window that repeats most elsewhere (see :func:`repetition_curve`)."""
    _, curve = repetition_curve(samples, sr, hop_s=hop_s)
    return curve_window(curve, step_s=hop_s, duration_s=len(samples) / sr, length_s=length_s)


def _block_chroma(samples: np.ndarray, sr: int, hop_s: float) -> np.ndarray:
    """Chroma summed per ``hop_s`` block, log-compressed, rows L2-normalised: (n_blocks, 12).

    Silent blocks are zero rows (similar to nothing).
    """
    import librosa

    n_blocks = int(np.ceil(len(samples) / sr / hop_s))
    if n_blocks == 0:
        return np.zeros((0, 12))
    # tuning=0: estimate_tuning runs numba-compiled peak picking (slow JIT) and pop is at A440.
    chroma = librosa.feature.chroma_stft(y=samples, sr=sr, n_fft=_STFT_N_FFT, hop_length=_STFT_HOP,
                                         tuning=0.0, norm=None)  # (12, frames), power
    frame_block = np.minimum((np.arange(chroma.shape[1]) * _STFT_HOP / sr / hop_s).astype(int),
                             n_blocks - 1)
    blocks = np.zeros((n_blocks, 12))
    np.add.at(blocks, frame_block, chroma.T)
    blocks = np.log1p(blocks / max(float(blocks.max()), 1e-12) * 1000.0)
    norm = np.linalg.norm(blocks, axis=1, keepdims=True)
    return np.divide(blocks, norm, out=np.zeros_like(blocks), where=norm > 1e-9)


def _diagonal_smooth(sim: np.ndarray, length: int) -> np.ndarray:
    """Mean of ``sim`` over ``length`` steps along each diagonal, centred (zero-padded)."""
    n = len(sim)
    before = length // 2
    padded = np.zeros((n + length, n + length))
    padded[before:before + n, before:before + n] = sim
    out = np.zeros_like(sim)
    for k in range(length):
        out += padded[k:k + n, k:k + n]
    return out / length


def _check_span(duration: float, length: float) -> None:
    if not duration >= 0 or not length > 0:
        raise InputError(f"window: duration {duration!r} s must be >= 0 and length {length!r} s > 0")
