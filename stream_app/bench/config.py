"""What ``hookstream bench`` runs: :class:`BenchConfig` and the fixed sizes of its phases."""

from __future__ import annotations

from dataclasses import dataclass

from models.errors import ConfigError


SYNTH_BARS = 52  # bars in models.examples.synth_song's plan (4+8+8+8+8+4+8+4)
WARMUP_SECONDS = 8.0
PROFILE_PIECE_S = 2.0
ROUND_EVENTS = 64  # chunk events per round in the memory phase (the worker's default batch)
PHASES = ("offline", "profile", "streaming", "latency", "memory", "changelog")  # in the order they run
DEFAULT_KS = (10, 50, 100, 200, 300)  # the concurrencies ``--sweep`` tries by default
DEVICES = ("auto", "cpu", "cuda")


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
    phases: tuple[str, ...] = PHASES  # a subset runs only those (memory needs latency's worker)
    device: str = "auto"  # scorer device here and in the workers: auto | cpu | cuda[:N]
    sweep: tuple[int, ...] = ()  # track counts K for the capacity sweep; set: the sweep alone runs
    sweep_seconds: float = 60.0  # real-time seconds per K (each track is this long)

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
        unknown = [p for p in self.phases if p not in PHASES]
        if unknown or not self.phases:
            raise ConfigError(f"--phases: {', '.join(unknown) or 'none given'}: not among "
                              f"{', '.join(PHASES)}")
        if self.device.split(":")[0] not in DEVICES:
            raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if any(k < 1 for k in self.sweep):
            raise ConfigError(f"--sweep: track counts must be at least 1, got {self.sweep}")
        if not self.sweep_seconds >= 4 * self.chunk_seconds:
            raise ConfigError(f"--sweep-seconds must be at least {4 * self.chunk_seconds:g} "
                              f"(four chunks), got {self.sweep_seconds}")
        if not self.profile_seconds >= 0:
            raise ConfigError(f"--profile-seconds must be >= 0, got {self.profile_seconds}")
