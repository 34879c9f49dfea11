"""What ``hookstream bench`` runs: :class:`BenchConfig` and the fixed sizes of its phases."""

from __future__ import annotations

from dataclasses import dataclass

from models.errors import ConfigError


SYNTH_BARS = 52  # bars in models.examples.synth_song's plan (4+8+8+8+8+4+8+4)
WARMUP_SECONDS = 8.0
PROFILE_PIECE_S = 2.0
ROUND_EVENTS = 64  # chunk events per round in the memory phase (the worker's default batch)


@dataclass(frozen=True)
class BenchConfig:
    """What ``hookstream bench`` runs; validated in :meth:`__post_init__`."""

    tracks: int = 6
    concurrency: int = 4
    seconds: float = 120.0
    realtime_seconds: float = 40.0
    memory_tracks: int = 32
    profile_seconds: float = 240.0  # 0 skips the profile
    chunk_seconds: float = 2.0
    checkpoint: str | None = None  # None: configs/detect.yaml's, or an untrained Huang net
    torch_threads: int | None = None  # None: torch's default (OMP_NUM_THREADS, else one per core)
    timeout_s: float = 180.0  # longest wait for the worker in any one step

    def __post_init__(self) -> None:
        for name in ("tracks", "concurrency", "memory_tracks"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, "
                                  f"got {getattr(self, name)}")
        for name in ("seconds", "realtime_seconds"):
            if not getattr(self, name) >= 4 * self.chunk_seconds:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least "
                                  f"{4 * self.chunk_seconds:g} (four chunks), got {getattr(self, name)}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError(f"--torch-threads must be at least 1, got {self.torch_threads}")
        if not self.profile_seconds >= 0:
            raise ConfigError(f"--profile-seconds must be >= 0, got {self.profile_seconds}")
