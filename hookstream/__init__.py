"""hookstream's Python API, for platforms that embed the detector instead of calling the CLI.

Four entry points, all on the numeric core (no Kafka, Faust or Prometheus is
imported)::

    import hookstream

    detector = hookstream.load()                            # the shipped model, once per process
    found = hookstream.detect("song.flac", detector=detector)     # a file ...
    found = hookstream.detect(samples, sample_rate=44100, detector=detector)  # ... or an array
    found.highlight.start_s, found.highlight.end_s, found.highlight.score

    stream = hookstream.Stream("track-42", detector=detector, sample_rate=44100)
    for piece in upload:                                    # any piece sizes
        provisional = stream.push(piece)                    # Highlight, or None before the first 3 s chunk
    final = stream.finish()                                 # Detection, equal to detect() on the whole

    hookstream.clip("song.flac", "song-preview.ogg", found.highlight, loudness_lufs=-14)

Times are seconds from the start of the track; samples are float32 in
[-1, 1]. :class:`~models.detect.Detection`, :class:`~models.window.Highlight`
and :class:`~models.clip.Clip` are frozen dataclasses. Every rejected input
raises :class:`HookstreamError` (``InputError`` for bad audio or arguments)
with a message naming the input. For many concurrent tracks, batch them
through :class:`models.scorer.Scorer` directly as the streaming worker does.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.clip import FORMATS, Clip, ClipOptions, cut_clip
from models.detect import Detection, Detector
from models.errors import CheckpointError, ConfigError, HookstreamError, InputError
from models.window import Highlight

__all__ = ["load", "detect", "Stream", "clip", "Detector", "Detection", "Highlight", "Clip",
           "ClipOptions", "HookstreamError", "InputError", "ConfigError", "CheckpointError"]

_default: Detector | None = None


def load(checkpoint: str | os.PathLike | None = None, *, length_s: float | None = None,
         device: str | None = None, config: str | os.PathLike | None = None) -> Detector:
    """Build a detector: model weights, scorer and highlight window.

    Parameters
    ----------
    checkpoint : a ``.safetensors`` checkpoint; None for the config's (the shipped model)
    length_s : highlight length in seconds; None for the config's (30)
    device : "cpu", "cuda", "cuda:N" or "auto"; None for the config's (auto)
    config : a detection YAML like ``configs/detect.yaml``; None for that file or the defaults

    Loading takes about a second; reuse the detector (it is not thread-safe:
    use one per thread).
    """
    from models import checkpoint as ckpts
    from models.config import load_detect_config

    cfg = load_detect_config(config)
    if length_s is not None:
        cfg = replace(cfg, window=replace(cfg.window, length_s=length_s))
    if device is not None:
        cfg = replace(cfg, device=device)
    return Detector(cfg, ckpts.load(checkpoint or cfg.checkpoint))


def _detector(detector: Detector | None) -> Detector:
    global _default
    if detector is not None:
        return detector
    if _default is None:
        _default = load()
    return _default


def detect(source: str | os.PathLike | np.ndarray, *, sample_rate: int | None = None,
           track_id: str | None = None, detector: Detector | None = None) -> Detection:
    """The highlight of a whole track, from a file or from samples.

    Parameters
    ----------
    source : a path (wav, flac, ogg, mp3, ...) or an array of samples, shape
        (n,) mono or (n, channels), float in [-1, 1]
    sample_rate : the array's rate in Hz (required for an array; resampled to
        the model's 22,050 Hz, channels averaged)
    track_id : the id in the result; default the file's stem, or "track"
    detector : from :func:`load`; default the shipped model, loaded once

    Returns
    -------
    Detection : ``.highlight`` (start_s, end_s, score), ``.scores`` (per-chunk
    attention, per-slot energy), ``.model``, ``.as_json()``
    """
    det = _detector(detector)
    if isinstance(source, (str, os.PathLike)):
        if sample_rate is not None:
            raise InputError(f"{source}: sample_rate is for arrays; a file has its own")
        found = det.detect_file(source)
        return found if track_id is None else replace(found, track_id=track_id)
    samples = _mono(source, sample_rate, name=track_id or "samples")
    rate = det.ckpt.mel.sample_rate
    if sample_rate != rate:  # what decode does to a file, and the worker to a stream
        from models.resample import resample

        samples = resample(samples, sample_rate, rate)
    return det.detect_samples(track_id or "track", samples)


def _mono(samples, sample_rate, *, name: str) -> np.ndarray:
    x = np.asarray(samples)
    if sample_rate is None or not (isinstance(sample_rate, (int, np.integer)) and sample_rate > 0):
        raise InputError(f"{name}: sample_rate must be a positive integer (Hz), got {sample_rate!r}")
    if x.dtype.kind != "f":
        raise InputError(f"{name}: samples must be floating point in [-1, 1], got {x.dtype}")
    if x.ndim == 2:
        x = x.mean(axis=1)
    elif x.ndim != 1:
        raise InputError(f"{name}: samples must have shape (n,) or (n, channels), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise InputError(f"{name}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(x, dtype=np.float32)


class Stream:
    """One track arriving piece by piece: provisional highlights as it grows, one final.

    ``push`` returns the provisional highlight after each piece (None until
    the first 3 s chunk is complete). The backward half of the attention
    needs the future, so provisional spans may move as audio arrives (see
    :mod:`models.scorer`); ``finish`` runs the whole-track attention once and
    equals :func:`detect` on the concatenated samples. At another rate than
    the model's 22,050 Hz the pieces go through the track's streaming
    resampler (:mod:`models.resample`, part of the state), whose output equals
    :func:`detect`'s whole-signal resampling whatever the piece sizes.

    The state is a plain value (``stream.state``, a
    :class:`models.scorer.TrackState` with ``to_bytes``/``from_bytes``), so a
    platform can persist a track between pieces.
    """

    def __init__(self, track_id: str, *, detector: Detector | None = None,
                 sample_rate: int | None = None):
        self.detector = _detector(detector)
        rate = self.detector.ckpt.mel.sample_rate
        self.sample_rate = rate if sample_rate is None else sample_rate
        _mono(np.zeros(0, np.float32), self.sample_rate, name=track_id)  # validates the rate
        self.track_id = track_id
        self.state = self.detector.scorer.init_state(track_id, sample_rate=self.sample_rate)
        self._done: Detection | None = None

    @property
    def audio_s(self) -> float:
        """Seconds of audio received so far."""
        return self.state.received_samples / self.sample_rate

    def push(self, samples: np.ndarray) -> Highlight | None:
        """Feed the next piece (shape (n,) or (n, channels), at ``sample_rate``).

        Returns the provisional highlight over everything received, or None
        while no complete chunk (3.02 s) has arrived.
        """
        if self._done is not None:
            raise InputError(f"track {self.track_id!r}: finished; start a new Stream")
        x = _mono(samples, self.sample_rate, name=f"track {self.track_id!r}")
        self.state = self.detector.scorer.step([(self.state, x)])[0]
        return self.provisional()

    def provisional(self) -> Highlight | None:
        """The current provisional highlight (None before the first complete chunk)."""
        scores = self.detector.scorer.provisional(self.state)
        return self.detector.highlight(scores) if len(scores.attention) else None

    def finish(self) -> Detection:
        """End the track: the final highlight (idempotent)."""
        if self._done is None:
            scores = self.detector.scorer.finalize([self.state])[0]
            self._done = Detection(self.track_id, self.detector.highlight(scores), scores,
                                   self.detector.scorer.model_name)
        return self._done


def clip(source: str | os.PathLike, out: str | os.PathLike, highlight: Highlight | None = None, *,
         fade_in_s: float = 1.0, fade_out_s: float = 2.0, loudness_lufs: float | None = None,
         overwrite: bool = False, detector: Detector | None = None) -> Clip:
    """Write ``source``'s highlight to ``out`` as a clip, at the source's own rate and channels.

    Parameters
    ----------
    source : the original audio file
    out : the clip's path; its suffix (.wav, .flac, .ogg, .mp3) picks the format
    highlight : the span to cut (e.g. ``detect(...).highlight`` or a final
        event's start_s/end_s as ``Highlight(start, end, score)``); None detects it
    fade_in_s, fade_out_s : equal-power fade lengths in seconds
    loudness_lufs : normalise to this BS.1770 integrated loudness, true peak <= -1 dBTP
    overwrite : replace an existing ``out`` (default: InputError)

    Returns
    -------
    Clip : path, start_s, end_s, sample_rate, channels, loudness_lufs, gain_db, peak_limited
    """
    fmt = Path(out).suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise InputError(f"{out}: the clip's suffix must be one of "
                         f"{', '.join('.' + f for f in FORMATS)} (it picks the format)")
    opts = ClipOptions(fade_in_s=fade_in_s, fade_out_s=fade_out_s, format=fmt,
                       loudness_lufs=loudness_lufs)
    if highlight is None:
        highlight = _detector(detector).detect_file(source).highlight
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return cut_clip(source, highlight.start_s, highlight.end_s, out, options=opts,
                    overwrite=overwrite)

