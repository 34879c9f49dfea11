"""Highlight clips: the excerpt cut from the original file, faded, optionally loudness-normalised.

Detection runs on a 22,050 Hz mono analysis signal; a clip is cut from the
original file at its own sample rate and channel count, so a 48 kHz stereo
master gives a 48 kHz stereo clip. Times are seconds from the start of the
track, the same in both signals.

Fades are equal-power (quarter-sine): the gain rises as ``sin(pi/2 * t/T)``
over the fade in and falls as ``cos(pi/2 * t/T)`` over the fade out, so the
perceived level changes evenly and the first and last samples are silent.
When the clip is shorter than both fades together, both shrink in proportion.

Loudness normalisation measures the integrated loudness of the faded clip
(ITU-R BS.1770-4 / EBU R128, K-weighted, gated; pyloudnorm) and applies one
gain to reach the target, then lowers that gain if the true peak (estimated
by 4x oversampling, as BS.1770 Annex 2) would pass ``peak_ceiling_db`` dBTP
(default -1 dBTP, the EBU R128 ceiling). A peak-limited clip ends quieter
than the target; :class:`Clip` reports the loudness actually reached.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from models.errors import InputError

FORMATS = ("wav", "flac", "ogg", "mp3")
DEFAULT_FORMAT = "ogg"
DEFAULT_FADE_IN_S = 1.0
DEFAULT_FADE_OUT_S = 2.0
DEFAULT_PEAK_CEILING_DB = -1.0  # dBTP, EBU R128
OVERSAMPLE = 4  # true-peak estimate, BS.1770-4 Annex 2
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_LOUDNESS_BLOCK_S = 0.4  # BS.1770 gating block: shorter clips cannot be measured


@dataclass(frozen=True)
class ClipOptions:
    """How a clip is shaped and written; validated on construction.

    fade_in_s, fade_out_s : fade lengths in seconds (>= 0)
    format : one of ``FORMATS``
    loudness_lufs : target integrated loudness in LUFS (e.g. -14), or None to keep the level
    peak_ceiling_db : true-peak ceiling in dBTP applied with ``loudness_lufs`` (<= 0)
    """

    fade_in_s: float = DEFAULT_FADE_IN_S
    fade_out_s: float = DEFAULT_FADE_OUT_S
    format: str = DEFAULT_FORMAT
    loudness_lufs: float | None = None
    peak_ceiling_db: float = DEFAULT_PEAK_CEILING_DB

    def __post_init__(self) -> None:
        for name in ("fade_in_s", "fade_out_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise InputError(f"{name.replace('_s', '')}: must be a non-negative number of seconds, got {v!r}")
        if self.format not in FORMATS:
            raise InputError(f"format: must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.loudness_lufs is not None and not (math.isfinite(self.loudness_lufs)
                                                   and -70 <= self.loudness_lufs <= 0):
            raise InputError(f"loudness: must be between -70 and 0 LUFS, got {self.loudness_lufs!r}")
        if not (math.isfinite(self.peak_ceiling_db) and self.peak_ceiling_db <= 0):
            raise InputError(f"peak ceiling: must be at most 0 dBTP, got {self.peak_ceiling_db!r}")


@dataclass(frozen=True)
class Clip:
    """A written clip: where, which span of the source, and at what rate and level."""

    path: str
    start_s: float  # span of the source, seconds
    end_s: float
    sample_rate: int  # the source's own rate, Hz
    channels: int  # the source's own channel count
    loudness_lufs: float | None = None  # measured after gain; None without --loudness or if silent
    gain_db: float = 0.0
    peak_limited: bool = False  # the true-peak ceiling lowered the gain below the target

    def as_json(self) -> dict:
        out = {"clip": self.path, "start_s": self.start_s, "end_s": self.end_s,
               "sample_rate": self.sample_rate, "channels": self.channels}
        if self.loudness_lufs is not None or self.gain_db:
            out.update(loudness_lufs=_round(self.loudness_lufs), gain_db=round(self.gain_db, 2),
                       peak_limited=self.peak_limited)
        return out


def read_span(path: str | os.PathLike, start_s: float, end_s: float) -> tuple[np.ndarray, int]:
    """Read ``[start_s, end_s)`` of ``path`` at its own rate and channels.

    Returns
    -------
    (samples, sample_rate) : samples shape (n, channels), float32; the span is
    clipped to the file's length.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if not (math.isfinite(start_s) and math.isfinite(end_s) and 0 <= start_s < end_s):
        raise InputError(f"{path}: bad span {start_s!r}-{end_s!r} s (need 0 <= start < end)")
    try:
        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            a = min(int(round(start_s * sr)), f.frames)
            b = min(int(round(end_s * sr)), f.frames)
            f.seek(a)
            data = f.read(b - a, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        data, sr = _read_span_librosa(path, start_s, end_s, exc)
    if len(data) == 0:
        raise InputError(f"{path}: no audio between {start_s:.2f} and {end_s:.2f} s")
    if not np.all(np.isfinite(data)):
        raise InputError(f"{path}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(data), int(sr)


def _read_span_librosa(path: Path, start_s: float, end_s: float, first: Exception):
    try:
        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data, sr = librosa.load(str(path), sr=None, mono=False, offset=start_s,
                                    duration=end_s - start_s, dtype=np.float32)
    except Exception:
        raise InputError(f"{path}: not a readable audio file ({first})") from None
    return np.atleast_2d(data).T, sr


def fade(samples: np.ndarray, sample_rate: int, *, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    """Equal-power fades (quarter-sine gain) at both ends; a new array.

    samples : shape (n, channels) or (n,); both fades shrink in proportion if
    together they are longer than the clip.
    """
    x = np.array(samples, dtype=np.float32, copy=True)
    n = len(x)
    fi, fo = fade_in_s * sample_rate, fade_out_s * sample_rate
    if fi + fo > n:
        scale = n / (fi + fo)
        fi, fo = fi * scale, fo * scale
    fi, fo = int(round(fi)), int(round(fo))
    shape = (-1,) + (1,) * (x.ndim - 1)
    if fi:
        x[:fi] *= np.sin(0.5 * np.pi * np.arange(fi) / fi).astype(np.float32).reshape(shape)
    if fo:
        x[n - fo:] *= np.cos(0.5 * np.pi * np.arange(1, fo + 1) / fo).astype(np.float32).reshape(shape)
    return x


def true_peak_db(samples: np.ndarray) -> float:
    """True peak in dBTP (4x oversampled, all channels); -inf for silence."""
    from scipy.signal import resample_poly

    x = np.asarray(samples, np.float64)
    if len(x) == 0:
        return -math.inf
    peak = float(np.max(np.abs(resample_poly(x, OVERSAMPLE, 1, axis=0))))
    peak = max(peak, float(np.max(np.abs(x))))
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def integrated_loudness(samples: np.ndarray, sample_rate: int, *, name: str = "clip") -> float:
    """BS.1770-4 integrated loudness in LUFS (pyloudnorm); -inf for silence.

    samples : shape (n, channels) or (n,), at most 5 channels, at least 0.4 s.
    """
    import pyloudnorm

    x = np.asarray(samples, np.float64)
    if len(x) < _LOUDNESS_BLOCK_S * sample_rate:
        raise InputError(f"{name}: {len(x) / sample_rate:.2f} s is too short to measure loudness "
                         f"(BS.1770 needs at least {_LOUDNESS_BLOCK_S} s)")
    if x.ndim == 2 and x.shape[1] > 5:
        raise InputError(f"{name}: {x.shape[1]} channels; BS.1770 loudness is defined for up to 5")
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyloudnorm warns on float input outside [-1, 1]
        return float(pyloudnorm.Meter(sample_rate).integrated_loudness(x))


def normalize_loudness(samples: np.ndarray, sample_rate: int, *, target_lufs: float,
                       peak_ceiling_db: float = DEFAULT_PEAK_CEILING_DB, name: str = "clip"
                       ) -> tuple[np.ndarray, float, float | None, bool]:
    """Scale to ``target_lufs``, lowered if needed so the true peak stays <= the ceiling.

    Returns (samples, gain_db, loudness reached in LUFS or None if silent, peak_limited).
    """
    loud = integrated_loudness(samples, sample_rate, name=name)
    if not math.isfinite(loud):  # silence (everything gated out): nothing to normalise
        return np.asarray(samples, np.float32), 0.0, None, False
    gain = target_lufs - loud
    peak = true_peak_db(samples)
    limited = peak + gain > peak_ceiling_db
    if limited:
        gain = peak_ceiling_db - peak - 0.01  # margin for the float32 rounding
    out = (np.asarray(samples, np.float64) * 10 ** (gain / 20)).astype(np.float32)
    return out, gain, loud + gain, bool(limited)


def _subtype(fmt: str, source_subtype: str | None) -> str:
    if fmt == "ogg":
        return "VORBIS"
    if fmt == "mp3":
        return "MPEG_LAYER_III"
    high = source_subtype in ("PCM_24", "PCM_32", "FLOAT", "DOUBLE")
    if fmt == "flac":
        return "PCM_24" if high else "PCM_16"
    return source_subtype if source_subtype in ("PCM_16", "PCM_24", "PCM_32", "FLOAT") else "PCM_16"


def clip_path(out_dir: str | os.PathLike, track_id: str, fmt: str) -> Path:
    """Where a track's clip goes: ``out_dir/<track_id>.<fmt>``."""
    return Path(out_dir) / f"{track_id}.{fmt}"


def check_out_dir(out_dir: str | os.PathLike) -> Path:
    """Create ``out_dir`` if needed and prove it writable; InputError naming it otherwise."""
    d = Path(out_dir)
    if d.exists() and not d.is_dir():
        raise InputError(f"{d}: output folder is not a folder (a file of that name exists)")
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=d, prefix=".hookstream-probe-"):
            pass
    except OSError as exc:
        raise InputError(f"{d}: output folder is not writable ({exc.strerror or exc})") from None
    return d


def cut_clip(source: str | os.PathLike, start_s: float, end_s: float, out: str | os.PathLike, *,
             options: ClipOptions | None = None, overwrite: bool = False) -> Clip:
    """Cut ``[start_s, end_s)`` of ``source`` to ``out``, faded and optionally normalised.

    The clip keeps the source's sample rate and channels; ``options.format``
    decides the container (wav/flac keep 24-bit or float sources at 24 bit or
    float). The file is written to a temporary name and renamed, so a
    failure leaves no partial clip.

    Raises
    ------
    InputError naming ``source`` (unreadable, bad span) or ``out`` (exists
    without ``overwrite``, cannot be written, format cannot hold the rate).
    """
    opts = options or ClipOptions()
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"{out}: clip already exists (use --overwrite to replace it)")
    samples, sr = read_span(source, start_s, end_s)
    if opts.format == "mp3" and sr not in _MP3_RATES:
        raise InputError(f"{source}: {sr} Hz cannot be written as mp3 (MPEG supports "
                         f"{', '.join(map(str, _MP3_RATES))} Hz); use --format flac or ogg")
    x = fade(samples, sr, fade_in_s=opts.fade_in_s, fade_out_s=opts.fade_out_s)
    gain, loud, limited = 0.0, None, False
    if opts.loudness_lufs is not None:
        x, gain, loud, limited = normalize_loudness(x, sr, target_lufs=opts.loudness_lufs,
                                                    peak_ceiling_db=opts.peak_ceiling_db,
                                                    name=str(source))
    try:
        source_subtype = sf.info(str(source)).subtype
    except (sf.LibsndfileError, RuntimeError):
        source_subtype = None
    _write(out, x, sr, opts.format, _subtype(opts.format, source_subtype))
    return Clip(str(out), round(start_s, 3),
                round(start_s + len(samples) / sr, 3), sr, samples.shape[1], loud, gain, limited)


def _write(out: Path, x: np.ndarray, sr: int, fmt: str, subtype: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}-", suffix=f".{fmt}")
    os.close(fd)
    try:
        sf.write(tmp, x, sr, format=fmt.upper(), subtype=subtype)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a clip is an ordinary file
        os.replace(tmp, out)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise InputError(f"{out}: cannot write the clip ({exc})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)
