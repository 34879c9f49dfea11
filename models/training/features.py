"""Log-mel features for training, computed once per audio file and cached on disk.

A cache entry is ``<cache_dir>/<stem>-<key>.npy``: the (n_frames, n_mels)
float32 log-mel frames of :func:`models.mel.mel_frames` for the decoded file;
``<stem>-<key>.chroma.npy`` beside it holds the (n_frames, 12) chroma frames
of :func:`models.mel.features` (same STFT), for models with structure inputs.
``key`` hashes the resolved path, the file's size and modification time, and
the mel configuration, so an edited file or a changed front end gets a new
entry (stale entries are never read; delete the folder to reclaim the space).
Entries are written atomically (temporary name, then rename) and are read
memory-mapped, so a training run over hundreds of songs does not hold every
song's frames in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from models.audio import decode
from models.config import MelConfig, to_dict
from models.errors import InputError
from models.training.manifest import Song
from models.mel import features, mel_frames

CACHE_VERSION = 1  # bump when the stored features change meaning
MIN_STD = 1e-3  # floor of the z-score std: a constant mel band must not divide by ~0


def cache_key(audio_path: str | os.PathLike, mel_cfg: MelConfig) -> str:
    """Hex digest identifying the features of ``audio_path`` under ``mel_cfg``.

    Hashes the resolved path, the size in bytes, the modification time (ns),
    every field of ``mel_cfg`` and :data:`CACHE_VERSION`.
    """
    path = Path(audio_path).resolve()
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    doc = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
           "mel": to_dict(mel_cfg), "version": CACHE_VERSION}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]


def cache_path(audio_path: str | os.PathLike, mel_cfg: MelConfig,
               cache_dir: str | os.PathLike, *, kind: str = "mel") -> Path:
    """Where the features of ``audio_path`` are (or will be) cached; ``kind``: mel | chroma."""
    suffix = ".npy" if kind == "mel" else f".{kind}.npy"
    return Path(cache_dir) / f"{Path(audio_path).stem}-{cache_key(audio_path, mel_cfg)}{suffix}"


def cached_features(audio_path: str | os.PathLike, mel_cfg: MelConfig,
                    cache_dir: str | os.PathLike, *, mmap: bool = True) -> np.ndarray:
    """Log-mel frames of an audio file, from the cache or computed and cached.

    Parameters
    ----------
    audio_path : any file :func:`models.audio.decode` reads
    mel_cfg : the front end (sample rate, FFT, hop, mel bands)
    cache_dir : cache folder; created when missing
    mmap : return a read-only memory map of the cache entry rather than a copy

    Returns
    -------
    np.ndarray, shape (n_frames, n_mels), float32
    """
    return load_features(ensure_cached(audio_path, mel_cfg, cache_dir), n_mels=mel_cfg.n_mels,
                         mmap=mmap)


def ensure_cached(audio_path: str | os.PathLike, mel_cfg: MelConfig,
                  cache_dir: str | os.PathLike, *, chroma: bool = False) -> Path:
    """Compute and store the features of ``audio_path`` unless cached; return the mel entry's path.

    With ``chroma`` the chroma entry (``cache_path(..., kind="chroma")``) is
    made too, from the same STFT.
    """
    target = cache_path(audio_path, mel_cfg, cache_dir)
    chroma_target = cache_path(audio_path, mel_cfg, cache_dir, kind="chroma")
    if target.is_file() and (not chroma or chroma_target.is_file()):
        return target
    samples = decode(audio_path, sr=mel_cfg.sample_rate)
    if chroma:
        frames, chroma_frames = features(samples, mel_cfg)
        _write(chroma_target, chroma_frames)
    else:
        frames = mel_frames(samples, mel_cfg)
    _write(target, frames)
    return target


def _write(target: Path, array: np.ndarray) -> None:
    """Save ``array`` as float32 .npy atomically (temporary name, then rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array, dtype=np.float32))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def load_features(path: str | os.PathLike, *, n_mels: int | None = None,
                  mmap: bool = True) -> np.ndarray:
    """Read one cache entry; (n_frames, n_mels or 12) float32, memory-mapped read-only by default."""
    try:
        frames = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"feature cache {path}: unreadable ({exc}); delete it to recompute") \
            from None
    if frames.ndim != 2 or frames.dtype != np.float32 or \
            (n_mels is not None and frames.shape[1] != n_mels):
        raise InputError(f"feature cache {path}: shape {frames.shape} {frames.dtype}, expected "
                         f"(n, {n_mels or 'n_mels'}) float32; delete it to recompute")
    return frames


def build_feature_cache(songs: Sequence[Song], mel_cfg: MelConfig, cache_dir: str | os.PathLike,
                        *, jobs: int = 1, progress: bool = True, chroma: bool = False
                        ) -> dict[Path, Path]:
    """Make sure every song's features are cached; return the mel cache files by audio path.

    Read an entry with :func:`load_features` (memory-mapped): holding paths
    rather than open maps keeps the number of open files constant.

    ``jobs`` threads decode and transform in parallel (soundfile and the torch
    STFT release the GIL). A song that cannot be decoded raises
    :class:`~models.errors.InputError` naming the file.
    """
    def one(song: Song) -> Path:
        return ensure_cached(song.audio, mel_cfg, cache_dir, chroma=chroma)

    bar = tqdm(total=len(songs), desc="features", unit="song", disable=not progress)
    out: dict[Path, Path] = {}
    with bar, ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for song, path in zip(songs, pool.map(one, songs)):
            out[song.audio] = path
            bar.update()
    return out


def norm_stats(feature_arrays: Iterable[np.ndarray], *,
               min_std: float = MIN_STD) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std over all frames of all arrays, streamed in float64.

    Each array's mean and sum of squared deviations are merged into the
    running totals (Chan et al.'s pairwise update), so no concatenation is
    made and the result is stable for long inputs.

    Parameters
    ----------
    feature_arrays : iterable of np.ndarray, each (n_frames_i, n_mels)
    min_std : floor applied to the std (a constant band would otherwise blow up)

    Returns
    -------
    mean, std : np.ndarray, shape (n_mels,), float32
    """
    count = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None
    for frames in feature_arrays:
        x = np.asarray(frames, dtype=np.float64)
        if x.ndim != 2:
            raise InputError(f"norm_stats: expected (n_frames, n_mels) arrays, got shape {x.shape}")
        n = len(x)
        if n == 0:
            continue
        mu = x.mean(axis=0)
        sq = ((x - mu) ** 2).sum(axis=0)
        if mean is None:
            count, mean, m2 = n, mu, sq
            continue
        if x.shape[1] != len(mean):
            raise InputError(f"norm_stats: arrays with {len(mean)} and {x.shape[1]} bands")
        total = count + n
        delta = mu - mean
        mean = mean + delta * (n / total)
        m2 = m2 + sq + delta ** 2 * (count * n / total)
        count = total
    if mean is None:
        raise InputError("norm_stats: no frames (every feature array is empty)")
    std = np.maximum(np.sqrt(m2 / count), min_std)
    return mean.astype(np.float32), std.astype(np.float32)
