"""Mel frames, whole-signal or incrementally, as in Huang 2017 §II.D.

``center=False`` framing: frame ``i`` covers samples ``[i*hop, i*hop + n_fft)``.
The incremental builder carries the unframed tail (at least ``n_fft - hop``
samples once the first frame exists) between pieces, so feeding a signal in
pieces of any size yields exactly the frames of the whole-signal computation.

The FFT is computed in float64, the filterbanks in float32 (see
:func:`_bank_frames`); the result matches
``librosa.feature.melspectrogram(center=False, window="hamming")`` (slaney
mel scale and norm) to about 5e-7 relative error; frames leave as float32.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from models.config import MelConfig


def n_frames(n_samples: int, cfg: MelConfig) -> int:
    """Number of complete frames in ``n_samples`` samples (center=False)."""
    if n_samples < cfg.n_fft:
        return 0
    return 1 + (n_samples - cfg.n_fft) // cfg.hop_length


# Filterbanks a checkpoint carries (see :func:`adopt_filterbanks`), by (config, kind, n_chroma).
_ADOPTED: dict[tuple[MelConfig, str, int], torch.Tensor] = {}


@lru_cache(maxsize=8)
def _bank(cfg: MelConfig, kind: str, n_chroma: int = 0) -> torch.Tensor:
    """(n_fft // 2 + 1, m) float64: librosa's ``kind`` filterbank, exactly; the checkpoint's
    own copy where one was adopted (:func:`adopt_filterbanks`).

    ``"mel"``: slaney scale and norm, m = n_mels (torchaudio's ``melscale_fbanks``
    differs from it by ~5e-6 relative, which would break the 1e-5 golden test);
    ``"chroma"``: A440 tuning, m = n_chroma. librosa builds both in float32.
    """
    if (cfg, kind, n_chroma) in _ADOPTED:
        return _ADOPTED[cfg, kind, n_chroma]
    import librosa

    if kind == "mel":
        fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels,
                                 fmin=cfg.f_min, fmax=cfg.f_max)
    else:
        fb = librosa.filters.chroma(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_chroma=n_chroma)
    return torch.from_numpy(fb.T.astype(np.float64))


def filterbanks(cfg: MelConfig, n_chroma: int = 0) -> dict[str, np.ndarray]:
    """The filterbanks of this front end as librosa's float32 arrays, to store in a checkpoint:
    ``{"mel": (n_mels, n_fft // 2 + 1)}`` and, with ``n_chroma``, ``"chroma"`` (n_chroma, ...)."""
    kinds = {"mel": 0, "chroma": n_chroma} if n_chroma else {"mel": 0}
    return {kind: _bank(cfg, kind, n).T.numpy().astype(np.float32) for kind, n in kinds.items()}


def adopt_filterbanks(cfg: MelConfig, banks: dict[str, np.ndarray], n_chroma: int = 0) -> None:
    """Use ``banks`` (as :func:`filterbanks` returns them, e.g. read from a checkpoint) for
    ``cfg`` from now on instead of building them with librosa.

    The front end then does not import librosa (and with it scipy.signal, about 1.5 s of a
    worker's start) and keeps the banks the model was trained with. Raises ``ValueError``
    if a bank's shape does not fit ``cfg``.
    """
    bins = cfg.n_fft // 2 + 1
    shapes = {"mel": (cfg.n_mels, bins), "chroma": (n_chroma, bins)}
    for kind, bank in banks.items():
        if kind not in shapes or (kind == "chroma" and not n_chroma):
            raise ValueError(f"filterbank {kind!r}: not part of this front end")
        if tuple(bank.shape) != shapes[kind]:
            raise ValueError(f"filterbank {kind!r}: shape {tuple(bank.shape)}, "
                             f"the front end needs {shapes[kind]}")
        if not np.all(np.isfinite(bank)):
            raise ValueError(f"filterbank {kind!r}: values that are not finite")
    for kind, bank in banks.items():
        _ADOPTED[cfg, kind, n_chroma if kind == "chroma" else 0] = \
            torch.from_numpy(np.asarray(bank, np.float32).T.astype(np.float64))
    for cached in (_bank, _banks, _padded):
        cached.cache_clear()


@lru_cache(maxsize=8)
def _window(n_fft: int) -> torch.Tensor:
    return torch.hamming_window(n_fft, periodic=True, dtype=torch.float64)


_BLOCK = 32  # frames per FFT / filterbank call; every call has this shape (see _bank_frames)


def _bank_frames(samples: np.ndarray, cfg: MelConfig, bank: torch.Tensor) -> torch.Tensor:
    """Power spectra of every frame times ``bank`` (n_fft // 2 + 1, m): (n_frames, m) float32.

    The FFT runs in float64 (a float32 FFT errs by ~1e-7 of the frame's total
    power, i.e. up to 2e-4 relative in quiet bands of music); the power is
    squared in float64 and rounded to float32, and the filterbank product is
    float32. Frames go in blocks of :data:`_BLOCK`, the last one zero-padded,
    so that every FFT and matrix product has the same shape: a frame's values
    then do not depend on where the signal was cut (pieces equal the whole
    signal, bit for bit), and blocks stay in cache (3x faster than one STFT
    over a 4-minute track). Each block reuses the same buffers (``out=``): its
    samples widened to float64, the windowed frames, the spectrum (squared in
    place) and the power; the whole signal is never copied.
    """
    count = n_frames(len(samples), cfg)
    blocks = -(-count // _BLOCK)
    columns = bank.shape[1]
    bank = _padded(bank)
    out = torch.empty((blocks * _BLOCK, bank.shape[1]), dtype=torch.float32)
    if count == 0:
        return out[:, :columns]
    n_fft, hop = cfg.n_fft, cfg.hop_length
    used = (count - 1) * hop + n_fft
    x = torch.from_numpy(np.asarray(samples[:used], dtype=np.float32))
    window = _window(n_fft)
    span = (_BLOCK - 1) * hop + n_fft
    segment = torch.empty(span, dtype=torch.float64)  # one block's samples, widened
    windowed = torch.empty((_BLOCK, n_fft), dtype=torch.float64)
    spec = torch.empty((_BLOCK, n_fft // 2 + 1), dtype=torch.complex128)
    parts = torch.view_as_real(spec)
    power = torch.empty((_BLOCK, n_fft // 2 + 1), dtype=torch.float32)
    for b in range(blocks):
        start = b * _BLOCK * hop
        piece = x[start:start + span]
        segment[:len(piece)] = piece
        if len(piece) < span:  # the last block: zero-padded
            segment[len(piece):] = 0
        torch.mul(segment.unfold(0, n_fft, hop), window, out=windowed)
        torch.fft.rfft(windowed, out=spec)
        torch.mul(parts, parts, out=parts)
        torch.add(parts[..., 0], parts[..., 1], out=power)
        torch.matmul(power, bank, out=out[b * _BLOCK:(b + 1) * _BLOCK])
    return out[:count, :columns]


@lru_cache(maxsize=8)
def _padded(bank: torch.Tensor) -> torch.Tensor:
    """``bank`` with zero columns up to a multiple of 16 (the float32 product is about 15%
    faster on 144 columns than on 140); the extra output columns are dropped."""
    extra = -bank.shape[1] % 16
    return torch.nn.functional.pad(bank, (0, extra)).contiguous() if extra else bank


@lru_cache(maxsize=8)
def _banks(cfg: MelConfig, n_chroma: int) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels + n_chroma) float32: the mel then the chroma filterbank."""
    parts = [_bank(cfg, "mel")] + ([_bank(cfg, "chroma", n_chroma)] if n_chroma else [])
    return torch.cat(parts, dim=1).float().contiguous()


def mel_power(samples: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """Mel power spectrogram of a whole signal.

    Parameters
    ----------
    samples : np.ndarray, shape (n,), float
    cfg : MelConfig

    Returns
    -------
    np.ndarray, shape (n_frames, n_mels), float32
    """
    return _bank_frames(samples, cfg, _banks(cfg, 0)).numpy()


def power_frames(samples: np.ndarray, cfg: MelConfig) -> torch.Tensor:
    """Power spectrogram of a whole signal, (n_frames, n_fft // 2 + 1) float64 (center=False)."""
    count = n_frames(len(samples), cfg)
    if count == 0:
        return torch.zeros((0, cfg.n_fft // 2 + 1), dtype=torch.float64)
    x = torch.from_numpy(np.asarray(samples[: (count - 1) * cfg.hop_length + cfg.n_fft],
                                    dtype=np.float64))
    spec = torch.stft(x, cfg.n_fft, cfg.hop_length, window=_window(cfg.n_fft),
                      center=False, return_complex=True)
    return (spec.real.square() + spec.imag.square()).T


def chroma_from_power(power: torch.Tensor, cfg: MelConfig, n_chroma: int = 12) -> np.ndarray:
    """Chroma per frame from :func:`power_frames`, each frame scaled to a maximum of 1.

    As ``librosa.feature.chroma_stft(S=power, norm=np.inf)``; a silent frame is all zeros.

    Returns
    -------
    np.ndarray, shape (n_frames, n_chroma), float32
    """
    return _peak_normalise((power @ _bank(cfg, "chroma", n_chroma).to(power.dtype)).numpy())


def _peak_normalise(c: np.ndarray) -> np.ndarray:
    peak = c.max(axis=1, keepdims=True) if len(c) else np.zeros((0, 1), c.dtype)
    return np.divide(c, peak, out=np.zeros_like(c), where=peak > 1e-12).astype(np.float32)


def features(samples: np.ndarray, cfg: MelConfig, n_chroma: int = 12
             ) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel and chroma frames of a whole signal from one STFT.

    Returns
    -------
    log_mel : np.ndarray, shape (n_frames, n_mels), float32 (as :func:`mel_frames`)
    chroma : np.ndarray, shape (n_frames, n_chroma), float32 (as :func:`chroma_from_power`)
    """
    both = _bank_frames(samples, cfg, _banks(cfg, n_chroma)).numpy()
    return log_mel(both[:, :cfg.n_mels], cfg), _peak_normalise(both[:, cfg.n_mels:])


def push_features(tail: np.ndarray, samples: np.ndarray, cfg: MelConfig, n_chroma: int = 12
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`push` that also returns the chroma frames: (log-mel, chroma, new tail)."""
    buffer, rest = _carry(tail, samples, cfg)
    frames, chroma = features(buffer, cfg, n_chroma)
    return frames, chroma, rest


def _carry(tail: np.ndarray, samples: np.ndarray, cfg: MelConfig) -> tuple[np.ndarray, np.ndarray]:
    """(tail + samples, the part of it no complete frame consumes: the next tail)."""
    buffer = np.concatenate([tail, samples]) if len(tail) else np.asarray(samples, np.float32)
    count = n_frames(len(buffer), cfg)
    return buffer, buffer[count * cfg.hop_length:].astype(np.float32)  # a copy: not a view of the caller's array


def log_mel(power: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """log(mel + offset) as float32, shape unchanged."""
    return np.log(power + np.float32(cfg.log_offset)).astype(np.float32)


def mel_frames(samples: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """Log-mel frames of a whole signal: (n_frames, n_mels) float32."""
    return log_mel(mel_power(samples, cfg), cfg)


def push(tail: np.ndarray, samples: np.ndarray, cfg: MelConfig) -> tuple[np.ndarray, np.ndarray]:
    """Feed ``samples`` after the carried ``tail``; return (new log-mel frames, new tail).

    Parameters
    ----------
    tail : np.ndarray, shape (t,), float32
        Samples carried from the previous call (empty at the start of a track).
    samples : np.ndarray, shape (n,), float32
        The next piece of the track, any length (zero is fine).

    Returns
    -------
    frames : np.ndarray, shape (k, n_mels), float32
    tail : np.ndarray, float32, the samples not yet consumed by a frame
    """
    buffer, rest = _carry(tail, samples, cfg)
    return mel_frames(buffer, cfg), rest


def frame_energy(frames: np.ndarray) -> np.ndarray:
    """Mean log-mel energy per frame (CRAN eq. 9's (1/128) sum_i e_i): (n_frames,) float32."""
    return frames.mean(axis=1, dtype=np.float64).astype(np.float32)
