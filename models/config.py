"""Frozen, validated configuration objects, loaded from ``configs/*.yaml``.

The core never reads the environment: overrides happen at the edge (CLI, app
start) by passing keyword arguments to :func:`load_yaml` or ``replace``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from models.errors import ConfigError

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"


@dataclass(frozen=True)
class MelConfig:
    """Huang 2017 §II.D front end: 22,050 Hz, Hamming 2048, hop 512, 128 mel bands."""

    sample_rate: int = 22_050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float | None = None  # None: sample_rate / 2
    log_offset: float = 1e-6  # log(mel + offset); keeps silence finite

    def __post_init__(self) -> None:
        _require(self.sample_rate > 0, "mel.sample_rate", self.sample_rate, "must be positive")
        _require(0 < self.hop_length <= self.n_fft, "mel.hop_length", self.hop_length,
                 "must be in (0, n_fft]")
        _require(self.n_mels > 0, "mel.n_mels", self.n_mels, "must be positive")
        _require(self.log_offset > 0, "mel.log_offset", self.log_offset, "must be positive")

    @property
    def frame_seconds(self) -> float:
        """Seconds between successive frames (hop)."""
        return self.hop_length / self.sample_rate


@dataclass(frozen=True)
class ScorerConfig:
    """How frames are grouped for the attention model and the highlight window.

    ``chunk_frames`` frames (130 x 512 / 22,050 = 3.02 s) make one chunk, the
    unit the CNN embeds and the attention weighs. ``slot_frames`` is the time
    resolution of the highlight window (13 frames = 0.30 s); it divides
    ``chunk_frames`` so slots never straddle chunks. ``context_chunks`` bounds
    the provisional recomputation (see :mod:`models.scorer`).
    """

    chunk_frames: int = 130
    slot_frames: int = 13
    min_tail_frames: int = 43  # a final partial chunk shorter than ~1 s is not scored
    context_chunks: int = 80  # 4 minutes of provisional context (as configs/detect.yaml)
    max_duration_s: float = 20 * 60.0

    def __post_init__(self) -> None:
        _require(self.slot_frames > 0 and self.chunk_frames % self.slot_frames == 0,
                 "scorer.slot_frames", self.slot_frames, "must divide chunk_frames")
        _require(0 < self.min_tail_frames <= self.chunk_frames, "scorer.min_tail_frames",
                 self.min_tail_frames, "must be in (0, chunk_frames]")
        _require(self.context_chunks >= 1, "scorer.context_chunks", self.context_chunks,
                 "must be at least 1")
        _require(self.max_duration_s > 0, "scorer.max_duration_s", self.max_duration_s,
                 "must be positive")


@dataclass(frozen=True)
class WindowConfig:
    """The highlight window (Huang §II.C) with optional CRAN eq. 9-10 energy fusion.

    ``gamma`` weighs attention against mel energy per slot (eq. 9; 1.0 is
    attention only); ``beta`` weighs the window sum against the energy rise at
    its start (eq. 10; 1.0 ignores the rise).
    """

    length_s: float = 30.0
    gamma: float = 1.0  # as configs/detect.yaml: the default chorus model reads its chorusness alone
    beta: float = 1.0
    # > 0: a chorus model's chorusness times (best later chroma match)^recurrence (models.recurrence)
    recurrence: float = 0.0
    # > 0: a chorus model's chorusness times (its phrase's match with the first chorus-like
    # phrase)^first_chorus (models.first_chorus); models without slot chroma read theirs as is
    first_chorus: float = 2.0
    first_chorus_threshold: float = 0.6  # of the track's largest (3-chunk mean) chorusness
    first_chorus_chunks: int = 4  # chunks in the reference phrase
    first_chorus_floor: float = 0.2  # weight of a chunk that matches nothing in it
    # the weight on provisional highlights too (final ones always): chosen on val with the
    # default model's provisional head (docs/evaluation.md, "Provisional highlights")
    first_chorus_provisional: bool = True

    def __post_init__(self) -> None:
        _require(self.length_s > 0, "window.length_s", self.length_s, "must be positive")
        _require(0.0 <= self.gamma <= 1.0, "window.gamma", self.gamma, "must be in [0, 1]")
        _require(0.0 < self.beta <= 1.0, "window.beta", self.beta, "must be in (0, 1]")
        _require(0.0 <= self.recurrence <= 8.0, "window.recurrence", self.recurrence,
                 "must be in [0, 8] (0: chorusness alone)")
        _require(0.0 <= self.first_chorus <= 8.0, "window.first_chorus", self.first_chorus,
                 "must be in [0, 8] (0: chorusness as it is)")
        _require(0.0 < self.first_chorus_threshold <= 1.0, "window.first_chorus_threshold",
                 self.first_chorus_threshold, "must be in (0, 1]")
        _require(isinstance(self.first_chorus_chunks, int) and self.first_chorus_chunks >= 1,
                 "window.first_chorus_chunks", self.first_chorus_chunks,
                 "must be a whole number of chunks >= 1")
        _require(0.0 <= self.first_chorus_floor < 1.0, "window.first_chorus_floor",
                 self.first_chorus_floor, "must be in [0, 1)")
        _require(isinstance(self.first_chorus_provisional, bool), "window.first_chorus_provisional",
                 self.first_chorus_provisional, "must be true or false")


@dataclass(frozen=True)
class DetectConfig:
    """Everything offline detection and the streaming worker need besides the checkpoint."""

    checkpoint: str | None = None  # None: the shipped default model
    # Which model scores provisional highlights (models.detect.provisional_head): "auto" (the
    # shipped provisional head where it reads the final model's chunk vectors, else the final
    # model), None (the final model) or a checkpoint path
    provisional_checkpoint: str | None = "auto"
    device: str = "auto"  # "auto": cuda when available, else cpu
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    window: WindowConfig = field(default_factory=WindowConfig)

    def __post_init__(self) -> None:
        for key in ("checkpoint", "provisional_checkpoint"):
            value = getattr(self, key)
            _require(value is None or (isinstance(value, str) and value != ""), key, value,
                     "must be a checkpoint path or null")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-6`` as a string; read it as the float people mean."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    __import__("re").compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file with :class:`_Loader`."""
    return yaml.load(path.read_text(), Loader=_Loader)


def _require(ok: bool, key: str, value: Any, reason: str) -> None:
    if not ok:
        raise ConfigError(f"{key} = {value!r}: {reason}")


def from_dict(cls: type[T], data: Mapping[str, Any] | None, *, prefix: str = "") -> T:
    """Build frozen dataclass ``cls`` from a mapping, recursing into nested configs.

    Unknown keys are an error naming the key, so a typo in YAML never passes silently.
    """
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix or cls.__name__}: unknown key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        nested = _NESTED.get((cls, name))
        if nested is not None and isinstance(value, Mapping):
            value = from_dict(nested, value, prefix=f"{prefix}{name}.")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{prefix or cls.__name__}: {exc}") from None


def load_yaml(cls: type[T], path: str | Path, **overrides: Any) -> T:
    """Load ``cls`` from YAML file ``path``; keyword overrides replace top-level keys."""
    path = Path(path)
    try:
        data = read_yaml(path) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(cls, data, prefix=f"{path.name}: ")


def load_detect_config(path: str | Path | None = None, **overrides: Any) -> DetectConfig:
    """``path``, or ``configs/detect.yaml`` when it exists, else the built-in defaults.

    The defaults equal the shipped ``configs/detect.yaml``; an installed wheel
    has no ``configs/`` folder, and still works.
    """
    if path is None and not (CONFIG_DIR / "detect.yaml").is_file():
        return DetectConfig(**overrides)
    return load_yaml(DetectConfig, path or CONFIG_DIR / "detect.yaml", **overrides)


def to_dict(obj: Any) -> dict[str, Any]:
    """A frozen config as plain JSON-able data (tuples become lists)."""
    return dataclasses.asdict(obj)


_NESTED: dict[tuple[type, str], type] = {
    (DetectConfig, "scorer"): ScorerConfig,
    (DetectConfig, "window"): WindowConfig,
}
